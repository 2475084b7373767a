"""Fixtures for the voice-library tests: real libraries on real folders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from voicelib_helpers import SCHEMA

from glmtts_mcp.voices import VoiceLibrary


@pytest.fixture
def open_library(tmp_path: Path) -> Iterator[Callable[..., VoiceLibrary]]:
    """Open libraries (default root: tmp_path/lib) that are closed after the test."""
    opened: list[VoiceLibrary] = []

    def opener(root: Path | None = None, **kwargs: object) -> VoiceLibrary:
        kwargs.setdefault("flush_interval_s", 0)
        library = VoiceLibrary(root or tmp_path / "lib", kwargs.pop("schema", SCHEMA), **kwargs)  # type: ignore[arg-type]
        opened.append(library)
        return library

    yield opener
    for library in opened:
        library.close()


@pytest.fixture
def library(open_library: Callable[..., VoiceLibrary]) -> VoiceLibrary:
    """One library in tmp_path/lib."""
    return open_library()
