"""CAMPPlus through onnxruntime: the fbank wiring, the output, and errors naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from glmtts_mcp.engine.checkpoint.layout import CheckpointError
from glmtts_mcp.engine.frontend.audio_features import campplus_fbank
from glmtts_mcp.engine.models.speaker import SpeakerEncoder


def _speechlike(seconds: float, f0: float) -> torch.Tensor:
    t = torch.arange(int(seconds * 16000)) / 16000
    return (0.3 * torch.sin(2 * torch.pi * f0 * t) * (1 + 0.5 * torch.sin(2 * torch.pi * 3 * t)))[None]


def test_embedding_is_the_onnx_output_of_the_campplus_fbank(tiny_checkpoint: Path) -> None:
    onnx_path = tiny_checkpoint / "frontend" / "campplus.onnx"
    encoder = SpeakerEncoder(onnx_path)
    wav = _speechlike(2.5, 140.0)
    emb = encoder.embed(wav)
    assert emb.shape == (192,) and emb.dtype == torch.float32
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: campplus_fbank(wav).numpy()})[0]
    np.testing.assert_array_equal(emb.numpy(), expected.reshape(-1))
    assert torch.equal(encoder.embed(wav), emb)
    assert not torch.allclose(encoder.embed(_speechlike(2.5, 220.0)), emb)


def test_missing_and_corrupt_models_are_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"campplus.onnx.*glmtts-mcp download"):
        SpeakerEncoder(tmp_path / "frontend" / "campplus.onnx")
    bad = tmp_path / "campplus.onnx"
    bad.write_bytes(b"not an onnx graph")
    with pytest.raises(CheckpointError, match=r"campplus.onnx"):
        SpeakerEncoder(bad)
