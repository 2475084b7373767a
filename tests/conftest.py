"""Fixtures shared by every test folder: the tiny checkpoint, golden cases, isolated settings, clips."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"  # upstream's reference outputs, kept in the repository


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete random-weight checkpoint in the official layout, built once per session (~35 MB).

    Its whisper model is `whisper/tiny-random.pt` (pass whisper_model="tiny-random").
    """
    from glmtts_mcp.engine.checkpoint.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "GLM-TTS")


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """The parity cases recorded from upstream (tests/golden, see its README)."""
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def golden_case(golden_dir: Path) -> Callable[..., tuple[Path, dict]]:
    """`golden_case(name)`: a case folder and its case.json; a missing case fails the test."""

    def load(name: str) -> tuple[Path, dict]:
        folder = golden_dir / name
        if not (folder / "case.json").is_file():
            pytest.fail(f"golden case {folder} is missing from the repository (tests/golden)")
        return folder, json.loads((folder / "case.json").read_text(encoding="utf-8"))

    return load


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for a module: with several busy processes on 2 shared cores, torch's
    thread pool spends more time synchronising than computing on these tiny models."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def no_user_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the developer's GLMTTS_MCP_* variables or config file."""
    for key in list(os.environ):
        if key.startswith("GLMTTS_MCP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


def write_clip(path: Path, seconds: float = 2.2, sample_rate: int = 16000, pitch: float = 220.0) -> Path:
    """A short voiced-like clip (modulated tone) that passes the reference checks."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    pcm = 0.3 * np.sin(2 * np.pi * pitch * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    sf.write(path, pcm.astype(np.float32), sample_rate)
    return path


@pytest.fixture(scope="session")
def clip_writer() -> Callable[..., Path]:
    """`clip_writer(path, seconds=2.2, sample_rate=16000, pitch=220.0)`: write a modulated-tone clip."""
    return write_clip


def write_espeak(path: Path, text: str) -> bool:
    """Record `text` with espeak-ng into `path`; False (nothing written) when espeak-ng is not installed."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        return False
    subprocess.run([espeak, "-w", str(path), text], check=True, capture_output=True, timeout=60)
    return True


@pytest.fixture(scope="session")
def espeak_writer() -> Callable[[Path, str], bool]:
    """`espeak_writer(path, text)`: real speech from espeak-ng (CI installs it); False when it is absent."""
    return write_espeak
