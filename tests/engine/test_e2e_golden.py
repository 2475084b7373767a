"""The golden end-to-end cases: our whole pipeline (clip in, narration out) against upstream's recorded run.

Each tests/golden/e2e_<name>/ was written by `benchmarks/e2e_parity.py --write-golden` from upstream's own
glmtts_inference on the tiny checkpoint that `make_tiny_checkpoint` rebuilds from the recorded seed (the
session's `tiny_checkpoint`), so upstream need not be installed here. The comparison is the script's own.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from glmtts_mcp.engine.runtime.pipeline import Engine

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted(p.name for p in (ROOT / "tests" / "golden").glob("e2e_*") if (p / "e2e.json").is_file())


def _e2e_parity():
    """benchmarks/e2e_parity.py, imported once (its comparison is the one the script prints)."""
    if "e2e_parity" not in sys.modules:
        spec = importlib.util.spec_from_file_location("e2e_parity", ROOT / "benchmarks" / "e2e_parity.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["e2e_parity"] = module  # its dataclass looks its module up there
        spec.loader.exec_module(module)
    return sys.modules["e2e_parity"]


def test_there_are_golden_end_to_end_cases() -> None:
    assert CASES, "tests/golden/e2e_* is missing: write the cases with benchmarks/e2e_parity.py --write-golden"


@pytest.mark.parametrize("name", CASES)
def test_our_pipeline_matches_upstreams_recorded_narration(
    name: str, tiny_checkpoint: Path, one_torch_thread: None
) -> None:
    folder = ROOT / "tests" / "golden" / name
    case = json.loads((folder / "e2e.json").read_text(encoding="utf-8"))
    assert case["checkpoint"] == {
        "maker": "glmtts_mcp.engine.checkpoint.tiny.make_tiny_checkpoint",
        "size": "tiny",
        "seed": 0,
    }, "the session's tiny_checkpoint is size tiny, seed 0"
    parity = _e2e_parity()
    engine = Engine.load(
        tiny_checkpoint, device="cpu", dtype="float32", reference_processing=case["reference_processing"]
    )
    ours = parity.run_ours(engine, folder / "reference.wav", case["transcript"], case["text"], case["seed"])
    assert ours.segment_texts == case["segment_texts"]
    rows, failures = parity.compare(
        ours.tensors, load_file(str(folder / "upstream.safetensors")), case["segments"], case["tolerance"]
    )
    assert not failures, "\n".join(f"{a}: {b} (limit {c})" for a, b, c in rows)
