"""The `glmtts-mcp` command line: config snippet, checkpoint make-tiny, say, voices, errors."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from glmtts_mcp.cli import build_parser, main

SCRIPT = Path(sys.executable).parent / "glmtts-mcp"


@pytest.fixture(autouse=True)
def _isolated(no_user_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GLMTTS_MCP_VOICES_DIR", str(tmp_path / "voices"))
    monkeypatch.setenv("GLMTTS_MCP_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("GLMTTS_MCP_ALLOWED_DIRS", str(tmp_path))
    monkeypatch.setenv("GLMTTS_MCP_LOG_LEVEL", "WARNING")


def test_config_prints_ready_to_paste_snippets(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["config", "--checkpoint", str(tmp_path / "ck"), "--name", "narrator"]) == 0
    out = capsys.readouterr().out
    snippet = json.loads(out[out.index("{") : out.rindex("}") + 1])
    server = snippet["mcpServers"]["narrator"]
    assert Path(server["command"]).is_absolute() and Path(server["command"]).name == "glmtts-mcp"
    assert Path(server["command"]).is_file()
    assert server["env"]["GLMTTS_MCP_CHECKPOINT"] == str(tmp_path / "ck")
    assert server["env"]["GLMTTS_MCP_VOICES_DIR"] == str(tmp_path / "voices")
    assert "claude mcp add narrator" in out and f"-- {server['command']}" in out


def test_flags_and_config_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(["--allowed-dir", "/a", "serve", "--allowed-dir", "/b", "--transport", "sse"])
    assert args.command == "serve" and args.transport == "sse" and args.allowed_dirs[-1] == "/b"
    assert main(["config", "--concurrency", "0"]) == 2
    assert "concurrency" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.toml"), "config"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--transport", "carrier-pigeon"])


def test_serve_refuses_non_loopback_without_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--transport", "http", "--host", "0.0.0.0", "--port", "1"]) == 1
    err = capsys.readouterr().err
    assert "without a token" in err and "--force-insecure" in err


def test_make_tiny_say_and_voices(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, clip_writer: Callable[..., Path]
) -> None:
    ck = tmp_path / "tiny"
    assert main(["checkpoint", "make-tiny", str(ck)]) == 0
    assert "written to" in capsys.readouterr().out
    common = ["--checkpoint", str(ck), "--whisper-model", "tiny-random"]
    clip = clip_writer(tmp_path / "clip.wav")

    out_wav = tmp_path / "out.wav"
    assert main(["say", "Hi. Yo.", "--reference", str(clip), "-o", str(out_wav), *common]) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "new" in captured.out
    assert "segment" in captured.err  # the progress bar
    info = sf.info(out_wav)
    assert info.samplerate == 24000 and info.duration > 0

    assert main(["voices", "list", "--json", *common]) == 0
    voices = json.loads(capsys.readouterr().out)
    assert len(voices) == 1
    voice_id = voices[0]["voice_id"]
    assert main(["voices", "rename", voice_id, "narrator", *common]) == 0
    assert "renamed" in capsys.readouterr().out

    out_ogg = tmp_path / "again.ogg"
    assert main(["say", "Hi.", "--voice", "narrator", "-o", str(out_ogg), *common]) == 0
    assert out_ogg.read_bytes()[:4] == b"OggS"
    capsys.readouterr()

    archive = tmp_path / "narrator.zip"
    assert main(["voices", "export", "narrator", str(archive), *common]) == 0
    assert archive.is_file()
    assert main(["voices", "delete", "narrator", *common]) == 0
    assert main(["voices", "list", *common]) == 0
    assert "no voices yet" in capsys.readouterr().out
    assert main(["voices", "import", str(archive), *common]) == 0
    assert "imported" in capsys.readouterr().out
    assert main(["voices", "delete", "nobody", *common]) == 1
    assert "nobody" in capsys.readouterr().err

    # the transcript given with a reference is the voice's transcript: Whisper is not needed
    assert (
        main(["say", "Hi.", "--reference", str(clip), "--transcript", "Hello there.", "-o", str(out_wav), *common]) == 0
    )
    capsys.readouterr()
    assert main(["voices", "list", "--json", *common]) == 0
    assert any(v["transcript_excerpt"] == "Hello there." for v in json.loads(capsys.readouterr().out))
    assert main(["say", "Hi.", "--voice", "x", "--transcript", "Hello.", "-o", str(out_wav), *common]) == 1
    err = capsys.readouterr().err
    assert "--transcript describes a --reference clip" in err and "internal error" not in err

    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"not audio at all" * 100)
    assert main(["say", "Hi.", "--reference", str(corrupt), "-o", str(tmp_path / "x.wav"), *common]) == 1
    assert "reference" in capsys.readouterr().err.lower()


def test_console_script_runs(tmp_path: Path) -> None:
    done = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("glmtts-mcp ")


REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CONFIGURATION = REPO / "docs" / "configuration.md"


def test_config_carries_every_setting_given(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every configuration flag given to `config` ends up in the snippet, and the snippet's environment
    rebuilds the same settings (what the host's server will run with)."""
    from glmtts_mcp.config import Settings, env_name, flag_name, load_settings

    given = {
        "checkpoint": str(tmp_path / "ck"),
        "voices_dir": str(tmp_path / "v"),
        "output_dir": str(tmp_path / "o"),
        "allowed_dirs": str(tmp_path),
        "device": "cpu",
        "dtype": "float32",
        "whisper_model": "small",
        "memory_cache_bytes": "1000",
        "device_cache_bytes": "2000",
        "return_mode": "link",
        "format": "wav",
        "max_result_bytes": "100000",
        "max_text_chars": "100",
        "max_inline_audio_bytes": "10",
        "max_upload_bytes": "4096",
        "idle_unload_s": "5",
        "preload": "start",
        "concurrency": "2",
        "compile_llm": "off",
        "overlap": "off",
        "output_keep_count": "3",
        "output_keep_bytes": "4",
        "output_keep_age_s": "6",
        "http_keep_alive_s": "2",
        "http_header_timeout_s": "3",
        "http_max_connections": "7",
        "log_level": "DEBUG",
        "max_batch": "3",
        "max_queue": "5",
        "reference_processing": "upstream",
        "engine": "ray",
        "ray_address": "ray://head:10001",
        "ray_replicas": "1-4",
        "ray_gpus_per_replica": "0.5",
        "ray_cpus_per_replica": "1.5",
        "ray_voices_per_replica": "9",
        "text_chunk_chars": "300",
        "synthesis_mode": "stream",
        "stream_first_block": "10",
        "stream_first_look_ahead": "5",
        "stream_first_chunk_priority": "off",
        "pronunciation": "phoneme",
        "script_loudness_lufs": "-18.5",
        "max_script_chars": "5000",
    }
    assert set(given) == set(Settings.model_fields) - {"token"}  # a new setting must be added here too
    documented_flags = set(re.findall(r"^\| `(--[a-z-]+)`", CONFIGURATION.read_text(encoding="utf-8"), re.M))
    assert documented_flags == {flag_name(name) for name in given} | {"--config"}
    argv = ["config"] + [part for name, value in given.items() for part in (flag_name(name), value)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    env = json.loads(out[out.index("{") : out.rindex("}") + 1])["mcpServers"]["glmtts"]["env"]
    assert set(env) == {env_name(name) for name in given}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert load_settings() == load_settings(**{k: [v] if k == "allowed_dirs" else v for k, v in given.items()})


def test_say_checks_the_output_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, clip_writer: Callable[..., Path], tiny_checkpoint: Path
) -> None:
    """A bad -o is refused before the model loads or the clip is cloned: nothing is stored, nothing is lost."""
    clip = clip_writer(tmp_path / "clip.wav")
    common = ["--checkpoint", str(tiny_checkpoint), "--reference", str(clip), "--transcript", "Hello."]
    for output, needle in [
        (tmp_path / "out.aac", "end it in .wav, .flac, .ogg, .mp3"),
        (tmp_path / "out", "end it in"),
        (tmp_path / "no-such-folder" / "out.wav", "does not exist"),
    ]:
        assert main(["say", "Hi.", *common, "-o", str(output)]) == 1
        err = capsys.readouterr().err
        assert needle in err and "loading model" not in err, err
    assert not (tmp_path / "voices").exists()  # no voice was cloned on the way to the error


def test_cli_errors_speak_shell_words(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Errors and warnings name inputs and actions as terms; the shell renders them as commands and flags."""
    from glmtts_mcp.cli import shell_words
    from glmtts_mcp.errors import render_text

    out = tmp_path / "x.wav"
    assert main(["say", "Hi.", "--voice", "nobody", "-o", str(out), "--checkpoint", str(tiny_checkpoint)]) == 1
    err = capsys.readouterr().err
    assert "glmtts-mcp voices list" in err and "list_voices" not in err, err
    whisper_warning = "Whisper's transcript may repeat itself; pass {transcript} with the reference audio"
    assert "pass --transcript with" in render_text(whisper_warning, shell_words)


_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}},
}


def _read_until(fd: int, needle: bytes, timeout_s: float) -> bytes:
    """Read a pipe until `needle` shows up (or the time is over)."""
    seen = b""
    deadline = time.monotonic() + timeout_s
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.mark.parametrize("stdin_kind", ["terminal", "pipe"])
def test_stdio_server_in_a_terminal_says_so_and_ctrl_c_stops_it(
    stdin_kind: str, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """`glmtts-mcp` typed in a terminal says it waits for an MCP host and how to wire one; one Ctrl-C
    stops a server waiting on stdin, whether stdin is a terminal or a pipe."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLMTTS_MCP_")}
    env.update(
        GLMTTS_MCP_CHECKPOINT=str(tiny_checkpoint),
        GLMTTS_MCP_VOICES_DIR=str(tmp_path / "v"),
        GLMTTS_MCP_OUTPUT_DIR=str(tmp_path / "o"),
        GLMTTS_MCP_ALLOWED_DIRS=str(tmp_path),
    )
    master, slave = pty.openpty()
    stdin = slave if stdin_kind == "terminal" else subprocess.PIPE
    # as from a shell: Ctrl-C's default action (an ignored SIGINT, left by whatever ran in this process before,
    # would be inherited by the server and make it deaf to Ctrl-C)
    proc = subprocess.Popen(
        [str(SCRIPT)],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stderr is not None
        if stdin_kind == "terminal":
            seen = _read_until(proc.stderr.fileno(), b"Ctrl-C stops", 120)
            assert b"waiting for an MCP host on stdin" in seen and b"glmtts-mcp config" in seen, seen
        else:  # answer one request first: then the server is surely serving, blocked reading stdin
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(_INITIALIZE).encode() + b"\n")
            proc.stdin.flush()
            assert b'"id":1' in _read_until(proc.stdout.fileno(), b"\n", 120).replace(b" ", b"")
        proc.send_signal(signal.SIGINT)
        # one Ctrl-C stops it promptly: exit status 130 from the CLI, or death by SIGINT when the interrupt
        # lands while the interpreter is already shutting down (seen on a loaded machine)
        assert proc.wait(timeout=30) in (130, -signal.SIGINT)
    finally:
        os.close(master)
        os.close(slave)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert stdin_kind == "terminal" or b"waiting for an MCP host" not in proc.stderr.read()


@pytest.mark.parametrize("hub", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}])
def test_download_without_the_hub_says_one_sentence(
    hub: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in hub.items():
        monkeypatch.setenv(key, value)
    if "HF_ENDPOINT" in hub:  # huggingface_hub reads its endpoint when imported
        monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", hub["HF_ENDPOINT"])
    target = tmp_path / "ck"
    assert main(["download", "--dir", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "cannot reach the model hub" in err and f"--checkpoint {target}" in err
    assert not target.exists()


@pytest.mark.slow
@pytest.mark.timeout(960)  # a first set-up may install .venv: the subprocess has 900 s
def test_readme_quick_start_runs_verbatim(tmp_path: Path) -> None:
    """The Quick start's first block, exactly as printed, in a shell at the checkout's root with a fresh
    home: the offline tour on the tiny checkpoint (the wrapper finds .venv already set up)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Quick start") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    script = block.group(1) + 'test -s "$try/hello.wav"\n'
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLMTTS_MCP_", "XDG_"))}
    env.update(HOME=str(home), TMPDIR=str(home))
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote " in done.stdout and "The quick brown fox" in done.stdout and "claude mcp add" in done.stdout
    assert "warning" not in done.stderr.lower()


def test_setup_says_what_it_installs_and_shows_pip_failures(tmp_path: Path) -> None:
    """A first set-up says what each phase does (one line each); pip's chatter goes to a log whose end is
    shown when pip fails. A project copy with a broken pyproject.toml makes pip fail without the network."""
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup-venv.sh", project / "scripts")
    (project / "pyproject.toml").write_text("[project\nname = broken\n")
    (project / "constraints.txt").write_text("")
    done = subprocess.run(
        ["bash", str(project / "scripts" / "setup-venv.sh")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert any("creating the virtual environment" in line for line in lines)
    assert any("installing glmtts-mcp and its pinned dependencies" in line for line in lines)
    assert any("pip failed" in line for line in lines) and len(lines) < 40
    assert (project / ".venv" / "pip-install.log").is_file()


def test_a_thread_left_running_does_not_outlive_ctrl_c() -> None:
    """After Ctrl-C the CLI leaves within its grace period even when a non-daemon thread still blocks."""
    code = (
        "import threading, time\n"
        "from glmtts_mcp import cli\n"
        "threading.Thread(target=time.sleep, args=(600,)).start()\n"
        "cli._leave_within(0.5, 130)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=60, check=False)
    assert done.returncode == 130


def _fake_project(tmp_path: Path, stamp: str | None) -> Path:
    """A copy of the set-up script beside a pyproject/constraints pair, whose .venv "python" only records
    the pip command it was given (and fails it), so the test needs no network."""
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup-venv.sh", project / "scripts")
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (project / "constraints.txt").write_text("")
    python = project / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$@" > {project / "pip-args"}\nexit 1\n')
    python.chmod(0o755)
    if stamp is not None:
        digest = hashlib.sha256(b"[project]\nname = 'x'\n").hexdigest()
        (project / ".venv" / ".glmtts-mcp-installed").write_text(stamp.replace("DIGEST", digest))
    return project


@pytest.mark.parametrize(
    ("stamp", "args", "extras_env", "installs"),
    [
        ("DIGEST\ntest\n", [], "", None),  # after test.sh, serving needs nothing more
        ("DIGEST\n", [], "", None),  # the runtime set, installed
        ("DIGEST\n", ["test"], "", "[test]"),  # the runtime set does not satisfy test.sh
        ("DIGEST\ntest\n", [], "ray", "[ray,test]"),  # a new extra keeps the ones installed
        ("stale\ntest\n", [], "", ""),  # pyproject or constraints changed: the runtime set again
        (None, [], "ray, tiny", "[ray,tiny]"),
    ],
    ids=["test-covers-serve", "runtime-covers-serve", "test-after-runtime", "extra-after-test", "stale", "fresh"],
)
def test_setup_stamp_tells_the_runtime_set_from_the_test_set(
    tmp_path: Path, stamp: str | None, args: list[str], extras_env: str, installs: str | None
) -> None:
    project = _fake_project(tmp_path, stamp)
    env = {**os.environ, "GLMTTS_MCP_EXTRAS": extras_env}
    done = subprocess.run(
        ["bash", str(project / "scripts" / "setup-venv.sh"), *args], capture_output=True, text=True, timeout=60, env=env
    )
    if installs is None:
        assert done.returncode == 0 and done.stderr == "" and not (project / "pip-args").exists()
    else:
        assert done.returncode == 1 and "pip failed" in done.stderr
        assert (project / "pip-args").read_text().split()[-1] == f"{project}{installs}"


def test_say_to_stdout_writes_a_wav_stream(
    tmp_path: Path, tiny_checkpoint: Path, clip_writer: Callable[..., Path]
) -> None:
    """`say -o -` (the real script, stdout a pipe): a streaming WAV header (sizes unknown), then 16-bit PCM
    in stream mode's chunks; nothing else on stdout, the summary on stderr."""
    from glmtts_mcp.app.audio_out import wav_stream_header

    clip = clip_writer(tmp_path / "clip.wav")
    env = {**os.environ, "GLMTTS_MCP_LOG_LEVEL": "WARNING"}
    command = [str(SCRIPT), "say", "A sentence that is long enough for a few chunks of audio.", "--reference",
               str(clip), "--transcript", "Hello there.", "-o", "-", "--checkpoint", str(tiny_checkpoint),
               "--whisper-model", "tiny-random", "--stream-first-block", "10", "--stream-first-look-ahead", "5"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()
    header = wav_stream_header(24000)
    assert done.stdout[: len(header)] == header and done.stdout[4:8] == b"\xff\xff\xff\xff"
    pcm = done.stdout[len(header) :]
    assert len(pcm) % 2 == 0 and len(pcm) > 2 * 24000 // 2  # over half a second of 16-bit samples
    assert int(abs(np.frombuffer(pcm, dtype="<i2")).max()) > 0
    assert "wrote a WAV stream to stdout" in done.stderr.decode()


def test_synthesis_mode_and_stream_blocks_settings(capsys: pytest.CaptureFixture[str]) -> None:
    """auto lets each face choose (stream where audio plays as it arrives), stream/offline force it; a first
    block's look-ahead must leave some of the block to hear."""
    from glmtts_mcp.config import load_settings

    auto, stream, offline = (load_settings(synthesis_mode=mode) for mode in ("auto", "stream", "offline"))
    assert (auto.streams(True), auto.streams(False)) == (True, False)
    assert (stream.streams(False), offline.streams(True)) == (True, False)
    assert main(["config", "--stream-first-block", "10", "--stream-first-look-ahead", "10"]) == 2
    assert "stream-first-block" in capsys.readouterr().err
