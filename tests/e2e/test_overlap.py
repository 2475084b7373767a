"""Pipelined synthesis: the next segment's LLM is queued before this segment's flow and vocoder run, same audio."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from narration import whole_narration

from glmtts_mcp.engine.runtime.pipeline import Engine
from glmtts_mcp.engine.runtime.scheduler import BatchScheduler
from glmtts_mcp.engine.types import SynthesisOptions

LONG_TEXT = "One. Two. Three. Four. " * 12  # three segments


@pytest.fixture(scope="module")
def sequential(tiny_checkpoint: Path) -> Engine:
    return Engine.load(tiny_checkpoint, device="cpu", dtype="float32", whisper_model="tiny-random", overlap=False)


@pytest.fixture(scope="module")
def pipelined(tiny_checkpoint: Path) -> Engine:
    """Pipelined (the default on CUDA only)."""
    return Engine.load(tiny_checkpoint, device="cpu", dtype="float32", whisper_model="tiny-random", overlap=True)


def record(
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    stage: str,
    log: list[tuple[str, str, float, float]],
    before: Callable[[str], None] = lambda segment: None,
) -> None:
    """Wrap an engine stage so each call appends (stage, segment text, start, end)."""
    original = getattr(engine, stage)

    def timed(segment: str, *args: object) -> object:
        before(segment)
        start = time.perf_counter()
        try:
            return original(segment, *args)
        finally:
            log.append((stage, segment, start, time.perf_counter()))

    monkeypatch.setattr(engine, stage, timed)


@pytest.mark.slow
def test_overlapped_stream_equals_the_sequential_one(
    pipelined: Engine, sequential: Engine, voice, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = SynthesisOptions(seed=11)
    expected = list(sequential.synthesize(LONG_TEXT, voice.features, options))
    assert len(expected) >= 3

    llm_started = {text: threading.Event() for text in (c.text for c in expected)}

    def note_llm(segment: str) -> None:
        llm_started[segment].set()

    def wait_for_next_llm(segment: str) -> None:
        """Flow of segment n may only finish once the LLM of n+1 has started (fails when not pipelined)."""
        index = [c.text for c in expected].index(segment)
        if index + 1 < len(expected):
            assert llm_started[expected[index + 1].text].wait(30), "the next segment's LLM did not start"

    log: list[tuple[str, str, float, float]] = []
    record(pipelined, monkeypatch, "_llm_request", log, note_llm)
    record(pipelined, monkeypatch, "_voice", log, wait_for_next_llm)
    chunks = list(pipelined.synthesize(LONG_TEXT, voice.features, options))

    assert [(c.segment_index, c.segment_count, c.text) for c in chunks] == [
        (c.segment_index, c.segment_count, c.text) for c in expected
    ]
    for got, want in zip(chunks, expected, strict=True):
        assert np.array_equal(got.pcm, want.pcm)
    assert pipelined.jobs.stats().running == 0


@pytest.mark.slow
def test_concurrent_requests_stay_apart_and_deterministic(
    pipelined: Engine, voice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their LLM segments batch together, but with --concurrency 1 their flow and vocoder never interleave,
    and each request gets the audio it gets alone."""
    texts = [LONG_TEXT, "A cat sat. " * 20]
    alone = [whole_narration(pipelined, t, voice.features, SynthesisOptions(seed=3)) for t in texts]
    segments = [set(pipelined.text_frontend.synthesis_segments(t)) for t in texts]
    log: list[tuple[str, str, float, float]] = []
    record(pipelined, monkeypatch, "_voice", log)

    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(
            pool.map(lambda t: whole_narration(pipelined, t, voice.features, SynthesisOptions(seed=3)), texts)
        )
    for got, want in zip(together, alone, strict=True):
        assert np.array_equal(got, want)
    owner = [0 if segment in segments[0] else 1 for _, segment, _, _ in log]
    for (_, _, start_a, end_a), a in zip(log, owner, strict=True):
        for (_, _, start_b, end_b), b in zip(log, owner, strict=True):
            if a != b:
                assert end_a <= start_b or end_b <= start_a, "two requests ran flow and vocoder at once"


@pytest.mark.slow
def test_a_reader_that_stops_early_frees_the_slot_of_the_segment_decoding_ahead(
    pipelined: Engine, voice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next segment's LLM decodes while this segment's flow runs (the overlap), and a reader that stops
    after the first chunk takes it out of the batch: it is held mid-decoding until the stream is closed,
    runs no step after that one, and the engine serves on."""
    steps: list[int] = []  # the live batch size of every decode step
    in_flow, ahead, release = threading.Event(), threading.Event(), threading.Event()
    decode = BatchScheduler._decode_step

    def hooked(scheduler: BatchScheduler) -> None:
        steps.append(len(scheduler._live))
        decode(scheduler)
        if in_flow.is_set() and not ahead.is_set():  # segment 1's LLM was done before its flow started
            ahead.set()
            assert release.wait(60)

    def flow_waits_for_the_next_llm(segment: str) -> None:
        in_flow.set()
        assert ahead.wait(60), "the next segment's LLM did not decode during this segment's flow"

    monkeypatch.setattr(BatchScheduler, "_decode_step", hooked)
    record(pipelined, monkeypatch, "_voice", [], flow_waits_for_the_next_llm)
    before = pipelined.scheduler.stats().cancelled
    stream = pipelined.synthesize(LONG_TEXT, voice.features, SynthesisOptions(seed=1))
    assert next(stream).segment_index == 0
    held_at = len(steps)  # segment 2 is live, its step held
    stream.close()
    release.set()
    assert len(whole_narration(pipelined, "Still serving.", voice.features, SynthesisOptions(seed=1))) > 0
    stats = pipelined.scheduler.stats()
    assert stats.cancelled - before == 1 and (stats.running, stats.waiting) == (0, 0)
    assert pipelined.jobs.stats().running == 0
    assert set(steps[held_at:]) == {1}  # only the later narration's own steps: segment 2 left at once


def test_fast_path_settings_default_to_cuda_only(engine: Engine, tiny_checkpoint: Path) -> None:
    """On a CPU: no compile (slow to build, no gain) and no overlap (the stages share the cores)."""
    assert (engine.compile_llm, engine.overlap) == (False, False)
    forced = Engine.load(
        tiny_checkpoint, device="cpu", dtype="float32", whisper_model="tiny-random", compile_llm=True, overlap=True
    )
    assert (forced.compile_llm, forced.overlap) == (True, True)
