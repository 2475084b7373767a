"""Precision and memory: each golden case's module in fp32, bf16 and fp16; print a table.

    python benchmarks/bench_precision.py                         # tests/golden, CPU
    python benchmarks/bench_precision.py DIR --device cuda --cases flow_real llm_real

For every case with float outputs (kinds flow, llm, hift, speech_tokenizer) and every dtype the
module supports, the table gives the largest deviation of the main output from our fp32 run and
from upstream's recorded output, token agreement where the output is ids (LLM: teacher-forced
argmax; speech tokenizer: the token ids), and peak memory: on CPU the peak RSS of a fresh worker
process per setting (so settings do not inherit each other's peaks), on CUDA max_memory_allocated.
Modules are built by the parity runners' loaders, from each case's config and weights.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from glmtts_mcp.engine.parity import find_cases

DEFAULT_GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Modules that run in fp32 only, and why (the other dtypes get a row saying so).
FP32_ONLY = {
    "hift": "HiFT runs in fp32 only (the vocoder refuses other dtypes: its STFT and phase integration need fp32)"
}


@dataclass
class Measurement:
    """One (case, dtype) run: the main output, ids where the module makes ids, and peak memory."""

    output: list | None = None
    ids: list[int] | None = None
    peak_mib: float = float("nan")
    base_mib: float = 0.0  # CPU: the RSS peak before building the module (imports), so the table shows the growth
    error: str = ""


def _flow(folder: Path, case: dict, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, None]:
    from glmtts_mcp.engine.parity.flow_cases import INPUT_NAMES, load_case_flow

    flow, io = load_case_flow(folder, case)
    flow = flow.to(device=device, dtype=dtype)
    inputs = {arg: io[name].to(device) for arg, name in INPUT_NAMES.items()}
    mel = flow.inference(**inputs, n_timesteps=int(case["config"]["n_timesteps"]))
    return mel, None


def _llm(folder: Path, case: dict, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, list[int]]:
    from glmtts_mcp.engine.parity import load_case_tensors
    from glmtts_mcp.engine.parity.llm_cases import load_case_llm

    _, io = load_case_tensors(folder)
    from glmtts_mcp.engine.models.cpu_linear import prepack_llm_linears

    llm = load_case_llm(folder, case, dtype=dtype)
    llm.model.to(device)
    prepack_llm_linears(llm.model)  # as the engine loads it (CPU: oneDNN where it runs the dtype)
    with torch.inference_mode():
        logits = llm.teacher_forced_logits(
            io["text_token"][0].tolist(),
            io["prompt_text_token"][0].tolist(),
            io["prompt_speech_token"][0].tolist(),
            io["speech_token_out"][0].tolist(),
        )
    return logits, logits.argmax(dim=-1).tolist()


def _hift(folder: Path, case: dict, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, None]:
    from glmtts_mcp.engine.models.vocoder import DRAW_RAND_INI, DRAW_SINE_NOISE
    from glmtts_mcp.engine.parity.vocoder_cases import load_case_hift

    model, io = load_case_hift(folder, case)
    model = model.to(device=device, dtype=dtype)
    draws = {name: io[name].to(device) for name in (DRAW_RAND_INI, DRAW_SINE_NOISE)}
    with torch.inference_mode():
        wav, _, _ = model.inference(io["mel"].to(device, dtype), draws=draws)
    return wav, None


def _speech_tokenizer(
    folder: Path, case: dict, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, list[int]]:
    from glmtts_mcp.engine.parity.speech_tokenizer_cases import load_case_speech_tokenizer

    tokenizer, io = load_case_speech_tokenizer(folder, case)
    tokenizer.encoder.to(device=device, dtype=dtype)
    with torch.inference_mode():  # encode()'s two steps, the log-mel cast to the encoder's dtype
        features, frame_mask = tokenizer.features([io["wav16k"][0].to(device)], tokenizer.pad_to_multiple_of)
        out = tokenizer.encoder(features.to(dtype), frame_mask)
    return out.pre_vq_hidden, out.token_ids.flatten().tolist()


# kind -> (runner, the golden output the main output is compared with, the golden ids compared with the ids)
KINDS: dict[str, tuple[Callable, str, str | None]] = {
    "flow": (_flow, "mel", None),
    "llm": (_llm, "teacher_forced_logits", None),
    "hift": (_hift, "wav", None),
    "speech_tokenizer": (_speech_tokenizer, "pre_vq_hidden", "quantized_token_ids_padded"),
}


def measure(folder: Path, dtype_name: str, device: torch.device) -> Measurement:
    """Run one case's module in one dtype; memory is this process's peak (a fresh process per setting)."""
    case = json.loads((folder / "case.json").read_text())
    runner = KINDS[case["kind"]][0]
    base = 0.0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        output, ids = runner(folder, case, DTYPES[dtype_name], device)
    except Exception as exc:  # a dtype the module cannot run is a row naming why
        return Measurement(error=f"{type(exc).__name__}: {exc}"[:120])
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Measurement(output.detach().float().cpu().tolist(), ids, peak, base)


def _in_worker(folder: Path, dtype_name: str, device: str) -> Measurement:
    """measure() in a fresh interpreter, so the CPU peak RSS is this setting's alone."""
    done = subprocess.run(
        [sys.executable, __file__, "--worker", str(folder), dtype_name, "--device", device],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return Measurement(error=f"worker failed: {done.stderr.strip().splitlines()[-1:]}")
    return Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> str:
    if a.shape != b.shape:
        return f"shape {tuple(a.shape)}"
    finite = torch.isfinite(a) & torch.isfinite(b)
    if not finite.all():
        return f"{int((~finite).sum())} non-finite"
    return f"{float((a.double() - b.double()).abs().max()):.3g}"


def _agreement(ids: list[int] | None, reference: list[int] | None) -> str:
    if ids is None or reference is None:
        return "-"
    if len(ids) != len(reference):
        return f"{len(ids)} vs {len(reference)} ids"
    return f"{sum(a == b for a, b in zip(ids, reference, strict=True))}/{len(ids)}"


def table(
    golden: Path, cases: list[str] | None, dtypes: list[str], device: torch.device, isolate: bool
) -> list[tuple[str, ...]]:
    """One row per (case, dtype): deviations from fp32 and from upstream, id agreement, peak memory."""
    from glmtts_mcp.engine.parity import load_case_tensors

    rows: list[tuple[str, ...]] = []
    for folder in find_cases(golden):
        case = json.loads((folder / "case.json").read_text())
        kind = case["kind"]
        if kind not in KINDS or (cases and folder.name not in cases):
            continue
        _, io = load_case_tensors(folder)
        _, golden_name, golden_ids_name = KINDS[kind]
        expected = io[golden_name].double()
        if kind == "llm":  # the golden ids are the argmax of upstream's teacher-forced logits
            expected_ids = expected.argmax(dim=-1).tolist()
        else:
            expected_ids = io[golden_ids_name].flatten().tolist() if golden_ids_name else None
        fp32: Measurement | None = None
        for name in ["fp32", *[d for d in dtypes if d != "fp32"]]:
            if name != "fp32" and kind in FP32_ONLY:
                rows.append((folder.name, name, "-", "-", "-", "-", "-", FP32_ONLY[kind]))
                continue
            m = _in_worker(folder, name, str(device)) if isolate else measure(folder, name, device)
            if name == "fp32":
                fp32 = m
            if name not in dtypes:
                continue
            if m.error:
                rows.append((folder.name, name, "-", "-", "-", "-", "-", f"not supported here: {m.error}"))
                continue
            out = torch.tensor(m.output).reshape(expected.shape) if m.output is not None else expected
            ref = torch.tensor(fp32.output).reshape(expected.shape) if fp32 and not fp32.error else None
            rows.append(
                (
                    folder.name,
                    name,
                    _max_abs(out, ref) if ref is not None else "-",
                    _max_abs(out, expected),
                    _agreement(m.ids, fp32.ids if fp32 else None),
                    _agreement(m.ids, expected_ids),
                    f"{m.peak_mib:.0f} MiB" + (f" (+{m.peak_mib - m.base_mib:.0f})" if m.base_mib else ""),
                    golden_name,
                )
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("golden", type=Path, nargs="?", default=DEFAULT_GOLDEN, help="folder of golden case folders")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--cases", nargs="+", help="case folder names (default: every case of a float kind)")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="no worker process per setting: faster, but CPU peak RSS then accumulates",
    )
    parser.add_argument("--worker", nargs=2, metavar=("CASE_DIR", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.worker:
        print(json.dumps(asdict(measure(Path(args.worker[0]), args.worker[1], device))))
        return 0
    if not args.golden.is_dir():
        sys.exit(f"{args.golden} is not a folder of golden cases: pass it as the first argument")
    rows = table(args.golden, args.cases, args.dtypes, device, isolate=not args.in_process and device.type == "cpu")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    memory = (
        "CUDA max_memory_allocated"
        if device.type == "cuda"
        else ("peak RSS of the process so far" if args.in_process else "peak RSS of a fresh process")
    )
    if device.type == "cpu":
        memory += " (+ growth over the RSS peak before building the module)"
    print(f"golden {args.golden}, device {device} ({gpu}), torch threads {torch.get_num_threads()}, memory: {memory}")
    header = ("case", "dtype", "vs fp32", "vs upstream", "ids = fp32", "ids = upstream", "peak", "output")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 1 if any(r[1] == "fp32" and r[-1].startswith("not supported") for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
