"""Session fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete random-weight checkpoint in the official layout, built once per session (~35 MB).

    Its whisper model is `whisper/tiny-random.pt` (pass whisper_model="tiny-random").
    """
    from glmtts_mcp.engine.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "GLM-TTS")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for a module: with several busy processes on 2 shared cores, torch's
    thread pool spends more time synchronising than computing on these tiny models."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
