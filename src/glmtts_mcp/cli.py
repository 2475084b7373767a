"""`glmtts-mcp`: the MCP server (stdio by default) and the commands a person runs at a shell.

Every Settings field is also a flag (`--voices-dir`, `--allowed-dir` repeatable, ...), accepted
before or after the subcommand. Results go to stdout; logs and progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_origin

from glmtts_mcp import __version__
from glmtts_mcp.config import (
    CONFIG_ENV,
    TOKEN_ENV,
    ConfigError,
    Settings,
    env_name,
    flag_name,
    load_settings,
)
from glmtts_mcp.errors import Term, UserError, internal_error, render_text
from glmtts_mcp.logs import configure_logging

log = logging.getLogger(__name__)

# Settings that are never flags: secrets belong in the environment, not in `ps` output.
_NOT_FLAGS = {"token"}
# Always written into the host snippet, so the server finds the same files whatever the host's environment.
_SNIPPET_ALWAYS = ("checkpoint", "voices_dir", "output_dir", "allowed_dirs")


def _settings_options() -> argparse.ArgumentParser:
    """A parent parser with one flag per Settings field; unset flags stay absent (SUPPRESS)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("configuration (flags > GLMTTS_MCP_* env vars > config file > defaults)")
    group.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=f"TOML config file (env {CONFIG_ENV})")
    for name, field in Settings.model_fields.items():
        if name in _NOT_FLAGS:
            continue
        flag = flag_name(name)
        env = f"env {env_name(name)}"
        if get_origin(field.annotation) is list or name == "allowed_dirs":
            group.add_argument(
                flag, dest=name, action="append", default=argparse.SUPPRESS, help=f"{field.description} ({env})"
            )
        else:
            group.add_argument(flag, dest=name, default=argparse.SUPPRESS, help=f"{field.description} ({env})")
    return parent


def _http_options() -> argparse.ArgumentParser:
    """The HTTP server's flags, shared by `serve` and `web`."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parent.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    parent.add_argument(
        "--allowed-host", action="append", default=[], help="extra Host/Origin name HTTP clients may use (repeatable)"
    )
    parent.add_argument(
        "--force-insecure",
        action="store_true",
        help=f"serve a non-loopback address without a bearer token ({TOKEN_ENV}); anyone who can reach it can use it",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; `glmtts-mcp` alone serves stdio."""
    common = _settings_options()
    parser = argparse.ArgumentParser(
        prog="glmtts-mcp",
        description="Clone a voice from a short recording and narrate text in it, over MCP or at the shell.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"glmtts-mcp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    http = _http_options()
    serve = sub.add_parser("serve", parents=[common, http], help="run the MCP server (default: stdio)")
    serve.add_argument("--transport", choices=["stdio", "http", "sse"], default="stdio")

    web = sub.add_parser(
        "web",
        parents=[common, http],
        help="serve over HTTP (MCP at /mcp, the page, REST and OpenAI APIs) and open the page",
    )
    web.add_argument("--no-browser", action="store_true", help="print the page's URL instead of opening a browser")

    voices = sub.add_parser("voices", parents=[common], help="manage the voice library")
    vsub = voices.add_subparsers(dest="voices_command", metavar="ACTION", required=True)
    vlist = vsub.add_parser("list", parents=[common], help="list voices")
    vlist.add_argument("--query", help="filter by part of a name, id or transcript")
    vlist.add_argument("--limit", type=int, default=100)
    vlist.add_argument("--json", action="store_true", help="print JSON")
    vdel = vsub.add_parser("delete", parents=[common], help="delete a voice")
    vdel.add_argument("voice", help="id or name")
    vren = vsub.add_parser("rename", parents=[common], help="rename a voice")
    vren.add_argument("voice", help="id or name")
    vren.add_argument("name", help="new name")
    vexp = vsub.add_parser("export", parents=[common], help="write a voice to an archive")
    vexp.add_argument("voice", help="id or name")
    vexp.add_argument("path", type=Path, help="archive file to write (ending in .zip), or an existing folder")
    vimp = vsub.add_parser("import", parents=[common], help="add a voice from an archive")
    vimp.add_argument("path", type=Path, help="archive file made by `voices export`")
    vimp.add_argument("--name", help="name for the imported voice")
    vsub.add_parser(
        "refresh", parents=[common], help="re-extract every stale voice now (after an upgrade; loads the model)"
    )

    pronounce = sub.add_parser("pronounce", parents=[common], help="pronunciation dictionaries (docs/pronunciation.md)")
    psub = pronounce.add_subparsers(dest="pronounce_command", metavar="ACTION", required=True)
    padd = psub.add_parser("add", parents=[common], help='add an entry: TEXT "chong2 qing4" (pinyin) or a respelling')
    padd.add_argument("text", help="the word or name as written")
    padd.add_argument("reading", help="pinyin with tone numbers, or a plain-text respelling")
    prem = psub.add_parser("remove", parents=[common], help="remove an entry")
    prem.add_argument("text", help="the entry's text")
    plist = psub.add_parser("list", parents=[common], help="list the entries")
    plist.add_argument("--json", action="store_true", help="print JSON")
    pimp = psub.add_parser("import", parents=[common], help="merge the entries of a dictionary file")
    pimp.add_argument("path", type=Path, help="a pronunciations.json file")
    pimp.add_argument("--replace", action="store_true", help="replace the dictionary instead of merging")
    pexp = psub.add_parser("export", parents=[common], help="write the dictionary to a file")
    pexp.add_argument("path", type=Path, help="file to write")
    for scoped in (padd, prem, plist, pimp, pexp):
        scoped.add_argument("--voice", help="a voice's own dictionary (omitted: the global one)")

    say = sub.add_parser("say", parents=[common], help="narrate text into an audio file")
    say.add_argument("text", nargs="?", help="the text to speak ('-' reads stdin)")
    who = say.add_mutually_exclusive_group(required=True)
    who.add_argument("--voice", help="voice id or name from the library")
    who.add_argument("--reference", type=Path, help="reference recording to clone (stored in the library)")
    who.add_argument(
        "--script",
        type=Path,
        help="a multi-voice script instead of TEXT: lines `Name: text`, `[pause 800ms]`, `# Chapter` ('-' reads "
        "stdin); writes -o and, beside it, .srt, .vtt and .json (the timeline)",
    )
    say.add_argument("--split-chapters", action="store_true", help="with --script: one file per chapter (NAME-01.wav)")
    say.add_argument("--words", action="store_true", help="with --script: also time every word (Whisper's alignment)")
    say.add_argument(
        "--cues",
        choices=["segment", "line"],
        default="segment",
        help="with --script: one subtitle cue per segment or line",
    )
    say.add_argument("--transcript", help="what the --reference clip says (omitted: Whisper transcribes it)")
    say.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="output file (.wav, .flac, .ogg, .mp3), or - for a WAV stream on stdout (e.g. | aplay)",
    )
    say.add_argument("--seed", type=int, default=0)
    say.add_argument("--read-as", choices=("text", "phoneme"), help="pronunciation mode (default: --pronunciation)")
    say.add_argument("--show-read", action="store_true", help="print the text as the model read it")

    download = sub.add_parser("download", parents=[common], help="download the GLM-TTS checkpoint")
    download.add_argument("--dir", type=Path, help="target folder (default: the configured checkpoint folder)")

    checkpoint = sub.add_parser("checkpoint", parents=[common], help="checkpoint utilities")
    csub = checkpoint.add_subparsers(dest="checkpoint_command", metavar="ACTION", required=True)
    tiny = csub.add_parser("make-tiny", parents=[common], help="write a random-weight checkpoint (for tests)")
    tiny.add_argument("dir", type=Path)
    tiny.add_argument("--size", choices=["tiny", "real"], default="tiny")
    tiny.add_argument("--seed", type=int, default=0)
    twins = csub.add_parser(
        "to-safetensors",
        parents=[common],
        help="write a .safetensors copy of flow.pt and hift.pt, so loading never reads a pickle file",
    )
    twins.add_argument("--remove-pt", action="store_true", help="delete each .pt once its copy is verified")

    ray = sub.add_parser("ray", parents=[common], help="manage the engine replicas on a Ray cluster (--engine ray)")
    rsub = ray.add_subparsers(dest="ray_command", metavar="ACTION", required=True)
    rsub.add_parser(
        "delete",
        parents=[common],
        help="remove the engine replicas from the cluster at --ray-address (every server using them stops narrating)",
    )

    config = sub.add_parser(
        "config", parents=[common], help="print the Claude Desktop / Claude Code configuration for this install"
    )
    config.add_argument("--name", default="glmtts", help="server name in the host's config (default glmtts)")
    return parser


def _settings_from(args: argparse.Namespace) -> Settings:
    values = {name: getattr(args, name) for name in Settings.model_fields if hasattr(args, name)}
    return load_settings(getattr(args, "config", None), **values)


EXIT_GRACE_S = 5.0


def _leave_within(grace_s: float, status: int) -> None:
    """One Ctrl-C stops the process: if a worker thread still holds the interpreter open `grace_s` after
    the interrupt (a blocked read, a model still loading), leave anyway with `status`."""
    timer = threading.Timer(grace_s, os._exit, args=(status,))
    timer.daemon = True
    timer.start()


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 ok, 1 failure, 2 usage)."""
    args = build_parser().parse_args(argv)
    try:
        settings = _settings_from(args)
    except ConfigError as exc:
        print(f"glmtts-mcp: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if not sys.stderr.isatty():  # a log or a pipe: no library redraws a bar into it (see cli_progress)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    command = args.command or "serve"
    try:
        return _COMMANDS[command](args, settings)
    except KeyboardInterrupt:
        _leave_within(EXIT_GRACE_S, 130)
        return 130
    except _UserFacing as exc:
        print(f"glmtts-mcp: {exc}", file=sys.stderr)
        return 1


def shell_words(term: Term) -> str:
    """The shell's words for what an error names: flags for inputs, commands for actions."""
    return _SHELL_WORDS.get(term, f"`{term.value}`")


_SHELL_WORDS: dict[Term, str] = {
    Term.TEXT: "the text to say",
    Term.VOICE: "--voice",
    Term.REFERENCE: "--reference",
    Term.TRANSCRIPT: "--transcript",
    Term.SEED: "--seed",
    Term.FORMAT: "the extension of -o",
    Term.MAX_TEXT_CHARS: "--max-text-chars",
    Term.PRONUNCIATIONS: "the pronunciation dictionary",
    Term.SCRIPT: "--script",
    Term.MAX_SCRIPT_CHARS: "--max-script-chars",
    Term.LIST_VOICES: "run `glmtts-mcp voices list`",
    Term.CLONE_VOICE: "run `glmtts-mcp say --reference CLIP`",
    Term.EXPORT_VOICE: "run `glmtts-mcp voices export`",
    Term.IMPORT_VOICE: "run `glmtts-mcp voices import`",
    Term.RENAME_VOICE: "run `glmtts-mcp voices rename`",
}


class _UserFacing(Exception):
    """A failure to report in one line (no traceback)."""


def _guarded(fn: Any) -> Any:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        from glmtts_mcp.asgi.exposure import HttpSecurityError

        try:
            return fn(args, settings)
        except _UserFacing:
            raise
        except UserError as exc:
            raise _UserFacing(exc.render(shell_words)) from exc
        except HttpSecurityError as exc:
            raise _UserFacing(str(exc)) from exc
        except Exception as exc:  # a bug or an unexpected environment failure: traceback to the log
            raise _UserFacing(internal_error(exc)) from exc

    return run


@_guarded
def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from glmtts_mcp.app.core import build_app

    transport: Literal["stdio", "http", "sse"] = getattr(args, "transport", "stdio")  # the parser's choices
    app = build_app(settings)
    try:
        if transport == "stdio":
            from glmtts_mcp.mcp_face.server import run_stdio

            run_stdio(app)
            return 0
        from glmtts_mcp.asgi.service import HttpService

        host, port = getattr(args, "host", "127.0.0.1"), getattr(args, "port", 8765)
        service = HttpService(
            app,
            transport,
            host=host,
            port=port,
            force_insecure=getattr(args, "force_insecure", False),
            allowed_hosts=getattr(args, "allowed_host", []),
        )
        log.info("the page, REST API (/docs) and OpenAI endpoint (/v1): %s", service.entry_url())
        if args.command == "web" and args.no_browser:
            print(f"open {service.entry_url()} in a browser", flush=True)
        elif args.command == "web":
            _open_when_listening(host, port, service.entry_url())
        service.run()
        return 0
    finally:
        app.close()


def _web(args: argparse.Namespace, settings: Settings) -> int:
    """`serve --transport http`, then the page in the default browser (its URL printed when there is none)."""
    args.transport = "http"
    return _serve(args, settings)


def _open_when_listening(host: str, port: int, url: str) -> None:
    """Open `url` in the default browser once the port accepts connections; print it when no browser opens."""
    import socket
    import threading
    import time
    import webbrowser

    def wait_then_open() -> None:
        probe = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((probe, port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.2)
        if not webbrowser.open(url):
            print(f"open {url} in a browser", flush=True)

    threading.Thread(target=wait_then_open, name="open-browser", daemon=True).start()


@_guarded
def _voices(args: argparse.Namespace, settings: Settings) -> int:
    from glmtts_mcp.app.core import build_app, export_protected_folders
    from glmtts_mcp.app.schemas import VoiceSummary

    app = build_app(settings)
    lib = app.library
    try:
        action = args.voices_command
        if action == "list":
            page = lib.list_voices(query=args.query, limit=args.limit, cursor=None)
            if args.json:
                print(json.dumps([VoiceSummary.of(v).model_dump(mode="json") for v in page.voices], indent=2))
            elif not page.voices:
                print("no voices yet: clone one with the clone_voice tool or `glmtts-mcp say --reference CLIP ...`")
            for v in [] if args.json else page.voices:
                flag = f"  [broken: {v.broken}]" if v.broken else ("  [stale]" if v.stale else "")
                excerpt = (v.transcript or "")[:50]
                print(f"{v.id}  {v.name or '-':24}  {v.duration_s or 0:5.1f}s  {excerpt}{flag}")
        elif action == "delete":
            record = lib.delete(args.voice)
            print(f"deleted {record.id if record else args.voice}" + (f" ({record.name})" if record else ""))
        elif action == "rename":
            record = lib.rename(args.voice, args.name)
            print(f"renamed {record.id} to {record.name}")
        elif action == "export":
            written = lib.export_voice(args.voice, args.path, protected=export_protected_folders(settings))
            print(f"exported to {written}")
        elif action == "import":
            record, existed = lib.import_voice(args.path.expanduser().resolve(), name=args.name)
            print(f"{'already had' if existed else 'imported'} {record.id} ({record.name})")
        elif action == "refresh":
            stale = len(lib.stale_voices())
            refreshed = lib.refresh_stale(lambda done, total, message: print(message, file=sys.stderr))
            print(f"refreshed {refreshed} of {stale} stale voice(s)")
            if refreshed < stale:
                raise _UserFacing(f"{stale - refreshed} voice(s) could not be re-extracted: the log above says why")
    finally:
        lib.close()
    return 0


@_guarded
def _say(args: argparse.Namespace, settings: Settings) -> int:
    import anyio

    from glmtts_mcp.app.core import build_app
    from glmtts_mcp.app.narration import NarrationRequest, checked_text
    from glmtts_mcp.app.saving import narrate_to_path, narrate_to_stream
    from glmtts_mcp.cli_progress import StepProgress

    if args.transcript and args.reference is None:
        raise _UserFacing("--transcript describes a --reference clip: drop it, or pass --reference CLIP")
    to_stdout = str(args.output) == "-"
    fmt = "wav" if to_stdout else _output_format(args.output)  # before any work: a bad -o must not cost a synthesis
    if (args.text is None) == (args.script is None):
        raise _UserFacing("say takes the text to speak or --script FILE: pass exactly one")
    if args.script is not None:
        from glmtts_mcp.cli_script import say_script

        return say_script(args, settings, _output_format(args.output), shell_words)
    if args.split_chapters:
        raise _UserFacing("--split-chapters splits a --script: drop it, or pass --script FILE")
    text = checked_text(sys.stdin.read() if args.text == "-" else args.text, settings.max_text_chars)
    reference = args.reference.expanduser().resolve() if args.reference else None
    request = NarrationRequest(
        text=text,
        voice=args.voice,
        reference=reference,
        transcript=args.transcript,
        seed=args.seed,
        stream=settings.streams(to_stdout),  # a pipe is played as it arrives; a file is whole
        pronunciation=args.read_as,
    )
    app = build_app(settings)
    progress = StepProgress("loading model")  # a bar in a terminal, one line per step in a log
    try:
        if to_stdout:
            ready, done = anyio.run(narrate_to_stream, app, request, sys.stdout.buffer, progress)
            written = "a WAV stream to stdout"
        else:
            ready, done, path = anyio.run(narrate_to_path, app, request, args.output, fmt, progress)
            written = str(path)
    finally:
        progress.close()
        app.close()
    for warning in done.warnings:
        print(f"warning: {render_text(warning, shell_words)}", file=sys.stderr)
    print(
        f"wrote {written} ({done.duration_s:.1f} s, voice {ready.voice_id}{', new' if ready.created else ''})",
        file=sys.stderr if to_stdout else sys.stdout,
    )
    if args.show_read:
        print(f"read as ({done.pronunciation}): {done.text_as_read}", file=sys.stderr if to_stdout else sys.stdout)
    return 0


@_guarded
def _pronounce(args: argparse.Namespace, settings: Settings) -> int:
    from glmtts_mcp.app import pronunciations
    from glmtts_mcp.app.core import build_app

    app = build_app(settings)
    try:
        voice = app.library.resolve(args.voice).id if args.voice else None
        scope = f"voice {voice}" if voice else "the global dictionary"
        action = args.pronounce_command
        if action == "add":
            entry = pronunciations.add(app, voice, args.text, args.reading)
            print(f"{scope}: {entry.text} -> {entry.reading} ({entry.kind}: {entry.replacement})")
        elif action == "remove":
            pronunciations.remove(app, voice, args.text)
            print(f"{scope}: removed {args.text.strip()}")
        elif action == "list":
            entries = pronunciations.entries(app, voice)
            if args.json:
                print(json.dumps(entries, ensure_ascii=False, indent=1))
            for text, reading in [] if args.json else entries.items():
                print(f"{text}\t{reading}")
        elif action == "import":
            path = args.path.expanduser()
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise _UserFacing(f"cannot read {path}: {exc.strerror or exc}") from exc
            count = pronunciations.import_file(app, voice, data, str(path), replace_all=args.replace)
            print(f"{scope}: {count} entries")
        elif action == "export":
            args.path.expanduser().write_bytes(pronunciations.export_bytes(app, voice))
            print(f"wrote {args.path}")
    finally:
        app.close()
    return 0


def _output_format(output: Path) -> str:
    """The audio format `-o` asks for by its extension; refuses a path that cannot be written."""
    from glmtts_mcp.engine.runtime.output_encoding import AUDIO_FORMATS

    fmt = output.suffix.lower().lstrip(".")
    if fmt not in AUDIO_FORMATS:
        extensions = ", ".join(f.extension for f in AUDIO_FORMATS.values())
        raise _UserFacing(f"-o {output}: unknown audio extension {output.suffix or '(none)'!r}: end it in {extensions}")
    if output.is_dir():
        raise _UserFacing(f"-o {output} is a folder: name a file in it, e.g. -o {output / ('speech' + output.suffix)}")
    folder = output.expanduser().resolve().parent
    if not folder.is_dir():
        raise _UserFacing(f"-o {output}: folder {folder} does not exist: create it first or write elsewhere")
    if not os.access(folder, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise _UserFacing(f"-o {output}: no permission to write there: choose another path")
    return fmt


@_guarded
def _download(args: argparse.Namespace, settings: Settings) -> int:
    from glmtts_mcp.engine.checkpoint.download import download_checkpoint

    directory = download_checkpoint(
        args.dir or settings.checkpoint, whisper_model=settings.whisper_model, progress=sys.stderr.isatty()
    )
    print(f"checkpoint ready in {directory}")
    if args.dir and args.dir.expanduser().resolve() != settings.checkpoint.resolve():
        print(f"point the server at it with --checkpoint {directory} (or GLMTTS_MCP_CHECKPOINT)")
    return 0


@_guarded
def _checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    if args.checkpoint_command == "to-safetensors":
        from glmtts_mcp.engine.checkpoint.download import convert_to_safetensors

        written = convert_to_safetensors(settings.checkpoint, remove_pt=args.remove_pt)
        print("\n".join(f"wrote {path}" for path in written) or f"nothing to convert in {settings.checkpoint}")
        return 0
    from glmtts_mcp.engine.checkpoint.tiny import (
        make_tiny_checkpoint,  # lazily: needs the [tiny] extra
    )

    directory = make_tiny_checkpoint(args.dir.expanduser(), size=args.size, seed=args.seed)
    print(f"random-weight {args.size} checkpoint written to {directory}")
    return 0


@_guarded
def _ray(args: argparse.Namespace, settings: Settings) -> int:
    try:
        from glmtts_mcp.engine_ray.deployment import APP_NAME, delete_deployment
    except ModuleNotFoundError as exc:
        raise _UserFacing(f"{exc.name} is not installed: pip install 'glmtts-mcp[ray]'") from exc

    where = f"the Ray cluster at --ray-address {settings.ray_address}"
    if delete_deployment(settings.ray_address):
        print(f"removed the engine replicas ({APP_NAME}) from {where}")
    else:
        print(f"no engine replicas ({APP_NAME}) on {where}: nothing to remove")
    return 0


def server_command() -> str:
    """Absolute path of the installed `glmtts-mcp` script (the venv's own, else the one on PATH)."""
    beside = Path(sys.executable).parent / "glmtts-mcp"
    if beside.is_file():
        return str(beside)
    found = shutil.which("glmtts-mcp")
    return str(Path(found).resolve()) if found else f"{sys.executable} -m glmtts_mcp"


def _config(args: argparse.Namespace, settings: Settings) -> int:
    command = server_command()
    parts = command.split(" ")
    env = snippet_env(settings)
    desktop = {"mcpServers": {args.name: {"command": parts[0], "args": parts[1:], "env": env}}}
    print("# Claude Desktop: merge into claude_desktop_config.json")
    print("#   macOS: ~/Library/Application Support/Claude/claude_desktop_config.json")
    print(
        "#   Windows: %APPDATA%\\Claude\\claude_desktop_config.json   Linux: ~/.config/Claude/claude_desktop_config.json"
    )
    print(json.dumps(desktop, indent=2))
    print()
    print("# Claude Code:")
    env_flags = " ".join(f"-e {k}={shlex.quote(v)}" for k, v in env.items())
    print(f"claude mcp add {args.name} {env_flags} -- {' '.join(shlex.quote(p) for p in parts)}")
    if settings.token is not None:
        print(f"# {TOKEN_ENV} is set here but left out of the snippets: it is a secret, add it to the host yourself")
    return 0


def snippet_env(settings: Settings) -> dict[str, str]:
    """The environment a host gives the server: the folders always, and every other setting that was
    given here (flag, environment or config file), so the served process runs as configured now."""
    names = [n for n in Settings.model_fields if n in _SNIPPET_ALWAYS or n in settings.model_fields_set]
    env: dict[str, str] = {}
    for name in names:
        if name in _NOT_FLAGS:
            continue
        value = getattr(settings, name)
        env[env_name(name)] = os.pathsep.join(map(str, value)) if isinstance(value, list) else str(value)
    return env


_COMMANDS = {
    "serve": _serve,
    "web": _web,
    "voices": _voices,
    "say": _say,
    "pronounce": _pronounce,
    "download": _download,
    "checkpoint": _checkpoint,
    "config": _config,
    "ray": _ray,
}
