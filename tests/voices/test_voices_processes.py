"""Several processes on one root: one voice per clip, and SIGKILL mid-write never leaves half a voice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from voicelib_helpers import RATE, make_pcm, make_voice

from glmtts_mcp.voices import VoiceLibrary

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="forks worker processes and kills them with SIGKILL")


class Forker:
    """Talks to voice_worker.py, which forks the processes (so torch is imported once)."""

    def __init__(self) -> None:
        worker = Path(__file__).with_name("voice_worker.py")
        self.proc = subprocess.Popen(
            [sys.executable, str(worker)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.ask("") == "ready"

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def fork(self, *args: object) -> int:
        return int(self.ask(" ".join(["fork", *map(str, args)])))

    def wait(self, pid: int) -> int:
        return int(self.ask(f"wait {pid}"))


@pytest.fixture(scope="module")
def forker() -> Iterator[Forker]:
    forker = Forker()
    yield forker
    forker.proc.stdin.close()  # type: ignore[union-attr]
    forker.proc.wait(30)


def wait_for(path: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_processes_cloning_same_clip_create_once(
    tmp_path: Path, forker: Forker, open_library: Callable[..., VoiceLibrary]
) -> None:
    root, calls, start = tmp_path / "lib", tmp_path / "calls.txt", tmp_path / "start"
    pids = [forker.fork("clone", root, calls, tmp_path / f"ready{i}", start, tmp_path / f"out{i}") for i in range(4)]
    for i in range(4):
        wait_for(tmp_path / f"ready{i}")
    start.touch()
    assert [forker.wait(pid) for pid in pids] == [0, 0, 0, 0]
    results = [json.loads((tmp_path / f"out{i}").read_text()) for i in range(4)]
    assert calls.read_text().splitlines() == ["create"]
    assert len({r["id"] for r in results}) == 1
    assert sorted(r["existed"] for r in results) == [False, True, True, True]
    library = open_library(root)
    assert [v.id for v in library.list_voices().voices] == [results[0]["id"]]
    assert library.load_features(results[0]["id"]).tier == "disk"


@pytest.mark.slow
def test_sigkill_mid_write_leaves_whole_voices(
    tmp_path: Path, forker: Forker, open_library: Callable[..., VoiceLibrary]
) -> None:
    root = tmp_path / "lib"
    rng = random.Random(1234)
    for round_ in range(8):
        ready = tmp_path / f"ready{round_}"
        pid = forker.fork("churn", root, round_, ready)
        wait_for(ready)
        time.sleep(rng.uniform(0.02, 0.4))
        os.kill(pid, signal.SIGKILL)
        assert forker.wait(pid) == -signal.SIGKILL
    library = open_library(root)
    assert list((root / "tmp").iterdir()) == []  # leftovers cleaned when the library opened
    listed = library.list_voices(limit=500).voices
    assert len(listed) >= 8
    for item in listed:
        assert item.broken is None, item.broken
        loaded = library.load_features(item.id)
        seed = int(item.tags[0].removeprefix("seed-"))
        expected = make_voice(seed, mel_frames=50).tensors
        assert all(torch.equal(loaded.tensors[k], v) for k, v in expected.items())
        assert loaded.record.id == library.voice_id_for(make_pcm(seed, 0.2), RATE, "churn")
    names = [item.name for item in listed]
    assert len({n.casefold() for n in names if n}) == len(names)
    # the survivors keep working: a new write and a clean re-open
    library.get_or_create(make_pcm(99_999), RATE, "after", lambda: make_voice(1), name="after")
    assert open_library(root).resolve("after").name == "after"
