"""Shared by the voice-library tests and their worker subprocesses: schemas, audio and features."""

from __future__ import annotations

import numpy as np
import torch

from glmtts_mcp.engine.types import FEATURE_SCHEMA, FEATURE_SCHEMA_VERSION
from glmtts_mcp.voices import FeatureSchema, NewVoiceData

SCHEMA = FeatureSchema(FEATURE_SCHEMA_VERSION, FEATURE_SCHEMA)
RATE = 24_000


def make_pcm(seed: int, seconds: float = 0.5) -> np.ndarray:
    """Short random mono float32 audio in [-1, 1]."""
    rng = np.random.default_rng(seed)
    return (0.2 * rng.standard_normal(int(RATE * seconds))).clip(-1, 1).astype(np.float32)


def make_tensors(seed: int, mel_frames: int = 25) -> dict[str, torch.Tensor]:
    """Features shaped as the engine's schema asks (small)."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "prompt_text_ids": torch.randint(0, 1000, (8,), generator=gen),
        "prompt_speech_ids": torch.randint(0, 6561, (12,), generator=gen),
        "prompt_mel": torch.randn(mel_frames, 80, generator=gen),
        "speaker_embedding": torch.randn(192, generator=gen),
    }


def make_voice(seed: int, transcript: str = "hello there", mel_frames: int = 25) -> NewVoiceData:
    """What the engine's create step would return."""
    return NewVoiceData(
        tensors=make_tensors(seed, mel_frames),
        transcript=transcript,
        transcript_source="user",
        language="en",
        duration_s=0.5,
        timings={"speech_tokenizer": 0.25, "campplus": 0.5},
        tags=["test"],
    )
