"""Session fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete random-weight checkpoint in the official layout, built once per session (~35 MB).

    Its whisper model is `whisper/tiny-random.pt` (pass whisper_model="tiny-random").
    """
    from glmtts_mcp.engine.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "GLM-TTS")
