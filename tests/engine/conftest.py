"""Fixtures of the engine tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from glmtts_mcp.engine.runtime.pipeline import Engine
from glmtts_mcp.engine.types import VoiceFeatures


@pytest.fixture(scope="module")
def voice(engine: Engine, tmp_path_factory: pytest.TempPathFactory, clip_writer: Callable[..., Path]) -> VoiceFeatures:
    """A voice cloned by the module's own `engine` fixture from the test clip."""
    clip = clip_writer(tmp_path_factory.mktemp("clip") / "reference.wav")
    return engine.extract_voice(engine.prepare_reference(clip), "A short test sentence for the voice.").features
