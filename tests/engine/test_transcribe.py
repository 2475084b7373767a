"""Whisper on arrays: model resolution, transcription, errors naming the file and the fix."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from glmtts_mcp.engine.checkpoint.layout import CheckpointError, resolve_whisper_model, whisper_cache_dir
from glmtts_mcp.engine.checkpoint.tiny import TINY, write_whisper
from glmtts_mcp.engine.frontend.reference_clip import load_reference, reference_pcm_at
from glmtts_mcp.engine.models.transcribe import (
    FALLBACK_TEMPERATURES,
    Transcriber,
    token_cap,
)
from glmtts_mcp.engine.types import AudioInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tone(seconds: float) -> np.ndarray:
    """A modulated tone: no words, the kind of input on which a random Whisper loops forever."""
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.2 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32)


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
    audio = _tone(2.0)
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
    with pytest.raises(CheckpointError, match=r"base.pt"):
        Transcriber(bad).transcribe(np.zeros(16000, dtype=np.float32))


@pytest.fixture(scope="module")
def long_context_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Whisper with a real model's 448-token text context (224 tokens per window)."""
    path = tmp_path_factory.mktemp("whisper") / "ctx448.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        write_whisper(path, {**TINY.whisper, "n_text_ctx": 448})
    return path


def test_token_cap_follows_duration_within_the_context() -> None:
    assert token_cap(3.0, 448) < token_cap(10.0, 448) < token_cap(30.0, 448) == 224
    assert token_cap(3.0, 24) == 12 and token_cap(0.0, 448) >= 1


def test_a_tone_is_decoded_with_bounded_work(
    long_context_whisper: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The random Whisper never ends a tone's text: decoding stops at the cap, says so, and stays fast."""
    transcriber = Transcriber(long_context_whisper)
    model = transcriber._load()
    steps: list[int] = []
    forward = model.decoder.forward
    monkeypatch.setattr(model.decoder, "forward", lambda x, *a, **k: steps.append(x.shape[0]) or forward(x, *a, **k))
    audio = _tone(3.0)
    cap = token_cap(3.0, 448)
    with caplog.at_level(logging.WARNING, logger="glmtts_mcp.engine.models.transcribe"):
        heard = transcriber.transcribe(audio)
    assert heard.capped and heard.text and isinstance(heard.language, str)
    assert len(heard.text.split()) <= cap
    # one language-detection step, then each fallback decode runs at most `cap` decoder steps
    assert len(steps) <= 1 + len(FALLBACK_TEMPERATURES) * cap
    assert "pass the clip's transcript" in caplog.text and f"{cap}-token cap" in caplog.text
    assert transcriber.transcribe(audio) == heard


def test_real_speech_transcribes_through_the_tiny_model(
    tiny_checkpoint: Path, tmp_path: Path, espeak_writer: Callable[[Path, str], bool]
) -> None:
    """An espeak-ng recording, cleaned as references are, goes through the same path to (random) words."""
    path = tmp_path / "speech.wav"
    if not espeak_writer(path, "The quick brown fox jumps over the lazy dog."):
        pytest.skip("espeak-ng is not installed")
    wav16 = reference_pcm_at(load_reference(path), 16000)[0].numpy()
    transcriber = Transcriber(tiny_checkpoint / "whisper" / "tiny-random.pt")
    heard = transcriber.transcribe(wav16)
    assert heard.text.strip() and "<|" not in heard.text and isinstance(heard.language, str)
    assert heard == transcriber.transcribe(wav16)


def test_more_than_one_window_is_refused(tiny_checkpoint: Path) -> None:
    transcriber = Transcriber(tiny_checkpoint / "whisper" / "tiny-random.pt")
    with pytest.raises(AudioInputError, match="at most 30 s"):
        transcriber.transcribe(np.zeros(16000 * 31, dtype=np.float32))
