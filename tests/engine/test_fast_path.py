"""The fast LLM path: the scheduler's compiled step (padded to every slot, for CUDA graphs) traces as one
graph and decodes the tokens of the eager step."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from glmtts_mcp.engine.checkpoint.loader import Models, load_models
from glmtts_mcp.engine.models.llm import RasSettings
from glmtts_mcp.engine.runtime.scheduler import BatchScheduler, SpeechRequest


@pytest.fixture(scope="module")
def models(tiny_checkpoint: Path, one_torch_thread: None) -> Models:
    return load_models(tiny_checkpoint, torch.device("cpu"))


def segments() -> list[SpeechRequest]:
    """Three segments of different lengths, so the live batch grows and shrinks during the run."""
    return [
        SpeechRequest(
            list(range(5, 9 + 2 * i)),
            [9, 10, 11],
            [1, 2, 3, 4 + i],
            RasSettings(),
            torch.Generator().manual_seed(4 + i),
            min_ratio=2.0,
            max_ratio=4.0 + i,
        )
        for i in range(3)
    ]


def decoded(scheduler: BatchScheduler) -> list[list[int]]:
    try:
        return [future.result(timeout=300) for future in [scheduler.submit(r) for r in segments()]]
    finally:
        scheduler.close()


def test_compiled_step_traces_as_one_graph_and_decodes_the_same(
    models: Models, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """fullgraph=True fails on any graph break (which would rule out CUDA graphs); the eager backend
    checks the trace on a CPU without a C++ compiler. One graph for every step at every batch size:
    positions, live rows and the input ids are not baked in."""
    expected = decoded(BatchScheduler(models.llm, max_batch=3, slot_positions=256))
    compile_ = torch.compile

    def eager_backend(fn: object, **kwargs: object) -> object:
        assert kwargs.get("fullgraph") is True
        return compile_(fn, fullgraph=True, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_backend)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: None)
    counters.clear()
    with caplog.at_level(logging.WARNING, logger="glmtts_mcp.engine.runtime.scheduler"):
        got = decoded(BatchScheduler(models.llm, max_batch=3, slot_positions=256, compile_step=True))
    assert "decoding eagerly" not in caplog.text
    assert got == expected
    assert counters["stats"]["unique_graphs"] == 1 and not counters["recompiles"]
