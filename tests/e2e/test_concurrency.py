"""The job queue: FIFO order, a concurrency cap, a visible depth; engine calls from many threads never mix."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from narration import whole_narration

from glmtts_mcp.engine.runtime.jobs import JobQueue
from glmtts_mcp.engine.types import SynthesisOptions


def test_queue_runs_in_arrival_order_under_the_cap() -> None:
    queue = JobQueue(concurrency=2)
    running, peak, order = 0, 0, []
    lock = threading.Lock()
    gate = threading.Event()

    def job(i: int) -> None:
        nonlocal running, peak
        with queue.slot():
            with lock:
                running += 1
                peak = max(peak, running)
                order.append(i)
            gate.wait(5)
            time.sleep(0.01)
            with lock:
                running -= 1

    threads = []
    for i in range(6):
        threads.append(threading.Thread(target=job, args=(i,)))
        threads[-1].start()
        time.sleep(0.02)  # arrival order 0, 1, 2, ...
    assert queue.stats().running == 2 and queue.depth == 4
    gate.set()
    for t in threads:
        t.join(5)
    assert peak == 2 and order == list(range(6))
    stats = queue.stats()
    assert (stats.running, stats.waiting, stats.completed) == (0, 0, 6)


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        JobQueue(0)


def test_threads_get_the_same_audio_as_one_caller(engine, voice) -> None:
    texts = ["One little line.", "Another short sentence here.", "A third one, please."]
    alone = [whole_narration(engine, t, voice.features, SynthesisOptions(seed=5)) for t in texts]
    depths: list[int] = []

    def run(text: str) -> np.ndarray:
        depths.append(engine.queue_depth)
        return whole_narration(engine, text, voice.features, SynthesisOptions(seed=5))

    with ThreadPoolExecutor(max_workers=3) as pool:
        together = list(pool.map(run, texts * 2))
    for i, pcm in enumerate(together):
        assert np.array_equal(pcm, alone[i % 3])
    assert engine.queue_depth == 0 and all(d >= 0 for d in depths)
