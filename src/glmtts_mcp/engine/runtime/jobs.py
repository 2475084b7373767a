"""A first-come-first-served gate in front of the model work that does not batch.

The LLM batches across requests in its own scheduler and never waits here. What does wait here, in
arrival order, is the rest: a clone (the whole feature extraction), each segment's flow and vocoder,
and unloading the models (which waits for the work in progress). At most `concurrency` of these run
at a time (`--concurrency`, default 1); the gate is held per unit of work, never for a whole
narration, so a consumer that reads a stream slowly does not block the others. `acquire` hands out
the release as a function, so a turn can end on another thread than the one that took it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class QueueStats:
    running: int
    waiting: int
    concurrency: int
    completed: int


class JobQueue:
    """A FIFO semaphore with a visible queue depth."""

    def __init__(self, concurrency: int = 1) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0  # tickets below this number may run (once fewer than `concurrency` run)
        self._running = 0
        self._completed = 0

    def acquire(self) -> Callable[[], None]:
        """Wait for this caller's turn and start it; calling the result (once or more, from any thread) ends it."""
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._cond.wait_for(lambda: ticket == self._serving and self._running < self.concurrency)
            self._serving += 1
            self._running += 1
            self._cond.notify_all()
        held = [True]

        def release() -> None:
            with self._cond:
                if not held[0]:
                    return
                held[0] = False
                self._running -= 1
                self._completed += 1
                self._cond.notify_all()

        return release

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Wait for this caller's turn, run the body, then let the next caller in (`acquire` as a block)."""
        release = self.acquire()
        try:
            yield
        finally:
            release()

    def stats(self) -> QueueStats:
        with self._cond:
            return QueueStats(
                running=self._running,
                waiting=self._next_ticket - self._serving,
                concurrency=self.concurrency,
                completed=self._completed,
            )

    @property
    def depth(self) -> int:
        """Calls waiting for their turn (not counting those running)."""
        return self.stats().waiting
