"""The parity CLI over the golden cases in tests/golden: every case passes, one row per case."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.timeout(960)  # the subprocess has 900 s
def test_parity_cli_passes_every_golden_case(golden_dir: Path) -> None:
    cases = sorted(p.parent.name for p in golden_dir.rglob("case.json"))
    proc = subprocess.run(
        [sys.executable, "-m", "glmtts_mcp.engine.parity", str(golden_dir)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.split()[-1:] and " pass" in line]
    assert {case for case in cases if any(f" {case} " in row for row in rows)} == set(cases)
    assert proc.stdout.strip().splitlines()[-1] == f"{len(cases)} passed, 0 failed"


def test_parity_cli_fails_on_a_broken_case(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "case.json").write_text('{"kind": "flow", "config": {}}')
    proc = subprocess.run(
        [sys.executable, "-m", "glmtts_mcp.engine.parity", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout


def test_parity_cli_refuses_an_empty_folder(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "glmtts_mcp.engine.parity", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
