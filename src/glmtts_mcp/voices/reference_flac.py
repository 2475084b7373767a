"""The kept reference audio: 16-bit FLAC (mono, or an `upstream` clip's channels), lossless, so ids can be
recomputed from it."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

FLAC_MAX_CHANNELS = 8


def encode_reference(pcm: np.ndarray, sample_rate: int) -> bytes:
    """FLAC bytes of canonical int16 PCM ([N] or [N, channels])."""
    buffer = io.BytesIO()
    sf.write(buffer, pcm, sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def decode_reference(data: bytes) -> tuple[np.ndarray, int]:
    """(int16 PCM, [N] when mono else [N, channels]; sample rate) of reference FLAC bytes; ValueError if they
    are anything else."""
    try:
        info = sf.info(io.BytesIO(data))
        if info.format != "FLAC" or info.subtype != "PCM_16":
            raise ValueError(f"reference audio must be 16-bit FLAC, found {info.format}/{info.subtype}")
        pcm, sample_rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=False)
    except RuntimeError as exc:  # libsndfile errors derive from RuntimeError
        raise ValueError(f"reference audio cannot be decoded: {exc}") from exc
    if pcm.size == 0:
        raise ValueError("reference audio holds no samples")
    return np.ascontiguousarray(pcm), int(sample_rate)
