"""Parity runners for the audio features: kinds `mel24k` and `fbank_campplus_input`."""

from __future__ import annotations

from pathlib import Path

import torch

from glmtts_mcp.engine.audio import MelParams, campplus_input, kaldi_fbank, mel_with, prompt_mel_features
from glmtts_mcp.engine.parity import CaseResult, compare, load_case_tensors


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


def run_mel24k(folder: Path, case: dict) -> CaseResult:
    """Log-mel and the flow's prompt layout from the stored 24 kHz waveform."""
    _, io = load_case_tensors(folder)
    cfg = case["config"]
    params = MelParams(
        n_fft=int(cfg["n_fft"]),
        num_mels=int(cfg["num_mels"]),
        sampling_rate=int(cfg["sampling_rate"]),
        hop_size=int(cfg["hop_size"]),
        win_size=int(cfg["win_size"]),
        fmin=float(cfg["fmin"]),
        fmax=float(cfg["fmax"]),
        center=bool(cfg.get("center", False)),
    )
    wav = io["wav24k"]
    pairs = {"mel": (mel_with(params, wav), io["mel"])}
    if "prompt_feat" in io:
        pairs["prompt_feat"] = (prompt_mel_features(wav, params), io["prompt_feat"])
    return compare_outputs("mel24k", folder, case, pairs)


def run_fbank(folder: Path, case: dict) -> CaseResult:
    """The CAMPPlus input (mean-normalised kaldi fbank) from the stored 16 kHz waveform."""
    _, io = load_case_tensors(folder)
    opts = case["config"]["kaldi.fbank"]
    if float(opts.get("dither", 0)) != 0.0:
        raise ValueError("only dither 0 is deterministic; upstream uses dither=0")
    raw = kaldi_fbank(
        io["wav16k"], num_mel_bins=int(opts["num_mel_bins"]), sample_frequency=float(opts["sample_frequency"])
    )
    pairs = {"campplus_input": (campplus_input(raw), io["campplus_input"])}
    if "fbank_raw" in io:
        pairs["fbank_raw"] = (raw, io["fbank_raw"])
    return compare_outputs("fbank_campplus_input", folder, case, pairs)


RUNNERS = {"mel24k": run_mel24k, "fbank_campplus_input": run_fbank}
