"""Fixtures of the application-core tests: an App on the tiny checkpoint in a private folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from glmtts_mcp.app.core import App, build_app
from glmtts_mcp.config import load_settings

AppFactory = Callable[..., App]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_app(tmp_path: Path, tiny_checkpoint: Path, no_user_env: None) -> Iterator[AppFactory]:
    """`make_app(**settings)`: an App on the tiny checkpoint (closed after the test)."""
    apps: list[App] = []

    def make(**overrides: Any) -> App:
        settings = load_settings(
            **{
                "checkpoint": tiny_checkpoint,
                "whisper_model": "tiny-random",
                "voices_dir": tmp_path / "voices",
                "output_dir": tmp_path / "outputs",
                "allowed_dirs": [tmp_path],
                **overrides,
            }
        )
        apps.append(build_app(settings))
        return apps[-1]

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def clip(tmp_path: Path, clip_writer: Callable[..., Path]) -> Path:
    return clip_writer(tmp_path / "clip.wav")
