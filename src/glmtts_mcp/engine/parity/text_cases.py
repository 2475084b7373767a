"""Parity runners for the text frontend: kinds `text_frontend` and `text_phoneme` (exact strings from `cases.json`)."""

from __future__ import annotations

import json
from pathlib import Path

from glmtts_mcp.engine.frontend.g2p import g2p_infer
from glmtts_mcp.engine.frontend.text_normalize import TextFrontend
from glmtts_mcp.engine.parity import CaseResult


def count_mismatches(actual: list[str], expected: list[str]) -> int:
    """Strings that differ position by position; a missing or extra string counts as one."""
    return sum(a != e for a, e in zip(actual, expected, strict=False)) + abs(len(actual) - len(expected))


def string_result(kind: str, folder: Path, mismatches: int, total: int, first: str) -> CaseResult:
    """A string case's row: max_abs the mismatching strings, max_rel their share; no string compared fails."""
    return CaseResult(
        kind,
        folder.name,
        float(mismatches),
        mismatches / max(total, 1),
        "exact string equality",
        mismatches == 0 and total > 0,
        first or f"{total} strings equal",
    )


def run_text_frontend_case(folder: Path, case: dict) -> CaseResult:
    """text_normalize, split_by_len and per-segment text_normalize of every input, as exact strings.

    max_abs is the number of mismatching strings, max_rel that number over all expected strings.
    """
    config = case["config"]
    if config.get("use_phoneme", False):
        raise ValueError("use_phoneme=True (G2P) is not implemented; only the text path is")
    split = config.get("split_by_len", {})
    min_len, max_len = int(split.get("min_text_len", 30)), int(split.get("max_text_len", 60))
    frontend = TextFrontend()
    mismatches = total = 0
    first = ""
    for item in json.loads((folder / "cases.json").read_text(encoding="utf-8")):
        text = item["input"]
        pairs = [([frontend.normalize(text)], [item["text_normalize"]])]
        if "split_by_len" in item:
            segments = frontend.split_by_len(text, min_len, max_len)
            pairs.append((segments, item["split_by_len"]))
            if "split_by_len_then_text_normalize" in item:
                pairs.append(([frontend.normalize(s) for s in segments], item["split_by_len_then_text_normalize"]))
        for actual, expected in pairs:
            wrong = count_mismatches(actual, expected)
            total += len(expected)
            mismatches += wrong
            if wrong and not first:
                first = f"first mismatch: {text[:40]!r}: got {actual!r}, expected {expected!r}"
    return string_result("text_frontend", folder, mismatches, total, first)


def run_text_phoneme_case(folder: Path, case: dict) -> CaseResult:
    """Upstream's phoneme-in string of every input: text_normalize, then g2p_infer with upstream's replacement
    dictionary and again with the case's user dictionary merged over it.

    max_abs is the number of mismatching strings, max_rel that number over all expected strings.
    """
    data = json.loads((folder / "cases.json").read_text(encoding="utf-8"))
    user = data.get("user_dict", {})
    frontend = TextFrontend()
    mismatches = total = 0
    first = ""
    for item in data["cases"]:
        normalized = frontend.normalize(item["input"])
        pairs = [
            ("text_normalize", normalized),
            ("g2p_infer", g2p_infer(normalized)),
            ("g2p_infer_with_user_dict", g2p_infer(normalized, user)),
        ]
        for column, actual in pairs:
            if column not in item:
                continue
            total += 1
            if actual != item[column]:
                mismatches += 1
                first = (
                    first
                    or f"first mismatch: {column} of {item['input'][:40]!r}: got {actual!r}, expected {item[column]!r}"
                )
    return string_result("text_phoneme", folder, mismatches, total, first)


RUNNERS = {"text_frontend": run_text_frontend_case, "text_phoneme": run_text_phoneme_case}
