"""How much other narrations' flow and vocoder work slows one narration's decoding, offline against stream mode.

One narration (the "victim", a long sentence of 375 speech tokens, offline) decodes beside N neighbours
(a medium sentence, 150 tokens) started with it, once alone, once with the neighbours in offline mode
(each neighbour's flow and vocoder run once, over its whole segment, after its LLM is done) and once in
stream mode (a flow + vocoder call per block while the LLM decodes). The flow and the vocoder run on the
narrations' threads, one job at a time (`--concurrency`, default 1, the job gate), the LLM batch on the
scheduler's thread. A job either runs beside the decoding, which it slows by the share of the cores (or
the device) it takes, or, for a narration's first chunk in stream mode, with the batch held
(`--stream-first-chunk-priority`, on by default; `--no-priority` measures it off), which stops the
decoding for the chunk's length. Either way a job adds at most its own length to the decoding. The table
gives, per job that overlapped the victim's decoding, the decode time it added (the intervals between
decode steps it overlapped, each over the median interval of steps at the same batch size that no job
overlapped, summed) beside the longest job, and the longest interval between two decode steps.

Fixed lengths and speech ids only, as in bench_first_audio.py (benchmark-only, random weights).

    .venv/bin/python benchmarks/bench_stream_stall.py                       # tiny checkpoint, CPU, N = 3
    .venv/bin/python benchmarks/bench_stream_stall.py --size real --n 2
"""

from __future__ import annotations

import argparse
import itertools
import platform
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from bench_first_audio import (
    SENTENCES,
    add_engine_arguments,
    checkpoint_and_clips,
    fixed_length,
    narrate,
    speech_ids_only,
    voices_of,
)
from glmtts_mcp.engine.runtime.pipeline import Engine
from glmtts_mcp.engine.runtime.scheduler import BatchScheduler

VICTIM_TOKENS, NEIGHBOUR_TOKENS = 375, 150


@contextmanager
def timeline(engine: Engine) -> Iterator[tuple[list[tuple[float, float, int]], list[tuple[float, float]]]]:
    """Records each decode step (start, end, batch size; a step after a prefill has size 0, so that it is
    left out) and each flow / vocoder job (start, end)."""
    steps: list[tuple[float, float, int]] = []
    jobs: list[tuple[float, float]] = []
    decode_step, prefill, slot = BatchScheduler._decode_step, BatchScheduler._guarded_prefill, engine.jobs.slot
    prefilled = threading.Event()

    def timed_step(self: BatchScheduler) -> None:
        began, size = time.perf_counter(), len(self._live)
        decode_step(self)
        steps.append((began, time.perf_counter(), 0 if prefilled.is_set() else size))
        prefilled.clear()

    def marked_prefill(self: BatchScheduler) -> None:
        prefill(self)
        prefilled.set()

    @contextmanager
    def timed_slot() -> Iterator[None]:
        with slot():
            began = time.perf_counter()
            try:
                yield
            finally:
                jobs.append((began, time.perf_counter()))

    BatchScheduler._decode_step, BatchScheduler._guarded_prefill = timed_step, marked_prefill  # type: ignore[method-assign]
    engine.jobs.slot = timed_slot  # type: ignore[method-assign]
    try:
        yield steps, jobs
    finally:
        BatchScheduler._decode_step, BatchScheduler._guarded_prefill = decode_step, prefill  # type: ignore[method-assign]
        engine.jobs.slot = slot  # type: ignore[method-assign]


def run(engine: Engine, voices: list, neighbours: int, stream: bool) -> list[float]:
    """The victim beside `neighbours` narrations in stream or offline mode: `stall_figures` of the run."""

    def lengths(segment: str) -> int:  # the segment's normalized text
        return VICTIM_TOKENS if "village" in segment else NEIGHBOUR_TOKENS

    gate = threading.Barrier(neighbours + 1)

    def caller(i: int) -> None:
        gate.wait()
        if i == 0:
            narrate(engine, SENTENCES["long"], voices[0], 0, stream=False)
        else:
            narrate(engine, SENTENCES["medium"], voices[i % len(voices)], i, stream=stream)

    with fixed_length(engine, lengths), speech_ids_only(engine), timeline(engine) as (steps, jobs):
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(neighbours + 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return stall_figures(steps, jobs)


def stall_figures(steps: list[tuple[float, float, int]], jobs: list[tuple[float, float]]) -> list[float]:
    """Quiet step p50 (ms); per job that overlapped decoding: the decode time it added (ms, p50 and max:
    each overlapped step's interval over the quiet p50 at its batch size, summed), its length (ms, max);
    the longest step interval (ms); jobs that overlapped; the whole decoding (s)."""
    # no prefill between; not the last step, in which the victim's own flow starts (its LLM is done there)
    pairs = [(a[1], b[1], b[2]) for a, b in itertools.pairwise(steps[:-1]) if b[2]]
    intervals = [(end - prev_end, size) for prev_end, end, size in pairs]
    spans = [(prev_end, end) for prev_end, end, _ in pairs]
    overlapping = [[i for i, (a, b) in enumerate(spans) if ja < b and jb > a] for ja, jb in jobs]
    busy = {i for indices in overlapping for i in indices}
    quiet: dict[int, list[float]] = {}
    for i, (interval, size) in enumerate(intervals):
        if i not in busy:
            quiet.setdefault(size, []).append(interval)
    typical = {size: float(np.median(values)) for size, values in quiet.items()}
    added, lengths = [], []
    for (ja, jb), indices in zip(jobs, overlapping, strict=True):
        if indices:
            lengths.append(jb - ja)
            added.append(sum(max(0.0, intervals[i][0] - typical.get(intervals[i][1], 0.0)) for i in indices))
    ms = 1000.0
    return [
        ms * float(np.median([v for values in quiet.values() for v in values])),
        ms * float(np.median(added)) if added else 0.0,
        ms * max(added, default=0.0),
        ms * max(lengths, default=0.0),
        ms * max(interval for interval, _ in intervals),
        len(added),
        steps[-1][1] - steps[0][0],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_engine_arguments(parser)
    parser.add_argument("--n", type=int, default=3, help="neighbours beside the victim")
    parser.add_argument("--no-priority", action="store_true", help="first chunks run beside the decoding")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, clips = checkpoint_and_clips(args, Path(tmp))
        engine = Engine.load(
            checkpoint,
            device=args.device,
            dtype=args.dtype,
            whisper_model="tiny-random",
            max_batch=args.n + 1,
            stream_first_chunk_priority=not args.no_priority,
        )
        voices = voices_of(engine, clips[: args.n + 1])
        narrate(engine, "Warm up.", voices[0], 0, stream=True)  # first calls pay one-time costs
        print(
            f"# {datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
            f"torch threads {torch.get_num_threads()}, checkpoint {args.checkpoint or args.size}, "
            f"device {args.device}, dtype {args.dtype}, job concurrency {engine.jobs.concurrency}, "
            f"first-chunk priority {'off' if args.no_priority else 'on'}"
        )
        print(
            f"victim: {VICTIM_TOKENS} speech tokens, offline; neighbours: {NEIGHBOUR_TOKENS} tokens each; "
            "ms: decode step interval (p50, no job running); decode time a job added (p50, max) and the longest "
            "job, over the jobs that overlapped decoding; the longest step interval"
        )
        header = ["neighbours", "step p50", "added p50", "added max", "longest job", "longest step", "jobs",
                  "decoding s"]  # fmt: skip
        print("  ".join(f"{h:>12}" for h in header))
        for label, neighbours, stream in (("none", 0, False), (f"{args.n} offline", args.n, False),
                                          (f"{args.n} stream", args.n, True)):  # fmt: skip
            row = run(engine, voices, neighbours, stream)
            cells = [label, *(f"{v:.1f}" for v in row[:5]), f"{row[5]:.0f}", f"{row[6]:.2f}"]
            print("  ".join(f"{c:>12}" for c in cells), flush=True)
        engine.unload()


if __name__ == "__main__":
    main()
