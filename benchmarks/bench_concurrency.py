"""N narrations at once: the LLM batch scheduler against the one-at-a-time queue, in the same run.

For each N (default 1, 2, 4, 8) N threads each narrate one text (mixed voices, mixed lengths, fixed
seeds) through `Engine.synthesize`, all started together. Two engines run the same work one after the
other: `batched` (max_batch = the largest N: the segments of all callers decode in one forward pass
per step) and `serial` (max_batch = 1: one sequence at a time, today's queue). Columns: aggregate
audio seconds per wall second, per-request real-time factor (wall seconds from the common start to
the request's last chunk, per audio second; median and worst), first-chunk latency p50/p95, LLM
tokens per second, the batch sizes the scheduler ran, and peak memory during the row.

Random weights stop the LLM after 16-70 tokens, at random, so serial and batched would not do the
same work. This benchmark (only) gives every segment a fixed length: it sets the segment's minimum and
maximum length to `--tokens` x its share (the stop token is masked until then, and generation ends
there), which is what real speech of that length costs. That is not an option of the product.

`--flow-batch` measures whether the flow batches: one step of the flow's DiT for two segments of
the same length, one after another against stacked into one batch. `--matmul` times the LLM's MLP
projection (the checkpoint's sizes) for 1 and 8 rows through torch's default CPU path (MKL) and the
engine's oneDNN prepacked layer: what one decode step over 8 sequences costs against one over 1 on this
machine's BLAS. `--llm-steps` times the scheduler's batched decode step itself (the checkpoint's LLM
alone, rows at position 200) for 1, 2, 4 and 8 sequences, dense and then prepacked as the engine loads
it on a CPU: the LLM's share of the batching gain, quick even at the real size. `--prefill-stall`
admits a request with a 30 s voice prompt while three sequences decode and reports the longest gap
between decode steps, for each prefill chunk size given.

`--engine ray --replicas 1 2` runs the same callers against engine replicas on a local Ray
cluster started for the run (`RayEngine`, as `--engine ray` serves), after the same callers on a local
engine in this process: aggregate audio seconds per wall second and first-chunk latency per replica
count. Segment lengths are not forced there (the replicas run the product's engine unchanged); the
same seeds and voices make the same tokens on both sides, so every row does the same work.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from glmtts_mcp.engine.runtime.pipeline import Engine
from glmtts_mcp.engine.runtime.scheduler import SpeechRequest
from glmtts_mcp.engine.types import SynthesisOptions, VoiceFeatures

VOICES = [  # (espeak-ng voice, what it says): the callers' reference clips
    ("en-us", "The quick brown fox jumps over the lazy dog, and the story goes on for a while longer."),
    ("en-gb+f3", "She sells sea shells by the sea shore, and the shells she sells are surely sea shells."),
    ("en-us+m5", "Peter Piper picked a peck of pickled peppers; how many pickled peppers did he pick?"),
]
TEXTS = [  # mixed lengths: one or two segments
    "Good morning, here is the news of the day.",
    "The weather stays mild this week. Rain is expected on Thursday, and the weekend looks bright.",
    "Thank you for calling.",
    "Our story begins in a small village. Everyone there knew the baker, who rose before the sun.",
]
LENGTH_SHARES = [1.0, 0.6, 0.8, 0.4]  # each caller's segments get --tokens x its share


def _record(path: Path, voice: str, text: str) -> Path:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        sys.exit("espeak-ng is not installed: the benchmark records its reference clips with it")
    subprocess.run([espeak, "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return path


class PeakRss:
    """Peak resident memory of this process while the block runs (sampled every 20 ms; CUDA: allocator peak)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self._stop = threading.Event()

    def _rss(self) -> int:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakRss:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)

    def describe(self) -> str:
        kind = "CUDA alloc" if self.device.type == "cuda" else "RSS"
        return f"{self.peak / 1024**2:.0f} MiB {kind}"


def fix_lengths(engine: Engine, tokens: int) -> None:
    """Benchmark-only: every segment of caller i decodes exactly tokens x LENGTH_SHARES[i % 4] tokens.

    The engine's per-segment request gets min and max length ratios that land on that count (the stop
    token stays masked until the last step), keyed by the caller's seed (seed = caller index).
    """
    build = engine._llm_request  # a benchmark hook, not a product option

    def fixed(segment: str, history, sampling, seed: int, cancel: threading.Event, on_token=None) -> SpeechRequest:
        request = build(segment, history, sampling, seed, cancel, on_token)
        count = max(1, round(tokens * LENGTH_SHARES[seed % len(LENGTH_SHARES)]))
        ratio = (count + 0.5) / len(request.text_ids)  # int(len * ratio) == count
        request.min_ratio = request.max_ratio = ratio
        return request

    engine._llm_request = fixed  # type: ignore[method-assign]


def run_row(engine: Engine, voices: list[VoiceFeatures], n: int) -> dict[str, object]:
    """N callers started together; their figures."""
    start_gate = threading.Barrier(n + 1)
    results: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] * n

    def caller(i: int) -> None:
        start_gate.wait()
        began = time.perf_counter()
        first = None
        samples = 0
        rate = 24000
        for chunk in engine.synthesize(TEXTS[i % len(TEXTS)], voices[i % len(voices)], SynthesisOptions(seed=i)):
            first = first if first is not None else time.perf_counter() - began
            samples += len(chunk.pcm)
            rate = chunk.sample_rate
        results[i] = (first or 0.0, time.perf_counter() - began, samples / rate)

    before = engine.scheduler.stats()
    with PeakRss(engine.device) as memory, ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(caller, i) for i in range(n)]
        start_gate.wait()
        began = time.perf_counter()
        for future in futures:
            future.result()
        wall = time.perf_counter() - began
    after = engine.scheduler.stats()
    firsts = sorted(r[0] for r in results)
    rtfs = sorted(r[1] / r[2] for r in results if r[2] > 0)
    audio = sum(r[2] for r in results)
    steps = {
        size: count - before.batch_sizes.get(size, 0)
        for size, count in after.batch_sizes.items()
        if count - before.batch_sizes.get(size, 0)
    }
    tokens = after.tokens - before.tokens
    return {
        "wall": wall,
        "audio": audio,
        "agg": audio / wall,
        "rtf_median": statistics.median(rtfs),
        "rtf_worst": rtfs[-1],
        "first_p50": float(np.percentile(firsts, 50)),
        "first_p95": float(np.percentile(firsts, 95)),
        "tokens": tokens,
        "tok_s": tokens / wall,
        "steps": steps,
        "memory": memory.describe(),
    }


def format_row(mode: str, n: int, r: dict[str, object]) -> str:
    sizes = " ".join(f"{size}:{count}" for size, count in sorted(r["steps"].items()))
    return (
        f"{mode:<8}{n:>3}{r['wall']:>9.1f}{r['audio']:>9.1f}{r['agg']:>11.3f}{r['rtf_median']:>9.2f}"
        f"{r['rtf_worst']:>11.2f}{r['first_p50']:>9.2f}{r['first_p95']:>9.2f}{r['tok_s']:>8.1f}  "
        f"{r['memory']:<18}  {sizes}"
    )


def bench_engine(
    checkpoint: Path, args: argparse.Namespace, max_batch: int, references: list[Path], whisper_model: str
) -> dict[int, dict[str, object]]:
    engine = Engine.load(
        checkpoint,
        device=args.device,
        dtype=args.dtype,
        whisper_model=whisper_model,
        max_batch=max_batch,
        slot_positions=args.slot_positions,
    )
    try:
        voices = [
            engine.extract_voice(engine.prepare_reference(path), text).features
            for path, (_, text) in zip(references, VOICES, strict=True)
        ]
        fix_lengths(engine, args.tokens)
        run_row(engine, voices, 1)  # warm-up: lazy inits, kernels
        rows = {}
        for n in args.n:
            rows[n] = run_row(engine, voices, n)
            print(format_row("batched" if max_batch > 1 else "serial", n, rows[n]), file=sys.stderr, flush=True)
        return rows
    finally:
        engine.unload()


def flow_batch_rows(checkpoint: Path, args: argparse.Namespace, reference: Path, whisper_model: str) -> list[str]:
    """One DiT step for two segments: one after another (2 x batch 2: CFG doubles it) vs stacked (batch 4).

    The step's inputs are captured from a real flow call on a segment of --tokens tokens.
    """
    engine = Engine.load(checkpoint, device=args.device, dtype=args.dtype, whisper_model=whisper_model, max_batch=1)
    try:
        voice = engine.extract_voice(engine.prepare_reference(reference), VOICES[0][1]).features.tensors
        flow = engine.models.flow
        device = engine.device
        captured: list[tuple[torch.Tensor, ...]] = []
        hook = flow.estimator.register_forward_pre_hook(lambda module, inputs: captured.append(inputs) or None)
        tokens = torch.randint(0, 1000, (1, args.tokens), generator=torch.Generator().manual_seed(0)).to(device)
        with torch.inference_mode():
            flow.inference(
                voice["prompt_speech_ids"].to(device)[None],
                voice["prompt_mel"].to(device)[None],
                tokens,
                voice["speaker_embedding"].to(device)[None],
                n_timesteps=1,
            )
        hook.remove()
        single = captured[0]
        stacked = tuple(torch.cat([x, x]) if isinstance(x, torch.Tensor) and x.shape[0] == 2 else x for x in single)
        timings = {}
        with torch.inference_mode():
            flow.estimator(*single)  # warm-up
            for label, calls in (
                ("one after another (2 x batch 2)", [single, single]),
                ("stacked (batch 4)", [stacked]),
            ):
                best = float("inf")
                for _ in range(3):
                    began = time.perf_counter()
                    for inputs in calls:
                        flow.estimator(*inputs)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    best = min(best, time.perf_counter() - began)
                timings[label] = best
        frames = single[0].shape[1]
        rows = [
            f"flow DiT step for 2 segments of {args.tokens} tokens (voice prompt included: {frames} frames), best of 3:"
        ]
        for label, seconds in timings.items():
            rows.append(f"  {label:<34}{seconds * 1000:9.1f} ms")
        serial, batched = timings.values()
        rows.append(f"  stacked / one after another       {batched / serial:9.2f}x the time")
        return rows
    finally:
        engine.unload()


def matmul_rows(checkpoint: Path, dtype: torch.dtype) -> list[str]:
    """The LLM's up-projection (hidden -> intermediate) for 1 and 8 rows: MKL (torch's default) vs the
    engine's oneDNN prepacked layer (`cpu_linear.PackedLinear`)."""
    from glmtts_mcp.engine.models.cpu_linear import PackedLinear, onednn_failure

    config = json.loads((checkpoint / "llm" / "config.json").read_text())
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    layer = torch.nn.Linear(hidden, inner, bias=False).to(dtype).eval()
    failure = onednn_failure(dtype)
    packed = PackedLinear(layer) if failure is None else None

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(10):
            began = time.perf_counter()
            fn()
            times.append(time.perf_counter() - began)
        return min(times) * 1000

    rows = [f"LLM up-projection {hidden} -> {inner} ({str(dtype).removeprefix('torch.')}), best of 10:"]
    if failure is not None:  # e.g. bf16 needs AVX-512 or AVX-NE-CONVERT
        rows.append(f"  oneDNN   unavailable here: {failure}")
    times = {}
    with torch.inference_mode():
        for m in (1, 8):
            x = torch.randn(m, hidden, dtype=dtype)
            times[("default", m)] = best(lambda x=x: layer(x))
            if packed is not None:
                times[("oneDNN", m)] = best(lambda x=x: packed(x))
    for path in ("default", "oneDNN"):
        if (path, 1) in times and (path, 8) in times:
            one, eight = times[(path, 1)], times[(path, 8)]
            rows.append(
                f"  {path:<8} 1 row {one:8.2f} ms   8 rows {eight:8.2f} ms   8 rows / 1 row {eight / one:6.2f}x"
            )
    return rows


def _device(device: str) -> torch.device:
    return torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )


def llm_step_rows(checkpoint: Path, dtype: torch.dtype, device: str) -> list[str]:
    """One batched decode step (`slot_forward`) for 1, 2, 4, 8 live sequences at position 200, best of 3.

    On a CPU: first with the dense linears (torch's default matmul), then with the same model's
    linears prepacked for oneDNN as the engine loads them; `x one dense` compares each row's tokens/s
    with one sequence on the dense model.
    """
    from glmtts_mcp.engine.models.cpu_linear import prepack_llm_linears
    from glmtts_mcp.engine.models.llm import load_llm
    from glmtts_mcp.engine.models.static_cache import SlotKVCache, slot_forward

    target = _device(device)
    model = load_llm(checkpoint / "llm", device=target, dtype=dtype)
    cache = SlotKVCache(model, 8, 256)
    embedding = model.get_input_embeddings().weight
    rows = [f"LLM batched decode step ({str(dtype).removeprefix('torch.')}, keys at 200 positions), best of 3:"]
    single = None
    for linears in ("dense", "oneDNN"):
        if linears == "oneDNN" and not prepack_llm_linears(model):
            rows.append("  oneDNN   unavailable for this device or dtype (see the log line)")
            break
        with torch.inference_mode():
            for n in (1, 2, 4, 8):
                embeds = embedding[torch.arange(n, device=target)][:, None]
                positions = torch.full((n, 1), 200, device=target)
                times = []
                for _ in range(4):
                    began = time.perf_counter()
                    slot_forward(model, embeds, cache, 0, positions)
                    if target.type == "cuda":
                        torch.cuda.synchronize(target)
                    times.append(time.perf_counter() - began)
                step = min(times[1:])
                single = single or step
                rows.append(
                    f"  {linears:<7}{n} sequence(s)  {step * 1000:9.1f} ms per step   {n / step:7.2f} tokens/s   "
                    f"{n * single / step:5.2f}x one dense"
                )
    return rows


def prefill_stall_rows(checkpoint: Path, dtype: torch.dtype, device: str, chunks: list[int]) -> list[str]:
    """How long a long prompt's prefill stalls the others: 3 sequences decode, then a request with a 30 s
    voice prompt (750 speech tokens + 120 transcript + 80 text ids) is admitted; the longest gap between
    two decode steps from its admission to its first token, for each prefill chunk size.

    Benchmark-only: the three background sequences are ended (`limit_steps`) once the window is measured.
    """
    from glmtts_mcp.engine.checkpoint.layout import LLM_DIR, TEXT_TOKENIZER_DIR
    from glmtts_mcp.engine.frontend.text_tokenizer import TextTokenizer
    from glmtts_mcp.engine.models.cpu_linear import prepack_llm_linears
    from glmtts_mcp.engine.models.llm import GLMTTSLLM, RasSettings, load_llm
    from glmtts_mcp.engine.runtime.scheduler import BatchScheduler

    model = load_llm(checkpoint / LLM_DIR, device=_device(device), dtype=dtype)
    prepack_llm_linears(model)  # as the engine loads it (only the LLM: the flow is not needed here)
    llm = GLMTTSLLM(model, TextTokenizer.from_dir(checkpoint / TEXT_TOKENIZER_DIR).special_token_ids())
    rows = [
        f"prefill stall ({str(dtype).removeprefix('torch.')}): 3 sequences decoding, a 950-position prompt admitted:"
    ]
    for chunk in chunks:
        scheduler = BatchScheduler(llm, max_batch=4, slot_positions=2048, prefill_chunk=chunk)
        steps: list[float] = []
        decode = scheduler._decode_step  # a benchmark hook on the step times

        def timed(decode=decode, steps=steps) -> None:
            decode()
            steps.append(time.perf_counter())

        scheduler._decode_step = timed  # type: ignore[method-assign]
        try:
            background = [
                scheduler.submit(
                    SpeechRequest(
                        list(range(100, 110)),
                        list(range(200, 220)),
                        [j % 500 for j in range(100)],
                        RasSettings(),
                        torch.Generator().manual_seed(i),
                        min_ratio=100.0,
                        max_ratio=100.0,
                    )
                )
                for i in range(3)
            ]
            while len(steps) < 3:
                time.sleep(0.05)
            admitted = time.perf_counter()
            long_prompt = SpeechRequest(
                list(range(300, 380)),
                list(range(400, 520)),
                [j % 6000 for j in range(750)],
                RasSettings(),
                torch.Generator().manual_seed(9),
                min_ratio=0.05,
                max_ratio=0.05,
            )  # 4 tokens
            result = scheduler.submit(long_prompt)
            result.result()
            done = time.perf_counter()
            window = [admitted] + [t for t in steps if t > admitted]
            gaps = [b - a for a, b in itertools.pairwise(window)]
            for entry in scheduler._live:  # end the background sequences now
                entry.sequence.limit_steps(entry.sequence.step + 1)
            for future in background:
                future.result()
        finally:
            scheduler.close()
        label = "whole" if chunk >= 950 else f"{chunk} per chunk"
        rows.append(
            f"  prefill {label:<16} longest gap between decode steps {max(gaps):7.2f} s   "
            f"decode steps in the window {len(gaps):3d}   admission to its 4th token "
            f"{done - admitted:7.2f} s"
        )
    return rows


def ray_rows(checkpoint: Path, args: argparse.Namespace, references: list[Path]) -> list[str]:
    """`--engine ray`: N callers on the local engine, then on 1..R replicas of a local Ray cluster."""
    import ray
    from ray import serve

    from glmtts_mcp.engine_ray.client import RayEngine, RayPlacement
    from glmtts_mcp.engine_ray.deployment import APP_NAME

    cores = os.cpu_count() or 1
    gpus = torch.cuda.device_count() if args.device in ("auto", "cuda") or args.device.startswith("cuda") else 0
    batch = max(args.n)  # the most callers of any row decode together
    options = {
        "checkpoint": checkpoint,
        "device": args.device,
        "dtype": args.dtype,
        "whisper_model": args.whisper_model,
        "max_batch": batch,
    }
    local = Engine.load(**options)
    voices = [
        local.extract_voice(local.prepare_reference(path), text).features
        for path, (_, text) in zip(references, VOICES, strict=True)
    ]

    def row(engine: Engine | RayEngine, n: int) -> dict[str, float]:
        gate = threading.Barrier(n + 1)
        results: list[tuple[float, float]] = [(0.0, 0.0)] * n

        def caller(i: int) -> None:
            gate.wait()
            began = time.perf_counter()
            first, seconds = None, 0.0
            for chunk in engine.synthesize(TEXTS[i % len(TEXTS)], voices[i % len(voices)], SynthesisOptions(seed=i)):
                first = first if first is not None else time.perf_counter() - began
                seconds += len(chunk.pcm) / chunk.sample_rate
            results[i] = (first or 0.0, seconds)

        with ThreadPoolExecutor(max_workers=n) as pool:
            futures = [pool.submit(caller, i) for i in range(n)]
            gate.wait()
            began = time.perf_counter()
            for future in futures:
                future.result()
            wall = time.perf_counter() - began
        firsts = [r[0] for r in results]
        audio = sum(r[1] for r in results)
        return {
            "wall": wall,
            "agg": audio / wall,
            "first_p50": float(np.percentile(firsts, 50)),
            "first_p95": float(np.percentile(firsts, 95)),
        }

    def measure(label: str, engine: Engine | RayEngine) -> None:
        for voice in range(len(voices)):  # warm-up: lazy inits, and each voice reaches a replica once
            list(engine.synthesize(TEXTS[0], voices[voice], SynthesisOptions(seed=voice)))
        for n in args.n:
            figures[(label, n)] = row(engine, n)
            print(f"  {label} N={n}: {figures[(label, n)]['wall']:.1f} s", file=sys.stderr, flush=True)

    figures: dict[tuple[str, int], dict[str, float]] = {}
    try:
        measure("local", local)
    finally:
        local.unload()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        for replicas in args.replicas:
            placement = RayPlacement(
                address="auto",
                replicas=(replicas, replicas),
                gpus_per_replica=gpus / replicas,
                cpus_per_replica=cores / replicas,
                voices_per_replica=len(voices),
                slots_per_replica=batch,
            )
            engine = RayEngine.start(options, placement)
            try:
                measure(f"ray x{replicas}", engine)
            finally:
                engine.unload()  # lets go of the handle; the next replica count needs a new deployment
                serve.delete(APP_NAME)
    finally:
        serve.shutdown()
        ray.shutdown()
    out = [
        f"engine replicas on a local Ray cluster ({cores} CPUs and {gpus} GPU(s) shared by all replicas; the "
        f"local engine uses torch's {torch.get_num_threads()} threads):",
        f"{'engine':<9}{'N':>3}{'wall s':>9}{'audio s/s':>11}{'1st p50':>9}{'1st p95':>9}{'vs local':>10}",
    ]
    for (label, n), r in figures.items():
        ratio = r["agg"] / figures[("local", n)]["agg"]
        out.append(
            f"{label:<9}{n:>3}{r['wall']:>9.1f}{r['agg']:>11.3f}{r['first_p50']:>9.2f}{r['first_p95']:>9.2f}"
            f"{ratio:>9.2f}x"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: a fresh tiny one)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="LLM dtype (flow and vocoder stay fp32)")
    parser.add_argument("--whisper-model", default="tiny-random", help="only loaded if a transcript were missing")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8], help="concurrent narrations per row")
    parser.add_argument("--tokens", type=int, default=150, help="speech tokens per segment (x the caller's share)")
    parser.add_argument("--slot-positions", type=int, default=None, help="KV cache positions per sequence")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument(
        "--modes",
        nargs="*",
        choices=["serial", "batched"],
        default=["serial", "batched"],
        help="engines to run (none: only the probes)",
    )
    parser.add_argument("--flow-batch", action="store_true", help="also time one DiT step batched vs one by one")
    parser.add_argument("--matmul", action="store_true", help="also time the LLM's MLP matmul for 1 and 8 rows")
    parser.add_argument("--llm-steps", action="store_true", help="also time the batched LLM step for 1-8 sequences")
    parser.add_argument(
        "--prefill-stall",
        type=int,
        nargs="*",
        metavar="CHUNK",
        help="also measure the decode gap while a 950-position prompt is prefilled, per chunk size (e.g. 4096 256 64)",
    )
    parser.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="ray: the callers on a local engine, then on --replicas Ray replicas (only those rows)",
    )
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2], help="--engine ray: replica counts")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("glmtts_mcp.engine.models.llm").setLevel(logging.ERROR)  # the forced lengths warn each time

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None:
            from glmtts_mcp.engine.checkpoint.tiny import make_tiny_checkpoint

            checkpoint = make_tiny_checkpoint(Path(tmp) / "tiny")
        if args.engine == "ray":
            references = [_record(Path(tmp) / f"voice{i}.wav", voice, text) for i, (voice, text) in enumerate(VOICES)]
            print("\n".join(ray_rows(checkpoint, args, references)))
            return 0
        needs_voices = args.modes or args.flow_batch
        references = (
            [_record(Path(tmp) / f"voice{i}.wav", voice, text) for i, (voice, text) in enumerate(VOICES)]
            if needs_voices
            else []
        )
        results = {}
        for mode in args.modes:
            results[mode] = bench_engine(
                checkpoint, args, max(args.n) if mode == "batched" else 1, references, args.whisper_model
            )
        flow_rows = flow_batch_rows(checkpoint, args, references[0], args.whisper_model) if args.flow_batch else []
        dtype = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16}.get(args.dtype, torch.float32)
        flow_rows += matmul_rows(checkpoint, dtype) if args.matmul else []
        flow_rows += llm_step_rows(checkpoint, dtype, args.device) if args.llm_steps else []
        flow_rows += (
            prefill_stall_rows(checkpoint, dtype, args.device, args.prefill_stall) if args.prefill_stall else []
        )

    device = _device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    print(
        f"checkpoint {checkpoint.name}, device {name}, LLM dtype {args.dtype}, torch threads "
        f"{torch.get_num_threads()}, {args.tokens} tokens per segment x shares {LENGTH_SHARES}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    header = (
        f"{'mode':<8}{'N':>3}{'wall s':>9}{'audio s':>9}{'audio s/s':>11}{'RTF med':>9}{'RTF worst':>11}"
        f"{'1st p50':>9}{'1st p95':>9}{'tok/s':>8}  {'peak':<18}  batch sizes (steps)"
    )
    print(header if results else "(no engine rows: --modes was empty)")
    for mode, rows in results.items():
        for n, r in rows.items():
            print(format_row(mode, n, r))
    if "serial" in results and "batched" in results:
        ratios = "  ".join(f"N={n}: {results['batched'][n]['agg'] / results['serial'][n]['agg']:.2f}x" for n in args.n)
        print(f"\nbatched / serial aggregate audio s/s   {ratios}")
    for row in flow_rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
