"""Shared fixtures of the MCP tests: isolated settings, an app, voices stored through the real library."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from glmtts_mcp.app.core import App, build_app
from glmtts_mcp.config import Settings, load_settings
from glmtts_mcp.engine.types import FEATURE_SCHEMA
from glmtts_mcp.voices import NewVoiceData, VoiceRecord

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_user_env(no_user_env: None) -> None:
    """Tests never read the developer's GLMTTS_MCP_* variables or config file."""


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Settings confined to tmp_path; the checkpoint defaults to a folder that does not exist."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "checkpoint": tmp_path / "no-checkpoint",
            "voices_dir": tmp_path / "voices",
            "output_dir": tmp_path / "outputs",
            "allowed_dirs": [str(tmp_path)],
            "idle_unload_s": 0,
            "log_level": "WARNING",
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def library_app(make_settings: SettingsFactory) -> Iterator[App]:
    """An app whose model cannot load (no checkpoint): the library tools must still work."""
    app = build_app(make_settings())
    yield app
    app.close()


def fake_voice_data(seed: int, transcript: str = "hello there") -> NewVoiceData:
    """Schema-conforming random features (stand-ins for engine output when only the library is under test)."""
    g = torch.Generator().manual_seed(seed)
    # a 1 s clip's lengths (25 speech tokens and 50 mel frames a second), as the library checks them
    shapes = {"prompt_text_ids": (7,), "prompt_speech_ids": (25,), "prompt_mel": (50, 80), "speaker_embedding": (192,)}
    tensors: dict[str, torch.Tensor] = {}
    for name, (dtype, _ndim) in FEATURE_SCHEMA.items():
        if dtype == "int64":
            tensors[name] = torch.randint(0, 100, shapes[name], generator=g)
        else:
            tensors[name] = torch.randn(shapes[name], generator=g)
    return NewVoiceData(
        tensors=tensors,
        transcript=transcript,
        transcript_source="user",
        language="en",
        duration_s=1.0,
        timings={"campplus": 0.5},
    )


def store_voice(app: App, seed: int, name: str | None = None, transcript: str = "hello there") -> VoiceRecord:
    """Put a voice into the app's library through get_or_create (the path clone_voice uses)."""
    pcm = np.random.default_rng(seed).uniform(-0.5, 0.5, 24000).astype(np.float32)
    record, existed = app.library.get_or_create(
        pcm, 24000, transcript, create=lambda: fake_voice_data(seed, transcript), name=name
    )
    assert not existed
    return record


@pytest.fixture
def add_voice() -> Callable[..., VoiceRecord]:
    """`add_voice(app, seed, name=None, transcript=...)`: store a voice through the real library."""
    return store_voice


@pytest.fixture
def clip(tmp_path: Path, clip_writer: Callable[..., Path]) -> Path:
    return clip_writer(tmp_path / "reference.wav")


@pytest.fixture
def engine_settings(make_settings: SettingsFactory, tiny_checkpoint: Path) -> SettingsFactory:
    """Settings with the tiny checkpoint (its random Whisper is named 'tiny-random')."""

    def make(**overrides: Any) -> Settings:
        return make_settings(**{"checkpoint": tiny_checkpoint, "whisper_model": "tiny-random", **overrides})

    return make


@pytest.fixture
def engine_app(engine_settings: SettingsFactory) -> Iterator[App]:
    app = build_app(engine_settings())
    yield app
    app.close()
