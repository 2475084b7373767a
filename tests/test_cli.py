"""The `glmtts-mcp` command line: config snippet, checkpoint make-tiny, say, voices, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

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
    assert f"claude mcp add narrator" in out and f"-- {server['command']}" in out


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
    assert main(["say", "Hi.", "--reference", str(clip), "--transcript", "Hello there.", "-o", str(out_wav), *common]) == 0
    capsys.readouterr()
    assert main(["voices", "list", "--json", *common]) == 0
    assert any(v["transcript_excerpt"] == "Hello there." for v in json.loads(capsys.readouterr().out))
    assert main(["say", "Hi.", "--voice", "x", "--transcript", "Hello.", "-o", str(out_wav), *common]) == 1
    assert "--transcript describes a --reference clip" in capsys.readouterr().err

    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"not audio at all" * 100)
    assert main(["say", "Hi.", "--reference", str(corrupt), "-o", str(tmp_path / "x.wav"), *common]) == 1
    assert "reference" in capsys.readouterr().err.lower()


def test_console_script_runs(tmp_path: Path) -> None:
    done = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("glmtts-mcp ")
