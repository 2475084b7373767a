"""Smoke tests: each benchmark script runs in its fastest mode and prints the rows it promises.

Timings are not asserted (they depend on the machine); the fp32 parity figures are, since they
are the same numbers the parity runners check.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
UPSTREAM = os.environ.get("GLMTTS_UPSTREAM")  # an extracted GLM-TTS checkout (benchmarks/README.md)
UPSTREAM_PYTHONPATH = os.environ.get("GLMTTS_UPSTREAM_PYTHONPATH")  # transformers<5 for its speech tokenizer


def _run(*args: str, timeout: int = 600) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _rows(stdout: str) -> dict[str, str]:
    """Table rows as name -> value (two or more spaces separate them)."""
    rows = {}
    for line in stdout.splitlines():
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if len(parts) == 2:
            rows[parts[0]] = parts[1]
    return rows


def _engine_args(tiny_checkpoint: Path) -> list[str]:
    from glmtts_mcp.engine.checkpoint.tiny import TINY_WHISPER

    return ["benchmarks/bench_engine.py", "--checkpoint", str(tiny_checkpoint), "--whisper-model", TINY_WHISPER,
            "--no-whisper", "--text", "Hello there, how are you?"]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the benchmark records its reference with espeak-ng")
def test_bench_engine_prints_every_row(tiny_checkpoint: Path) -> None:
    out = _run(*_engine_args(tiny_checkpoint))
    rows = _rows(out)
    for name in ("model load", "clone: whisper", "clone: text", "clone: speech_tokenizer", "clone: campplus",
                 "clone: mel", "clone total (transcript given)", "synthesis from stored features",
                 "time to first chunk", "real-time factor", "prompt processing (stored features)",
                 "synthesis from raw reference audio", "prompt processing (decode + clone)", "peak RSS", "parameters"):
        assert name in rows, f"row {name!r} missing from:\n{out}"
    assert rows["clone: whisper"] == "skipped (--no-whisper)"
    assert re.fullmatch(r"[\d.]+ s for [\d.]+ s of audio", rows["synthesis from stored features"])
    assert re.match(r"[\d.]+ ms = [\d.]+ % of synthesis", rows["prompt processing (stored features)"])
    assert re.fullmatch(r"\d+ MiB", rows["peak RSS"])
    assert float(rows["real-time factor"]) > 0


def _upstream_importable() -> bool:
    return bool(UPSTREAM) and Path(UPSTREAM, "flow", "flow.py").is_file() and all(
        importlib.util.find_spec(name) is not None for name in ("x_transformers", "einops", "scipy", "librosa"))


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the benchmark records its reference with espeak-ng")
@pytest.mark.skipif(not _upstream_importable(),
                    reason="set GLMTTS_UPSTREAM to a GLM-TTS checkout and install its packages (benchmarks/README.md)")
def test_bench_engine_against_upstream(tiny_checkpoint: Path) -> None:
    extra = ["--upstream-pythonpath", UPSTREAM_PYTHONPATH] if UPSTREAM_PYTHONPATH else []
    out = _run(*_engine_args(tiny_checkpoint), "--upstream", str(UPSTREAM), "--repeats", "1", *extra)
    table = out.split("upstream/ours", 1)[1]
    for stage in ("LLM (per generated token)", "flow (", "HiFT vocoder (", "speech tokenizer"):
        assert stage in table, f"stage {stage!r} missing from:\n{out}"
    flow = next(line for line in table.splitlines() if line.startswith("flow ("))
    assert float(flow.rsplit("max abs diff", 1)[1]) < 1e-4  # upstream's flow on the same weights and noise


def test_bench_precision_prints_each_dtype() -> None:
    out = _run("benchmarks/bench_precision.py", str(GOLDEN), "--cases", "llm_real", "hift_real", "--in-process")
    lines = [line.split() for line in out.splitlines()]
    rows = {(cells[0], cells[1]): cells for cells in lines if len(cells) > 2 and cells[1] in ("fp32", "bf16", "fp16")}
    assert set(rows) == {(case, dtype) for case in ("llm_real", "hift_real") for dtype in ("fp32", "bf16", "fp16")}
    assert float(rows["llm_real", "fp32"][3]) < 4e-5  # fp32 against upstream's logits: the parity tolerance
    assert float(rows["hift_real", "fp32"][3]) < 1e-3
    assert rows["llm_real", "fp32"][5] == "52/52"  # teacher-forced argmax agrees with upstream's everywhere
    assert float(rows["llm_real", "bf16"][2]) > 0  # bf16 really ran in bf16
    assert "fp32 only" in " ".join(rows["hift_real", "bf16"])


def test_bench_web_prints_every_row(tiny_checkpoint: Path) -> None:
    out = _run("benchmarks/bench_web.py", "--checkpoint", str(tiny_checkpoint), "--runs", "1",
               "--text", "One. Two. Three. Four. " * 12)
    for name in ("POST /api/tts (wav, streamed)", "POST /v1/audio/speech (wav, streamed)",
                 "POST /v1/audio/speech (pcm, sse events)", "POST /v1/audio/speech (mp3, sent whole)"):
        row = next((line for line in out.splitlines() if line.startswith(name)), None)
        assert row is not None, f"row {name!r} missing from:\n{out}"
        assert re.search(r"[\d.]+s\s+[\d.]+s\s+\d+%\s+3$", row), row


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the benchmark records its reference clips with espeak-ng")
def test_bench_concurrency_prints_both_modes_in_one_run(tiny_checkpoint: Path) -> None:
    out = _run("benchmarks/bench_concurrency.py", "--checkpoint", str(tiny_checkpoint), "--n", "1", "2",
               "--tokens", "6")
    rows = [line.split() for line in out.splitlines() if re.match(r"(serial|batched)\s+\d", line)]
    assert [(r[0], r[1]) for r in rows] == [("serial", "1"), ("serial", "2"), ("batched", "1"), ("batched", "2")]
    for row in rows:  # mode N wall audio audio/s rtf rtf first first tok/s peak MiB RSS sizes...
        assert float(row[4]) > 0 and row[12] == "RSS" and all(":" in size for size in row[13:])
    serial_two = next(r for r in rows if r[:2] == ["serial", "2"])
    assert [size.split(":")[0] for size in serial_two[13:]] == ["1"]  # serial never decodes two at once
    assert re.search(r"batched / serial aggregate audio s/s\s+N=1: [\d.]+x\s+N=2: [\d.]+x", out)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the benchmark records its reference with espeak-ng")
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (the [ray] extra)")
def test_bench_concurrency_ray_rows_beside_the_local_engine(tiny_checkpoint: Path) -> None:
    out = _run("benchmarks/bench_concurrency.py", "--checkpoint", str(tiny_checkpoint), "--engine", "ray",
               "--replicas", "1", "--n", "1")
    rows = [line.split() for line in out.splitlines() if re.match(r"(local|ray x\d)\s+\d", line)]
    assert [r[:2] for r in rows] == [["local", "1"], ["ray", "x1"]]
    assert all(float(r[-4]) > 0 and r[-1].endswith("x") for r in rows)  # audio s/s ... vs local
    assert rows[0][-1] == "1.00x"
