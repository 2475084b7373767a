"""Parity with upstream GLM-TTS: run golden case folders and compare outputs.

Each case folder holds `case.json` (with `kind` and the full `config`), `io.safetensors` and
usually `weights.safetensors`. Runners are registered per kind by the modules listed in
`RUNNER_MODULES`; every runner builds its module from the case's config, never from constants.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class CaseResult:
    kind: str
    folder: str
    max_abs: float
    max_rel: float
    tolerance: str
    passed: bool
    detail: str = ""


CaseRunner = Callable[[Path, dict], CaseResult]

# One module per engine part; each defines RUNNERS: dict[kind, CaseRunner].
RUNNER_MODULES = (
    "audio_cases",
    "vocoder_cases",
    "flow_cases",
    "llm_cases",
    "speech_tokenizer_cases",
    "text_cases",
    "stream_cases",
)


def load_runners() -> dict[str, CaseRunner]:
    runners: dict[str, CaseRunner] = {}
    for name in RUNNER_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        runners.update(module.RUNNERS)
    return runners


def find_cases(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("case.json"))


def run_case(folder: Path, runners: dict[str, CaseRunner]) -> CaseResult:
    case = json.loads((folder / "case.json").read_text())
    kind = case.get("kind", "?")
    runner = runners.get(kind)
    if runner is None:
        return CaseResult(kind, folder.name, float("nan"), float("nan"), "-", False, f"no runner for kind {kind!r}")
    try:
        return runner(folder, case)
    except Exception as exc:  # a case that cannot run is a failure with its reason
        return CaseResult(kind, folder.name, float("nan"), float("nan"), "-", False, f"{type(exc).__name__}: {exc}")


def compare(actual, expected, atol: float, rtol: float) -> tuple[float, float, bool]:
    """max abs error, max rel error, and whether |a-e| <= atol + rtol*|e| holds everywhere."""
    import torch

    a = torch.as_tensor(actual).detach().double().cpu()
    e = torch.as_tensor(expected).detach().double().cpu()
    if a.shape != e.shape:
        raise ValueError(f"shape {tuple(a.shape)} != expected {tuple(e.shape)}")
    diff = (a - e).abs()
    max_abs = float(diff.max()) if diff.numel() else 0.0
    max_rel = float((diff / e.abs().clamp_min(1e-12)).max()) if diff.numel() else 0.0
    ok = bool((diff <= atol + rtol * e.abs()).all())
    return max_abs, max_rel, ok


def tolerance_of(case: dict) -> tuple[float, float, str]:
    """(atol, rtol, printable) from a case's `tolerance`."""
    tol = case["tolerance"]
    atol, rtol = float(tol.get("atol", 0.0)), float(tol.get("rtol", 0.0))
    return atol, rtol, f"atol {atol:g} rtol {rtol:g}"


def compare_outputs(
    kind: str, folder: Path, case: dict, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]
) -> CaseResult:
    """One CaseResult over several named outputs: worst errors, pass only if every output passes."""
    atol, rtol, printable = tolerance_of(case)
    worst_abs = worst_rel = 0.0
    passed = True
    details = []
    for name, (actual, expected) in pairs.items():
        max_abs, max_rel, ok = compare(actual, expected, atol, rtol)
        worst_abs, worst_rel = max(worst_abs, max_abs), max(worst_rel, max_rel)
        passed &= ok
        details.append(f"{name} {max_abs:.3g}")
    return CaseResult(kind, folder.name, worst_abs, worst_rel, printable, passed, ", ".join(details))


def load_case_tensors(folder: Path) -> tuple[dict, dict]:
    """(weights, io) of a case folder; weights is empty when the case has none."""
    from safetensors.torch import load_file

    weights_path = folder / "weights.safetensors"
    weights = load_file(str(weights_path)) if weights_path.exists() else {}
    io_path = folder / "io.safetensors"
    io = load_file(str(io_path)) if io_path.exists() else {}
    return weights, io
