"""Parity runner for kind `flow`: Token2Wav.token2wav_with_cache -> Flow.inference_with_cache."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from glmtts_mcp.engine.models.flow import Flow
from glmtts_mcp.engine.parity import CaseResult, compare, load_case_tensors, tolerance_of

# Upstream argument -> the io name the golden cases store it under.
INPUT_NAMES = {"tokens": "token", "prompt_tokens": "prompt_token", "prompt_mel": "prompt_feat",
               "speaker_embedding": "embedding", "noise": "rng_x0"}
VELOCITY_NAME = re.compile(r"step(\d+)_(cond|uncond)_velocity")


def load_case_flow(folder: Path, case: dict) -> tuple[Flow, dict[str, torch.Tensor]]:
    """The case's Flow (built from its config, weights loaded strictly) and its io tensors."""
    weights, io = load_case_tensors(folder)
    declared = {spec["name"] for spec in case["inputs"]}
    absent = sorted(name for name in INPUT_NAMES.values() if name not in declared or name not in io)
    if absent:
        raise KeyError(f"case lacks input(s) {absent}")
    flow = Flow.from_config(case["config"]).eval()
    flow.load_official_state_dict(weights)
    return flow, io


def run_flow_case(folder: Path, case: dict) -> CaseResult:
    """Build Flow from the case config, load its weights strictly, replay the recorded noise, compare."""
    flow, io = load_case_flow(folder, case)
    config = case["config"]

    recorded: dict[str, torch.Tensor] = {}

    def keep(step: int, v_cond: torch.Tensor, v_uncond: torch.Tensor | None) -> None:
        recorded[f"step{step}_cond_velocity"] = v_cond.clone()
        if v_uncond is not None:
            recorded[f"step{step}_uncond_velocity"] = v_uncond.clone()

    mel = flow.inference(
        **{arg: io[name] for arg, name in INPUT_NAMES.items()},
        n_timesteps=int(config["n_timesteps"]),
        on_velocity=keep,
    )
    produced = {"mel": mel, **recorded}

    atol, rtol, printable = tolerance_of(case)
    worst_abs, worst_rel, passed, failing = 0.0, 0.0, True, []
    for spec in case["outputs"]:
        name = spec["name"]
        if name != "mel" and not VELOCITY_NAME.fullmatch(name):
            continue
        if name not in produced:
            raise KeyError(f"case output {name!r} was not produced (check n_timesteps and the CFG rate)")
        max_abs, max_rel, ok = compare(produced[name], io[name], atol, rtol)
        worst_abs, worst_rel = max(worst_abs, max_abs), max(worst_rel, max_rel)
        if not ok:
            passed = False
            failing.append(f"{name} max_abs {max_abs:.3g}")
    return CaseResult(
        kind=case["kind"],
        folder=folder.name,
        max_abs=worst_abs,
        max_rel=worst_rel,
        tolerance=printable,
        passed=passed,
        detail="; ".join(failing),
    )


RUNNERS = {"flow": run_flow_case}
