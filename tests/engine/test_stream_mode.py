"""Stream mode of Engine.synthesize: a segment's audio in chunks while its LLM still decodes.

What the LLM has done when a chunk comes out is observed from a gate on the scheduler's decode step (the
LLM waits there until the test lets it go on), so nothing here depends on timing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import numpy as np
import pytest

from decode_gate import DecodeGate
from glmtts_mcp.engine.runtime.pipeline import Engine
from glmtts_mcp.engine.types import NarrationCancelled, SynthesisOptions, VoiceFeatures

TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away into the dark forest."
WAIT_S = 120  # only a bound on a hang


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path, one_torch_thread: None) -> Iterator[Engine]:
    engine = Engine.load(
        tiny_checkpoint,
        device="cpu",
        dtype="float32",
        whisper_model="tiny-random",
        stream_first_block=10,
        stream_first_look_ahead=5,
    )
    yield engine
    engine.unload()


def test_stream_mode_hands_out_audio_before_the_llm_is_done(
    engine: Engine, voice: VoiceFeatures, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = DecodeGate(monkeypatch, at=15)  # the LLM is held after 16 tokens: past the first block (10)
    chunks = engine.synthesize(TEXT, voice, SynthesisOptions(seed=1, stream=True))
    first = next(chunks)
    assert len(first.pcm) > 0 and first.segment_index == 0
    # the gate is shut: the segment's LLM has run at most 15 steps and its sequence is still in the batch
    assert len(gate.steps) <= 15 and gate.scheduler is not None and len(gate.scheduler._live) == 1
    gate.open.set()
    rest = list(chunks)
    assert len(rest) >= 2 and {c.segment_index for c in rest} == {0}
    assert len(gate.steps) > 15


def test_stream_and_offline_speak_the_same_tokens_for_the_same_length(engine: Engine, voice: VoiceFeatures) -> None:
    """The LLM draws the same tokens in both modes; only the flow's blocks differ, so each segment's audio
    has the same length. Offline mode is one chunk per segment."""
    text = "One sentence here. And another one that is a little longer than the first."
    offline = list(engine.synthesize(text, voice, SynthesisOptions(seed=2)))
    stream = list(engine.synthesize(text, voice, SynthesisOptions(seed=2, stream=True)))
    assert [c.segment_index for c in offline] == list(range(offline[0].segment_count))
    assert len(stream) > len(offline)
    for index in range(offline[0].segment_count):
        streamed = np.concatenate([c.pcm for c in stream if c.segment_index == index])
        assert abs(len(streamed) - len(offline[index].pcm)) <= 1  # a crossfade tail may land in the next segment
    assert sum(len(c.pcm) for c in stream) == sum(len(c.pcm) for c in offline)
    again = list(engine.synthesize(text, voice, SynthesisOptions(seed=2, stream=True)))
    assert np.array_equal(np.concatenate([c.pcm for c in again]), np.concatenate([c.pcm for c in stream]))


def test_cancelling_mid_segment_stops_the_llm_at_the_next_step(
    engine: Engine, voice: VoiceFeatures, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = DecodeGate(monkeypatch, at=15)
    cancel = threading.Event()
    chunks = engine.synthesize(TEXT, voice, SynthesisOptions(seed=1, stream=True), cancel=cancel)
    next(chunks)  # mid-segment: the LLM runs up to step 15 and waits there
    assert gate.scheduler is not None
    (entry,) = gate.scheduler._live
    assert gate.waiting.wait(WAIT_S)  # step 15 has begun and is held
    cancel.set()
    gate.open.set()  # step 15 runs (it had begun); the sequence must be gone from the next one on
    with pytest.raises(NarrationCancelled):
        list(chunks)
    assert futures.wait([entry.future], WAIT_S).done  # the scheduler has let the sequence go
    assert all(entry not in live for live in gate.steps[16:])
    assert entry in gate.steps[15]
    assert gate.scheduler.stats().cancelled >= 1


def test_only_a_complete_block_takes_a_job_slot(
    engine: Engine, voice: VoiceFeatures, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens short of a block do no model work, so they must not queue for the job gate behind other
    narrations' flow work: a segment takes one slot per flow call, not one per token."""
    calls: list[int] = []
    flow = engine.models.flow.inference_chunk

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return flow(*args, **kwargs)

    before = engine.jobs.stats().completed
    monkeypatch.setattr(engine.models.flow, "inference_chunk", counted)
    chunks = list(engine.synthesize(TEXT, voice, SynthesisOptions(seed=1, stream=True)))
    segments = len({c.segment_index for c in chunks})
    assert len(calls) >= 2 * segments  # several blocks per segment, so the count below means something
    # a slot per block, and per segment one for its end (the last blocks and the held-back tail)
    assert engine.jobs.stats().completed - before <= len(calls) + segments


@pytest.mark.parametrize("priority", [True, False], ids=["priority", "side-by-side"])
def test_the_llm_batch_waits_for_a_narrations_first_chunk(
    engine: Engine, voice: VoiceFeatures, priority: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With first-chunk priority no decode step starts while the first block's flow runs (a step already
    running may finish); without it the batch decodes on beside the flow. The flow's first call waits
    until the scheduler has had time for several steps, so the difference does not depend on speed."""
    steps_during: list[int] = []
    flow = engine.models.flow.inference_chunk

    def first_call_waits(*args: object, **kwargs: object) -> object:
        if not steps_during:
            before = engine.scheduler.stats().steps
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and engine.scheduler.stats().steps - before < 5:
                time.sleep(0.01)
            steps_during.append(engine.scheduler.stats().steps - before)
        return flow(*args, **kwargs)

    monkeypatch.setattr(engine, "first_chunk_priority", priority)
    monkeypatch.setattr(engine.models.flow, "inference_chunk", first_call_waits)
    chunks = list(engine.synthesize(TEXT, voice, SynthesisOptions(seed=1, stream=True)))
    assert chunks and len(steps_during) == 1
    if priority:
        assert steps_during[0] <= 1
    else:
        assert steps_during[0] >= 5
