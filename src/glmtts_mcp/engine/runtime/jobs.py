"""A first-come-first-served gate in front of the models.

Model calls from many threads (several MCP requests at once) wait here in arrival order, and at
most `concurrency` of them run at a time (1 on a GPU: one model, one stream, no garbled state).
The gate is held per unit of model work (one clone, one synthesis step: a segment's flow and
vocoder together with the next segment's LLM), so a consumer that reads a stream slowly never
blocks the others for the whole narration. `acquire` hands out the release as a function, so a
slot can be freed from another thread (where the step's last model work finishes).
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
        self._serving = 0  # tickets below this number may run (once a slot is free)
        self._running = 0
        self._completed = 0

    def acquire(self) -> Callable[[], None]:
        """Wait for this caller's turn and take a slot; calling the result (once or more, from any thread) frees it."""
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
        """Wait for this caller's turn, run the body, then let the next caller in."""
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
        """Calls waiting for a slot (not counting those running)."""
        return self.stats().waiting
