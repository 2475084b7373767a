"""End-to-end fixtures: one loaded engine on the tiny checkpoint, a recorded speech clip, one cloned voice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REFERENCE_TEXT = "The quick brown fox jumps over the lazy dog, and the story goes on."


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """The e2e budget (~3 min on 2 shared cores) assumes one intra-op thread."""


def _voiced_signal(path: Path, seconds: float = 3.5, rate: int = 22050) -> None:
    """A speech-like stand-in when espeak-ng is absent: a glottal pulse train with moving formants and pauses."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 25 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    source = sum(np.sin(k * phase) / k for k in range(1, 30))
    formant = np.sin(2 * np.pi * (500 + 300 * np.sin(2 * np.pi * 1.3 * t)) * t)
    envelope = (np.sin(2 * np.pi * 1.6 * t) > -0.6).astype(float)
    wav = 0.3 * source * (0.6 + 0.4 * formant) * envelope
    sf.write(path, (wav / np.max(np.abs(wav)) * 0.5).astype(np.float32), rate)


@pytest.fixture(scope="session")
def reference_wav(tmp_path_factory: pytest.TempPathFactory, espeak_writer: Callable[[Path, str], bool]) -> Path:
    """A real speech recording (espeak-ng) of REFERENCE_TEXT, or a voiced synthetic signal without it."""
    path = tmp_path_factory.mktemp("reference") / "reference.wav"
    if not espeak_writer(path, REFERENCE_TEXT):
        _voiced_signal(path)
    return path


@pytest.fixture(scope="session")
def reference_text() -> str:
    return REFERENCE_TEXT


@pytest.fixture(scope="session")
def engine(tiny_checkpoint: Path):
    from glmtts_mcp.engine.runtime.pipeline import Engine

    return Engine.load(tiny_checkpoint, device="cpu", dtype="float32", whisper_model="tiny-random")


@pytest.fixture(scope="session")
def voice(engine, reference_wav: Path):
    """The reference cloned once with its transcript (no Whisper)."""
    return engine.extract_voice(engine.prepare_reference(reference_wav), REFERENCE_TEXT)
