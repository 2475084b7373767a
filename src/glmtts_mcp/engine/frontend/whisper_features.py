"""Whisper log-mel features as the speech tokenizer's frontend computes them.

Upstream calls transformers' `WhisperFeatureExtractor` (torch STFT path) with `padding="longest"`,
`pad_to_multiple_of=<samples per token>` and `return_attention_mask=True`. This module computes the
same arrays with torch alone, so the runtime needs no transformers feature extractor and can run on
any device: zero-pad every segment of a batch to the longest one rounded up to the multiple, take a
centred (reflect-padded) periodic-Hann STFT, drop its last frame, power spectrum, Slaney mel filters
(0–8000 Hz), log10 of the energies clamped at 1e-10, floor at (per-segment maximum − 8), then
(x + 4) / 4. The frame mask marks frames whose first sample is real audio.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from glmtts_mcp.engine.frontend.audio_features import mel_basis

# WhisperFeatureExtractor builds its filters from 0 Hz to a fixed 8 kHz, whatever the sampling rate.
_MEL_FMAX_HZ = 8000.0


@dataclass(frozen=True)
class WhisperFeatureConfig:
    """The fields of `preprocessor_config.json` that change the features (WhisperFeatureExtractor defaults)."""

    feature_size: int = 80
    sampling_rate: int = 16000
    hop_length: int = 160
    n_fft: int = 400
    chunk_length: int = 30
    padding_value: float = 0.0

    @classmethod
    def from_dict(cls, preprocessor: Mapping[str, Any]) -> WhisperFeatureConfig:
        """Read a preprocessor_config.json mapping; unknown keys (processor_class, ...) are ignored."""
        dither = float(preprocessor.get("dither", 0.0) or 0.0)
        if dither != 0.0:
            raise ValueError(
                f"preprocessor_config.json sets dither={dither}; the speech tokenizer supports only dither 0 "
                "(the official checkpoint's value): set it to 0.0"
            )
        defaults = cls()
        return cls(
            feature_size=int(preprocessor.get("feature_size", defaults.feature_size)),
            sampling_rate=int(preprocessor.get("sampling_rate", defaults.sampling_rate)),
            hop_length=int(preprocessor.get("hop_length", defaults.hop_length)),
            n_fft=int(preprocessor.get("n_fft", defaults.n_fft)),
            chunk_length=int(preprocessor.get("chunk_length", defaults.chunk_length)),
            padding_value=float(preprocessor.get("padding_value", defaults.padding_value)),
        )


class WhisperLogMel:
    """Batch padding, log-mel features and frame mask of WhisperFeatureExtractor's __call__."""

    def __init__(self, config: WhisperFeatureConfig) -> None:
        self.config = config
        self._basis_cpu = mel_basis(config.sampling_rate, config.n_fft, config.feature_size, 0.0, _MEL_FMAX_HZ)
        self._basis: dict[torch.device, torch.Tensor] = {}

    def _basis_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._basis:
            self._basis[device] = self._basis_cpu.to(device)
        return self._basis[device]

    def pad(self, segments: Sequence[torch.Tensor], pad_to_multiple_of: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(waveforms [B, L], sample mask [B, L] bool): right-padded to the longest, rounded up to the multiple.

        Like the extractor, a segment longer than chunk_length seconds (rounded up to the multiple) is
        truncated; the tokenizer never passes one, since it cuts audio into 30 s segments first.
        """
        if not segments:
            raise ValueError("pad needs at least one segment")
        max_samples = _round_up(self.config.chunk_length * self.config.sampling_rate, pad_to_multiple_of)
        segments = [s.reshape(-1)[:max_samples] for s in segments]
        length = _round_up(max(int(s.shape[0]) for s in segments), pad_to_multiple_of)
        device = segments[0].device
        wav = torch.full((len(segments), length), self.config.padding_value, dtype=torch.float32, device=device)
        mask = torch.zeros((len(segments), length), dtype=torch.bool, device=device)
        for i, segment in enumerate(segments):
            wav[i, : segment.shape[0]] = segment.to(torch.float32)
            mask[i, : segment.shape[0]] = True
        return wav, mask

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Normalised log10 mel [B, feature_size, L // hop] of float32 waveforms [B, L], computed in float32."""
        wav = wav.to(torch.float32)
        window = torch.hann_window(self.config.n_fft, device=wav.device, dtype=torch.float32)
        stft = torch.stft(wav, self.config.n_fft, self.config.hop_length, window=window, return_complex=True)
        power = stft[..., :-1].abs() ** 2
        mel = self._basis_on(wav.device) @ power
        log_spec = torch.clamp(mel, min=1e-10).log10()
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        return (log_spec + 4.0) / 4.0

    def frame_mask(self, sample_mask: torch.Tensor) -> torch.Tensor:
        """Per-frame mask [B, frames]: the sample mask taken every hop_length samples."""
        frames = sample_mask[:, :: self.config.hop_length]
        if sample_mask.shape[1] % self.config.hop_length != 0:
            frames = frames[:, :-1]
        return frames

    def __call__(
        self, segments: Sequence[torch.Tensor], pad_to_multiple_of: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(features [B, feature_size, frames] float32, frame mask [B, frames] bool) of 1-D waveforms."""
        wav, sample_mask = self.pad(segments, pad_to_multiple_of)
        return self.log_mel(wav), self.frame_mask(sample_mask)


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple)) * multiple
