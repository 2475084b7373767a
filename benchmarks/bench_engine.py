"""Time the engine on one voice and one paragraph; print a table.

    python benchmarks/bench_engine.py                       # tiny random checkpoint, CPU
    python benchmarks/bench_engine.py --checkpoint DIR --device cuda

    python benchmarks/bench_engine.py --upstream /tmp/glmtts-upstream   # also time upstream's code

Rows: model load, each clone stage (Whisper, text, speech tokenizer, CAMPPlus, mel), synthesis
from stored features (what the library does) vs from the raw reference (decode + clone + synthesize),
time to first chunk, real-time factor (compute seconds per audio second), peak memory, and the
prompt-processing overhead of the stored-feature path as a share of synthesis time.

--upstream DIR times upstream GLM-TTS's own modules (an extracted checkout; its extra packages,
e.g. x_transformers==1.42.26, einops, scipy, librosa, hyperpyyaml, peft, must be importable, see
benchmarks/README.md) on the same weights, inputs and seed, stage by stage, and prints the time
ratio and the largest output difference. A stage upstream cannot build here is named with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

import upstream_glmtts  # benchmarks/upstream_glmtts.py: building upstream's modules on our checkpoint
from glmtts_mcp.engine.checkpoint.layout import SPEECH_TOKENIZER_DIR
from glmtts_mcp.engine.models.llm import RasSettings
from glmtts_mcp.engine.runtime.pipeline import Engine
from glmtts_mcp.engine.runtime.scheduler import SpeechRequest
from glmtts_mcp.engine.types import AudioInputError, SynthesisOptions, VoiceFeatures

T = TypeVar("T")
U = TypeVar("U")

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


def _paired_times(
    ours: Callable[[], T], theirs: Callable[[], U], repeats: int, device: torch.device
) -> tuple[float, T, float, U]:
    """Median wall seconds of ours and theirs, run alternately (a shared machine's load drifts; the
    ratio of interleaved runs is what stays comparable), after one warm-up call of each; last results."""
    result_ours, result_theirs = ours(), theirs()
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        for fn, times in ((ours, t_ours), (theirs, t_theirs)):
            _sync(device)
            start = time.perf_counter()
            result = fn()
            _sync(device)
            times.append(time.perf_counter() - start)
            if fn is ours:
                result_ours = result
            else:
                result_theirs = result
    return statistics.median(t_ours), result_ours, statistics.median(t_theirs), result_theirs


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> str:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if a.shape != b.shape:
        return f"shapes differ {tuple(a.shape)} vs {tuple(b.shape)}"
    return f"max abs diff {float((a - b).abs().max()):.3g}"


# Upstream's speech tokenizer runs in a worker process: its utils/whisper_models needs transformers<5
# (pass a folder holding one with --upstream-pythonpath). SpeechTokenizer.extract_speech_token and
# yaml_util.load_quantize_encoder hard-code .cuda(), so the worker builds upstream's WhisperVQEncoder
# as load_quantize_encoder does (encoder only, layers < quantize_position, no final layer_norm) and
# calls it as extract_speech_token does, on the benchmark's device. Prints JSON: median seconds, ids.
UPSTREAM_SPEECH_WORKER = """
import glob, json, os, statistics, sys, time
import numpy as np, safetensors, torch, transformers
from transformers import WhisperFeatureExtractor
from utils.whisper_models.configuration_whisper import WhisperVQConfig
from utils.whisper_models.modeling_whisper import WhisperVQEncoder
folder, wav_path, repeats, device = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
config = WhisperVQConfig.from_pretrained(folder)
config.quantize_encoder_only = True
model = WhisperVQEncoder(config)
state = {}
for path in glob.glob(os.path.join(folder, "model*.safetensors")):
    with safetensors.safe_open(path, framework="pt", device="cpu") as f:
        for key in f.keys():
            name = key[len("model.encoder."):]
            if not key.startswith("model.encoder.") or name.startswith("layer_norm"):
                continue
            if name.startswith("layers") and int(name.split(".")[1]) >= config.quantize_position:
                continue
            state[name] = f.get_tensor(key)
model.load_state_dict(state)
model = model.eval().to(device)
extractor = WhisperFeatureExtractor.from_pretrained(folder)
audio = np.load(wav_path)
conv = model.conv1.stride[0] * model.conv2.stride[0]
stride = conv * (model.config.pooling_kernel_size or 1) * extractor.hop_length
def tokenize():
    with torch.no_grad():
        features = extractor([audio], sampling_rate=16000, return_attention_mask=True, return_tensors="pt",
                             padding="longest", pad_to_multiple_of=stride).to(device)
        ids = model(**features).quantized_token_ids
        mask = features.attention_mask[:, ::conv][:, ::model.config.pooling_kernel_size]
        out = ids[0][mask[0].bool()].tolist()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return out
ids = tokenize()
times = []
for _ in range(repeats):
    start = time.perf_counter()
    ids = tokenize()
    times.append(time.perf_counter() - start)
print(json.dumps({"seconds": statistics.median(times), "ids": ids, "transformers": transformers.__version__}))
"""


def _upstream_speech_tokenizer(
    upstream: Path, pythonpath: str | None, checkpoint: Path, wav16k: torch.Tensor, repeats: int, device: torch.device
) -> tuple[float, list[int], str]:
    """(median seconds, token ids, transformers version) of upstream's speech tokenizer, run in a worker."""
    paths = [str(upstream.resolve()), *([pythonpath] if pythonpath else []), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "wav16k.npy"
        np.save(wav_path, wav16k.numpy().astype(np.float32))
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                UPSTREAM_SPEECH_WORKER,
                str(checkpoint / SPEECH_TOKENIZER_DIR),
                str(wav_path),
                str(repeats),
                str(device),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(
            f"worker failed ({last}); upstream's whisper_models needs transformers<5: see --upstream-pythonpath"
        )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["seconds"], result["ids"], result["transformers"]


def _stage_row(stage: str, ours: float, theirs: float, parity: str) -> tuple[str, str, str, str, str]:
    return (stage, f"{ours * 1000:.1f} ms", f"{theirs * 1000:.1f} ms", f"{theirs / ours:.2f}x", parity)


def compare_with_upstream(
    engine: Engine,
    checkpoint: Path,
    upstream: Path,
    voice: VoiceFeatures,
    reference_16k: torch.Tensor,
    seed: int,
    repeats: int,
    pythonpath: str | None = None,
) -> list[tuple[str, ...]]:
    """Stage-by-stage timings of our modules and upstream's on the same weights, inputs and seed.

    Each row: stage, ours, upstream, upstream/ours, output agreement. A stage upstream cannot
    build here (a missing package, an incompatible library) gives a row naming the reason.
    """
    models = engine.models
    device = models.device
    features = voice.tensors
    prompt_speech = features["prompt_speech_ids"].tolist()
    prompt_text = features["prompt_text_ids"].tolist()
    text_ids = models.text_tokenizer.encode("Every morning he rowed out before sunrise to check his nets.")
    rows: list[tuple[str, ...]] = []
    mel_for_vocoder: torch.Tensor | None = None

    def guarded(stage: str, run: Callable[[], tuple[str, ...]]) -> None:
        try:
            rows.append(run())
        except Exception as exc:  # the table names what could not be compared, and why
            rows.append((stage, "-", "-", "-", f"upstream not built: {type(exc).__name__}: {exc}"[:160]))

    def llm_stage() -> tuple[str, ...]:
        special = {k: int(v) for k, v in vars(models.special).items()}
        theirs_model = upstream_glmtts.build_llm(checkpoint, special, device)

        def as_tensor(ids: list[int]) -> torch.Tensor:
            return torch.tensor([ids], dtype=torch.long, device=device)

        def theirs() -> list[int]:
            torch.manual_seed(seed)
            out = theirs_model.inference(
                as_tensor(text_ids),
                len(text_ids),
                as_tensor(prompt_text),
                len(prompt_text),
                as_tensor(prompt_speech),
                len(prompt_speech),
            )
            return [int(t) for t in torch.as_tensor(out).flatten().tolist()]

        def ours() -> list[int]:  # the engine's scheduler, alone in it
            return engine.scheduler.submit(
                SpeechRequest(text_ids, prompt_text, prompt_speech, RasSettings(), torch.Generator().manual_seed(seed))
            ).result()

        t_ours, our_tokens, t_theirs, their_tokens = _paired_times(ours, theirs, repeats, device)
        # Per generated token (+1 for the end-of-audio step): a sampling difference would change the lengths.
        per_ours, per_theirs = t_ours / max(1, len(our_tokens) + 1), t_theirs / max(1, len(their_tokens) + 1)
        with torch.inference_mode():
            logits = models.llm.teacher_forced_logits(text_ids, prompt_text, prompt_speech, their_tokens)
            ids = models.llm.prompt_ids(text_ids, prompt_text, prompt_speech)
            ids = ids + [special["ats"] + t for t in their_tokens]
            up_logits = theirs_model.llama(inputs_embeds=theirs_model.llama_embedding(as_tensor(ids))).logits
            up_logits = up_logits[0, len(ids) - len(their_tokens) - 1 :].float()
        same = sum(a == b for a, b in zip(our_tokens, their_tokens, strict=False))
        parity = (
            f"{same}/{max(len(our_tokens), len(their_tokens))} tokens equal (same seed); teacher-forced "
            f"logits over upstream's tokens: {_max_abs(logits, up_logits)}"
        )
        return (
            "LLM (per generated token)",
            f"{per_ours * 1000:.2f} ms",
            f"{per_theirs * 1000:.2f} ms",
            f"{per_theirs / per_ours:.2f}x",
            parity,
        )

    def flow_stage() -> tuple[str, ...]:
        nonlocal mel_for_vocoder
        theirs_model = upstream_glmtts.build_flow(checkpoint, device)
        vocab = models.flow.config.vocab_size
        tokens = torch.randint(0, vocab, (1, 3 * len(text_ids)), generator=torch.Generator().manual_seed(seed))
        prompt_tokens = features["prompt_speech_ids"][None].to(device)
        prompt_mel = features["prompt_mel"][None].to(device)
        embedding = features["speaker_embedding"][None].to(device)
        tokens = tokens.to(device)
        frames = models.flow.frame_count(prompt_tokens.shape[1] + tokens.shape[1])

        def theirs() -> torch.Tensor:
            torch.manual_seed(seed)  # upstream draws its initial noise with torch.randn_like from the global RNG
            with torch.inference_mode():
                return theirs_model.inference_with_cache(tokens, prompt_tokens, prompt_mel, embedding)[0]

        def ours() -> torch.Tensor:
            torch.manual_seed(seed)
            noise = torch.randn(1, frames, models.flow.config.mel_dim).to(device)  # the same draw as upstream's
            return models.flow.inference(prompt_tokens, prompt_mel, tokens, embedding, noise=noise)

        t_ours, our_mel, t_theirs, their_mel = _paired_times(ours, theirs, repeats, device)
        mel_for_vocoder = our_mel.float()
        return _stage_row(f"flow ({tokens.shape[1]} tokens, 10 steps)", t_ours, t_theirs, _max_abs(our_mel, their_mel))

    def hift_stage() -> tuple[str, ...]:
        if mel_for_vocoder is None:
            raise RuntimeError("no mel: the flow stage did not run")
        theirs_model = upstream_glmtts.build_hift(checkpoint, device)
        mel = mel_for_vocoder

        def theirs() -> torch.Tensor:
            torch.manual_seed(seed)
            with torch.inference_mode():
                return theirs_model.inference(speech_feat=mel)[0]

        def ours() -> torch.Tensor:
            torch.manual_seed(seed)  # with no generator ours draws from the global RNG in upstream's order
            with torch.inference_mode():
                return models.hift.inference(mel)[0]

        t_ours, our_wav, t_theirs, their_wav = _paired_times(ours, theirs, repeats, device)
        return _stage_row(
            f"HiFT vocoder ({mel.shape[-1]} frames)", t_ours, t_theirs, _max_abs(our_wav.flatten(), their_wav.flatten())
        )

    def speech_tokenizer_stage() -> tuple[str, ...]:
        wav = reference_16k.float()[None]  # [1, T]
        t_theirs, their_ids, version = _upstream_speech_tokenizer(
            upstream, pythonpath, checkpoint, wav[0], repeats, device
        )
        models.speech_tokenizer.tokenize(wav)  # warm-up, as the worker's
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            our_ids = models.speech_tokenizer.tokenize(wav).tolist()
            times.append(time.perf_counter() - start)
        t_ours = statistics.median(times)
        same = sum(a == b for a, b in zip(our_ids, their_ids, strict=False))
        return _stage_row(
            f"speech tokenizer ({wav.shape[1] / 16000:.1f} s)",
            t_ours,
            t_theirs,
            f"{same}/{max(len(our_ids), len(their_ids))} token ids equal "
            f"(upstream in a worker, transformers {version})",
        )

    with upstream_glmtts.on_path(upstream):
        guarded("LLM", llm_stage)
        guarded("flow", flow_stage)
        guarded("HiFT vocoder", hift_stage)
        guarded("speech tokenizer", speech_tokenizer_stage)
    return rows


def _prompt_processing(engine: Engine, features: VoiceFeatures, repeats: int = 20) -> float:
    """Seconds the stored-feature path spends on the prompt before generating: move the stored
    tensors to the device and list the prompt ids (what a clone would otherwise recompute)."""
    device = engine.device
    start = time.perf_counter()
    for _ in range(repeats):
        moved = {name: tensor.to(device) for name, tensor in features.tensors.items()}
        moved["prompt_text_ids"].tolist(), moved["prompt_speech_ids"].tolist()
    _sync(device)
    return (time.perf_counter() - start) / repeats


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
    parser.add_argument("--upstream", type=Path, help="upstream GLM-TTS checkout: also time its modules (README)")
    parser.add_argument("--no-whisper", action="store_true", help="skip the Whisper rows (the fastest run)")
    parser.add_argument(
        "--upstream-pythonpath",
        help="import path for the worker running upstream's speech "
        "tokenizer, which needs transformers<5 (benchmarks/README.md)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per stage in the upstream comparison")
    args = parser.parse_args(argv)
    if args.upstream and not (args.upstream / "flow" / "flow.py").is_file():
        sys.exit(f"{args.upstream} is not a GLM-TTS checkout (no flow/flow.py): pass the folder holding it")
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        whisper_model = args.whisper_model
        if checkpoint is None:
            from glmtts_mcp.engine.checkpoint.tiny import TINY_WHISPER, make_tiny_checkpoint

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
        engine.extract_voice(ref, REFERENCE_TEXT)  # warm-up (lazy inits, kernels)
        whisper_timings: dict[str, float] = {}
        clone_whisper = None
        if not args.no_whisper:
            start = time.perf_counter()
            engine.transcriber.transcribe(np.zeros(16000, dtype=np.float32), "en")  # load Whisper (not timed below)
            rows.append(("Whisper load + warm-up", f"{time.perf_counter() - start:.2f} s"))
            _sync(device)
            start = time.perf_counter()
            with contextlib.suppress(AudioInputError):  # a random-weight Whisper may hear no words; the time is real
                whisper_timings = engine.extract_voice(ref, None).timings
            _sync(device)
            clone_whisper = time.perf_counter() - start
        start = time.perf_counter()
        voice = engine.extract_voice(ref, REFERENCE_TEXT)
        _sync(device)
        clone = time.perf_counter() - start
        for stage in ("whisper", "text", "speech_tokenizer", "campplus", "mel"):
            seconds = whisper_timings.get(stage) if stage == "whisper" else voice.timings.get(stage)
            skipped = "skipped (--no-whisper)" if args.no_whisper else "-"
            rows.append((f"clone: {stage}", f"{seconds * 1000:.1f} ms" if seconds is not None else skipped))
        rows.append(("clone total (transcript given)", f"{clone:.3f} s"))
        rows.append(
            (
                "clone total (Whisper transcribes)",
                f"{clone_whisper:.3f} s" if clone_whisper is not None else "skipped (--no-whisper)",
            )
        )

        options = SynthesisOptions(seed=args.seed)
        _synthesize(engine, "Warm up.", voice.features, options)
        first, total, audio_s = _synthesize(engine, args.text, voice.features, options)
        rows.append(("synthesis from stored features", f"{total:.2f} s for {audio_s:.1f} s of audio"))
        rows.append(("  time to first chunk", f"{first:.2f} s"))
        rows.append(("  real-time factor", f"{total / audio_s:.3f}" if audio_s else "-"))
        prompt_s = _prompt_processing(engine, voice.features)
        rows.append(
            (
                "  prompt processing (stored features)",
                f"{prompt_s * 1000:.2f} ms = {100 * prompt_s / total:.3f} % of synthesis (target < 1 %)",
            )
        )

        start = time.perf_counter()
        raw_voice = engine.extract_voice(engine.prepare_reference(reference), REFERENCE_TEXT)
        first_raw, total_raw, _ = _synthesize(engine, args.text, raw_voice.features, options)
        raw_total = time.perf_counter() - start
        rows.append(("synthesis from raw reference audio", f"{raw_total:.2f} s (clone + synthesis)"))
        rows.append(("  time to first chunk", f"{raw_total - total_raw + first_raw:.2f} s"))
        raw_prompt = raw_total - total_raw
        rows.append(
            (
                "  prompt processing (decode + clone)",
                f"{raw_prompt * 1000:.0f} ms = {100 * raw_prompt / total_raw:.2f} % of synthesis",
            )
        )

        rows.append(("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"))
        if device.type == "cuda":
            rows.append(("peak CUDA allocated", f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"))
        params = engine.memory_info().get("parameter_bytes", {})
        rows.append(("parameters", ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in params.items())))
        upstream_rows: list[tuple[str, ...]] = []
        if args.upstream:
            from glmtts_mcp.engine.frontend.reference_clip import reference_pcm_at

            wav16k = reference_pcm_at(ref, 16000)[0]
            upstream_rows = compare_with_upstream(
                engine,
                checkpoint,
                args.upstream,
                voice.features,
                wav16k,
                args.seed,
                args.repeats,
                args.upstream_pythonpath,
            )

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"checkpoint {args.checkpoint or 'tiny (random weights)'}, device {device} ({gpu}), "
        f"LLM {engine.dtype}, torch threads {torch.get_num_threads()}"
    )
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if upstream_rows:
        print(f"\nupstream {args.upstream} vs ours, same weights, inputs and seed (median of {args.repeats}):")
        header = ("stage", "ours", "upstream", "upstream/ours", "outputs")
        widths = [max(len(r[i]) for r in [header, *upstream_rows]) for i in range(4)]
        for row in [header, *upstream_rows]:
            print("  ".join(f"{cell:<{w}}" for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return 0 if np.isfinite(total) else 1


if __name__ == "__main__":
    raise SystemExit(main())
