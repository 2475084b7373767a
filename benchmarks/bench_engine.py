"""Time the engine on one voice and one paragraph; print a table.

    python benchmarks/bench_engine.py                       # tiny random checkpoint, CPU
    python benchmarks/bench_engine.py --checkpoint DIR --device cuda

Rows: model load, each clone stage (Whisper, text, speech tokenizer, CAMPPlus, mel), synthesis
from stored features (what the library does) vs from the raw reference (decode + clone + synthesize),
time to first chunk, real-time factor (compute seconds per audio second) and peak memory.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from glmtts_mcp.engine.pipeline import Engine
from glmtts_mcp.engine.types import AudioInputError, SynthesisOptions

REFERENCE_TEXT = "The quick brown fox jumps over the lazy dog, and the story goes on."
PARAGRAPH = (
    "Once upon a time, in a small village by the sea, there lived an old fisherman. "
    "Every morning he rowed out before sunrise. "
    "今天天气很好，我们一起去公园散步吧，顺便看看湖边新开的花。"
)


def _reference(path: Path) -> Path:
    """An espeak-ng recording of REFERENCE_TEXT (the benchmark needs real speech)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        sys.exit("espeak-ng is not installed: pass --reference WAV")
    subprocess.run([espeak, "-w", str(path), REFERENCE_TEXT], check=True, capture_output=True)
    return path


def _synthesize(engine: Engine, text: str, features, options: SynthesisOptions) -> tuple[float, float, float]:
    """(seconds to first chunk, total seconds, audio seconds) of one streamed synthesis."""
    start = time.perf_counter()
    first = None
    samples = 0
    rate = options.sample_rate
    for chunk in engine.synthesize(text, features, options):
        if first is None:
            first = time.perf_counter() - start
        samples += len(chunk.pcm)
    return first or 0.0, time.perf_counter() - start, samples / rate


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: a fresh tiny one)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="LLM dtype (flow and vocoder stay fp32)")
    parser.add_argument("--whisper-model", default=None, help="default: tiny-random for the tiny checkpoint, else base")
    parser.add_argument("--reference", type=Path, help="reference clip (default: espeak-ng speech)")
    parser.add_argument("--text", default=PARAGRAPH)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--upstream", type=Path, help="not implemented: comparing against upstream's code")
    args = parser.parse_args(argv)
    if args.upstream:
        sys.exit("--upstream is not implemented yet")
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        whisper_model = args.whisper_model
        if checkpoint is None:
            from glmtts_mcp.engine.tiny import TINY_WHISPER, make_tiny_checkpoint

            checkpoint = make_tiny_checkpoint(Path(tmp) / "tiny")
            whisper_model = whisper_model or TINY_WHISPER
        reference = args.reference or _reference(Path(tmp) / "reference.wav")
        rows: list[tuple[str, str]] = []

        start = time.perf_counter()
        engine = Engine.load(checkpoint, device=args.device, dtype=args.dtype, whisper_model=whisper_model or "base")
        rows.append(("model load", f"{time.perf_counter() - start:.2f} s"))
        device = engine.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        ref = engine.prepare_reference(reference)
        start = time.perf_counter()
        engine.transcriber.transcribe(np.zeros(16000, dtype=np.float32), "en")  # load Whisper (not timed below)
        rows.append(("Whisper load + warm-up", f"{time.perf_counter() - start:.2f} s"))
        engine.extract_voice(ref, REFERENCE_TEXT)  # warm-up (lazy inits, kernels)
        _sync(device)
        start = time.perf_counter()
        try:
            whisper_timings = engine.extract_voice(ref, None).timings
        except AudioInputError:  # a random-weight Whisper may hear no words; the time is still real
            whisper_timings = {}
        _sync(device)
        clone_whisper = time.perf_counter() - start
        start = time.perf_counter()
        voice = engine.extract_voice(ref, REFERENCE_TEXT)
        _sync(device)
        clone = time.perf_counter() - start
        for stage in ("whisper", "text", "speech_tokenizer", "campplus", "mel"):
            seconds = whisper_timings.get(stage) if stage == "whisper" else voice.timings.get(stage)
            rows.append((f"clone: {stage}", f"{seconds * 1000:.1f} ms" if seconds is not None else "-"))
        rows.append(("clone total (transcript given)", f"{clone:.3f} s"))
        rows.append(("clone total (Whisper transcribes)", f"{clone_whisper:.3f} s"))

        options = SynthesisOptions(seed=args.seed)
        _synthesize(engine, "Warm up.", voice.features, options)
        first, total, audio_s = _synthesize(engine, args.text, voice.features, options)
        rows.append(("synthesis from stored features", f"{total:.2f} s for {audio_s:.1f} s of audio"))
        rows.append(("  time to first chunk", f"{first:.2f} s"))
        rows.append(("  real-time factor", f"{total / audio_s:.3f}" if audio_s else "-"))

        start = time.perf_counter()
        raw_voice = engine.extract_voice(engine.prepare_reference(reference), REFERENCE_TEXT)
        first_raw, total_raw, _ = _synthesize(engine, args.text, raw_voice.features, options)
        raw_total = time.perf_counter() - start
        rows.append(("synthesis from raw reference audio", f"{raw_total:.2f} s (clone + synthesis)"))
        rows.append(("  time to first chunk", f"{raw_total - total_raw + first_raw:.2f} s"))

        rows.append(("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"))
        if device.type == "cuda":
            rows.append(("peak CUDA allocated", f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"))
        params = engine.memory_info().get("parameter_bytes", {})
        rows.append(("parameters", ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in params.items())))

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"checkpoint {args.checkpoint or 'tiny (random weights)'}, device {device} ({gpu}), "
          f"LLM {engine.dtype}, torch threads {torch.get_num_threads()}")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0 if np.isfinite(total) else 1


if __name__ == "__main__":
    raise SystemExit(main())
