"""CAMPPlus speaker embedding through onnxruntime: upstream's `TTSFrontEnd._extract_spk_embedding`.

The ONNX graph takes the mean-normalised kaldi fbank (1, frames, 80) of 16 kHz audio and returns a
(1, 192) embedding, which conditions the flow's AdaLN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import torch

from glmtts_mcp.engine.checkpoint.layout import HOW_TO_GET, CheckpointError
from glmtts_mcp.engine.frontend.audio_features import campplus_fbank

EMBEDDING_DIM = 192


def _providers(device: str) -> list[str]:
    """CUDA first when the model runs on a GPU and onnxruntime has it; CPU always as fallback."""
    available = onnxruntime.get_available_providers()
    if device.startswith("cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class SpeakerEncoder:
    """A CAMPPlus ONNX session (onnxruntime sessions are safe to run from several threads)."""

    def __init__(self, onnx_path: Path, device: str = "cpu") -> None:
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise CheckpointError(f"checkpoint missing {onnx_path}: {HOW_TO_GET}")
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = 1  # as upstream; the embedding is a small fraction of cloning time
        try:
            self.session = onnxruntime.InferenceSession(
                str(onnx_path), sess_options=options, providers=_providers(device)
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            raise CheckpointError(f"cannot load {onnx_path} (corrupt ONNX?): {exc}; re-download it") from exc
        self.input_name = self.session.get_inputs()[0].name

    def embed(self, wav16k: torch.Tensor) -> torch.Tensor:
        """The float32 speaker embedding [192] of a 16 kHz waveform [1, T] in [-1, 1]."""
        feats = campplus_fbank(wav16k.detach().float().cpu()).numpy().astype(np.float32)
        out = self.session.run(None, {self.input_name: feats})[0]
        emb = torch.from_numpy(np.asarray(out, dtype=np.float32).reshape(-1).copy())
        if emb.numel() != EMBEDDING_DIM:
            raise CheckpointError(
                f"campplus.onnx returned {emb.numel()} values, expected {EMBEDDING_DIM}: it is not the CAMPPlus "
                f"speaker model; {HOW_TO_GET}"
            )
        return emb
