"""Parity runner for kind `token2wav_stream`: upstream's Token2Wav.token2wav_stream, chunk by chunk.

The case stores no weights: it was made on the tiny checkpoint `make_tiny_checkpoint(size="tiny", seed=0)`,
which rebuilds byte for byte, so the runner writes it into a temporary folder and loads its flow and HiFT.
Tokens are pushed one at a time, as the LLM hands them out; each flow call and vocoder call replays
upstream's recorded draws. Both the chunk boundaries (exact) and the audio (within tolerance) must agree.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from glmtts_mcp.engine.checkpoint.layout import FLOW_CONFIG, FLOW_WEIGHTS, HIFT_WEIGHTS, load_state_dict
from glmtts_mcp.engine.checkpoint.loader import flow_dims_from_state, hift_config_from_state
from glmtts_mcp.engine.checkpoint.tiny import make_tiny_checkpoint
from glmtts_mcp.engine.models.flow import Flow, load_flow_config
from glmtts_mcp.engine.models.token2wav_stream import FLOW_NOISE, ChunkedToken2Wav, StreamBlocks, StreamPrompt
from glmtts_mcp.engine.models.vocoder import DRAW_RAND_INI, DRAW_SINE_NOISE, HiFTGenerator, load_hift_state_dict
from glmtts_mcp.engine.parity import CaseResult, compare_outputs, load_case_tensors


def tiny_flow_and_hift(directory: Path) -> tuple[Flow, HiFTGenerator]:
    """The flow and HiFT of the seed-0 tiny checkpoint, built as the engine's loader builds them."""
    checkpoint = make_tiny_checkpoint(directory / "GLM-TTS", size="tiny", seed=0)
    cfg = load_flow_config(checkpoint / FLOW_CONFIG)
    state = load_state_dict(checkpoint / FLOW_WEIGHTS)
    flow = Flow.from_config({**cfg, **flow_dims_from_state(state, int(cfg["dim_head"]), checkpoint / FLOW_WEIGHTS)})
    flow.load_official_state_dict(state)
    hift_state = load_state_dict(checkpoint / HIFT_WEIGHTS)
    hift = HiFTGenerator.from_config(hift_config_from_state(hift_state, checkpoint / HIFT_WEIGHTS))
    load_hift_state_dict(hift, hift_state)
    return flow.eval(), hift.eval()


def recorded_calls(tensors: dict[str, torch.Tensor], calls: int, prefix: str = "") -> list[dict[str, torch.Tensor]]:
    """Upstream's draws for each token2wav_stream call, stored as `{prefix}call{n}_{name}`, as
    ChunkedToken2Wav replays them (also read by benchmarks/e2e_parity.py --stream)."""
    names = (FLOW_NOISE, DRAW_RAND_INI, DRAW_SINE_NOISE)
    return [{name: tensors[f"{prefix}call{n}_{name}"] for name in names} for n in range(calls)]


def stream_chunks(flow: Flow, hift: HiFTGenerator, case: dict, io: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """Our chunks for the case's tokens, pushed one by one, with upstream's recorded draws."""
    recorded = recorded_calls(io, int(case["calls"]))
    blocks = StreamBlocks(tuple(case["block_sizes"]), tuple(case["look_future_sizes"]), float(case["fade_sec"]))
    prompt = StreamPrompt(io["prompt_tokens"], io["prompt_mel"], io["embedding"])
    chunker = ChunkedToken2Wav(flow, hift, prompt, blocks, recorded=recorded)
    chunks: list[np.ndarray] = []
    for token in io["tokens"].tolist():
        chunks.extend(chunker.push([token]))
    chunks.append(chunker.finish())
    return [c for c in chunks if len(c)]


def run_token2wav_stream(folder: Path, case: dict) -> CaseResult:
    _, io = load_case_tensors(folder)
    with tempfile.TemporaryDirectory() as tmp:
        flow, hift = tiny_flow_and_hift(Path(tmp))
    chunks = stream_chunks(flow, hift, case, io)
    lengths = [len(c) for c in chunks]
    expected = io["chunk_lengths"].tolist()
    if lengths != expected:
        return CaseResult("token2wav_stream", str(folder), float("inf"), float("inf"), "", False,
                          f"chunk lengths {lengths} != upstream's {expected}")  # fmt: skip
    wav = torch.from_numpy(np.concatenate(chunks))
    return compare_outputs("token2wav_stream", folder, case, {"wav": (wav, io["wav"])})


RUNNERS = {"token2wav_stream": run_token2wav_stream}
