"""Audio features exactly as upstream computes them: resampling, the 24 kHz log-mel, the CAMPPlus fbank.

Upstream counterparts: `utils/audio.mel_spectrogram` (HiFiGAN-style log-mel, used for the flow's
prompt mel and the vocoder's training features), `TTSFrontEnd._extract_speech_feat` (its (1, T, 80)
layout) and `TTSFrontEnd._extract_spk_embedding` (kaldi fbank fed to campplus.onnx).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio


@dataclass(frozen=True)
class MelParams:
    """Parameters of `mel_spectrogram` (names as upstream's keyword arguments)."""

    n_fft: int
    num_mels: int
    sampling_rate: int
    hop_size: int
    win_size: int
    fmin: float
    fmax: float
    center: bool = False


# The 24 kHz frontend of glmtts_inference.load_frontends: 50 frames/s, the flow's and HiFT's mel.
MEL_24K = MelParams(n_fft=1920, num_mels=80, sampling_rate=24000, hop_size=480, win_size=1920, fmin=0, fmax=8000)

# Upstream _extract_spk_embedding's kaldi fbank options (all others: torchaudio defaults).
CAMPPLUS_SAMPLE_RATE = 16000
CAMPPLUS_NUM_MEL_BINS = 80


@lru_cache(maxsize=16)
def _resampler(orig_sr: int, new_sr: int, device: torch.device) -> torchaudio.transforms.Resample:
    """One module per rate pair and device (read-only afterwards, so threads can share it)."""
    return torchaudio.transforms.Resample(orig_freq=orig_sr, new_freq=new_sr).to(device)


def resample(wav: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Band-limited resampling over the last axis by torchaudio's Resample module, the one upstream calls
    (its precomputed kernel differs from torchaudio.functional.resample's by up to 6e-6)."""
    if orig_sr == new_sr:
        return wav
    with torch.no_grad():
        return _resampler(orig_sr, new_sr, wav.device)(wav)


def _hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa's default, htk=False)."""
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    hz = np.asarray(hz, dtype=np.float64)
    mels = hz / f_sp
    log_region = hz >= min_log_hz
    return np.where(log_region, min_log_mel + np.log(np.maximum(hz, 1e-300) / min_log_hz) / logstep, mels)


def _mel_to_hz_slaney(mels: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    mels = np.asarray(mels, dtype=np.float64)
    freqs = f_sp * mels
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freqs)


@lru_cache(maxsize=8)
def _mel_basis_np(sampling_rate: int, n_fft: int, num_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-normalised triangular filters [num_mels, n_fft//2+1], float32.

    Computed in float64 and rounded to float32 in the same two places librosa.filters.mel rounds
    (each filter row on assignment, then after the area normalisation), so the basis matches the
    one upstream builds. Cached by every parameter (upstream keys its cache by fmax only).
    """
    fft_freqs = np.linspace(0.0, sampling_rate / 2.0, n_fft // 2 + 1)
    mel_edges = np.linspace(_hz_to_mel_slaney(np.array(fmin)), _hz_to_mel_slaney(np.array(fmax)), num_mels + 2)
    hz_edges = _mel_to_hz_slaney(mel_edges)
    widths = np.diff(hz_edges)
    ramps = hz_edges[:, None] - fft_freqs[None, :]
    weights = np.zeros((num_mels, fft_freqs.size), dtype=np.float32)
    for i in range(num_mels):
        rising = -ramps[i] / widths[i]
        falling = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(rising, falling))
    area_norm = 2.0 / (hz_edges[2 : num_mels + 2] - hz_edges[:num_mels])
    return (weights.astype(np.float64) * area_norm[:, None]).astype(np.float32)


def mel_basis(sampling_rate: int, n_fft: int, num_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    """The librosa-compatible Slaney mel filter bank as a float32 tensor [num_mels, n_fft//2+1]."""
    return torch.from_numpy(_mel_basis_np(sampling_rate, n_fft, num_mels, float(fmin), float(fmax)).copy())


def mel_spectrogram(
    wav: torch.Tensor,
    *,
    n_fft: int,
    num_mels: int,
    sampling_rate: int,
    hop_size: int,
    win_size: int,
    fmin: float,
    fmax: float,
    center: bool = False,
) -> torch.Tensor:
    """Natural-log mel magnitude [B, num_mels, frames] of a float waveform [B, T] in [-1, 1].

    Reflect-pads (n_fft-hop)/2 on both sides, then an un-centred periodic-Hann STFT, so that
    frames = T / hop exactly; magnitude is sqrt(re²+im²+1e-9); log of the mel energies clamped at 1e-5.
    """
    basis = mel_basis(sampling_rate, n_fft, num_mels, fmin, fmax).to(device=wav.device, dtype=wav.dtype)
    window = torch.hann_window(win_size, device=wav.device, dtype=wav.dtype)
    pad = int((n_fft - hop_size) / 2)
    padded = F.pad(wav.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    spec = torch.stft(
        padded,
        n_fft,
        hop_length=hop_size,
        win_length=win_size,
        window=window,
        center=center,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    spec = torch.view_as_real(spec)
    magnitude = torch.sqrt(spec.pow(2).sum(-1) + 1e-9)
    return torch.log(torch.clamp(torch.matmul(basis, magnitude), min=1e-5))


def mel_with(params: MelParams, wav: torch.Tensor) -> torch.Tensor:
    """`mel_spectrogram` with a parameter set."""
    return mel_spectrogram(
        wav,
        n_fft=params.n_fft,
        num_mels=params.num_mels,
        sampling_rate=params.sampling_rate,
        hop_size=params.hop_size,
        win_size=params.win_size,
        fmin=params.fmin,
        fmax=params.fmax,
        center=params.center,
    )


def prompt_mel_features(wav24k: torch.Tensor, params: MelParams = MEL_24K) -> torch.Tensor:
    """The flow's prompt mel (1, frames, 80) from a 24 kHz waveform (1, T): upstream's _extract_speech_feat."""
    if wav24k.dim() != 2 or wav24k.shape[0] != 1:
        raise ValueError(f"prompt_mel_features expects a (1, T) waveform, got {tuple(wav24k.shape)}")
    return mel_with(params, wav24k).squeeze(0).transpose(0, 1).unsqueeze(0)


def kaldi_fbank(
    wav16k: torch.Tensor,
    *,
    num_mel_bins: int = CAMPPLUS_NUM_MEL_BINS,
    sample_frequency: float = CAMPPLUS_SAMPLE_RATE,
) -> torch.Tensor:
    """Kaldi log-mel fbank (frames, bins) of a (1, T) float waveform in [-1, 1] (not int16-scaled), dither 0."""
    if wav16k.dim() != 2 or wav16k.shape[0] != 1:
        raise ValueError(f"kaldi_fbank expects a (1, T) waveform, got {tuple(wav16k.shape)}")
    return torchaudio.compliance.kaldi.fbank(
        wav16k, num_mel_bins=num_mel_bins, dither=0.0, sample_frequency=sample_frequency
    )


def campplus_input(fbank: torch.Tensor) -> torch.Tensor:
    """The exact (1, frames, bins) array upstream feeds to campplus.onnx: fbank minus its mean over time."""
    return (fbank - fbank.mean(dim=0, keepdim=True)).unsqueeze(0)


def campplus_fbank(wav16k: torch.Tensor) -> torch.Tensor:
    """CAMPPlus input (1, frames, 80) from a 16 kHz (1, T) waveform, as upstream's _extract_spk_embedding."""
    return campplus_input(kaldi_fbank(wav16k))
