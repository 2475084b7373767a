"""Output encoding (WAV, FLAC, Ogg/Opus, MP3 through libsndfile) and click-free joins of segments.

Everything goes through soundfile, never an external program. Support is checked against the
installed libsndfile at call time, so an old build without MP3 or Opus gives a clear error.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch

from glmtts_mcp.engine.frontend.audio_features import resample
from glmtts_mcp.engine.types import EngineError

_WRITE_BLOCK = 16384


@dataclass(frozen=True)
class AudioFormat:
    """An output format: what clients see (MIME type, extension) and how libsndfile writes it."""

    name: str
    mime_type: str
    extension: str
    sf_format: str
    sf_subtype: str
    sample_rates: tuple[int, ...] | None = None  # None: any rate


AUDIO_FORMATS: dict[str, AudioFormat] = {
    "wav": AudioFormat("wav", "audio/wav", ".wav", "WAV", "PCM_16"),
    "flac": AudioFormat("flac", "audio/flac", ".flac", "FLAC", "PCM_16"),
    "ogg": AudioFormat("ogg", "audio/ogg", ".ogg", "OGG", "OPUS", (8000, 12000, 16000, 24000, 48000)),
    "mp3": AudioFormat(
        "mp3",
        "audio/mpeg",
        ".mp3",
        "MP3",
        "MPEG_LAYER_III",
        (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),  # MPEG-1, -2 and -2.5 rates
    ),
}


def supported_formats() -> list[str]:
    """Names of the formats the installed libsndfile can write."""
    return [name for name, f in AUDIO_FORMATS.items() if _libsndfile_supports(f)]


def _libsndfile_supports(f: AudioFormat) -> bool:
    return f.sf_format in sf.available_formats() and f.sf_subtype in sf.available_subtypes(f.sf_format)


def audio_format(fmt: str) -> AudioFormat:
    """The AudioFormat for a name (case-insensitive, leading dot allowed); EngineError if unknown or unsupported."""
    key = fmt.lower().lstrip(".")
    info = AUDIO_FORMATS.get(key)
    if info is None:
        raise EngineError(f"unknown audio format {fmt!r}: choose one of {', '.join(AUDIO_FORMATS)}")
    if not _libsndfile_supports(info):
        raise EngineError(
            f"audio format {key!r} ({info.sf_format}/{info.sf_subtype}) is not supported by the installed "
            f"libsndfile {sf.__libsndfile_version__}; choose one of {', '.join(supported_formats())} "
            "or upgrade the soundfile package"
        )
    return info


def output_sample_rate(fmt: str, sample_rate: int) -> int:
    """The rate `encode_audio` writes: `sample_rate` if the format allows it, else the nearest allowed rate above."""
    rates = audio_format(fmt).sample_rates
    if rates is None or sample_rate in rates:
        return sample_rate
    higher = [r for r in rates if r > sample_rate]
    return min(higher) if higher else max(rates)


def encode_audio(pcm: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode mono float32 PCM in [-1, 1] as a complete file in memory (resampled if the codec needs it)."""
    info = audio_format(fmt)
    samples = np.asarray(pcm, dtype=np.float32)
    if samples.ndim != 1:
        raise EngineError(f"encode_audio expects mono PCM (1-D), got shape {samples.shape}")
    if not np.all(np.isfinite(samples)):
        raise EngineError("audio contains NaN or infinite samples; this is a bug in synthesis, please report it")
    rate = output_sample_rate(fmt, sample_rate)
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", rate, 1, subtype=info.sf_subtype, format=info.sf_format) as out:
        write_pcm(out, samples, sample_rate)
    return buffer.getvalue()


def write_pcm(out: sf.SoundFile, samples: np.ndarray, sample_rate: int) -> None:
    """Append float32 mono samples at `sample_rate` to `out`: resampled to the file's rate if it differs,
    clipped to [-1, 1], written in blocks (libsndfile's Ogg writer can crash on one very large write)."""
    if out.samplerate != sample_rate and len(samples):
        samples = resample(torch.from_numpy(samples), sample_rate, out.samplerate).numpy()
    samples = np.clip(samples, -1.0, 1.0)
    for start in range(0, len(samples), _WRITE_BLOCK):
        out.write(samples[start : start + _WRITE_BLOCK])


class Crossfader:
    """Joins a stream of segments with a short raised-cosine crossfade, emitting audio as it goes.

    Each pushed segment's last `fade` samples are held back until the next segment arrives, so the
    streamed output equals the segments joined whole, each join overlapped by `fade` samples.
    """

    def __init__(self, sample_rate: int, fade_ms: float) -> None:
        self.fade = max(0, round(sample_rate * fade_ms / 1000.0))
        self._tail = np.zeros(0, dtype=np.float32)  # empty until a segment has been pushed

    @property
    def held(self) -> int:
        """Samples held back for the next join (the next segment starts `min(held, its length)` before them)."""
        return len(self._tail)

    def push(self, chunk: np.ndarray, join: bool = True) -> np.ndarray:
        """Add a segment (or, with `join=False`, more of the last one); return the audio that is now final."""
        chunk = np.asarray(chunk, dtype=np.float32)
        if join and len(self._tail) and len(chunk):
            n = min(len(self._tail), len(chunk))
            fade_in = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n, dtype=np.float64) + 0.5) / n)
            head = self._tail[len(self._tail) - n :] * (1.0 - fade_in) + chunk[:n] * fade_in
            chunk = np.concatenate([self._tail[: len(self._tail) - n], head.astype(np.float32), chunk[n:]])
        else:
            chunk = np.concatenate([self._tail, chunk])
        keep = min(self.fade, len(chunk))
        self._tail = chunk[len(chunk) - keep :]
        return chunk[: len(chunk) - keep]

    def flush(self) -> np.ndarray:
        """The held-back end of the last segment."""
        tail, self._tail = self._tail, np.zeros(0, dtype=np.float32)
        return tail
