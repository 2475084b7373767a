"""Parity runner for kind `speech_tokenizer`: log-mel features, pre-VQ hidden states and token ids.

Features and hidden states must match within the case tolerance, the frame mask and every token id
exactly (both the padded ids of `encode` and the final list of the product path `tokenize`). Token
ids can sit near a decision boundary, so the smallest best-vs-second distance margin is reported,
and on a mismatch the margins at the mismatched positions.
"""

from __future__ import annotations

from pathlib import Path

import torch

from glmtts_mcp.engine.models.speech_tokenizer import SpeechTokenizer
from glmtts_mcp.engine.parity import CaseResult, compare, load_case_tensors, tolerance_of


def _margins(distances: torch.Tensor) -> torch.Tensor:
    """Per-row gap between the second-nearest and the nearest codebook entry."""
    two = torch.topk(distances.double(), k=min(2, distances.shape[1]), dim=1, largest=False).values
    return two[:, 1] - two[:, 0] if two.shape[1] == 2 else torch.full((two.shape[0],), float("inf"))


def load_case_speech_tokenizer(folder: Path, case: dict) -> tuple[SpeechTokenizer, dict[str, torch.Tensor]]:
    """The case's speech tokenizer (built from its config and weights) and its io tensors."""
    config = case["config"]
    weights, io = load_case_tensors(folder)
    return SpeechTokenizer.from_config(config["WhisperVQConfig"], config["preprocessor_config_json"], weights), io


def run_speech_tokenizer(folder: Path, case: dict) -> CaseResult:
    config = case["config"]
    atol, rtol, printable = tolerance_of(case)
    tokenizer, io = load_case_speech_tokenizer(folder, case)
    problems: list[str] = []
    multiple = config.get("extractor_call", {}).get("pad_to_multiple_of_samples")
    if multiple is not None and int(multiple) != tokenizer.pad_to_multiple_of:
        problems.append(f"pad multiple {tokenizer.pad_to_multiple_of} != case {multiple}")

    wav = io["wav16k"]
    features, frame_mask, out = tokenizer.encode([wav[0]])
    feat_abs, feat_rel, feat_ok = compare(features, io["input_features"], atol, rtol)
    hid_abs, hid_rel, hid_ok = compare(out.pre_vq_hidden, io["pre_vq_hidden"], atol, rtol)
    dist_abs, _, _ = compare(out.distances, io["vq_distances"], atol, rtol)
    if not feat_ok:
        problems.append("features out of tolerance")
    if not hid_ok:
        problems.append("pre-VQ hidden out of tolerance")
    if not torch.equal(frame_mask.long().cpu(), io["attention_mask"]):
        problems.append("frame mask differs")

    expected_ids = io["quantized_token_ids_padded"]
    ids = out.token_ids.cpu()
    golden_margins = _margins(io["vq_distances"])
    detail = [f"features {feat_abs:.3g}", f"hidden {hid_abs:.3g}", f"distances {dist_abs:.3g}"]
    if ids.shape != expected_ids.shape or not torch.equal(ids, expected_ids):
        if ids.shape == expected_ids.shape:
            wrong = (ids != expected_ids).flatten().nonzero().flatten().tolist()
            ours = _margins(out.distances.cpu())
            where = ", ".join(
                f"#{i}: {ids.flatten()[i].item()} vs {expected_ids.flatten()[i].item()} "
                f"(margin golden {golden_margins[i].item():.3g}, ours {ours[i].item():.3g})"
                for i in wrong[:5]
            )
            problems.append(f"{len(wrong)}/{ids.numel()} padded token ids differ: {where}")
        else:
            problems.append(f"token shape {tuple(ids.shape)} != {tuple(expected_ids.shape)}")
    tokens = tokenizer.tokenize(wav)
    expected_tokens = io["speech_tokens"][0]
    if not torch.equal(tokens, expected_tokens):
        problems.append(
            f"tokenize() gives {tokens.numel()} tokens, differing from the {expected_tokens.numel()} expected"
        )
    else:
        detail.append(f"{expected_tokens.numel()} tokens exact")
    detail.append(f"min golden margin {golden_margins.min().item():.3g}")

    return CaseResult(
        kind=case["kind"],
        folder=folder.name,
        max_abs=max(feat_abs, hid_abs),
        max_rel=max(feat_rel, hid_rel),
        tolerance=f"{printable}; ids exact",
        passed=not problems,
        detail="; ".join(detail + problems),
    )


RUNNERS = {"speech_tokenizer": run_speech_tokenizer}
