"""The kept reference audio, lossless at the precision of the samples features were taken from.

Three forms, chosen by the samples' type (the engine's `kept_samples` picks the narrowest exact one):
- int16: 16-bit FLAC (every `clean` clip; 16-bit and 8-bit `upstream` sources; every voice made before
  24-bit and float sources were kept as they are);
- int32 holding 24-bit values: 24-bit FLAC;
- float32: 32-bit float WAV, as FLAC holds only integers.
Mono as [N], an `upstream` clip's channels as [N, channels]. Reading gives back exactly what was written,
so ids can be recomputed and re-extraction sees the very samples the first clone saw.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

REFERENCE_FILE = "reference.flac"  # the 16- and 24-bit forms
FLOAT_REFERENCE_FILE = "reference.wav"  # the float form
REFERENCE_FILES = (REFERENCE_FILE, FLOAT_REFERENCE_FILE)  # a voice folder holds exactly one
FLAC_MAX_CHANNELS = 8
PCM24_MAX = (1 << 23) - 1
PCM24_MIN = -(1 << 23)
_PCM24_SHIFT = 8  # libsndfile moves 24-bit samples through the top 24 bits of an int32

# sample type -> (file name, container, subtype) of each form
_FORMS: dict[np.dtype, tuple[str, str, str]] = {
    np.dtype(np.int16): (REFERENCE_FILE, "FLAC", "PCM_16"),
    np.dtype(np.int32): (REFERENCE_FILE, "FLAC", "PCM_24"),
    np.dtype(np.float32): (FLOAT_REFERENCE_FILE, "WAV", "FLOAT"),
}


def reference_problem(pcm: np.ndarray) -> str | None:
    """Why `pcm` cannot be kept as a reference (shape, type, range), or None."""
    if pcm.size == 0 or not (pcm.ndim == 1 or (pcm.ndim == 2 and 1 < pcm.shape[1] <= FLAC_MAX_CHANNELS)):
        return (
            f"reference PCM must be a non-empty [samples] or [samples, 2-{FLAC_MAX_CHANNELS} channels] "
            f"array, got shape {pcm.shape}"
        )
    if pcm.dtype not in _FORMS:
        return f"reference PCM must be int16, int32 (24-bit values) or float32, got {pcm.dtype}"
    if pcm.dtype == np.int32 and (pcm.min() < PCM24_MIN or pcm.max() > PCM24_MAX):
        return "int32 reference PCM must hold 24-bit values"
    if pcm.dtype == np.float32 and not np.isfinite(pcm).all():
        return "reference PCM holds NaN or infinite samples"
    return None


def reference_file_name(pcm: np.ndarray) -> str:
    """The voice folder's file that keeps samples of this type."""
    return _FORMS[np.dtype(pcm.dtype)][0]


def encode_reference(pcm: np.ndarray, sample_rate: int) -> bytes:
    """The file bytes that keep `pcm` (checked by `reference_problem` first) exactly."""
    problem = reference_problem(pcm)
    if problem:
        raise ValueError(problem)
    _, container, subtype = _FORMS[np.dtype(pcm.dtype)]
    data = pcm << _PCM24_SHIFT if subtype == "PCM_24" else pcm
    buffer = io.BytesIO()
    sf.write(buffer, data, sample_rate, format=container, subtype=subtype)
    return buffer.getvalue()


def listening_flac(name: str, data: bytes) -> bytes:
    """FLAC bytes to listen to the reference file `name`: a FLAC as it is; a float WAV as 24-bit FLAC
    (clipped to [-1, 1] and rounded: 24 bits are far below hearing, and the exact copy stays in the library)."""
    if name == REFERENCE_FILE:
        return data
    pcm, sample_rate = decode_reference(name, data)
    scaled = np.rint(np.clip(pcm.astype(np.float64), -1.0, 1.0) * (PCM24_MAX + 1))
    return encode_reference(np.clip(scaled, PCM24_MIN, PCM24_MAX).astype(np.int32), sample_rate)


def decode_reference(name: str, data: bytes) -> tuple[np.ndarray, int]:
    """(samples as written, sample rate) of the reference file `name`; ValueError if the bytes are not one
    of the forms above under that name."""
    try:
        info = sf.info(io.BytesIO(data))
        form: np.dtype | None = next(
            (dtype for dtype, f in _FORMS.items() if f == (name, info.format, info.subtype)), None
        )
        if form is None:
            raise ValueError(
                f"{name} must be 16- or 24-bit FLAC ({REFERENCE_FILE}) or 32-bit float WAV ({FLOAT_REFERENCE_FILE}), "
                f"found {info.format}/{info.subtype}"
            )
        pcm, sample_rate = sf.read(io.BytesIO(data), dtype=form.name, always_2d=False)
    except RuntimeError as exc:  # libsndfile errors derive from RuntimeError
        raise ValueError(f"reference audio cannot be decoded: {exc}") from exc
    if pcm.size == 0:
        raise ValueError("reference audio holds no samples")
    if form == np.int32:
        pcm = pcm >> _PCM24_SHIFT
    return np.ascontiguousarray(pcm), int(sample_rate)
