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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_origin

from glmtts_mcp import __version__
from glmtts_mcp.config import CONFIG_ENV, TOKEN_ENV, ConfigError, Settings, load_settings
from glmtts_mcp.logs import configure_logging

log = logging.getLogger(__name__)

# Settings that are never flags: secrets belong in the environment, not in `ps` output.
_NOT_FLAGS = {"token"}
_FLAG_NAMES = {"allowed_dirs": "--allowed-dir"}


def _settings_options() -> argparse.ArgumentParser:
    """A parent parser with one flag per Settings field; unset flags stay absent (SUPPRESS)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("configuration (flags > GLMTTS_MCP_* env vars > config file > defaults)")
    group.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help=f"TOML config file (env {CONFIG_ENV})"
    )
    for name, field in Settings.model_fields.items():
        if name in _NOT_FLAGS:
            continue
        flag = _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
        env = f"env GLMTTS_MCP_{name.upper()}"
        if get_origin(field.annotation) is list or name == "allowed_dirs":
            group.add_argument(flag, dest=name, action="append", default=argparse.SUPPRESS, help=f"{field.description} ({env})")
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
        "web", parents=[common, http],
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
    vexp.add_argument("path", type=Path, help="archive file to write")
    vimp = vsub.add_parser("import", parents=[common], help="add a voice from an archive")
    vimp.add_argument("path", type=Path, help="archive file made by `voices export`")
    vimp.add_argument("--name", help="name for the imported voice")

    say = sub.add_parser("say", parents=[common], help="narrate text into an audio file")
    say.add_argument("text", help="the text to speak ('-' reads stdin)")
    who = say.add_mutually_exclusive_group(required=True)
    who.add_argument("--voice", help="voice id or name from the library")
    who.add_argument("--reference", type=Path, help="reference recording to clone (stored in the library)")
    say.add_argument("--transcript", help="what the --reference clip says (omitted: Whisper transcribes it)")
    say.add_argument("-o", "--output", type=Path, required=True, help="output file (.wav, .flac, .ogg, .mp3)")
    say.add_argument("--seed", type=int, default=0)

    download = sub.add_parser("download", parents=[common], help="download the GLM-TTS checkpoint")
    download.add_argument("--dir", type=Path, help="target folder (default: the configured checkpoint folder)")

    checkpoint = sub.add_parser("checkpoint", parents=[common], help="checkpoint utilities")
    csub = checkpoint.add_subparsers(dest="checkpoint_command", metavar="ACTION", required=True)
    tiny = csub.add_parser("make-tiny", parents=[common], help="write a random-weight checkpoint (for tests)")
    tiny.add_argument("dir", type=Path)
    tiny.add_argument("--size", choices=["tiny", "real"], default="tiny")
    tiny.add_argument("--seed", type=int, default=0)

    config = sub.add_parser(
        "config", parents=[common], help="print the Claude Desktop / Claude Code configuration for this install"
    )
    config.add_argument("--name", default="glmtts", help="server name in the host's config (default glmtts)")
    return parser


def _settings_from(args: argparse.Namespace) -> Settings:
    values = {name: getattr(args, name) for name in Settings.model_fields if hasattr(args, name)}
    return load_settings(getattr(args, "config", None), **values)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 ok, 1 failure, 2 usage)."""
    args = build_parser().parse_args(argv)
    try:
        settings = _settings_from(args)
    except ConfigError as exc:
        print(f"glmtts-mcp: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    command = args.command or "serve"
    try:
        return _COMMANDS[command](args, settings)
    except KeyboardInterrupt:
        return 130
    except _UserFacing as exc:
        print(f"glmtts-mcp: {exc}", file=sys.stderr)
        return 1


class _UserFacing(Exception):
    """A failure to report in one line (no traceback)."""


def _user_errors() -> tuple[type[Exception], ...]:
    from glmtts_mcp.engine.types import EngineError
    from glmtts_mcp.tools.server import HttpSecurityError
    from glmtts_mcp.voices import VoiceLibraryError

    return (EngineError, VoiceLibraryError, HttpSecurityError, ValueError, OSError)


def _guarded(fn: Any) -> Any:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return fn(args, settings)
        except _user_errors() as exc:
            raise _UserFacing(str(exc)) from exc

    return run


@_guarded
def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from glmtts_mcp.tools.app import build_app
    from glmtts_mcp.tools.server import run

    transport = getattr(args, "transport", "stdio")
    host, port = getattr(args, "host", "127.0.0.1"), getattr(args, "port", 8765)
    app = build_app(settings)
    face = None
    if transport != "stdio":
        from glmtts_mcp.web import web_face

        face = web_face(app)
        base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        log.info("the page, REST API (/docs) and OpenAI endpoint (/v1): %s", face.entry_url(base))
        if args.command == "web" and args.no_browser:
            print(f"open {face.entry_url(base)} in a browser", flush=True)
        elif args.command == "web":
            _open_when_listening(host, port, face.entry_url(base))
    run(
        app,
        transport=transport,
        host=host,
        port=port,
        force_insecure=getattr(args, "force_insecure", False),
        extra_hosts=getattr(args, "allowed_host", []),
        face=face,
    )
    return 0


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
    from glmtts_mcp.tools.app import build_app

    app = build_app(settings)
    lib = app.library
    try:
        action = args.voices_command
        if action == "list":
            page = lib.list_voices(query=args.query, limit=args.limit, cursor=None)
            if args.json:
                print(json.dumps([v.model_dump(mode="json") for v in page.voices], indent=2))
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
            written = lib.export_voice(args.voice, args.path.expanduser().resolve())
            print(f"exported to {written}")
        elif action == "import":
            record, existed = lib.import_voice(args.path.expanduser().resolve(), name=args.name)
            print(f"{'already had' if existed else 'imported'} {record.id} ({record.name})")
    finally:
        lib.close()
    return 0


@_guarded
def _say(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from glmtts_mcp.tools.app import build_app
    from glmtts_mcp.tools.synthesis import narrate

    if args.transcript and args.reference is None:
        raise _UserFacing("--transcript describes a --reference clip: drop it, or pass --reference CLIP")
    text = sys.stdin.read() if args.text == "-" else args.text
    fmt = args.output.suffix.lower().lstrip(".") or "wav"
    app = build_app(settings)
    bar = tqdm(total=1, desc="loading model", file=sys.stderr, unit="step", leave=True)

    def progress(done: float, total: float, message: str) -> None:
        bar.total = max(total or 1, done)
        bar.n = done
        bar.set_description(message[:60])
        bar.refresh()

    try:
        engine = app.host.ensure_loaded()
        reference = args.reference.expanduser().resolve() if args.reference else None
        result = narrate(
            engine, app, text.strip(), args.voice, reference, fmt, args.seed, progress, transcript=args.transcript
        )
    finally:
        bar.close()
        app.close()
    args.output.write_bytes(result.data)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"wrote {args.output} ({len(result.pcm) / result.sample_rate:.1f} s, voice {result.voice_id}"
        f"{', new' if result.created else ''})"
    )
    return 0


@_guarded
def _download(args: argparse.Namespace, settings: Settings) -> int:
    from glmtts_mcp.engine.checkpoint.download import download_checkpoint

    directory = download_checkpoint(args.dir or settings.checkpoint, whisper_model=settings.whisper_model)
    print(f"checkpoint ready in {directory}")
    if args.dir and args.dir.expanduser().resolve() != settings.checkpoint.resolve():
        print(f"point the server at it with --checkpoint {directory} (or GLMTTS_MCP_CHECKPOINT)")
    return 0


@_guarded
def _checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    from glmtts_mcp.engine.checkpoint.tiny import make_tiny_checkpoint

    directory = make_tiny_checkpoint(args.dir.expanduser(), size=args.size, seed=args.seed)
    print(f"random-weight {args.size} checkpoint written to {directory}")
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
    env = {
        "GLMTTS_MCP_CHECKPOINT": str(settings.checkpoint),
        "GLMTTS_MCP_VOICES_DIR": str(settings.voices_dir),
        "GLMTTS_MCP_OUTPUT_DIR": str(settings.output_dir),
        "GLMTTS_MCP_ALLOWED_DIRS": os.pathsep.join(str(d) for d in settings.allowed_dirs),
    }
    desktop = {"mcpServers": {args.name: {"command": parts[0], "args": parts[1:], "env": env}}}
    print("# Claude Desktop: merge into claude_desktop_config.json")
    print("#   macOS: ~/Library/Application Support/Claude/claude_desktop_config.json")
    print("#   Windows: %APPDATA%\\Claude\\claude_desktop_config.json   Linux: ~/.config/Claude/claude_desktop_config.json")
    print(json.dumps(desktop, indent=2))
    print()
    print("# Claude Code:")
    env_flags = " ".join(f"-e {k}={shlex.quote(v)}" for k, v in env.items())
    print(f"claude mcp add {args.name} {env_flags} -- {' '.join(shlex.quote(p) for p in parts)}")
    return 0


_COMMANDS = {
    "serve": _serve,
    "web": _web,
    "voices": _voices,
    "say": _say,
    "download": _download,
    "checkpoint": _checkpoint,
    "config": _config,
}
