"""Whisper log-mel features for the speech tokenizer: transformers' `WhisperFeatureExtractor`, called
as upstream calls it (`padding="longest"`, `pad_to_multiple_of=<samples per token>`,
`return_attention_mask=True`), so the features and the frame mask are upstream's by construction.

The golden cases `speech_tokenizer` and `speech_tokenizer_real` pass with it token for token (see
docs/parity.md); the extractor runs its STFT on the model's device and hands back CPU arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import WhisperFeatureExtractor


def feature_extractor(preprocessor: Mapping[str, Any]) -> WhisperFeatureExtractor:
    """The extractor of a `preprocessor_config.json` mapping; a dithering one is refused (random features)."""
    dither = float(preprocessor.get("dither", 0.0) or 0.0)
    if dither != 0.0:
        raise ValueError(
            f"preprocessor_config.json sets dither={dither}; the speech tokenizer supports only dither 0 "
            "(the official checkpoint's value): set it to 0.0"
        )
    return WhisperFeatureExtractor(**dict(preprocessor))


class WhisperLogMel:
    """Batch padding, log-mel features and frame mask of 1-D waveforms, on the model's device."""

    def __init__(self, extractor: WhisperFeatureExtractor) -> None:
        self.extractor = extractor

    def __call__(
        self, segments: Sequence[torch.Tensor], pad_to_multiple_of: int, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(features [B, feature_size, frames] float32, frame mask [B, frames] bool), both on `device`."""
        if not segments:
            raise ValueError("the feature extractor needs at least one segment")
        device = torch.device(device)
        out = self.extractor(
            [s.detach().reshape(-1).to(device="cpu", dtype=torch.float32).numpy() for s in segments],
            sampling_rate=self.extractor.sampling_rate,
            padding="longest",
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=True,
            return_tensors="pt",
            device=str(device),
        )
        features = out["input_features"].to(device=device, dtype=torch.float32)
        return features, out["attention_mask"].to(device=device, dtype=torch.bool)
