"""Reference audio for cloning: decode, validate, then prepare the samples features are taken from.

Two processings (`reference_processing`):
- `clean`: mix to mono, remove DC, resample to 24 kHz, trim silence, set the level to -20 dBFS;
- `upstream`: what upstream's glmtts_inference does: the file's channels at its own rate, untouched.
  Extraction then resamples straight to 16 kHz and 24 kHz as upstream's frontend does, per feature:
  the speech tokenizer takes channel 0 (`SpeechTokenizer.extract_speech_token`), the prompt mel and
  CAMPPlus take the channel mean (`load_wav`); see `reference_pcm_at`.
A `clean` clip is quantized to 16 bits once, here. An `upstream` clip keeps the samples exactly as upstream's
`torchaudio.load` reads the file (float32, each integer sample k of a b-bit file as k / 2^(b-1)), in the
narrowest type that holds them losslessly (`kept_samples`): int16 for 16-bit (and 8-bit) sources, int32
holding 24-bit values, float32 for everything else (float files, 32-bit integers, compressed formats).
The library keeps exactly these (every channel, for `upstream`), so a re-extraction sees the very samples
the first clone saw.

Decoding uses soundfile (libsndfile: WAV, FLAC, OGG Vorbis/Opus, MP3 and more), never an external
program. Every refusal is an AudioInputError that says what is wrong and what to do instead. The
result depends only on the input bytes and the arguments.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import soundfile as sf
import torch

from glmtts_mcp.engine.frontend.audio_features import resample
from glmtts_mcp.engine.types import AudioInputError, NotAudioError, ReferenceAudio

log = logging.getLogger(__name__)

MAX_FILE_SECONDS = 600.0  # refuse before decoding: nobody needs ten minutes to clone a voice
SILENCE_PEAK = 1e-3  # -60 dBFS: below this the clip holds no usable sound
FRAME_S, HOP_S = 0.02, 0.01  # energy frames for trimming and loudness
TRIM_DB = 40.0  # a frame is sound when its RMS is within 40 dB of the loudest frame
TRIM_MARGIN_S = 0.1  # silence kept before the first and after the last sound
TARGET_RMS_DBFS = -20.0  # loudness of the sounding frames after normalisation
PEAK_LIMIT = 0.95  # the gain never pushes the peak above this
CLIP_LEVEL = 0.999  # relative to the peak: samples at the peak level count as clipped
CLIP_REFUSE_SHARE = 0.05  # more than 5 % of sounding samples pinned at the peak: square wave or hard clipping
CLIP_WARN_SHARE = 0.002
LOW_RATE_WARN = 16000
# A b-bit integer sample k reads as k / 2^(b-1), as soundfile and torchaudio (so upstream) read the file:
# exact in float32 for 16 and 24 bits. A clean clip is quantized as rint(x * 32767), the rule the library
# always hashed by, so ids of clips cloned before stay the same.
PCM16_READ_SCALE = 32768.0
PCM24_READ_SCALE = 8388608.0
CLEAN_QUANTIZE_SCALE = 32767.0
MAX_CHANNELS = 8  # FLAC's limit: the library keeps an `upstream` clip's channels in a FLAC

ReferenceProcessing = Literal["clean", "upstream"]
REFERENCE_PROCESSINGS: tuple[str, ...] = get_args(ReferenceProcessing)

_SUPPORTED = "WAV, FLAC, OGG (Vorbis or Opus) or MP3"


def _decode(source: str | Path | bytes) -> tuple[np.ndarray, int, str]:
    """(samples [N, channels] float32, sample rate, name for messages)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "the uploaded audio"
        if not data:
            raise AudioInputError("the reference audio is empty (0 bytes): send a recording of 5-15 s of speech")
        handle: io.BytesIO | Path = io.BytesIO(data)
    else:
        path = Path(source).expanduser()
        name = f"reference audio file {str(path)!r}"
        if not path.is_file():
            raise AudioInputError(f"{name} does not exist or is not a file: check the path")
        if path.stat().st_size == 0:
            raise AudioInputError(f"{name} is empty (0 bytes): send a recording of 5-15 s of speech")
        handle = path
    try:
        with sf.SoundFile(handle) as f:
            rate, frames = int(f.samplerate), int(f.frames)
            if rate <= 0:
                raise AudioInputError(
                    f"{name} declares an invalid sample rate ({rate} Hz): the file is damaged; send a {_SUPPORTED} file"
                )
            if frames / rate > MAX_FILE_SECONDS:
                raise AudioInputError(
                    f"{name} is {frames / rate:.0f} s long; files over {MAX_FILE_SECONDS:.0f} s are not read. "
                    "Cut a 5-15 s stretch of clear speech from it"
                )
            samples = f.read(dtype="float32", always_2d=True)
    except AudioInputError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError) as exc:
        reason = str(getattr(exc, "error_string", "") or exc).strip().removeprefix("Error : ")
        raise NotAudioError(
            f"{name} could not be decoded as audio ({reason}). Send a {_SUPPORTED} file of 5-15 s of speech"
        ) from exc
    if samples.size == 0:
        raise AudioInputError(
            f"{name} decodes to no audio samples: the file is empty or damaged; send 5-15 s of recorded speech"
        )
    if not np.all(np.isfinite(samples)):
        raise AudioInputError(f"{name} contains NaN or infinite samples: the file is damaged; export it again")
    return samples, rate, name


def _frame_rms(x: np.ndarray, rate: int) -> tuple[np.ndarray, int, int]:
    """RMS of overlapping frames (from a running sum of squares: no frame copies), frame and hop in samples."""
    frame, hop = max(1, int(FRAME_S * rate)), max(1, int(HOP_S * rate))
    frame = min(frame, len(x))
    energy = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    starts = np.arange(0, len(x) - frame + 1, hop)
    return np.sqrt(np.maximum(energy[starts + frame] - energy[starts], 0.0) / frame), frame, hop


def _active_frames(x: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    rms, frame, hop = _frame_rms(x, rate)
    active = rms >= rms.max() * 10 ** (-TRIM_DB / 20)
    return rms, active, frame, hop


def _trim(x: np.ndarray, rate: int) -> np.ndarray:
    """Cut leading and trailing silence, keeping TRIM_MARGIN_S around the first and last sound."""
    _, active, frame, hop = _active_frames(x, rate)
    idx = np.flatnonzero(active)
    margin = int(TRIM_MARGIN_S * rate)
    start = max(0, int(idx[0]) * hop - margin)
    end = min(len(x), int(idx[-1]) * hop + frame + margin)
    return x[start:end]


def _clipped_share(x: np.ndarray, rate: int) -> float:
    """Share of the sounding samples that sit at the peak level (hard clipping pins them there)."""
    peak = float(np.max(np.abs(x)))
    _, active, frame, hop = _active_frames(x, rate)
    starts = np.flatnonzero(active) * hop
    coverage = np.zeros(len(x) + 1, dtype=np.int64)  # +1 at each active frame's start, -1 past its end
    np.add.at(coverage, starts, 1)
    np.add.at(coverage, np.minimum(starts + frame, len(x)), -1)
    sounding = np.abs(x[np.cumsum(coverage[:-1]) > 0])
    return float(np.mean(sounding >= CLIP_LEVEL * peak))


def _normalise(x: np.ndarray, rate: int) -> np.ndarray:
    """Gain so the sounding frames have TARGET_RMS_DBFS, capped so the peak stays under PEAK_LIMIT."""
    rms, active, _, _ = _active_frames(x, rate)
    level = float(np.sqrt(np.mean(rms[active] ** 2)))
    gain = 10 ** (TARGET_RMS_DBFS / 20) / level
    gain = min(gain, PEAK_LIMIT / float(np.max(np.abs(x))))
    return (x.astype(np.float64) * gain).astype(np.float32)


def _quantize_clean(x: np.ndarray) -> np.ndarray:
    """Samples in [-1, 1] as int16 by the clean rule (rounded, clipped to the int16 range)."""
    return np.clip(np.rint(x.astype(np.float64) * CLEAN_QUANTIZE_SCALE), -32768, 32767).astype(np.int16)


def _check_level(mono: np.ndarray, rate: int, name: str, warnings: list[str]) -> None:
    """Refuse silence and square waves; warn about some clipping and low sample rates."""
    peak = float(np.max(np.abs(mono)))
    if peak < SILENCE_PEAK:
        raise AudioInputError(
            f"{name} is silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS): check the microphone and record "
            "5-15 s of speech"
        )
    clipped = _clipped_share(mono, rate)
    if clipped > CLIP_REFUSE_SHARE:
        raise AudioInputError(
            f"{name} is clipped or not speech: {clipped:.0%} of its samples sit at the peak level (a square wave or "
            "hard clipping). Record again with lower input gain"
        )
    if clipped > CLIP_WARN_SHARE:
        warnings.append(f"{clipped:.1%} of the samples are clipped; a recording with lower gain will clone better")
    if rate < LOW_RATE_WARN:
        warnings.append(f"the recording's sample rate is {rate} Hz; 16 kHz or more gives a better voice")


def _check_duration(
    duration: float, file_s: float, name: str, min_s: float, max_s: float, warn_s: float, warnings: list[str]
) -> None:
    if duration < min_s:
        raise AudioInputError(
            f"{name} has {duration:.1f} s of sound after trimming silence (file: {file_s:.1f} s); "
            f"a reference must have {min_s:g}-{max_s:g} s. Record 5-15 s of continuous speech"
        )
    if duration > max_s:
        raise AudioInputError(
            f"{name} has {duration:.1f} s of sound after trimming silence; the limit is {max_s:g} s "
            f"(at least {min_s:g} s). Cut it to 5-15 s of clear speech"
        )
    if duration > warn_s:
        warnings.append(
            f"the clip is {duration:.1f} s long; {warn_s:g} s or less works best (longer prompts slow synthesis)"
        )


def load_reference(
    source: str | Path | bytes,
    *,
    processing: ReferenceProcessing = "clean",
    target_sr: int = 24000,
    min_s: float = 2.0,
    max_s: float = 30.0,
    warn_s: float = 15.0,
) -> ReferenceAudio:
    """Decode and prepare a reference clip (see the module docstring); refuse clips that cannot make a
    good voice (AudioInputError). `target_sr` is the clean clip's rate; an upstream clip keeps the file's."""
    samples, rate, name = _decode(source)
    warnings: list[str] = []
    if processing == "upstream":
        channels = samples.shape[1]
        if channels > MAX_CHANNELS:
            raise AudioInputError(
                f"{name} has {channels} channels; at most {MAX_CHANNELS} are kept: send a mono or stereo recording"
            )
        _check_level(samples[:, 0], rate, name, warnings)  # the speech tokens' signal
        if channels > 1:  # the mel's and CAMPPlus's signal must hold sound too (its warnings would repeat)
            _check_level(samples.mean(axis=1), rate, f"the channel mix of {name}", [])
        duration = len(samples) / rate
        _check_duration(duration, duration, name, min_s, max_s, warn_s, warnings)
        pcm = kept_samples(samples)  # [N, channels]; mono as [N]
        pcm, out_rate = (pcm[:, 0].copy() if channels == 1 else pcm), rate
    else:
        mono = samples.mean(axis=1, dtype=np.float64)
        mono = (mono - mono.mean()).astype(np.float32)  # a DC offset is not sound
        _check_level(mono, rate, name, warnings)
        trimmed = _trim(mono, rate)
        _check_duration(len(trimmed) / rate, len(mono) / rate, name, min_s, max_s, warn_s, warnings)
        out = resample(torch.from_numpy(trimmed), rate, target_sr).numpy()
        pcm, out_rate = _quantize_clean(_normalise(out, target_sr)), target_sr
    for w in warnings:
        log.info("reference audio: %s", w)
    return ReferenceAudio(pcm=pcm, sample_rate=out_rate, duration_s=len(pcm) / out_rate, warnings=warnings)


def _exact_integers(samples: np.ndarray, scale: float, dtype: type[np.signedinteger]) -> np.ndarray | None:
    """samples * scale as `dtype` when every one is an integer in [-scale, scale - 1], else None."""
    scaled = samples.astype(np.float64) * scale
    if np.any(scaled != np.rint(scaled)) or scaled.min() < -scale or scaled.max() > scale - 1:
        return None
    return scaled.astype(dtype)


def kept_samples(samples: np.ndarray) -> np.ndarray:
    """Float32 samples as read, in the narrowest type that gives them back exactly (`samples_as_read`):
    int16 when all are k / 32768, int32 holding 24-bit values when all are k / 2^23, else float32 itself.
    A source's samples decide, not its container: a 24-bit file of 16-bit audio is kept (and identified)
    as the 16-bit file it equals."""
    for scale, dtype in ((PCM16_READ_SCALE, np.int16), (PCM24_READ_SCALE, np.int32)):
        exact = _exact_integers(samples, scale, dtype)
        if exact is not None:
            return exact
    return np.ascontiguousarray(samples, dtype=np.float32)


def samples_as_read(pcm: np.ndarray) -> np.ndarray:
    """Kept samples as float32, as upstream's torchaudio.load reads them: int16 as k / 32768, int32 (24-bit
    values) as k / 2^23, float32 as they are."""
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / np.float32(PCM16_READ_SCALE)
    if pcm.dtype == np.int32:
        return pcm.astype(np.float32) / np.float32(PCM24_READ_SCALE)  # 24-bit values: exact in float32
    if pcm.dtype == np.float32:
        return pcm
    raise ValueError(
        f"reference samples must be int16, int32 (24-bit) or float32 as load_reference keeps them, not {pcm.dtype}"
    )


def reference_pcm_at(ref: ReferenceAudio, sr: int, *, first_channel: bool = False) -> torch.Tensor:
    """The reference as a (1, T) float32 tensor at `sr`, resampled straight from the kept samples read as
    upstream reads the file (`samples_as_read`). A multichannel (`upstream`) clip gives the channel mean, as
    upstream's `load_wav` feeds its prompt mel and CAMPPlus, or with `first_channel` its channel 0, as
    upstream's speech tokenizer reads it; a mono clip gives its samples either way."""
    pcm = np.asarray(ref.pcm)
    channels = torch.from_numpy(np.ascontiguousarray(samples_as_read(pcm))).reshape(len(pcm), -1).T
    if first_channel or channels.shape[0] == 1:
        wav = channels[:1].contiguous()
    else:
        wav = channels.mean(dim=0, keepdim=True)  # float32 over [channels, T], as torch's mean in load_wav
    return resample(wav, ref.sample_rate, sr)
