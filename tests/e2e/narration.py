"""The whole narration as one array: what a test compares, the stream's chunks joined (the product streams)."""

from __future__ import annotations

import numpy as np

from glmtts_mcp.engine.types import SynthesisOptions, VoiceFeatures


def whole_narration(
    engine, text: str, features: VoiceFeatures, options: SynthesisOptions = SynthesisOptions()
) -> np.ndarray:
    """Float32 PCM at options.sample_rate: every streamed chunk, concatenated."""
    chunks = [chunk.pcm for chunk in engine.synthesize(text, features, options)]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
