"""Golden parity of the audio features (mel24k, fbank_campplus_input) and HiFT (hift, hift_real)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from glmtts_mcp.engine.parity import run_case
from glmtts_mcp.engine.parity.audio_cases import RUNNERS as AUDIO_RUNNERS
from glmtts_mcp.engine.parity.vocoder_cases import RUNNERS as VOCODER_RUNNERS


@pytest.mark.parametrize("name", ["mel24k", "fbank_campplus_input", "hift", "hift_real"])
def test_golden_case_passes_at_its_tolerance(name: str, golden_case: Callable[..., tuple[Path, dict]]) -> None:
    folder, case = golden_case(name)
    result = run_case(folder, {**AUDIO_RUNNERS, **VOCODER_RUNNERS})
    assert result.passed, f"{name}: {result.detail} (max abs {result.max_abs:.3g}, tolerance {result.tolerance})"
    tol = case["tolerance"]["atol"]
    assert result.max_abs <= tol


def test_runners_are_registered_by_kind() -> None:
    assert set(AUDIO_RUNNERS) == {"mel24k", "fbank_campplus_input"}
    assert set(VOCODER_RUNNERS) == {"hift"}
