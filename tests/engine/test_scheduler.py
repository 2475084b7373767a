"""The LLM batch scheduler: a sequence decodes the same tokens alone or batched with others, new
requests join at the next step, finished ones free their slot at once, and the KV cache is refused
at start when it cannot fit."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from glmtts_mcp.engine.checkpoint.loader import Models, load_models
from glmtts_mcp.engine.models.llm import RasSettings, StepTrace
from glmtts_mcp.engine.runtime import pipeline as pipeline_module
from glmtts_mcp.engine.runtime import scheduler as scheduler_module
from glmtts_mcp.engine.runtime.pipeline import Engine
from glmtts_mcp.engine.runtime.scheduler import BatchScheduler, SpeechRequest
from glmtts_mcp.engine.types import EngineError
from glmtts_mcp.errors import Term

LOGIT_TOLERANCE = 1e-4  # batched kernels may round differently from one-row ones
NEAR_TIE = 1e-3  # a draw whose two candidates differ by less than this in probability may flip


@pytest.fixture(scope="module")
def models(tiny_checkpoint: Path, one_torch_thread: None) -> Models:
    return load_models(tiny_checkpoint, torch.device("cpu"))


def requests(count: int) -> list[Callable[[list[StepTrace]], SpeechRequest]]:
    """Distinct segments: different prompts (voices), text lengths, seeds and sampling settings."""
    made = []
    for i in range(count):
        text = list(range(5 + i, 13 + 3 * i))
        prompt_text = list(range(20 + i, 24 + 2 * i))
        prompt_speech = [(7 * i + j) % 50 for j in range(6 + 5 * i)]
        sampling = RasSettings(top_p=0.8 if i % 2 else 0.6, top_k=25 - i, temperature=1.0 if i % 3 else 0.8)

        def make(
            trace: list[StepTrace],
            text=text,
            prompt_text=prompt_text,
            prompt_speech=prompt_speech,
            sampling=sampling,
            seed=100 + i,
            min_ratio=1.0 + i % 3,
        ) -> SpeechRequest:
            return SpeechRequest(
                text,
                prompt_text,
                prompt_speech,
                sampling,
                torch.Generator().manual_seed(seed),
                min_ratio=min_ratio,
                max_ratio=6.0,
                trace=trace,
            )

        made.append(make)
    return made


def explain_divergence(name: str, alone: list[StepTrace], batched: list[StepTrace]) -> str:
    """Where two decodings of one request part, and whether it was a near-tie (reported, never tolerated)."""
    for step, (a, b) in enumerate(zip(alone, batched, strict=False)):
        if a.sampled != b.sampled:
            probs = a.logp.exp()
            gap = abs(float(probs[a.sampled] - probs[b.sampled]))
            kind = "a near-tie" if gap < NEAR_TIE else "NOT a near-tie (a real difference)"
            return (
                f"{name}: step {step} drew {a.sampled} alone and {b.sampled} batched; their probabilities "
                f"differ by {gap:.2e}: {kind}"
            )
    return f"{name}: {len(alone)} steps alone, {len(batched)} batched"


def run(scheduler: BatchScheduler, made: list[SpeechRequest]) -> list[list[int]]:
    futures = [scheduler.submit(request) for request in made]
    return [future.result(timeout=120) for future in futures]


def test_batched_sequences_get_the_tokens_they_get_alone(models: Models) -> None:
    """Six requests through three slots: admitted as slots free, retired at once, each decoding as alone."""
    made = requests(6)
    alone_traces = [[] for _ in made]
    alone = BatchScheduler(models.llm, max_batch=1, slot_positions=512)
    try:
        expected = [run(alone, [make(trace)])[0] for make, trace in zip(made, alone_traces, strict=True)]
    finally:
        alone.close()
    batched_traces = [[] for _ in made]
    batched = BatchScheduler(models.llm, max_batch=3, slot_positions=512)
    try:
        tokens = run(batched, [make(trace) for make, trace in zip(made, batched_traces, strict=True)])
        stats = batched.stats()
    finally:
        batched.close()
    for i, (got, want) in enumerate(zip(tokens, expected, strict=True)):
        assert got == want, explain_divergence(f"request {i}", alone_traces[i], batched_traces[i])
        for a, b in zip(alone_traces[i], batched_traces[i], strict=True):
            finite = ~torch.isinf(a.logp)
            assert float((a.logp[finite] - b.logp[finite]).abs().max()) <= LOGIT_TOLERANCE
    assert max(stats.batch_sizes) == 3 and (stats.running, stats.waiting) == (0, 0)
    assert stats.tokens == sum(len(t) for t in batched_traces)  # every step of every sequence drew once


def alone_tokens(models: Models, made: list[SpeechRequest]) -> list[list[int]]:
    """Each request decoded by itself, one slot."""
    alone = BatchScheduler(models.llm, max_batch=1, slot_positions=512)
    try:
        return [run(alone, [request])[0] for request in made]
    finally:
        alone.close()


def test_a_prompt_outside_the_vocabulary_fails_its_request_alone(models: Models) -> None:
    """A voice whose features hold a speech id of 10^12 (damaged below the library's checks), batched with
    three sound requests: it is refused with its own sentence, the three get the tokens they get alone."""
    made = requests(4)
    expected = alone_tokens(models, [make([]) for make in made[:3]])
    poisoned = made[3]([])
    poisoned.prompt_speech_ids = [*poisoned.prompt_speech_ids[:-1], 10**12]
    batched = BatchScheduler(models.llm, max_batch=4, slot_positions=512)
    try:
        futures = [batched.submit(make([])) for make in made[:3]]
        bad = batched.submit(poisoned)
        with pytest.raises(EngineError, match=r"outside this model's vocabulary.*clone the voice again") as refused:
            bad.result(timeout=120)
        assert refused.value.argument is Term.VOICE
        assert [future.result(timeout=120) for future in futures] == expected
    finally:
        batched.close()


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_a_sequence_whose_step_raises_fails_alone(models: Models, monkeypatch: pytest.MonkeyPatch, phase: str) -> None:
    """One of four batched sequences makes every forward pass over its slot raise (while its prompt is
    written, or at its third decode step): it fails with that exception, the other three finish with the
    tokens they get alone, and the scheduler goes on serving."""
    made = requests(4)
    expected = alone_tokens(models, [make([]) for make in made[:3]])
    poisoned = made[3]([])
    scheduler = BatchScheduler(models.llm, max_batch=4, slot_positions=512)
    forward = scheduler_module.slot_forward

    def poisoned_slot() -> int | None:
        live = [e.cancel for e in scheduler._live]
        if poisoned.cancel in live:
            return live.index(poisoned.cancel)
        prefilling = scheduler._prefilling
        return len(live) if prefilling is not None and prefilling.cancel is poisoned.cancel else None

    def hooked(model, embeds, cache, first_slot, positions, keys_len=None):
        slot = poisoned_slot()
        if slot is not None and first_slot <= slot < first_slot + embeds.shape[0]:
            in_prefill = embeds.shape[1] > 1 or slot == len(scheduler._live)
            entry = scheduler._live[slot] if slot < len(scheduler._live) else None
            if (phase == "prefill" and in_prefill) or (
                phase == "decode" and entry is not None and entry.sequence.step >= 3
            ):
                raise RuntimeError("poisoned row")
        return forward(model, embeds, cache, first_slot, positions, keys_len)

    monkeypatch.setattr(scheduler_module, "slot_forward", hooked)
    try:
        futures = [scheduler.submit(make([])) for make in made[:2]]
        bad = scheduler.submit(poisoned)
        futures.append(scheduler.submit(made[2]([])))
        with pytest.raises(RuntimeError, match="poisoned row"):
            bad.result(timeout=120)
        assert [future.result(timeout=120) for future in futures] == expected
        again = scheduler.submit(made[0]([]))  # the scheduler still serves
        assert again.result(timeout=120) == expected[0]
        stats = scheduler.stats()
        assert (stats.running, stats.waiting) == (0, 0)
        if phase == "decode":
            assert max(stats.batch_sizes) == 4  # the poisoned one was batched with the others
    finally:
        scheduler.close()


def test_a_new_request_joins_at_the_next_step(models: Models) -> None:
    """A short request submitted while a long one decodes finishes first: it does not wait its turn."""
    scheduler = BatchScheduler(models.llm, max_batch=2, slot_positions=1024)
    try:
        long = SpeechRequest(
            list(range(5, 25)),
            [30, 31],
            [1, 2, 3],
            RasSettings(),
            torch.Generator().manual_seed(1),
            min_ratio=20.0,
            max_ratio=20.0,
        )  # exactly 400 steps
        slow = scheduler.submit(long)
        while scheduler.stats().steps < 3:
            time.sleep(0.01)
        short = scheduler.submit(
            SpeechRequest(
                [5, 6],
                [30, 31],
                [1, 2, 3],
                RasSettings(),
                torch.Generator().manual_seed(2),
                min_ratio=2.0,
                max_ratio=2.0,
            )
        )
        assert len(short.result(timeout=120)) == 4
        assert not slow.done()
        assert len(slow.result(timeout=300)) == 400
        assert scheduler.stats().batch_sizes.get(2, 0) >= 3  # the two decoded together
    finally:
        scheduler.close()


def test_a_cancelled_request_is_dropped_before_its_turn(models: Models) -> None:
    scheduler = BatchScheduler(models.llm, max_batch=1, slot_positions=512)
    try:
        first = scheduler.submit(
            SpeechRequest(
                list(range(5, 15)),
                [30],
                [1],
                RasSettings(),
                torch.Generator().manual_seed(1),
                min_ratio=5.0,
                max_ratio=5.0,
            )
        )
        second = scheduler.submit(SpeechRequest([5, 6], [30], [1], RasSettings(), torch.Generator().manual_seed(1)))
        assert second.cancel()
        assert len(first.result(timeout=120)) == 50
        deadline = time.monotonic() + 30  # the loop takes the cancelled entry off the queue on its next turn
        while scheduler.stats().waiting and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scheduler.stats().waiting == 0 and scheduler.stats().steps == 49
    finally:
        scheduler.close()


def test_a_prompt_longer_than_a_slot_is_refused(models: Models) -> None:
    scheduler = BatchScheduler(models.llm, max_batch=1, slot_positions=16)
    try:
        future = scheduler.submit(SpeechRequest([5] * 10, [30] * 5, [1] * 5, RasSettings(), torch.Generator()))
        with pytest.raises(EngineError, match="KV cache slot holds 16"):
            future.result(timeout=10)
    finally:
        scheduler.close()


def test_the_kv_cache_is_sized_logged_and_refused_when_it_cannot_fit(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="glmtts_mcp.engine.runtime.pipeline"):
        engine = Engine.load(tiny_checkpoint, device="cpu", dtype="float32", whisper_model="tiny-random", max_batch=3)
    stats = engine.scheduler.stats()
    assert (stats.max_batch, stats.slot_positions) == (3, 4096)
    assert "LLM KV cache: 3 slot(s) x 4096 positions" in caplog.text
    monkeypatch.setattr(pipeline_module, "_free_memory_bytes", lambda device: stats.kv_cache_bytes - 1)
    with pytest.raises(EngineError, match=r"--max-batch 3 needs .* lower --max-batch"):
        Engine.load(tiny_checkpoint, device="cpu", dtype="float32", whisper_model="tiny-random", max_batch=3)


def test_a_failing_compiled_step_falls_back_to_eager_once(
    models: Models, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """compile_llm on a machine where compiling or capturing fails: one warning, requests still served."""

    def broken_compile(fn: object, **kwargs: object) -> Callable[..., torch.Tensor]:
        def step(*args: object) -> torch.Tensor:
            raise RuntimeError("CUDA graph capture failed (forced by the test)")

        return step

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: None)
    expected_scheduler = BatchScheduler(models.llm, max_batch=2, slot_positions=512)
    try:
        expected = run(expected_scheduler, [make([]) for make in requests(2)])
    finally:
        expected_scheduler.close()
    scheduler = BatchScheduler(models.llm, max_batch=2, slot_positions=512, compile_step=True)
    try:
        with caplog.at_level(logging.WARNING, logger="glmtts_mcp.engine.runtime.scheduler"):
            assert run(scheduler, [make([]) for make in requests(2)]) == expected
            assert run(scheduler, [make([]) for make in requests(2)]) == expected
    finally:
        scheduler.close()
    warnings = [r for r in caplog.records if "decoding eagerly" in r.getMessage()]
    assert len(warnings) == 1 and "forced by the test" in warnings[0].getMessage()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_batched_step_decodes_like_the_eager_one(
    tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On a GPU: the compiled (CUDA graph, padded to all slots) step gives the eager step's tokens, no fallback."""
    on_gpu = load_models(tiny_checkpoint, torch.device("cuda"))  # the CPU models' linears are oneDNN-packed
    results = {}
    for compiled in (False, True):
        scheduler = BatchScheduler(on_gpu.llm, max_batch=4, slot_positions=512, compile_step=compiled)
        try:
            with caplog.at_level(logging.WARNING, logger="glmtts_mcp.engine.runtime.scheduler"):
                results[compiled] = run(scheduler, [make([]) for make in requests(6)])
        finally:
            scheduler.close()
    assert results[True] == results[False]
    assert "decoding eagerly" not in caplog.text


def test_a_failing_cuda_stream_falls_back_to_the_default_stream(
    models: Models, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """overlap on a machine where the LLM's own stream fails: one warning, the same tokens."""
    expected_scheduler = BatchScheduler(models.llm, max_batch=2, slot_positions=512)
    try:
        expected = run(expected_scheduler, [make([]) for make in requests(2)])
    finally:
        expected_scheduler.close()

    def broken_stream(stream: object) -> object:
        raise RuntimeError("CUDA stream unusable (forced by the test)")

    monkeypatch.setattr(torch.cuda, "stream", broken_stream)
    with caplog.at_level(logging.WARNING, logger="glmtts_mcp.engine.runtime.scheduler"):
        scheduler = BatchScheduler(models.llm, max_batch=2, slot_positions=512, stream=object())  # type: ignore[arg-type]
        try:
            assert run(scheduler, [make([]) for make in requests(2)]) == expected
        finally:
            scheduler.close()
    warnings = [r for r in caplog.records if "default stream" in r.getMessage()]
    assert len(warnings) == 1 and "forced by the test" in warnings[0].getMessage()


def test_a_chunked_prefill_gives_the_tokens_of_a_whole_one(models: Models) -> None:
    """Prompts written a few positions per forward (with others decoding in between) decode as when whole."""
    made = requests(4)
    traces = {chunk: [[] for _ in made] for chunk in (4096, 5)}
    tokens = {}
    for chunk, chunk_traces in traces.items():
        scheduler = BatchScheduler(models.llm, max_batch=2, slot_positions=512, prefill_chunk=chunk)
        try:
            tokens[chunk] = run(scheduler, [make(trace) for make, trace in zip(made, chunk_traces, strict=True)])
        finally:
            scheduler.close()
    for i, (got, want) in enumerate(zip(tokens[5], tokens[4096], strict=True)):
        assert got == want, explain_divergence(f"request {i}", traces[4096][i], traces[5][i])
        for a, b in zip(traces[4096][i], traces[5][i], strict=True):
            finite = ~torch.isinf(a.logp)
            assert float((a.logp[finite] - b.logp[finite]).abs().max()) <= LOGIT_TOLERANCE


@pytest.mark.slow
def test_a_long_prompt_is_prefilled_between_the_others_decode_steps(
    models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a 60-position prompt is written 8 positions at a time, the live sequence keeps decoding."""
    calls: list[str] = []
    forward = scheduler_module.slot_forward

    def recorded(model, embeds, cache, first_slot, positions, keys_len=None):
        calls.append(f"slot {first_slot}: {embeds.shape[1]} position(s)")
        return forward(model, embeds, cache, first_slot, positions, keys_len)

    monkeypatch.setattr(scheduler_module, "slot_forward", recorded)
    scheduler = BatchScheduler(models.llm, max_batch=2, slot_positions=1024, prefill_chunk=8)
    try:
        first = scheduler.submit(
            SpeechRequest(
                list(range(5, 25)),
                [30, 31],
                [1, 2, 3],
                RasSettings(),
                torch.Generator().manual_seed(1),
                min_ratio=10.0,
                max_ratio=10.0,
            )
        )
        while scheduler.stats().steps < 2:
            time.sleep(0.01)
        long_prompt = SpeechRequest(
            list(range(5, 15)),
            [30, 31],
            [j % 50 for j in range(48)],
            RasSettings(),
            torch.Generator().manual_seed(2),
            min_ratio=1.0,
            max_ratio=1.0,
        )
        assert len(scheduler.submit(long_prompt).result(timeout=120)) == 10
        assert len(first.result(timeout=120)) == 200
    finally:
        scheduler.close()
    chunks = [i for i, call in enumerate(calls) if call.startswith("slot 1")]  # the long prompt's slot
    assert [calls[i] for i in chunks] == ["slot 1: 8 position(s)"] * 7 + ["slot 1: 5 position(s)"]  # 2+10+1+48
    between = calls[chunks[0] : chunks[-1]]
    assert between.count("slot 0: 1 position(s)") == 7  # one decode step of the live sequence after each chunk


def test_a_sequence_finishing_during_a_chunked_prefill_hands_its_slot_over(
    models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finishes while B's prompt is half written: B's written positions move down into A's slot, and B
    decodes the tokens it decodes alone."""

    def long_prompt() -> SpeechRequest:
        return SpeechRequest(
            list(range(5, 15)),
            [30, 31],
            [j % 50 for j in range(48)],
            RasSettings(),
            torch.Generator().manual_seed(3),
            min_ratio=3.0,
            max_ratio=3.0,
        )

    alone = BatchScheduler(models.llm, max_batch=2, slot_positions=512, prefill_chunk=5)
    try:
        expected = alone.submit(long_prompt()).result(timeout=120)
    finally:
        alone.close()
    moves: list[tuple[int, int, int]] = []
    scheduler = BatchScheduler(models.llm, max_batch=2, slot_positions=512, prefill_chunk=5)
    move_slot = scheduler.cache.move_slot
    monkeypatch.setattr(scheduler.cache, "move_slot", lambda s, t, n: moves.append((s, t, n)) or move_slot(s, t, n))
    try:
        short = scheduler.submit(
            SpeechRequest(
                [5, 6], [30, 31], [1, 2], RasSettings(), torch.Generator().manual_seed(4), min_ratio=1.5, max_ratio=1.5
            )
        )
        got = scheduler.submit(long_prompt()).result(timeout=120)
        assert len(short.result(timeout=10)) == 3
    finally:
        scheduler.close()
    assert got == expected
    assert len(moves) == 1 and moves[0][:2] == (1, 0) and 0 < moves[0][2] < 61  # moved while half written


@pytest.mark.slow
def test_the_padded_step_leaves_a_prompt_being_prefilled_intact(
    models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiled step runs over every slot, padding rows included; their writes must miss the slot where
    a prompt is being written in chunks. Run here with torch.compile as the identity (the padding logic
    on a CPU): the tokens equal the eager step's."""
    made = requests(4)
    eager = BatchScheduler(models.llm, max_batch=2, slot_positions=512, prefill_chunk=5)
    try:
        expected = run(eager, [make([]) for make in made])
    finally:
        eager.close()
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: None)
    padded = BatchScheduler(models.llm, max_batch=2, slot_positions=512, prefill_chunk=5, compile_step=True)
    try:
        assert run(padded, [make([]) for make in made]) == expected
    finally:
        padded.close()
