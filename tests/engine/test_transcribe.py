"""Whisper on arrays: model resolution, transcription, errors naming the file and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from glmtts_mcp.engine.checkpoint import CheckpointError
from glmtts_mcp.engine.transcribe import Transcriber, resolve_whisper_model, whisper_cache_dir


def test_resolution_order(tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inside = tiny_checkpoint / "whisper" / "tiny-random.pt"
    assert resolve_whisper_model("tiny-random", tiny_checkpoint) == inside
    assert resolve_whisper_model(inside) == inside
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert whisper_cache_dir() == tmp_path / "whisper"
    (tmp_path / "whisper").mkdir()
    shutil.copy(inside, tmp_path / "whisper" / "base.pt")
    assert resolve_whisper_model("base", tiny_checkpoint) == tmp_path / "whisper" / "base.pt"
    with pytest.raises(CheckpointError, match="glmtts-mcp download"):
        resolve_whisper_model("small", tiny_checkpoint)
    with pytest.raises(CheckpointError, match="not found"):
        resolve_whisper_model(tmp_path / "nowhere.pt")


def test_transcribes_arrays_deterministically(tiny_checkpoint: Path) -> None:
    transcriber = Transcriber(tiny_checkpoint / "whisper" / "tiny-random.pt")
    assert not transcriber.loaded
    t = np.arange(32000) / 16000
    audio = (0.2 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    first = transcriber.transcribe(audio, language="en")
    assert transcriber.loaded and isinstance(first.text, str) and first.language == "en"
    assert transcriber.transcribe(audio, language="en") == first
    detected = transcriber.transcribe(audio)
    assert isinstance(detected.language, str) and detected.language
    transcriber.unload()
    assert not transcriber.loaded


def test_corrupt_model_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "base.pt"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="base.pt"):
        Transcriber(bad).transcribe(np.zeros(16000, dtype=np.float32))
