"""A gate on the LLM scheduler's decode step, for tests that must know how far the LLM is, never by timing."""

from __future__ import annotations

import threading

import pytest

from glmtts_mcp.engine.runtime.scheduler import BatchScheduler

WAIT_S = 120  # only a bound on a hang


class DecodeGate:
    """Holds the scheduler inside decode step `at` (counting from 0) until `open` is set; records each
    step's live sequences. `waiting` is set once step `at` has begun and is held."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: int) -> None:
        self.open, self.waiting = threading.Event(), threading.Event()
        self.steps: list[list[object]] = []
        self.scheduler: BatchScheduler | None = None
        decode = BatchScheduler._decode_step

        def held(scheduler: BatchScheduler) -> None:
            self.scheduler = scheduler
            if len(self.steps) == at:
                self.waiting.set()
                assert self.open.wait(WAIT_S), "the test never opened the gate"
            self.steps.append(list(scheduler._live))
            decode(scheduler)

        monkeypatch.setattr(BatchScheduler, "_decode_step", held)
