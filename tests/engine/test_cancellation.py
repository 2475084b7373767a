"""Stopping a narration while its LLM decodes: a cancelled sequence leaves the batch at the scheduler's
next decode step and frees its slot, the others decode as they would alone, and `Engine.synthesize`
ends with NarrationCancelled (or, closed, simply ends) without further flow or vocoder work.

Every step is observed from a hook on the scheduler's decode step, so nothing here waits on timing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from pathlib import Path

import pytest
import torch

from glmtts_mcp.engine.checkpoint.loader import Models, load_models
from glmtts_mcp.engine.models.llm import RasSettings
from glmtts_mcp.engine.runtime.pipeline import Engine
from glmtts_mcp.engine.runtime.scheduler import BatchScheduler, SpeechRequest
from glmtts_mcp.engine.types import NarrationCancelled, SynthesisOptions, VoiceFeatures

LONG_TEXT = "One. Two. Three. Four. " * 12  # three segments
WAIT_S = 120  # only a bound on a hang: every wait below ends on an event the code under test sets


@pytest.fixture(scope="module")
def models(tiny_checkpoint: Path, one_torch_thread: None) -> Models:
    return load_models(tiny_checkpoint, torch.device("cpu"))


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path, one_torch_thread: None) -> Iterator[Engine]:
    """Pipelined (as on CUDA): the next segment's LLM decodes while this one's flow runs."""
    engine = Engine.load(tiny_checkpoint, device="cpu", dtype="float32", whisper_model="tiny-random", overlap=True)
    yield engine
    engine.unload()


class DecodeSteps:
    """A hook on every scheduler's decode step: the live batch size of each step, and an optional action."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        self.after: Callable[[int], None] = lambda step: None  # called with the step's index once it has run
        decode = BatchScheduler._decode_step

        def hooked(scheduler: BatchScheduler) -> None:
            self.sizes.append(len(scheduler._live))  # the batch this step runs over
            decode(scheduler)
            self.after(len(self.sizes) - 1)

        monkeypatch.setattr(BatchScheduler, "_decode_step", hooked)


def segment(seed: int, steps: int, cancel: threading.Event | None = None) -> SpeechRequest:
    """A segment of 10 text ids that decodes exactly `steps` tokens."""
    ratio = steps / 10
    return SpeechRequest(
        list(range(5, 15)),
        [30, 31],
        [1, 2, 3],
        RasSettings(),
        torch.Generator().manual_seed(seed),
        min_ratio=ratio,
        max_ratio=ratio,
        cancel=cancel or threading.Event(),
    )


def test_a_cancelled_sequence_leaves_the_batch_at_the_next_step(
    models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A (slot 0) and B (slot 1) decode together; A's event is set during step 10: step 11 runs B alone
    (moved into slot 0), A's future ends with CancelledError, and B's tokens are those it decodes alone."""
    alone = BatchScheduler(models.llm, max_batch=1, slot_positions=512)
    try:
        expected = alone.submit(segment(2, 80)).result(timeout=WAIT_S)
    finally:
        alone.close()
    steps = DecodeSteps(monkeypatch)
    cancel_a = threading.Event()
    steps.after = lambda step: cancel_a.set() if step == 10 else None
    scheduler = BatchScheduler(models.llm, max_batch=2, slot_positions=512)
    try:
        a = scheduler.submit(segment(1, 400, cancel_a))
        b = scheduler.submit(segment(2, 80))
        assert b.result(timeout=WAIT_S) == expected
        with pytest.raises(CancelledError):
            a.result(timeout=WAIT_S)
        stats = scheduler.stats()
    finally:
        scheduler.close()
    assert steps.sizes[0] == 1 and set(steps.sizes[1:11]) == {2}  # A alone, then both until A's cancel
    assert set(steps.sizes[11:]) == {1}  # from the very next step on, B alone
    assert len(steps.sizes) == 1 + 79  # B's 80 draws: one after its prefill, 79 from decode steps
    assert (stats.running, stats.waiting, stats.cancelled) == (0, 0, 1)


def test_a_cancelled_request_never_takes_a_slot(models: Models, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request whose event is set while it waits is dropped from the queue: it never prefills or decodes."""
    steps = DecodeSteps(monkeypatch)
    scheduler = BatchScheduler(models.llm, max_batch=1, slot_positions=512)
    try:
        first = scheduler.submit(segment(1, 50))
        cancelled = threading.Event()
        cancelled.set()
        second = scheduler.submit(segment(2, 50, cancelled))
        assert len(first.result(timeout=WAIT_S)) == 50
        with pytest.raises(CancelledError):
            second.result(timeout=WAIT_S)
        stats = scheduler.stats()
    finally:
        scheduler.close()
    assert len(steps.sizes) == 49 and (stats.waiting, stats.cancelled) == (0, 1)


def settle(engine: Engine) -> None:
    """Run a 2-token request (one decode step) through the engine's scheduler: it finishes only after the
    scheduler's next loop turn, where a set cancel event has taken its sequence out."""
    assert len(engine.scheduler.submit(segment(3, 2)).result(timeout=WAIT_S)) == 2


def count_voice_calls(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, during: Callable[[], None] = lambda: None
) -> list[str]:
    """Record each flow + vocoder call's segment; `during` runs inside the call, before the flow."""
    calls: list[str] = []
    voice = engine._voice  # the flow + vocoder stage

    def counted(segment: str, *args: object) -> object:
        calls.append(segment)
        during()
        return voice(segment, *args)

    monkeypatch.setattr(engine, "_voice", counted)
    return calls


def test_cancel_while_the_first_segment_decodes(
    engine: Engine, voice: VoiceFeatures, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set during decode step 3: no step 4, no flow or vocoder, NarrationCancelled, the slot free."""
    before = engine.scheduler.stats().cancelled
    cancel = threading.Event()
    steps = DecodeSteps(monkeypatch)
    steps.after = lambda step: cancel.set() if step == 3 else None
    flows = count_voice_calls(engine, monkeypatch)
    with pytest.raises(NarrationCancelled):
        list(engine.synthesize(LONG_TEXT, voice, SynthesisOptions(seed=1), cancel=cancel))
    stats = engine.scheduler.stats()
    assert len(steps.sizes) == 4 and flows == []
    assert (stats.running, stats.waiting, stats.cancelled - before) == (0, 0, 1)


def test_cancel_while_the_next_segment_decodes_ahead(
    engine: Engine, voice: VoiceFeatures, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set while segment 1's flow runs and segment 2 decodes ahead: segment 2 leaves the batch at the next
    step, the finished flow's chunk is not handed out, and no other flow runs."""
    before = engine.scheduler.stats().cancelled
    cancel = threading.Event()
    steps = DecodeSteps(monkeypatch)
    in_flow, ahead_decoding = threading.Event(), threading.Event()
    set_at: list[int] = []

    def after(step: int) -> None:
        if in_flow.is_set() and not ahead_decoding.is_set():
            ahead_decoding.set()  # a step of segment 2 has run (segment 1's LLM was done before its flow)

    def cancel_once_ahead_decodes() -> None:
        if not in_flow.is_set():
            in_flow.set()
            assert ahead_decoding.wait(WAIT_S)
            set_at.append(len(steps.sizes))
            cancel.set()

    steps.after = after
    flows = count_voice_calls(engine, monkeypatch, cancel_once_ahead_decodes)
    stream = engine.synthesize(LONG_TEXT, voice, SynthesisOptions(seed=1), cancel=cancel)
    with pytest.raises(NarrationCancelled):
        next(stream)
    settle(engine)
    stats = engine.scheduler.stats()
    assert len(flows) == 1
    # at most the step under way when the event was set, then the settling request's one step, alone
    assert steps.sizes[set_at[0] :] in ([1], [1, 1])
    assert (stats.running, stats.waiting, stats.cancelled - before) == (0, 0, 1)


def test_closing_the_stream_frees_the_slot_of_the_segment_decoding_ahead(
    engine: Engine, voice: VoiceFeatures, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that stops after the first chunk: segment 2, held mid-decoding by the hook until the stream
    is closed, runs no step after the one it was held in, and its slot is free for the next narration."""
    before = engine.scheduler.stats().cancelled
    steps = DecodeSteps(monkeypatch)
    in_flow, held, release = threading.Event(), threading.Event(), threading.Event()

    def after(step: int) -> None:
        if in_flow.is_set() and not held.is_set():
            held.set()
            assert release.wait(WAIT_S)

    steps.after = after
    count_voice_calls(engine, monkeypatch, in_flow.set)
    stream = engine.synthesize(LONG_TEXT, voice, SynthesisOptions(seed=1))
    first = next(stream)
    assert first.segment_index == 0
    assert held.wait(WAIT_S)  # segment 2 is in the batch, its step held
    held_at = len(steps.sizes)
    stream.close()
    release.set()
    settle(engine)
    stats = engine.scheduler.stats()
    assert steps.sizes[held_at:] == [1]  # the settling request's one decode step, alone: segment 2 had left
    assert (stats.running, stats.waiting, stats.cancelled - before) == (0, 0, 1)
