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


def _table(stdout: str, first: str) -> list[dict[str, str]]:
    """The rows under the header line whose first column is named `first`, each as {column name: cell}.

    Columns are named by the header itself: a column's name is separated from the next by two spaces or
    more, and a word of a row belongs to the column whose name it overlaps (numbers are right-aligned
    under their name, text left-aligned), or else to the column of the word before it. So a cell is read
    by its column's name wherever the column sits, and a row ends at the first blank line.
    """
    lines = stdout.splitlines()
    at = next((i for i, line in enumerate(lines) if re.split(r"\s{2,}", line.strip())[0] == first), None)
    assert at is not None, f"no header starting {first!r} in:\n{stdout}"
    names = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", lines[at])]
    assert len({name for _, _, name in names}) == len(names), f"repeated column names: {lines[at]}"
    table = []
    for line in lines[at + 1 :]:
        if not line.strip():
            break
        cells: dict[str, list[str]] = {}
        column = None
        for word in re.finditer(r"\S+", line):
            column = next((name for start, end, name in names if word.start() < end and start < word.end()), column)
            assert column is not None, f"{word.group()!r} sits under no column of {lines[at]!r}: {line!r}"
            cells.setdefault(column, []).append(word.group())
        table.append({name: " ".join(words) for name, words in cells.items()})
    return table


def test_table_reads_cells_by_column_name() -> None:
    out = "title\nname   n  value s  note\nab     1     2.50  x y\nc     12    10.00\n\nafter  9"
    assert _table(out, "name") == [
        {"name": "ab", "n": "1", "value s": "2.50", "note": "x y"},
        {"name": "c", "n": "12", "value s": "10.00"},
    ]
    swapped = "name  value s   n\nab       2.50   1"
    assert _table(swapped, "name") == [{"name": "ab", "value s": "2.50", "n": "1"}]


def _engine_args(tiny_checkpoint: Path) -> list[str]:
    from glmtts_mcp.engine.checkpoint.tiny import TINY_WHISPER

    return [
        "benchmarks/bench_engine.py",
        "--checkpoint",
        str(tiny_checkpoint),
        "--whisper-model",
        TINY_WHISPER,
        "--no-whisper",
        "--text",
        "Hello there, how are you?",
    ]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the benchmark records its reference with espeak-ng")
@pytest.mark.slow
def test_bench_engine_prints_every_row(tiny_checkpoint: Path) -> None:
    out = _run(*_engine_args(tiny_checkpoint))
    rows = _rows(out)
    for name in (
        "model load",
        "clone: whisper",
        "clone: text",
        "clone: speech_tokenizer",
        "clone: campplus",
        "clone: mel",
        "clone total (transcript given)",
        "synthesis from stored features",
        "time to first chunk",
        "real-time factor",
        "prompt processing (stored features)",
        "synthesis from raw reference audio",
        "prompt processing (decode + clone)",
        "peak RSS",
        "parameters",
    ):
        assert name in rows, f"row {name!r} missing from:\n{out}"
    assert rows["clone: whisper"] == "skipped (--no-whisper)"
    assert re.fullmatch(r"[\d.]+ s for [\d.]+ s of audio", rows["synthesis from stored features"])
    assert re.match(r"[\d.]+ ms = [\d.]+ % of synthesis", rows["prompt processing (stored features)"])
    assert re.fullmatch(r"\d+ MiB", rows["peak RSS"])
    assert float(rows["real-time factor"]) > 0


def _upstream_importable() -> bool:
    return (
        bool(UPSTREAM)
        and Path(UPSTREAM, "flow", "flow.py").is_file()
        and all(importlib.util.find_spec(name) is not None for name in ("x_transformers", "einops", "scipy", "librosa"))
    )


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the benchmark records its reference with espeak-ng")
@pytest.mark.skipif(
    not _upstream_importable(),
    reason="set GLMTTS_UPSTREAM to a GLM-TTS checkout and install its packages (benchmarks/README.md)",
)
@pytest.mark.slow
def test_bench_engine_against_upstream(tiny_checkpoint: Path) -> None:
    extra = ["--upstream-pythonpath", UPSTREAM_PYTHONPATH] if UPSTREAM_PYTHONPATH else []
    out = _run(*_engine_args(tiny_checkpoint), "--upstream", str(UPSTREAM), "--repeats", "1", *extra)
    table = out.split("upstream/ours", 1)[1]
    for stage in ("LLM (per generated token)", "flow (", "HiFT vocoder (", "speech tokenizer"):
        assert stage in table, f"stage {stage!r} missing from:\n{out}"
    flow = next(line for line in table.splitlines() if line.startswith("flow ("))
    assert float(flow.rsplit("max abs diff", 1)[1]) < 1e-4  # upstream's flow on the same weights and noise


@pytest.mark.slow
def test_bench_g2p_prints_every_path() -> None:
    rows = _rows(_run("benchmarks/bench_g2p.py", "--repeats", "1", "--entries", "10"))
    assert rows["jieba prefix dictionary, first use"].endswith(" s")
    for path in ("text", "phoneme", "text + 10 entries", "phoneme + 10 entries"):
        assert float(rows[path]) > 0


def test_bench_precision_prints_each_dtype() -> None:
    out = _run("benchmarks/bench_precision.py", str(GOLDEN), "--cases", "llm_real", "hift_real", "--in-process")
    rows = {(row["case"], row["dtype"]): row for row in _table(out, "case")}
    assert set(rows) == {(case, dtype) for case in ("llm_real", "hift_real") for dtype in ("fp32", "bf16", "fp16")}
    assert float(rows["llm_real", "fp32"]["vs upstream"]) < 4e-5  # fp32 against upstream's logits: the parity tolerance
    assert float(rows["hift_real", "fp32"]["vs upstream"]) < 1e-3
    assert (
        rows["llm_real", "fp32"]["ids = upstream"] == "52/52"
    )  # teacher-forced argmax agrees with upstream's everywhere
    assert float(rows["llm_real", "bf16"]["vs fp32"]) > 0  # bf16 really ran in bf16
    assert "fp32 only" in " ".join(rows["hift_real", "bf16"].values())


@pytest.mark.slow
def test_bench_web_prints_every_row(tiny_checkpoint: Path) -> None:
    out = _run(
        "benchmarks/bench_web.py",
        "--checkpoint",
        str(tiny_checkpoint),
        "--runs",
        "1",
        "--text",
        "One. Two. Three. Four. " * 12,
    )
    rows = {row["endpoint"]: row for row in _table(out, "endpoint")}
    for name in (
        "POST /api/tts (wav, streamed)",
        "POST /v1/audio/speech (wav, streamed)",
        "POST /v1/audio/speech (pcm, sse events)",
        "POST /v1/audio/speech (mp3, sent whole)",
    ):
        assert name in rows, f"row {name!r} missing from:\n{out}"
        row = rows[name]
        assert re.fullmatch(r"[\d.]+s", row["first byte"]) and re.fullmatch(r"[\d.]+s", row["whole body"]), row
        assert re.fullmatch(r"\d+%", row["first/whole"]) and row["segments"] == "3", row


@pytest.mark.slow
def test_bench_player_prints_every_moment(tiny_checkpoint: Path) -> None:
    out = _run("benchmarks/bench_player.py", "--checkpoint", str(tiny_checkpoint), "--runs", "1")
    rows = [(row["host"], row["moment"]) for row in _table(out, "host")]
    assert rows == [
        ("without MCP Apps", "synthesize result"),
        ("with the player", "synthesize answered"),
        ("with the player", "first audio to play"),
        ("with the player", "whole narration polled"),
    ], out
    for row in _table(out, "host"):
        assert float(row["seconds"]) > 0 and re.fullmatch(r"\d+%", row["of plain"]), row
    assert re.search(r"pieces per narration \(poll results with audio\): [1-9]", out)


def test_bench_hostile_prints_every_probe(tiny_checkpoint: Path) -> None:
    out = _run(
        "benchmarks/bench_hostile.py",
        "--checkpoint",
        str(tiny_checkpoint),
        "--abandoned",
        "3",
        "--flood",
        "110",
        "--calls",
        "5",
        "--streams",
        "6",
        "--max-queue",
        "0",
        "--guesses",
        "8",
    )
    probes = {row["probe"]: row["value"] for row in _table(out, "probe")}
    assert set(probes) == {
        "next short request, idle server (s)",
        "next short request, after the abandoned (s)",
        "engine busy after that request (s)",
        "speech tokens drawn meanwhile",
    }, out
    floods = {row["flood"]: row for row in _table(out, "flood")}
    assert floods["dribbling"]["answered"] == floods["idle"]["answered"] == "5", out  # nobody locked out
    answers = {row["answer"]: int(row["count"]) for row in _table(out, "answer")}
    assert sum(answers.values()) == 6 and set(answers) <= {"200", "503 + Retry-After"}, out  # no other answer
    statuses = {row["status"]: int(row["count"]) for row in _table(out, "status")}
    assert statuses["401"] >= 5 and statuses["429"] >= 1, out


@pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="the benchmark records its reference clips with espeak-ng"
)
@pytest.mark.slow
def test_bench_concurrency_prints_both_modes_in_one_run(tiny_checkpoint: Path) -> None:
    out = _run(
        "benchmarks/bench_concurrency.py", "--checkpoint", str(tiny_checkpoint), "--n", "1", "2", "--tokens", "6"
    )
    rows = _table(out, "mode")
    assert [(r["mode"], r["N"]) for r in rows] == [("serial", "1"), ("serial", "2"), ("batched", "1"), ("batched", "2")]
    for row in rows:
        assert float(row["audio s/s"]) > 0 and re.fullmatch(r"\d+ MiB RSS", row["peak"]), row
        assert all(re.fullmatch(r"\d+:\d+", size) for size in row["batch sizes (steps)"].split()), row
    serial_two = next(r for r in rows if (r["mode"], r["N"]) == ("serial", "2"))
    assert [size.split(":")[0] for size in serial_two["batch sizes (steps)"].split()] == ["1"]  # never two at once
    assert re.search(r"batched / serial aggregate audio s/s\s+N=1: [\d.]+x\s+N=2: [\d.]+x", out)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the benchmark records its reference with espeak-ng")
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (the [ray] extra)")
@pytest.mark.slow
def test_bench_concurrency_ray_rows_beside_the_local_engine(tiny_checkpoint: Path) -> None:
    out = _run(
        "benchmarks/bench_concurrency.py",
        "--checkpoint",
        str(tiny_checkpoint),
        "--engine",
        "ray",
        "--replicas",
        "1",
        "--n",
        "1",
    )
    rows = _table(out, "engine")
    assert [(r["engine"], r["N"]) for r in rows] == [("local", "1"), ("ray x1", "1")]
    assert all(float(r["audio s/s"]) > 0 and re.fullmatch(r"[\d.]+x", r["vs local"]) for r in rows), rows
    assert rows[0]["vs local"] == "1.00x"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the benchmark records its references with espeak-ng")
def test_bench_first_audio_prints_both_modes_and_fidelity(tiny_checkpoint: Path) -> None:
    out = _run(
        "benchmarks/bench_first_audio.py", "--checkpoint", str(tiny_checkpoint), "--n", "1", "--lengths", "medium",
        "--first-blocks", "10", "--threads", "1",
    )  # fmt: skip
    (row,) = _table(out, "length")
    assert (row["length"], row["N"]) == ("medium", "1")
    for column in ("offline first", "offline whole", "stream first", "stream whole"):
        p50, worst = (float(v) for v in row[column].split("/"))
        assert 0 < p50 <= worst, row
    assert float(row["stream first"].split("/")[0]) < float(row["stream whole"].split("/")[0])  # chunks came first
    (fidelity,) = _table(out, "first block")
    assert fidelity["first block"] == "10" and fidelity["length"] == "medium"
    clicks, joins = (int(v) for v in fidelity["clicks/joins"].split("/"))
    assert joins >= 2 and 0 <= clicks <= joins and float(fidelity["mel max"]) >= float(fidelity["mel mean"]) > 0


def test_bench_stream_stall_prints_each_neighbourhood(tiny_checkpoint: Path) -> None:
    out = _run("benchmarks/bench_stream_stall.py", "--checkpoint", str(tiny_checkpoint), "--n", "1", "--threads", "1")
    rows = {row["neighbours"]: row for row in _table(out, "neighbours")}
    assert list(rows) == ["none", "1 offline", "1 stream"]
    assert rows["none"]["jobs"] == "0" and float(rows["none"]["added max"]) == 0
    # the neighbour's flow runs while the longer victim still decodes: once offline, per block in stream mode
    assert int(rows["1 offline"]["jobs"]) >= 1 and int(rows["1 stream"]["jobs"]) >= 2
    for row in rows.values():
        assert float(row["step p50"]) > 0 and float(row["decoding s"]) > 0
        assert 0 <= float(row["added p50"]) <= float(row["added max"])
        assert float(row["longest step"]) >= float(row["step p50"])
