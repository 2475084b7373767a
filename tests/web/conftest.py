"""Fixtures of the web tests: one app and live server per module on the tiny checkpoint, clips as bytes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from web_helpers import CHROMIUM, CHROMIUM_ARGS, TOKEN, LiveServer, live_server, make_web_app

from glmtts_mcp.app.core import App


@pytest.fixture(scope="module")
def web_app(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[App]:
    """One app per test module (the model loads once), with a 256 KiB upload cap."""
    app = make_web_app(tmp_path_factory.mktemp("web"), tiny_checkpoint, max_upload_bytes=256 * 1024)
    yield app
    app.close()


@pytest.fixture(scope="module")
def server(web_app: App) -> Iterator[LiveServer]:
    with live_server(web_app) as live:
        yield live


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[LiveServer]:
    """A server that asks for TOKEN (its own library)."""
    app = make_web_app(tmp_path_factory.mktemp("web-token"), tiny_checkpoint, token=TOKEN)
    with live_server(app) as live:
        yield live
    app.close()


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory: pytest.TempPathFactory, clip_writer: Callable[..., Path]) -> Callable[..., bytes]:
    """`clip_bytes(pitch=220.0)`: a short voiced-like WAV clip (another pitch: another voice)."""
    folder = tmp_path_factory.mktemp("clips")

    def make(pitch: float = 220.0, seconds: float = 2.2) -> bytes:
        return clip_writer(folder / f"clip-{pitch}-{seconds}.wav", seconds=seconds, pitch=pitch).read_bytes()

    return make


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Debian's Chromium, headless (tests that use it skip when it is not installed)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]
        )
        yield launched
        launched.close()
