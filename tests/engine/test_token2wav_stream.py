"""Chunked synthesis inside a segment: parity with upstream's token2wav_stream, and its invariants."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from glmtts_mcp.engine.models.dit import block_causal_mask
from glmtts_mcp.engine.models.flow import Flow
from glmtts_mcp.engine.models.token2wav_stream import ChunkedToken2Wav, StreamBlocks, StreamPrompt
from glmtts_mcp.engine.models.vocoder import HiFTGenerator
from glmtts_mcp.engine.parity import run_case
from glmtts_mcp.engine.parity.stream_cases import RUNNERS, tiny_flow_and_hift


@pytest.mark.parametrize("name", ["token2wav_stream", "token2wav_stream_small_first"])
def test_chunks_equal_upstreams_token2wav_stream(name: str, golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, case = golden_case(name)
    result = run_case(folder, RUNNERS)
    assert result.passed, f"{name}: {result.detail} (max abs {result.max_abs:.3g}, tolerance {result.tolerance})"
    assert result.max_abs <= case["tolerance"]["atol"]


@pytest.fixture(scope="module")
def tiny_models() -> tuple[Flow, HiFTGenerator]:
    with tempfile.TemporaryDirectory() as tmp:
        return tiny_flow_and_hift(Path(tmp))


def _prompt(seed: int = 3) -> StreamPrompt:
    g = torch.Generator().manual_seed(seed)
    return StreamPrompt(torch.randint(0, 30, (1, 20), generator=g), torch.randn(1, 40, 80, generator=g) - 5,
                        torch.randn(1, 192, generator=g))  # fmt: skip


def _run(models: tuple[Flow, HiFTGenerator], tokens: list[int], blocks: StreamBlocks, step: int) -> list[np.ndarray]:
    flow, hift = models
    chunker = ChunkedToken2Wav(flow, hift, _prompt(), blocks, generator=torch.Generator().manual_seed(7))
    chunks: list[np.ndarray] = []
    for start in range(0, len(tokens), step):
        chunks.extend(chunker.push(tokens[start : start + step]))
    chunks.append(chunker.finish())
    assert chunker.emitted == sum(len(c) for c in chunks)
    return chunks


@pytest.mark.parametrize("n_tokens", [7, 10, 35, 36, 85])  # one partial block; exactly 1, 2 and 3 blocks; more
def test_the_chunks_add_up_to_the_whole_segment(tiny_models: tuple[Flow, HiFTGenerator], n_tokens: int) -> None:
    """Whether the last block is partial or the LLM stopped at a block's end, every sample is handed out once."""
    flow, hift = tiny_models
    tokens = torch.randint(0, 30, (n_tokens,), generator=torch.Generator().manual_seed(n_tokens)).tolist()
    chunks = _run(tiny_models, tokens, StreamBlocks((10, 25, 50), (5, 12, 25)), step=1)
    frames = flow.frame_count(20 + n_tokens) - 40
    assert sum(len(c) for c in chunks) == frames * hift.upsample_scale
    assert all(np.isfinite(c).all() for c in chunks)


def test_tokens_arriving_in_bursts_give_the_same_chunks(tiny_models: tuple[Flow, HiFTGenerator]) -> None:
    tokens = torch.randint(0, 30, (60,), generator=torch.Generator().manual_seed(1)).tolist()
    blocks = StreamBlocks((10, 25, 50), (5, 12, 25))
    one = _run(tiny_models, tokens, blocks, step=1)
    bursts = _run(tiny_models, tokens, blocks, step=13)
    assert [len(c) for c in one if len(c)] == [len(c) for c in bursts if len(c)]
    assert np.array_equal(np.concatenate(one), np.concatenate(bursts))


def test_no_audio_before_the_first_block_is_complete(tiny_models: tuple[Flow, HiFTGenerator]) -> None:
    flow, hift = tiny_models
    chunker = ChunkedToken2Wav(flow, hift, _prompt(), StreamBlocks((10, 25), (5, 12)))
    assert chunker.push(list(range(9))) == []
    assert len(chunker.push([9])) == 1


def test_the_mask_lets_a_block_see_only_what_upstream_lets_it_see() -> None:
    """Blocks of 1 and 25 tokens (6 and 172 frames): frame 0 sees its block; a late frame sees into the next."""
    mask = block_causal_mask([1, 25], 400)
    assert mask[0].sum() == 6  # 6 frames ahead (3) >= half the block (3): no look into the next block
    assert mask[5].sum() == 6 + 3  # last frame of block 0: 0 ahead, wants 3 -> 3 frames of block 1
    assert mask[6].sum() == 6 + 172  # first frame of block 1
    assert mask[177].sum() == 178 + 86  # last frame of block 1 sees half of block 2
    assert bool(mask.diagonal().all())


def test_bad_block_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="pair up"):
        StreamBlocks((25, 50), (12,))
    with pytest.raises(ValueError, match=">= 1"):
        StreamBlocks((0,), (0,))
