"""`glmtts-mcp voices ...` follows the same rules as the MCP tools: export targets, JSON field names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from glmtts_mcp.cli import main
from glmtts_mcp.engine.types import FEATURE_SCHEMA, FEATURE_SCHEMA_VERSION
from glmtts_mcp.voices import FeatureSchema, NewVoiceData, VoiceLibrary


@pytest.fixture
def folders(tmp_path: Path, no_user_env: None) -> dict[str, Path]:
    """A library holding one voice 'narrator', plus the flags that point the CLI at it."""
    voices, outputs = tmp_path / "voices", tmp_path / "outputs"
    outputs.mkdir()
    tensors = {
        name: torch.zeros(4, 80) if ndim == 2 else torch.zeros(4, dtype=getattr(torch, dtype))
        for name, (dtype, ndim) in FEATURE_SCHEMA.items()
    }
    data = NewVoiceData(tensors=tensors, transcript="hello", transcript_source="user", language="en", duration_s=1.0)
    with VoiceLibrary(voices, FeatureSchema(FEATURE_SCHEMA_VERSION, FEATURE_SCHEMA), flush_interval_s=0) as library:
        pcm = np.random.default_rng(0).uniform(-0.5, 0.5, 24000).astype(np.float32)
        library.get_or_create(pcm, 24000, "hello", lambda: data, name="narrator")
    return {"voices": voices, "outputs": outputs, "checkpoint": tmp_path / "ck"}


def _flags(folders: dict[str, Path]) -> list[str]:
    return [
        "--voices-dir",
        str(folders["voices"]),
        "--output-dir",
        str(folders["outputs"]),
        "--checkpoint",
        str(folders["checkpoint"]),
    ]


def test_cli_export_refuses_what_the_tool_refuses(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """13.1: `voices export` never writes into the library or the output folder, nor over a non-archive."""
    flags = _flags(folders)
    wav = tmp_path / "keep.wav"
    wav.write_bytes(b"RIFF")
    for target, needle in (
        (folders["voices"] / "x.zip", "inside the voice library"),
        (folders["outputs"] / "x.zip", "inside the output folder"),
        (wav, "does not end in .zip"),
    ):
        assert main(["voices", "export", "narrator", str(target), *flags]) == 1
        assert needle in capsys.readouterr().err
    assert wav.read_bytes() == b"RIFF" and list(folders["outputs"].iterdir()) == []
    archive = tmp_path / "narrator.zip"
    assert main(["voices", "export", "narrator", str(archive), *flags]) == 0
    assert main(["voices", "export", "narrator", str(archive), *flags]) == 0  # replacing our own export is fine
    capsys.readouterr()


def test_cli_list_json_uses_the_tool_field_names(folders: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """13.21: `voices list --json` shows what the list_voices tool returns: `voice_id`, never `id`."""
    assert main(["voices", "list", "--json", *_flags(folders)]) == 0
    [voice] = json.loads(capsys.readouterr().out)
    assert "id" not in voice and voice["name"] == "narrator" and voice["uri"] == f"voice://{voice['voice_id']}"
    assert set(voice) == {
        "voice_id",
        "name",
        "transcript_excerpt",
        "duration_s",
        "language",
        "created_at",
        "last_used_at",
        "tags",
        "stale",
        "broken",
        "uri",
    }
