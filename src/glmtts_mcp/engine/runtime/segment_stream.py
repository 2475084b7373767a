"""One segment in stream mode: speech tokens from the LLM batch turned into audio while the LLM still decodes.

The scheduler hands each token to the request's `on_token` (its thread); `TokenFeed` queues them for the
narration's thread, which runs a `ChunkedToken2Wav` block (flow + vocoder, under a job slot) whenever one
is complete and yields the settled audio at once; tokens short of a block take no job slot (they would
queue behind the other narrations' flow work for nothing). The LLM keeps decoding this and the other narrations
meanwhile. When the LLM's future resolves, `on_generated` gets the whole token list (the history of the next
segment needs it, and a length cut's last token never passes through `on_token`), and `finish` settles the rest.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Generator
from concurrent.futures import CancelledError, Future
from contextlib import AbstractContextManager, nullcontext
from functools import partial

import numpy as np

from glmtts_mcp.engine.models.llm import GLMTTSLLM
from glmtts_mcp.engine.models.token2wav_stream import ChunkedToken2Wav


class TokenFeed:
    """Tokens from the scheduler's thread to the narration's, and an end mark when the LLM is done."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()

    def put(self, token: int) -> None:
        """The request's `on_token`: called on the scheduler's thread, never blocks."""
        self._queue.put(token)

    def watch(self, future: Future[list[int]]) -> None:
        future.add_done_callback(lambda _f: self._queue.put(None))

    def take(self) -> tuple[list[int], bool]:
        """Wait for at least one token or the end; every token queued by then, and whether it ended."""
        item = self._queue.get()
        tokens: list[int] = []
        while item is not None:
            tokens.append(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return tokens, False
        return tokens, True


def chunked_segment(
    llm: GLMTTSLLM,
    chunker: ChunkedToken2Wav,
    feed: TokenFeed,
    future: Future[list[int]],
    job_slot: Callable[[], AbstractContextManager[object]],
    check_cancelled: Callable[[], None],
    on_generated: Callable[[list[int]], None],
    first_priority: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> Generator[np.ndarray, None, None]:
    """The segment's audio (24 kHz) as blocks settle; the LLM's tokens reach `on_generated` before the last block.

    The first block's work runs inside `first_priority` as well (the narration's first chunk: the LLM
    batch held meanwhile, `LLMBackend.paused`)."""

    def run(work: Callable[[], list[np.ndarray]]) -> list[np.ndarray]:
        held = first_priority if chunker.calls == 0 else nullcontext  # only the first block holds the batch
        with job_slot():
            check_cancelled()  # the wait for the job slot may have been long
            with held():
                pieces = work()
        check_cancelled()  # set while the flow ran: nobody wants these
        return [p for p in pieces if len(p)]

    received = 0
    waiting: list[int] = []  # speech tokens short of a block: no model work, so no job slot
    while True:
        tokens, ended = feed.take()
        check_cancelled()
        if ended:  # this take's tokens are in the future's list too
            break
        received += len(tokens)
        waiting += llm.in_audio_range(tokens, warn=False)
        if chunker.completes_block(len(waiting)):
            yield from run(partial(chunker.push, waiting))
            waiting = []
    try:
        generated = future.result()
    except CancelledError:
        check_cancelled()
        raise
    on_generated(generated)
    rest = waiting + llm.in_audio_range(generated[received:], warn=False)  # a cut's last token never reaches on_token
    yield from run(lambda: [*chunker.push(rest), chunker.finish()])
