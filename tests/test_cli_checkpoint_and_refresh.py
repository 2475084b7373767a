"""`checkpoint to-safetensors` and `voices refresh`: the commands that give the converter and the bulk
re-extraction their users."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from glmtts_mcp.cli import main
from glmtts_mcp.engine.checkpoint.layout import FLOW_WEIGHTS, HIFT_WEIGHTS, load_state_dict, validate_checkpoint


@pytest.fixture(autouse=True)
def _isolated(no_user_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GLMTTS_MCP_VOICES_DIR", str(tmp_path / "voices"))
    monkeypatch.setenv("GLMTTS_MCP_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("GLMTTS_MCP_ALLOWED_DIRS", str(tmp_path))
    monkeypatch.setenv("GLMTTS_MCP_LOG_LEVEL", "WARNING")


def test_to_safetensors_replaces_the_pickle_files(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "GLM-TTS"
    shutil.copytree(tiny_checkpoint, copy)
    before = {rel: load_state_dict(copy / rel) for rel in (FLOW_WEIGHTS, HIFT_WEIGHTS)}
    assert main(["checkpoint", "to-safetensors", "--remove-pt", "--checkpoint", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "flow.safetensors" in out and "hift.safetensors" in out
    for rel, tensors in before.items():
        assert not (copy / rel).exists() and (copy / rel).with_suffix(".safetensors").is_file()
        after = load_state_dict(copy / rel)  # the twin stands in for the .pt
        assert after.keys() == tensors.keys() and all(after[k].equal(tensors[k]) for k in tensors)
    validate_checkpoint(copy)
    assert main(["checkpoint", "to-safetensors", "--checkpoint", str(copy)]) == 0
    assert "nothing to convert" in capsys.readouterr().out


def test_voices_refresh_reextracts_stale_voices(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], clip_writer: Callable[..., Path]
) -> None:
    common = ["--checkpoint", str(tiny_checkpoint), "--whisper-model", "tiny-random"]
    clip = clip_writer(tmp_path / "clip.wav")
    out = tmp_path / "out.wav"
    assert main(["say", "Hi.", "--reference", str(clip), "--transcript", "Hello there.", "-o", str(out), *common]) == 0
    capsys.readouterr()
    (meta_path,) = (tmp_path / "voices").rglob("meta.json")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "fingerprint": "0" * 16}))  # as if made by another checkpoint

    assert main(["voices", "list", *common]) == 0
    assert "[stale]" in capsys.readouterr().out
    assert main(["voices", "refresh", *common]) == 0
    assert "refreshed 1 of 1 stale voice(s)" in capsys.readouterr().out
    assert main(["voices", "list", *common]) == 0
    assert "[stale]" not in capsys.readouterr().out
    assert json.loads(meta_path.read_text())["fingerprint"] == meta["fingerprint"]
    assert main(["voices", "refresh", *common]) == 0
    assert "refreshed 0 of 0" in capsys.readouterr().out
