"""Continuous batching of the LLM across requests: one forward pass per step for every live sequence.

LLM decoding is memory-bound: a step over eight sequences reads the same weights as a step over one.
The scheduler owns a `SlotKVCache` with `max_batch` slots. Its thread loops: admit a waiting sequence
into a free slot and run one chunk of its prompt (`prefill_chunk` positions: a 30 s voice prompt is
about 750 positions, and prefilling it whole would stall everyone else's decoding for its whole
length), run one decode step for all live slots at their own positions, let each sequence sample from
its row, and retire finished ones at once (the last live slot moves into the hole, so live rows stay
packed at 0..n-1 and attention reads a view, not a gather; the prefilling sequence sits just after them).
So a new request starts within a few steps instead of after the others' narrations. A request whose
`cancel` event is set leaves at the loop's next turn, before the next forward pass: waiting, prefilling
or decoding, its slot is freed and its future ends with `concurrent.futures.CancelledError`.

One request's fault never fails the others in its batch: its prompt ids are checked against the
vocabulary when it is submitted (a damaged voice's features are refused with their own sentence, before
any forward pass), a failing prefill chunk fails only the prompt it writes, a failing draw only its own
sequence, and when a batched decode step raises, each live row is run again alone at its own slot: a row
that fails alone leaves with its own exception, the others go on with the logits they would have had.

Each sequence keeps its own `SpeechSequence` (generator, RAS window, stop rules), so its tokens are
the same alone or in a batch, up to the float rounding of batched kernels (see tests/engine/test_scheduler.py).

The seam: `LLMBackend` is all the engine uses (`submit` a `SpeechRequest`, get a future of speech
tokens, and each token as it is drawn through the request's `on_token`; `paused`; `stats`; `close`). A
remote backend (e.g. a vLLM server running the Llama with RAS as a logits processor and the request's
seed) could stand in by implementing these methods.

`paused` holds the batch for work whose latency matters more than the batch's next tokens: stream mode
makes a narration's first chunk (its first flow + vocoder call) under it, the way LLM servers run a new
request's prefill before the others' next decode step. On a CPU the flow and a decode step share the same
cores, so running them side by side made the first chunk take twice as long (18.5 s against 10.1 s alone
at the real size, benchmarks/README.md); the hold costs the batch that chunk's length, once per narration.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import torch

from glmtts_mcp.engine.models.llm import GLMTTSLLM, Draws, RasSettings, SpeechSequence, StepTrace, input_embedding
from glmtts_mcp.engine.models.static_cache import SlotKVCache, slot_forward
from glmtts_mcp.engine.types import EngineError
from glmtts_mcp.errors import Term

log = logging.getLogger(__name__)

# Prompt positions per prefill forward. Each chunk delays the live sequences' next step by its own
# cost; smaller chunks re-read the weights more often. Measured in benchmarks/README.md (prefill stall).
PREFILL_CHUNK = 256


@dataclass
class SpeechRequest:
    """One segment's LLM work: what to say, the voice/history prompt, and how to sample it.

    `generator` is advanced by the draws (the engine goes on drawing the flow's noise from it) unless
    `draws` replaces it (the parity runner's recorded picks). Setting `cancel`, from any thread, ends the
    sequence at the scheduler's next step with `CancelledError`.
    """

    text_ids: list[int]
    prompt_text_ids: list[int]
    prompt_speech_ids: list[int]
    sampling: RasSettings
    generator: torch.Generator
    min_ratio: float = 2.0
    max_ratio: float = 20.0
    trace: list[StepTrace] | None = None  # receives each step's log-probs and picks (parity checks, debugging)
    draws: Draws | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    # called on the scheduler's thread with each speech token (id - ats) as it is drawn (chunked streaming);
    # it must be quick and must not raise: the whole batch waits for it
    on_token: Callable[[int], None] | None = None
    # filled by the backend before the future resolves: what changed the tokens (a length cut)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SchedulerStats:
    """What cache_stats shows of the scheduler."""

    max_batch: int
    slot_positions: int
    kv_cache_bytes: int
    running: int
    waiting: int
    steps: int
    tokens: int
    tokens_per_s: float  # generated tokens per second of decoding (prefills included), since start
    batch_sizes: dict[int, int]  # batch size -> decode steps run at that size
    cancelled: int  # sequences ended by their request's cancel event or a cancelled future, since start


class LLMBackend(Protocol):
    """What the engine needs from whatever runs the LLM (this process's scheduler, or later a server)."""

    def submit(self, request: SpeechRequest) -> Future[list[int]]:
        """Queue a segment; the future gives its speech tokens (id - ats, eoa excluded), or ends with
        CancelledError once `request.cancel` is set (its slot freed before the next step)."""

    def paused(self) -> AbstractContextManager[None]:
        """While inside, no prefill chunk or decode step starts (one already running finishes)."""

    def stats(self) -> SchedulerStats: ...

    def close(self) -> None:
        """Stop after the sequences in flight; later submits fail."""


@dataclass
class _Live:
    sequence: SpeechSequence
    future: Future[list[int]]
    cancel: threading.Event
    on_token: Callable[[int], None] | None = None
    length: int = 0  # positions written in the slot
    next_id: int = 0  # the id to feed at the next decode step


@dataclass
class _Counters:
    steps: int = 0
    tokens: int = 0
    cancelled: int = 0
    busy_s: float = 0.0
    batch_sizes: Counter[int] = field(default_factory=Counter)


class BatchScheduler:
    """The in-process `LLMBackend`: one thread decodes every live sequence together."""

    def __init__(
        self,
        llm: GLMTTSLLM,
        max_batch: int,
        slot_positions: int,
        stream: torch.cuda.Stream | None = None,
        compile_step: bool = False,
        prefill_chunk: int = PREFILL_CHUNK,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if prefill_chunk < 1:
            raise ValueError(f"prefill_chunk must be at least 1, got {prefill_chunk}")
        self.llm = llm
        self.max_batch = max_batch
        self.prefill_chunk = prefill_chunk
        self.cache = SlotKVCache(llm.model, max_batch, slot_positions)
        self._embedding = input_embedding(llm.model).weight
        self._vocab = self._embedding.shape[0]
        self._stream = stream
        self._step = _compiled_step(compile_step)
        self._waiting: deque[_Live] = deque()
        self._live: list[_Live] = []
        self._prefilling: _Live | None = None  # its prompt is being written into slot len(self._live)
        self._cond = threading.Condition()
        self._closed = False
        self._pauses = 0  # `paused` blocks open: no step starts while above 0
        self._counters = _Counters()
        self._thread = threading.Thread(target=self._run, name="glmtts-llm-batch", daemon=True)
        self._thread.start()

    # --- the interface ------------------------------------------------------------------------

    def submit(self, request: SpeechRequest) -> Future[list[int]]:
        future: Future[list[int]] = Future()
        sequence = self.llm.sequence(
            request.text_ids,
            request.prompt_text_ids,
            request.prompt_speech_ids,
            sampling=request.sampling,
            generator=request.generator,
            draws=request.draws,
            min_ratio=request.min_ratio,
            max_ratio=request.max_ratio,
            trace=request.trace,
            warnings=request.warnings,
        )
        out_of_range = [i for i in sequence.prompt if not 0 <= i < self._vocab]
        if out_of_range:
            future.set_exception(
                EngineError(
                    f"the features of this {{voice}} hold token id {out_of_range[0]}, outside this model's vocabulary "
                    f"(0..{self._vocab - 1}): its features are damaged or were made by another checkpoint",
                    "clone the voice again from its reference clip ({clone_voice})",
                    argument=Term.VOICE,
                )
            )
            return future
        room = self.cache.positions - len(sequence.prompt)
        if room < 1:
            future.set_exception(
                EngineError(
                    f"the LLM prompt has {len(sequence.prompt)} tokens but a KV cache slot holds "
                    f"{self.cache.positions}: use a shorter reference clip or shorter text"
                )
            )
            return future
        sequence.limit_steps(room)
        if sequence.done:
            future.set_result([])
            return future
        with self._cond:
            if self._closed:
                future.set_exception(EngineError("the LLM scheduler is shut down (the model was unloaded): retry"))
                return future
            self._waiting.append(_Live(sequence, future, request.cancel, request.on_token))
            self._cond.notify_all()
        return future

    @contextmanager
    def paused(self) -> Iterator[None]:
        with self._cond:
            self._pauses += 1
        try:
            yield
        finally:
            with self._cond:
                self._pauses -= 1
                self._cond.notify_all()

    def stats(self) -> SchedulerStats:
        with self._cond:
            c = self._counters
            return SchedulerStats(
                max_batch=self.max_batch,
                slot_positions=self.cache.positions,
                kv_cache_bytes=SlotKVCache.bytes_needed(
                    self.llm.model.config, self.max_batch, self.cache.positions, self._embedding.dtype
                ),
                running=len(self._live) + (self._prefilling is not None),
                waiting=len(self._waiting),
                steps=c.steps,
                tokens=c.tokens,
                tokens_per_s=c.tokens / c.busy_s if c.busy_s > 0 else 0.0,
                batch_sizes=dict(sorted(c.batch_sizes.items())),
                cancelled=c.cancelled,
            )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    # --- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        with ExitStack() as stack, torch.inference_mode():
            self._enter_stream(stack)
            while True:
                with self._cond:
                    self._cond.wait_for(
                        lambda: (
                            self._closed or (not self._pauses and bool(self._waiting or self._live or self._prefilling))
                        )
                    )
                    cancelled = self._drop_cancelled()
                    done = self._closed and not self._waiting and not self._live and self._prefilling is None
                    while not done and self._prefilling is None and self._waiting and len(self._live) < self.max_batch:
                        entry = self._waiting.popleft()
                        # a request whose reader went away before its turn is dropped (its future was cancelled)
                        if entry.future.set_running_or_notify_cancel():
                            self._prefilling = entry
                        else:
                            self._counters.cancelled += 1
                for entry in cancelled:
                    entry.future.set_exception(CancelledError("the request was cancelled while it was in the batch"))
                if done:
                    return
                start = time.perf_counter()
                try:
                    if self._prefilling is not None:
                        self._guarded_prefill()
                    if self._live:
                        self._decode_step()
                except Exception as exc:  # a fault outside any one sequence fails them all, never the thread
                    log.exception("LLM batch step failed")
                    with self._cond:
                        failed = self._live + ([self._prefilling] if self._prefilling is not None else [])
                        self._live, self._prefilling = [], None
                    for entry in failed:
                        if not entry.future.done():
                            entry.future.set_exception(exc)
                with self._cond:
                    self._counters.busy_s += time.perf_counter() - start

    def _drop_cancelled(self) -> list[_Live]:
        """Take every entry whose cancel event is set out of the queue, the prefill and the live slots.

        Called under the lock before the next forward pass. A waiting entry's future is cancelled here;
        the running ones are returned, for their futures to end outside the lock.
        """
        for entry in [e for e in self._waiting if e.cancel.is_set()]:
            self._waiting.remove(entry)
            entry.future.cancel()
            self._counters.cancelled += 1
        running = [e for e in self._live if e.cancel.is_set()]
        if self._prefilling is not None and self._prefilling.cancel.is_set():
            running.append(self._prefilling)
            self._prefilling = None  # its slot after the live ones is simply written over
        for entry in running:
            if entry in self._live:
                self._release(entry)
        self._counters.cancelled += len(running)
        return running

    def _release(self, entry: _Live) -> None:
        """Free a live entry's slot (under the lock): the last live slot moves into the hole, so the live
        rows stay packed, and a prompt being prefilled after them moves down one slot with them."""
        slot = self._live.index(entry)
        last = len(self._live) - 1
        if slot != last:
            self.cache.move_slot(last, slot, self._live[last].length)
            self._live[slot] = self._live.pop()
        else:
            self._live.pop()
        if self._prefilling is not None and self._prefilling.length:
            self.cache.move_slot(last + 1, last, self._prefilling.length)

    def _enter_stream(self, stack: ExitStack) -> None:
        """Decode on the LLM's own CUDA stream (overlapping the flow on the default one), if it works.

        A stream that cannot be entered costs the overlap for this process, with one warning, never a
        request (the CI runs on CPUs; bash benchmarks/gpu_check.sh exercises this path on a GPU).
        """
        if self._stream is None:
            return
        try:
            stack.enter_context(torch.cuda.stream(self._stream))
        except Exception as exc:  # any failure of the fast path falls back
            log.warning(
                "the LLM's CUDA stream failed (%s: %s); decoding on the default stream from now on",
                type(exc).__name__,
                exc,
            )

    def _guarded_prefill(self) -> None:
        """A prefill chunk whose failure fails its own prompt only: it writes the slot after the live
        ones, which no live sequence reads."""
        entry = self._prefilling
        assert entry is not None
        try:
            self._prefill_chunk()
        except Exception as exc:  # one request's fault, never the thread's or the batch's
            log.exception("an LLM prefill failed; its request fails alone")
            with self._cond:
                if self._prefilling is entry:
                    self._prefilling = None
            self._fail(entry, exc)

    def _prefill_chunk(self) -> None:
        """The next `prefill_chunk` positions of the admitted prompt into the slot after the live ones;
        after the last chunk the sequence draws its first token and joins the live ones."""
        entry = self._prefilling
        assert entry is not None
        prompt = entry.sequence.prompt
        begin, end = entry.length, min(len(prompt), entry.length + self.prefill_chunk)
        device = self._embedding.device
        embeds = self.llm.model.get_input_embeddings()(torch.tensor([prompt[begin:end]], device=device))
        positions = torch.arange(begin, end, device=device)[None]
        logits = slot_forward(self.llm.model, embeds, self.cache, len(self._live), positions)
        entry.length = end
        if end < len(prompt):
            return
        with self._cond:
            self._live.append(entry)
            self._prefilling = None
        self._sampled([(entry, logits[0])])

    def _decode_step(self) -> None:
        """One token for every live sequence, in one forward pass; if it raises, row by row (`_rows_alone`)."""
        live = list(self._live)
        ids = torch.tensor([e.next_id for e in live], device=self._embedding.device)
        positions = torch.tensor([[e.length] for e in live], device=self._embedding.device)
        embeds = self._embedding[ids][:, None]
        failed: list[tuple[_Live, Exception]] = []
        try:
            rows = list(zip(live, self._step(self.llm.model, embeds, self.cache, positions), strict=True))
        except Exception:
            log.exception("an LLM batch step of %d sequence(s) failed; running each alone to find the fault", len(live))
            rows, failed = self._rows_alone(live, embeds, positions)
        for entry, _ in rows:
            entry.length += 1  # before a failed row's slot is freed: a moved slot keeps its new position
        for entry, exc in failed:
            self._fail(entry, exc)
        with self._cond:
            self._counters.steps += 1
            self._counters.batch_sizes[len(live)] += 1
        self._sampled(rows)

    def _rows_alone(
        self, live: list[_Live], embeds: torch.Tensor, positions: torch.Tensor
    ) -> tuple[list[tuple[_Live, torch.Tensor]], list[tuple[_Live, Exception]]]:
        """Each live row's step run alone at its own slot (a row writes only its own slot's keys, so the
        failed batch left nothing the retry reads): the rows that succeed and those that fail alone."""
        rows: list[tuple[_Live, torch.Tensor]] = []
        failed: list[tuple[_Live, Exception]] = []
        for slot, entry in enumerate(live):
            try:
                logits = slot_forward(
                    self.llm.model, embeds[slot : slot + 1], self.cache, slot, positions[slot : slot + 1]
                )
            except Exception as exc:  # this row's own fault
                log.error(
                    "an LLM sequence failed alone (%s: %s); its request fails, the others go on",
                    type(exc).__name__,
                    exc,
                )
                failed.append((entry, exc))
            else:
                rows.append((entry, logits[0]))
        return rows, failed

    def _sampled(self, rows: list[tuple[_Live, torch.Tensor]]) -> None:
        """Let each sequence draw from its row; finished ones leave their slot at once, and one whose draw
        raises leaves with that exception."""
        finished: list[_Live] = []
        failed: list[tuple[_Live, Exception]] = []
        for entry, logits in rows:
            try:
                chosen = entry.sequence.push(logits)
            except Exception as fault:  # this sequence's own fault
                log.exception("an LLM sequence's draw failed; its request fails, the others go on")
                failed.append((entry, fault))
                continue
            if chosen is None:
                finished.append(entry)
            else:
                entry.next_id = chosen
                if entry.on_token is not None:
                    entry.on_token(chosen - entry.sequence.ats)
        with self._cond:
            self._counters.tokens += len(rows) - len(failed)
            for entry in finished:
                self._release(entry)
        for entry in finished:
            entry.future.set_result(entry.sequence.tokens)
        for entry, error in failed:
            self._fail(entry, error)

    def _fail(self, entry: _Live, exc: Exception) -> None:
        """End one sequence with `exc`: its slot is freed (if it has one) and the others are untouched."""
        with self._cond:
            if entry in self._live:
                self._release(entry)
        if not entry.future.done():
            entry.future.set_exception(exc)


def _compiled_step(compile_step: bool):  # a callable with slot_forward's decode signature
    """The decode step: eager over the live rows, or (CUDA graphs) compiled over all slots.

    A compile or capture failure falls back to the eager step for this process, with one warning.
    """

    def eager(model, embeds, cache, positions):
        return slot_forward(model, embeds, cache, 0, positions)

    if not compile_step:
        return eager
    compiled = torch.compile(slot_forward, fullgraph=True, mode="reduce-overhead")
    state = {"failed": False}

    def padded(model, embeds, cache, positions):
        if state["failed"]:
            return eager(model, embeds, cache, positions)
        n = embeds.shape[0]
        full_embeds = torch.zeros((cache.slots, 1, embeds.shape[-1]), dtype=embeds.dtype, device=embeds.device)
        full_embeds[:n] = embeds
        # the padding rows write their (discarded) keys at the last position, which no sequence reaches
        # (a slot's room ends one short of it): position 0 may hold a prompt being prefilled in chunks
        full_positions = torch.full(
            (cache.slots, 1), cache.positions - 1, dtype=positions.dtype, device=positions.device
        )
        full_positions[:n] = positions
        try:
            torch.compiler.cudagraph_mark_step_begin()
            return compiled(model, full_embeds, cache, 0, full_positions, cache.positions)[:n].clone()
        except Exception as exc:  # never fail a request over the fast path
            state["failed"] = True
            log.warning(
                "compiling the batched LLM step failed (%s: %s); decoding eagerly from now on", type(exc).__name__, exc
            )
            return eager(model, embeds, cache, positions)

    return padded
