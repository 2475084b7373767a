"""`glmtts-mcp pronounce` and `say --read-as`: a per-voice entry reaches the model's input ids from the shell."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from glmtts_mcp.cli import main
from glmtts_mcp.engine.frontend.text_tokenizer import TextTokenizer


@pytest.fixture
def shell_env(tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, no_user_env: None) -> Path:
    monkeypatch.setenv("GLMTTS_MCP_CHECKPOINT", str(tiny_checkpoint))
    monkeypatch.setenv("GLMTTS_MCP_WHISPER_MODEL", "tiny-random")
    monkeypatch.setenv("GLMTTS_MCP_VOICES_DIR", str(tmp_path / "voices"))
    monkeypatch.setenv("GLMTTS_MCP_OUTPUT_DIR", str(tmp_path / "out"))
    return tmp_path


def test_pronounce_and_say(
    shell_env: Path,
    tiny_checkpoint: Path,
    clip_writer: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clip = clip_writer(shell_env / "clip.wav")
    assert main(["say", "Hi.", "--reference", str(clip), "--transcript", "hi", "-o", str(shell_env / "a.wav")]) == 0
    voice = capsys.readouterr().out.split("voice ")[1].split(",")[0].split(")")[0]
    assert main(["pronounce", "add", "重庆", "chong2 qing4", "--voice", voice]) == 0
    assert main(["pronounce", "add", "重庆", "chong9", "--voice", voice]) == 1  # refused, naming the entry
    captured = capsys.readouterr()
    assert "重庆" in captured.err and "tone 9" in captured.err
    assert main(["pronounce", "list", "--json", "--voice", voice]) == 0
    assert json.loads(capsys.readouterr().out) == {"重庆": "chong2 qing4"}
    calls: list[list[int]] = []
    original = TextTokenizer.encode
    monkeypatch.setattr(TextTokenizer, "encode", lambda self, text: calls.append(original(self, text)) or calls[-1])
    assert main(["say", "我们去重庆。", "--voice", voice, "-o", str(shell_env / "b.wav"), "--show-read"]) == 0
    assert "read as (text): 我们去<|CH|><|ONG2|><|Q|><|ING4|>。" in capsys.readouterr().out
    tokens = TextTokenizer.from_dir(tiny_checkpoint / "vq32k-phoneme-tokenizer").encode("<|CH|><|ONG2|><|Q|><|ING4|>")
    assert any(ids[i : i + 4] == tokens for ids in calls for i in range(len(ids)))
    assert main(["pronounce", "export", str(shell_env / "d.json"), "--voice", voice]) == 0
    assert main(["pronounce", "import", str(shell_env / "d.json")]) == 0  # into the global dictionary
    assert main(["pronounce", "remove", "重庆", "--voice", voice]) == 0
    capsys.readouterr()
    assert main(["pronounce", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"重庆": "chong2 qing4"}
