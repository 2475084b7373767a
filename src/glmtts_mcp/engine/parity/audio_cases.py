"""Parity runners for the audio features: kinds `mel24k` and `fbank_campplus_input`."""

from __future__ import annotations

from pathlib import Path

from glmtts_mcp.engine.frontend.audio_features import (
    MelParams,
    campplus_input,
    kaldi_fbank,
    mel_with,
    prompt_mel_features,
)
from glmtts_mcp.engine.parity import CaseResult, compare_outputs, load_case_tensors


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
