"""Time to first audio and the whole segment's time, offline against stream mode, in the same run; and
how far stream mode's audio is from offline's.

Latency rows: N callers (default 1 and 8) each narrate one sentence (one segment) through
`Engine.synthesize`, all started together, once with `stream=False` (offline: the segment's audio when its
LLM, flow and vocoder are done) and once with `stream=True` (upstream's token2wav_stream: a chunk per
block of speech tokens while the LLM decodes). Columns: first-chunk latency p50 / worst and whole-segment
time p50 / worst (from the common start to the last chunk), per mode; with `--side-by-side`, stream mode once
more with each narration's first chunk made beside the LLM's decoding instead of with the batch held.

Random weights stop the LLM after a random count of tokens, so, as in bench_concurrency.py, this
benchmark (only) fixes every segment's length: short, medium and long are 25, 150 and 375 speech tokens
(1, 6 and 15 s of speech at 25 tokens/s). Random weights also draw text ids instead of speech ids (at
the real size, most of the time), which the engine drops: stream mode would then wait for a block of speech
tokens that a real checkpoint makes at once. So the benchmark (only) lets the LLM draw speech ids and the
end token alone. Neither is an option of the product.

Fidelity rows (`--fidelity`, N = 1): for each first block size given (`--first-blocks`, default 25 and 10;
look-ahead about half of it, the later blocks upstream's), the same sentence, seed and tokens offline and
in stream mode; the difference of the two waves as max / mean absolute log-mel error (24 kHz, 80 bins, hop
480), SNR of the stream wave against the offline one, and the joins whose sample step exceeds 4 times the
95th percentile of the steps in the 20 ms around it (clicks), out of all joins. The two modes draw their
flow noise differently (one draw for the segment against one per block), so with random weights the
SNR says how much the audio differs, not how it sounds.

    .venv/bin/python benchmarks/bench_first_audio.py                          # tiny checkpoint, CPU
    .venv/bin/python benchmarks/bench_first_audio.py --size real --n 1 --lengths short medium
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from bench_concurrency import VOICES, _record  # benchmarks/bench_concurrency.py: espeak-ng reference clips
from glmtts_mcp.engine.frontend import audio_features as audio
from glmtts_mcp.engine.models.llm import SpeechSequence
from glmtts_mcp.engine.runtime.pipeline import Engine
from glmtts_mcp.engine.runtime.scheduler import SpeechRequest
from glmtts_mcp.engine.types import AudioChunk, SynthesisOptions, VoiceFeatures

LENGTHS = {"short": 25, "medium": 150, "long": 375}  # speech tokens of the one segment (25 per second)
SENTENCES = {
    "short": "Good morning to you.",
    "medium": "The weather stays mild this week, with rain expected on Thursday and a bright weekend.",
    "long": "Our story begins in a small village by the sea, where everyone knew the baker, who rose long "
    "before the sun to light his ovens and sang old songs while the bread was rising in the dark.",
}


@contextmanager
def fixed_length(engine: Engine, tokens: int | Callable[[str], int]) -> Iterator[None]:
    """Benchmark-only: every segment decodes exactly `tokens` speech tokens (the stop token masked until
    then), or the count `tokens` gives for the segment's text."""
    build = engine._llm_request

    def fixed(segment: str, history, sampling, seed: int, cancel: threading.Event, on_token=None) -> SpeechRequest:
        request = build(segment, history, sampling, seed, cancel, on_token)
        count = tokens if isinstance(tokens, int) else tokens(segment)
        request.min_ratio = request.max_ratio = (count + 0.5) / len(request.text_ids)  # int(len * ratio) == count
        return request

    engine._llm_request = fixed  # type: ignore[method-assign]
    try:
        yield
    finally:
        engine._llm_request = build  # type: ignore[method-assign]


@contextmanager
def speech_ids_only(engine: Engine) -> Iterator[None]:
    """Benchmark-only: the LLM samples among the speech ids and the end token (what a trained one does)."""
    special = engine.models.llm.special
    push = SpeechSequence.push

    def speech_push(self: SpeechSequence, logits: torch.Tensor) -> int | None:
        masked = torch.full_like(logits, float("-inf"))
        masked[special.ats : special.ate + 1] = logits[special.ats : special.ate + 1]
        masked[special.eoa] = logits[special.eoa]
        return push(self, masked)

    SpeechSequence.push = speech_push  # type: ignore[method-assign]
    try:
        yield
    finally:
        SpeechSequence.push = push  # type: ignore[method-assign]


def narrate(engine: Engine, text: str, voice: VoiceFeatures, seed: int, stream: bool) -> tuple[float, float, list]:
    """(seconds to the first chunk, seconds to the last, the chunks)."""
    began = time.perf_counter()
    first = None
    chunks: list[AudioChunk] = []
    for chunk in engine.synthesize(text, voice, SynthesisOptions(seed=seed, stream=stream)):
        if first is None and len(chunk.pcm):
            first = time.perf_counter() - began
        chunks.append(chunk)
    return first or 0.0, time.perf_counter() - began, chunks


def latency_row(engine: Engine, text: str, voices: list[VoiceFeatures], n: int, stream: bool) -> list[float]:
    """N callers together: first-chunk p50, worst; whole-segment p50, worst."""
    gate = threading.Barrier(n)
    results: list[tuple[float, float]] = [(0.0, 0.0)] * n

    def caller(i: int) -> None:
        gate.wait()
        first, whole, _ = narrate(engine, text, voices[i % len(voices)], i, stream)
        results[i] = (first, whole)

    with ThreadPoolExecutor(max_workers=n) as pool:
        for future in [pool.submit(caller, i) for i in range(n)]:
            future.result()
    firsts, wholes = [r[0] for r in results], [r[1] for r in results]
    return [statistics.median(firsts), max(firsts), statistics.median(wholes), max(wholes)]


def log_mel(wav: np.ndarray) -> torch.Tensor:
    return audio.prompt_mel_features(torch.from_numpy(np.ascontiguousarray(wav))[None]).squeeze(0)


def clicks(wav: np.ndarray, joins: list[int], rate: int = 24000) -> int:
    """Joins whose sample step is over 4x the 95th percentile of the steps within 10 ms either side."""
    steps = np.abs(np.diff(wav.astype(np.float64)))
    span = rate // 100
    count = 0
    for at in joins:
        if not span <= at < len(wav) - span:
            continue
        around = np.concatenate([steps[at - span : at - 1], steps[at + 1 : at + span]])
        if steps[at - 1] > 4 * np.percentile(around, 95):
            count += 1
    return count


def fidelity_row(engine: Engine, text: str, voice: VoiceFeatures) -> list[float]:
    _, _, offline = narrate(engine, text, voice, 0, stream=False)
    _, _, stream = narrate(engine, text, voice, 0, stream=True)
    reference = np.concatenate([c.pcm for c in offline])
    pieces = [c.pcm for c in stream if len(c.pcm)]
    chunked = np.concatenate(pieces)
    joins = list(np.cumsum([len(p) for p in pieces])[:-1])
    n = min(len(reference), len(chunked))
    error = (log_mel(reference[:n]) - log_mel(chunked[:n])).abs()
    noise = float(np.sum((reference[:n] - chunked[:n]).astype(np.float64) ** 2))
    snr = 10 * np.log10(float(np.sum(reference[:n].astype(np.float64) ** 2)) / noise) if noise else float("inf")
    return [float(error.max()), float(error.mean()), snr, clicks(chunked, joins), len(joins)]


def load(checkpoint: Path, args: argparse.Namespace, first_block: int, look: int) -> Engine:
    return Engine.load(
        checkpoint,
        device=args.device,
        dtype=args.dtype,
        whisper_model="tiny-random",
        max_batch=max(args.n),
        stream_first_block=first_block,
        stream_first_look_ahead=look,
    )


def voices_of(engine: Engine, clips: list[Path]) -> list[VoiceFeatures]:
    return [
        engine.extract_voice(engine.prepare_reference(c), said).features
        for c, (_, said) in zip(clips, VOICES, strict=False)
    ]


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """The checkpoint and the engine's device, dtype and threads (shared with bench_stream_stall.py)."""
    parser.add_argument("--checkpoint", type=Path, help="checkpoint folder (default: a fresh random one of --size)")
    parser.add_argument("--size", choices=["tiny", "real"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")


def checkpoint_and_clips(args: argparse.Namespace, tmp: Path) -> tuple[Path, list[Path]]:
    """--checkpoint, or a random one of --size written into `tmp`; the reference clips; torch's threads set."""
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint
    if checkpoint is None:
        from glmtts_mcp.engine.checkpoint.tiny import make_tiny_checkpoint

        checkpoint = make_tiny_checkpoint(tmp / "GLM-TTS", size=args.size)
    return checkpoint, [_record(tmp / f"voice{i}.wav", v, said) for i, (v, said) in enumerate(VOICES)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_engine_arguments(parser)
    parser.add_argument("--n", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--lengths", nargs="+", choices=list(LENGTHS), default=list(LENGTHS))
    parser.add_argument(
        "--first-block", type=int, default=25, help="the latency rows' first block (look-ahead: half of it)"
    )
    parser.add_argument("--first-blocks", type=int, nargs="+", default=[25, 10], help="the fidelity rows'")
    parser.add_argument("--no-fidelity", action="store_true", help="only the latency rows")
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="stream mode once more with the first chunk beside the decoding (--stream-first-chunk-priority off)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, clips = checkpoint_and_clips(args, Path(tmp))
        engine = load(checkpoint, args, args.first_block, args.first_block // 2)
        voices = voices_of(engine, clips[: max(args.n)])
        narrate(engine, "Warm up.", voices[0], 0, stream=True)  # first calls pay one-time costs
        print(
            f"# {datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
            f"torch threads {torch.get_num_threads()}, checkpoint {args.checkpoint or args.size}, device {args.device}, "
            f"dtype {args.dtype}; first block {args.first_block} tokens (look-ahead {args.first_block // 2}), "
            "then upstream's"
        )
        print("seconds: p50/worst over the N callers; first: to the first audio, whole: to the segment's last")
        columns = ["offline first", "offline whole", "stream first", "stream whole"]
        if args.side_by_side:
            columns += ["side first", "side whole"]
        print(f"{'length':<8}{'N':>3}  " + "  ".join(f"{c:>13}" for c in columns))
        for length in args.lengths:
            for n in args.n:
                with fixed_length(engine, LENGTHS[length]), speech_ids_only(engine):
                    rows = [latency_row(engine, SENTENCES[length], voices, n, False)]
                    rows.append(latency_row(engine, SENTENCES[length], voices, n, True))
                    if args.side_by_side:
                        engine.first_chunk_priority = False
                        rows.append(latency_row(engine, SENTENCES[length], voices, n, True))
                        engine.first_chunk_priority = True
                cells = [f"{a:.2f}/{b:.2f}" for row in rows for a, b in (row[:2], row[2:])]
                print(f"{length:<8}{n:>3}  " + "  ".join(f"{c:>13}" for c in cells), flush=True)
        engine.unload()
        if args.no_fidelity:
            return
        print(f"\n{'first block':<12}  {'length':<8}{'mel max':>9}{'mel mean':>10}{'SNR dB':>8}  clicks/joins")
        for block in args.first_blocks:
            engine = load(checkpoint, args, block, block // 2)
            voice = voices_of(engine, clips[:1])[0]
            for length in args.lengths:
                with fixed_length(engine, LENGTHS[length]), speech_ids_only(engine):
                    row = fidelity_row(engine, SENTENCES[length], voice)
                print(
                    f"{block:<12}  {length:<8}{row[0]:>9.3f}{row[1]:>10.4f}{row[2]:>8.1f}  {row[3]}/{row[4]}",
                    flush=True,
                )
            engine.unload()


if __name__ == "__main__":
    main()
