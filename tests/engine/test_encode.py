"""Output encoding round-trips through soundfile, format metadata, refusals, and crossfaded joins."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from glmtts_mcp.engine.runtime.output_encoding import (
    AUDIO_FORMATS,
    Crossfader,
    audio_format,
    encode_audio,
    output_sample_rate,
    supported_formats,
)
from glmtts_mcp.engine.types import EngineError


def _tone(seconds: float, rate: int, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_every_format_is_supported_by_the_installed_libsndfile() -> None:
    assert supported_formats() == ["wav", "flac", "ogg", "mp3"]


@pytest.mark.parametrize(
    ("fmt", "mime", "ext", "head"),
    [
        ("wav", "audio/wav", ".wav", b"RIFF"),
        ("flac", "audio/flac", ".flac", b"fLaC"),
        ("ogg", "audio/ogg", ".ogg", b"OggS"),
        ("mp3", "audio/mpeg", ".mp3", b"\xff"),
    ],
)
def test_round_trip_keeps_rate_and_duration(fmt: str, mime: str, ext: str, head: bytes) -> None:
    pcm = _tone(1.5, 24000)
    data = encode_audio(pcm, 24000, fmt)
    assert AUDIO_FORMATS[fmt].mime_type == mime and AUDIO_FORMATS[fmt].extension == ext
    assert data.startswith(head)  # RIFF, fLaC, OggS, or an MPEG frame sync
    decoded, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == 24000
    assert abs(len(decoded) / rate - 1.5) < 0.06
    if fmt in ("wav", "flac"):  # lossless at 16 bits
        np.testing.assert_allclose(decoded, pcm, atol=1 / 32767 + 1e-6)
    else:  # lossy: the tone survives (correlation on the middle second, past codec delay)
        mid = slice(6000, 30000)
        n = min(len(decoded), len(pcm))
        best = max(np.corrcoef(decoded[:n][mid], np.roll(pcm[:n], s)[mid])[0, 1] for s in range(-400, 401, 1))
        assert best > 0.95


def test_opus_resamples_unsupported_rates() -> None:
    assert output_sample_rate("ogg", 22050) == 24000
    assert output_sample_rate("ogg", 96000) == 48000
    assert output_sample_rate("mp3", 24000) == 24000
    assert output_sample_rate("wav", 22050) == 22050
    data = encode_audio(_tone(1.0, 22050), 22050, "ogg")
    decoded, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == 24000 and abs(len(decoded) / rate - 1.0) < 0.06


def test_samples_beyond_full_scale_are_clipped_not_wrapped() -> None:
    pcm = np.full(2400, 1.7, dtype=np.float32)
    decoded, _ = sf.read(io.BytesIO(encode_audio(pcm, 24000, "wav")), dtype="float32")
    assert decoded.min() > 0.99


def test_long_ogg_is_written_in_blocks() -> None:
    data = encode_audio(_tone(40.0, 24000), 24000, "ogg")
    info = sf.info(io.BytesIO(data))
    assert info.samplerate == 24000 and abs(info.duration - 40.0) < 0.06


def test_refusals_name_the_problem() -> None:
    with pytest.raises(EngineError, match=r"unknown audio format 'aiff'.*wav, flac, ogg, mp3"):
        encode_audio(_tone(0.1, 24000), 24000, "aiff")
    with pytest.raises(EngineError, match="mono"):
        encode_audio(np.zeros((10, 2), np.float32), 24000, "wav")
    with pytest.raises(EngineError, match="NaN"):
        encode_audio(np.array([0.0, np.nan], np.float32), 24000, "wav")
    assert audio_format(".MP3").name == "mp3"


def crossfade_concat(chunks: list[np.ndarray], sample_rate: int, fade_ms: float) -> np.ndarray:
    """The whole-array join the streaming Crossfader must reproduce (written independently of it):
    each join overlaps min(fade, the two neighbours) samples with a raised-cosine fade."""
    fade = round(sample_rate * fade_ms / 1000.0)
    out = np.zeros(0, dtype=np.float32)
    for chunk in (np.asarray(c, dtype=np.float32) for c in chunks):
        n = min(fade, len(out), len(chunk))
        if n == 0:
            out = np.concatenate([out, chunk])
            continue
        w = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n, dtype=np.float64) + 0.5) / n)
        head = (out[len(out) - n :] * (1.0 - w) + chunk[:n] * w).astype(np.float32)
        out = np.concatenate([out[: len(out) - n], head, chunk[n:]])
    return out


def test_crossfade_overlaps_each_join() -> None:
    a, b, c = np.ones(1000, np.float32), -np.ones(800, np.float32), np.ones(50, np.float32)
    out = crossfade_concat([a, b, c], 10000, fade_ms=10)  # 100-sample fades, the last join only 50
    assert len(out) == 1000 + 800 + 50 - 100 - 50
    np.testing.assert_array_equal(out[:900], 1.0)
    join = out[900:1000]
    assert np.all(np.diff(join) < 0) and -1 < join[-1] < join[0] < 1
    np.testing.assert_array_equal(out[1000:1600], -1.0)
    assert crossfade_concat([], 24000, 10).size == 0
    np.testing.assert_array_equal(crossfade_concat([a], 24000, 10), a)


def test_streamed_crossfade_equals_the_whole() -> None:
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal(n).astype(np.float32) for n in (500, 30, 700, 0, 240)]
    fader = Crossfader(24000, fade_ms=5)
    streamed = np.concatenate([fader.push(c) for c in chunks] + [fader.flush()])
    np.testing.assert_allclose(streamed, crossfade_concat(chunks, 24000, 5), rtol=0, atol=0)
