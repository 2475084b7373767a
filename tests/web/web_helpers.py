"""Live servers for the web tests: the product's root ASGI app (MCP and the web faces, as
`serve --transport http` builds it) under uvicorn on a loopback port, in a thread of the test process."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from glmtts_mcp.app.core import App, build_app
from glmtts_mcp.asgi.service import HttpService
from glmtts_mcp.config import load_settings
from server_processes import free_port

TOKEN = "web-test-token-0123456789-abcdefgh"
# Debian's Chromium, headless, driven by Playwright (its own browser download is never used).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BROWSER_TIMEOUT_MS = 120_000


@dataclass
class LiveServer:
    url: str
    app: App
    service: HttpService


@contextmanager
def live_server(app: App) -> Iterator[LiveServer]:
    """Serve `app` like `glmtts-mcp serve --transport http` does (its token, if set), until the block ends."""
    port = free_port()
    service = HttpService(app, "http", "127.0.0.1", port)
    server = uvicorn.Server(service.config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("the test server did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(service.base_url, app, service)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def isolated_env() -> Iterator[None]:
    """No GLMTTS_MCP_* variable or user config file of the developer reaches the settings."""
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("GLMTTS_MCP_"):
                patch.delenv(key)
        patch.setenv("XDG_CONFIG_HOME", "/nonexistent-glmtts-test-config")
        yield


def make_web_app(base: Path, checkpoint: Path, **overrides: Any) -> App:
    base.mkdir(parents=True, exist_ok=True)  # the allowed folder must exist
    with isolated_env():
        settings = load_settings(
            **{
                "checkpoint": checkpoint,
                "whisper_model": "tiny-random",
                "voices_dir": base / "voices",
                "output_dir": base / "outputs",
                "allowed_dirs": [str(base)],
                "idle_unload_s": 0,
                "log_level": "WARNING",
                **overrides,
            }
        )
    return build_app(settings)
