"""Parity runner for the HiFT vocoder: kind `hift` (cases hift and hift_real)."""

from __future__ import annotations

from pathlib import Path

import torch

from glmtts_mcp.engine.models.vocoder import DRAW_RAND_INI, DRAW_SINE_NOISE, HiFTGenerator, load_hift_state_dict
from glmtts_mcp.engine.parity import CaseResult, compare_outputs, load_case_tensors


def load_case_hift(folder: Path, case: dict) -> tuple[HiFTGenerator, dict[str, torch.Tensor]]:
    """The case's vocoder (built from its config, weights loaded) and its io tensors."""
    weights, io = load_case_tensors(folder)
    model = HiFTGenerator.from_config(case["config"])
    load_hift_state_dict(model, weights)
    return model.eval(), io


def run_hift(folder: Path, case: dict) -> CaseResult:
    """HiFTGenerator.inference on the stored mel with the recorded RNG draws; compares wav, source and f0."""
    model, io = load_case_hift(folder, case)
    draws = {DRAW_RAND_INI: io[DRAW_RAND_INI], DRAW_SINE_NOISE: io[DRAW_SINE_NOISE]}
    with torch.inference_mode():
        wav, f0, source = model.inference(io["mel"], draws=draws)
    pairs = {"wav": (wav, io["wav"])}
    for name, actual in (("source", source), ("f0", f0)):
        if name in io:
            pairs[name] = (actual, io[name])
    return compare_outputs("hift", folder, case, pairs)


RUNNERS = {"hift": run_hift}
