"""The whole path, reference clip in and narration out, against upstream GLM-TTS's own pipeline.

    python benchmarks/e2e_parity.py --upstream DIR --checkpoint DIR --reference WAV --transcript TEXT \\
        --text TEXT --seed N [--reference-processing upstream|clean] [--stream] [--write-golden DIR]

Upstream runs in a worker process (benchmarks/e2e_upstream_worker.py: its jsonl_generate, frontend, segment
loop with the history cache, flow and vocoder calls; the workarounds are listed there and in
benchmarks/README.md) with its packages first on the import path: --upstream-pythonpath (or
GLMTTS_UPSTREAM_PYTHONPATH), os.pathsep-separated. Ours runs here on the same weights, clip, texts and seed:
Engine.prepare_reference + extract_voice + synthesize with the chosen reference processing. The table
compares prompt speech tokens, prompt mel, speaker embedding, each segment's LLM tokens, mel and wav, and
the whole narration; its last line is `e2e parity: PASS` or `e2e parity: FAIL (...)`.

--stream compares stream mode: upstream's `Token2Wav.token2wav_stream` on each segment's tokens (its default
blocks) against our chunks, replaying its recorded flow and vocoder draws (the two sides cannot share a
random stream: ours draws while the LLM still decodes). Rows: each segment's chunk lengths (equal) and wav.

--write-golden DIR stores the case (inputs, seed, upstream's outputs) so that the test suite can check our
pipeline against it without upstream (tests/engine/test_e2e_golden.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from glmtts_mcp.engine.parity.stream_cases import recorded_calls
from glmtts_mcp.engine.runtime import pipeline
from glmtts_mcp.engine.runtime.pipeline import MODEL_SAMPLE_RATE, Engine
from glmtts_mcp.engine.types import SynthesisOptions

HERE = Path(__file__).resolve().parent

# Largest differences accepted: token ids must be equal; floats within the module golden cases' tolerances
# (prompt mel: mel24k, embedding: the fbank case, mel: flow_real, wav: hift_real).
TOLERANCES = {"prompt_mel": 8e-4, "speaker_embedding": 2e-3, "mel": 9e-6, "wav": 1e-3}


@dataclass
class Ours:
    """What our pipeline made, in the worker's names."""

    tensors: dict[str, torch.Tensor]
    segment_texts: list[str]
    seconds: float  # clip in, narration out, with the models already loaded


def run_upstream(args: argparse.Namespace, out: Path) -> dict:
    """Run the worker; returns upstream.json (and upstream.safetensors lies beside it)."""
    extra = args.upstream_pythonpath or os.environ.get("GLMTTS_UPSTREAM_PYTHONPATH", "")
    paths = [str(args.upstream.resolve()), extra, str(HERE), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    command = [
        sys.executable,
        str(HERE / "e2e_upstream_worker.py"),
        str(args.upstream.resolve()),
        str(args.checkpoint.resolve()),
        str(args.reference.resolve()),
        args.transcript,
        args.text,
        str(args.seed),
        args.device,
        str(out),
        *(["stream"] if args.stream else []),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-6000:])
        sys.exit(
            f"upstream's pipeline did not finish (exit {done.returncode}): see its output above; "
            "benchmarks/README.md lists the packages it needs"
        )
    return json.loads((out / "upstream.json").read_text(encoding="utf-8"))


def run_ours(
    engine: Engine,
    reference: Path,
    transcript: str,
    text: str,
    seed: int,
    replay: list[list[dict[str, torch.Tensor]]] | None = None,
) -> Ours:
    """Our clone and narration, recording each segment's LLM tokens (all of them, as the LLM hands them to
    the segment) and, offline, the flow's mel. With `replay` (each segment's flow calls' draws), stream mode:
    each segment's chunker replays its draws instead of drawing, and its chunk lengths are recorded."""
    models = engine.models
    tokens: list[list[int]] = []
    mels: list[torch.Tensor] = []
    submit, flow, chunker = engine.scheduler.submit, models.flow.inference, pipeline.ChunkedToken2Wav
    draws = iter(replay or [])

    def recording_submit(request):
        future = submit(request)
        tokens.append([])
        future.add_done_callback(lambda done, into=tokens[-1]: into.extend(done.result()))
        return future

    def recording_flow(*args, **kwargs):
        mel = flow(*args, **kwargs)
        mels.append(mel.detach().float().cpu())
        return mel

    def replaying_chunker(*args, generator=None, **kwargs):
        return chunker(*args, recorded=next(draws), **kwargs)

    start = time.perf_counter()
    voice = engine.extract_voice(engine.prepare_reference(reference), transcript)
    engine.scheduler.submit, models.flow.inference = recording_submit, recording_flow
    pipeline.ChunkedToken2Wav = replaying_chunker
    try:
        options = SynthesisOptions(seed=seed, stream=replay is not None)
        chunks = [c for c in engine.synthesize(text, voice.features, options) if len(c.pcm)]
    finally:
        engine.scheduler.submit, models.flow.inference = submit, flow
        pipeline.ChunkedToken2Wav = chunker
    seconds = time.perf_counter() - start
    features = voice.features.tensors
    tensors = {
        "prompt_speech_ids": features["prompt_speech_ids"],
        "prompt_mel": features["prompt_mel"],
        "speaker_embedding": features["speaker_embedding"],
        "narration": torch.from_numpy(np.concatenate([c.pcm for c in chunks])),
    }
    segment_texts = []
    for index in sorted({c.segment_index for c in chunks}):
        pieces = [c.pcm for c in chunks if c.segment_index == index]
        segment_texts.append(next(c.text for c in chunks if c.segment_index == index))
        tensors[f"segment{index}.wav"] = torch.from_numpy(np.concatenate(pieces))
        if replay is not None:
            tensors[f"segment{index}.chunk_lengths"] = torch.tensor([len(p) for p in pieces], dtype=torch.int64)
    for index, ids in enumerate(tokens):
        tensors[f"segment{index}.tokens"] = torch.tensor(ids, dtype=torch.int64)
    for index, mel in enumerate(mels):
        tensors[f"segment{index}.mel"] = mel
    return Ours(tensors, segment_texts, seconds)


def upstream_draws(theirs: dict[str, torch.Tensor], calls: list[int]) -> list[list[dict[str, torch.Tensor]]]:
    """Each segment's recorded token2wav_stream draws, per flow call, as ChunkedToken2Wav replays them."""
    return [recorded_calls(theirs, count, prefix=f"segment{index}.") for index, count in enumerate(calls)]


def _max_error(a: torch.Tensor, b: torch.Tensor) -> float | None:
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    return None if a.shape != b.shape else float((a - b).abs().max()) if a.numel() else 0.0


def compare(
    ours: dict[str, torch.Tensor],
    theirs: dict[str, torch.Tensor],
    segments: int,
    tolerances: dict[str, float] = TOLERANCES,
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Table rows (what, result, limit) and the failures; shared with the golden test."""
    rows: list[tuple[str, str, str]] = []
    failures: list[str] = []

    def ids(name: str, label: str) -> None:
        a, b = ours.get(name), theirs.get(name)
        a_list = [] if a is None else a.flatten().tolist()
        b_list = [] if b is None else b.flatten().tolist()
        same = a_list == b_list
        rows.append(
            (label, f"{'equal' if same else 'DIFFERENT'} ({len(a_list)} ours, {len(b_list)} upstream)", "equal")
        )
        if not same:
            failures.append(f"{label} differ")

    def lengths(name: str, label: str) -> None:
        a, b = ours.get(name), theirs.get(name)
        a_list = [] if a is None else a.tolist()
        b_list = [] if b is None else b.tolist()
        rows.append(
            (label, f"{'equal' if a_list == b_list else 'DIFFERENT'} {a_list} ours, {b_list} upstream", "equal")
        )
        if a_list != b_list:
            failures.append(f"{label} differ")

    def floats(name: str, label: str, limit: float) -> None:
        a, b = ours.get(name), theirs.get(name)
        error = None if a is None or b is None else _max_error(a, b)
        if error is None:
            shapes = [None if t is None else tuple(t.squeeze().shape) for t in (a, b)]
            rows.append((label, f"shapes differ {shapes[0]} vs {shapes[1]}", f"{limit:g}"))
            failures.append(f"{label}: shapes differ")
            return
        rows.append((label, f"max error {error:.3g}", f"{limit:g}"))
        if error > limit:
            failures.append(f"{label} {error:.3g} > {limit:g}")

    ids("prompt_speech_ids", "prompt speech tokens")
    floats("prompt_mel", "prompt mel", tolerances["prompt_mel"])
    floats("speaker_embedding", "speaker embedding", tolerances["speaker_embedding"])
    our_segments = sum(1 for k in ours if k.endswith(".wav"))
    if our_segments != segments:
        failures.append(f"{our_segments} segments here, {segments} upstream")
    rows.append(("segments", f"{our_segments} ours, {segments} upstream", "equal"))
    for index in range(segments):
        ids(f"segment{index}.tokens", f"segment {index + 1}: LLM tokens")
        if f"segment{index}.chunk_lengths" in theirs:  # stream mode: no single mel, the chunks instead
            lengths(f"segment{index}.chunk_lengths", f"segment {index + 1}: chunk samples")
        else:
            floats(f"segment{index}.mel", f"segment {index + 1}: mel", tolerances["mel"])
        floats(f"segment{index}.wav", f"segment {index + 1}: wav", tolerances["wav"])
    a, b = ours["narration"], theirs["narration"]
    rows.append(("narration length", f"{a.numel()} ours, {b.numel()} upstream samples", "equal"))
    if a.numel() != b.numel():
        failures.append(f"narration length {a.numel()} != {b.numel()}")
    else:
        floats("narration", "narration wav", tolerances["wav"])
    return rows, failures


def print_table(title: str, rows: list[tuple[str, str, str]], failures: list[str]) -> None:
    print(title)
    width = max(len(r[0]) for r in rows)
    result_width = max(len(r[1]) for r in rows)
    print(f"{'':<{width}}  {'ours vs upstream':<{result_width}}  limit")
    for what, result, limit in rows:
        print(f"{what:<{width}}  {result:<{result_width}}  {limit}")
    print("e2e parity: PASS" if not failures else f"e2e parity: FAIL ({'; '.join(failures)})")


def write_golden(folder: Path, args: argparse.Namespace, theirs: dict[str, torch.Tensor], meta: dict) -> None:
    """The case: the reference clip, the texts and seed, upstream's outputs, and how they were made."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.reference, folder / "reference.wav")
    save_file({k: v.contiguous() for k, v in theirs.items()}, folder / "upstream.safetensors")
    case = {
        "kind": "e2e",
        "upstream_commit": args.upstream_commit,
        "entry_point": "glmtts_inference.jsonl_generate (via benchmarks/e2e_upstream_worker.py)",
        "checkpoint": {
            "maker": "glmtts_mcp.engine.checkpoint.tiny.make_tiny_checkpoint",
            "size": args.golden_checkpoint_size,
            "seed": args.golden_checkpoint_seed,
        },
        "transcript": args.transcript,
        "text": args.text,
        "seed": args.seed,
        "reference_processing": args.reference_processing,
        "stream_calls": meta["stream_calls"],
        "device": args.device,
        "segments": meta["segments"],
        "segment_texts": meta["segment_texts"],
        "history": meta["history"],
        "tolerance": TOLERANCES,
        "environment": {"torch": torch.__version__, "transformers (upstream side)": meta["transformers"]},
    }
    (folder / "e2e.json").write_text(json.dumps(case, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--upstream",
        type=Path,
        default=os.environ.get("GLMTTS_UPSTREAM"),
        required=False,
        help="an extracted GLM-TTS checkout (default: $GLMTTS_UPSTREAM)",
    )
    parser.add_argument(
        "--upstream-pythonpath",
        help="upstream's packages (transformers<5, WeTextProcessing, "
        "x_transformers, ...), os.pathsep-separated (default: $GLMTTS_UPSTREAM_PYTHONPATH)",
    )
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--transcript", required=True)
    parser.add_argument("--text", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-processing", choices=["upstream", "clean"], default="upstream")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stream", action="store_true", help="stream mode against upstream's token2wav_stream")
    parser.add_argument("--write-golden", type=Path, help="store this case (inputs, seed, upstream's outputs)")
    parser.add_argument(
        "--upstream-commit", default="c5dc7aecc3b4032032d631b271e767893984f821", help="recorded in the golden case"
    )
    parser.add_argument("--golden-checkpoint-size", default="tiny", help="recorded in the golden case")
    parser.add_argument("--golden-checkpoint-seed", type=int, default=0, help="recorded in the golden case")
    args = parser.parse_args(argv)
    if args.upstream is None or not (Path(args.upstream) / "glmtts_inference.py").is_file():
        parser.error("--upstream must name a GLM-TTS checkout (the folder holding glmtts_inference.py)")
    if args.stream and args.reference_processing != "upstream":
        parser.error(
            "--stream replays upstream's flow and vocoder draws, whose shapes follow upstream's prompt: "
            "use it with --reference-processing upstream"
        )
    args.upstream = Path(args.upstream)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    with tempfile.TemporaryDirectory() as tmp:
        meta = run_upstream(args, Path(tmp))
        theirs = load_file(str(Path(tmp) / "upstream.safetensors"))
    engine = Engine.load(
        args.checkpoint, device=args.device, dtype="float32", reference_processing=args.reference_processing
    )
    replay = upstream_draws(theirs, meta["stream_calls"]) if args.stream else None
    ours = run_ours(engine, args.reference, args.transcript, args.text, args.seed, replay)
    rows, failures = compare(ours.tensors, theirs, meta["segments"])
    dropped = sum(h.get("dropped", 0) for h in meta["history"])
    print_table(
        f"checkpoint {args.checkpoint}, reference processing {args.reference_processing}, seed {args.seed}, "
        f"{'stream' if args.stream else 'offline'} mode, "
        f"{meta['segments']} segment(s); non-audio LLM ids dropped before the flow: {dropped}",
        rows,
        failures,
    )
    audio_s = ours.tensors["narration"].numel() / MODEL_SAMPLE_RATE
    print(
        f"clip in, narration out ({audio_s:.2f} s of audio, models loaded): ours {ours.seconds:.1f} s, "
        f"upstream {meta['seconds']:.1f} s, upstream/ours {meta['seconds'] / ours.seconds:.2f}x"
    )
    if args.write_golden:
        write_golden(args.write_golden, args, theirs, meta)
    return 0 if not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
