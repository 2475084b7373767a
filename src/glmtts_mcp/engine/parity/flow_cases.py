"""Parity runner for kind `flow`: Token2Wav.token2wav_with_cache -> Flow.inference_with_cache."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from glmtts_mcp.engine.models.flow import Flow, FlowConfig
from glmtts_mcp.engine.parity import CaseResult, compare, load_case_tensors, tolerance_of
from glmtts_mcp.engine.types import EngineError

# Upstream argument -> the io name the golden cases store it under.
INPUT_NAMES = {
    "tokens": "token",
    "prompt_tokens": "prompt_token",
    "prompt_mel": "prompt_feat",
    "speaker_embedding": "embedding",
    "noise": "rng_x0",
}
VELOCITY_NAME = re.compile(r"step(\d+)_(cond|uncond)_velocity")


def flow_config_from_case(case_config: Mapping[str, Any]) -> FlowConfig:
    """A golden case's config: `Flow` kwargs, the DiT kwargs Flow built, a tiny-size override."""
    flow = dict(case_config["Flow"])
    dit = {**case_config.get("DiT_kwargs_built_by_Flow", {}), **case_config.get("DiT_override_for_tiny", {})}
    dit_defaults = dict(case_config.get("DiT_defaults_in_effect", {}))
    if dit_defaults.get("long_skip_connection") or dit_defaults.get("attention_mask_type") is not None:
        raise EngineError(f"case config: unsupported DiT settings {dit_defaults} (Flow never sets them)")
    values = {**flow, **{k: dit[k] for k in ("trans_dim", "depth", "heads", "ff_mult", "conv_layers") if k in dit}}
    if "dim_head" in dit_defaults:
        values["dim_head"] = dit_defaults["dim_head"]
    config = FlowConfig.from_flat(values, "case config")
    derived = {
        "text_emb_dim": config.speech_token_dim,
        "text_vocab_size": config.vocab_size,
        "mel_dim": config.mel_dim,
        "condition_dim": config.condition_dim,
        "spkr_emb_adaLN": config.spkr_emb_adaLN,
        "wav_lm_emb": config.use_wavlm_emb,
    }
    clash = {k: (dit[k], v) for k, v in derived.items() if k in dit and dit[k] != v}
    if clash:
        raise EngineError(f"case config: DiT kwargs disagree with the Flow kwargs (given, derived): {clash}")
    return config


def load_case_flow(folder: Path, case: dict) -> tuple[Flow, dict[str, torch.Tensor]]:
    """The case's Flow (built from its config, weights loaded strictly) and its io tensors."""
    weights, io = load_case_tensors(folder)
    declared = {spec["name"] for spec in case["inputs"]}
    absent = sorted(name for name in INPUT_NAMES.values() if name not in declared or name not in io)
    if absent:
        raise KeyError(f"case lacks input(s) {absent}")
    flow = Flow(flow_config_from_case(case["config"])).eval()
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

    inputs: dict[str, Any] = {arg: io[name] for arg, name in INPUT_NAMES.items()}  # inference's tensor arguments
    mel = flow.inference(
        **inputs,
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
