"""`glmtts-mcp serve --transport http|sse` serves MCP and the web faces on one port with one library;
`glmtts-mcp web` opens the page (or prints its URL)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from web_helpers import TOKEN, free_port

from glmtts_mcp.web.security import SESSION_COOKIE
from server_processes import running_server, server_env

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("transport", ["http", "sse"])
@pytest.mark.slow
async def test_one_port_one_library(
    transport: str, tmp_path: Path, tiny_checkpoint: Path, clip_writer: Callable[..., Path]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(tmp_path, tiny_checkpoint, GLMTTS_MCP_LOG_LEVEL="INFO")
    with running_server(["serve", "--transport", transport], env, port):
        async with httpx2.AsyncClient(base_url=base, timeout=120) as http:
            clip = clip_writer(tmp_path / "clip.wav").read_bytes()
            made = await http.post(
                "/api/voices", files={"audio": ("c.wav", clip)}, data={"transcript": "hi", "name": "web"}
            )
            assert made.status_code == 201, made.text
            assert (await http.get("/")).status_code == 200
            assert (await http.get("/docs")).status_code == 200
        target = sse_client(f"{base}/sse") if transport == "sse" else f"{base}/mcp"
        async with Client(target) as client:
            listed = await client.call_tool("list_voices", {})
            assert [v["name"] for v in listed.structured_content["voices"]] == ["web"]  # the voice REST made
            spoken = await client.call_tool("synthesize", {"text": "Hi.", "voice": "web", "return_mode": "path"})
            assert not spoken.is_error


def test_web_prints_the_one_time_link_without_a_browser(tmp_path: Path, tiny_checkpoint: Path) -> None:
    port = free_port()
    env = server_env(tmp_path, tiny_checkpoint, GLMTTS_MCP_LOG_LEVEL="INFO", GLMTTS_MCP_TOKEN=TOKEN)
    with running_server(["web", "--no-browser"], env, port) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith(f"open http://127.0.0.1:{port}/login?code=") and line.endswith(" in a browser")
        url = line.split()[1]
        signed_in = httpx2.get(url)
        assert signed_in.status_code == 303 and SESSION_COOKIE in signed_in.headers["set-cookie"]


def test_web_opens_the_default_browser(tmp_path: Path, tiny_checkpoint: Path) -> None:
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    port = free_port()
    env = server_env(tmp_path, tiny_checkpoint, GLMTTS_MCP_LOG_LEVEL="INFO", BROWSER=str(browser))
    with running_server(["web"], env, port):
        deadline = time.monotonic() + 30
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert opened.read_text().strip() == f"http://127.0.0.1:{port}/"
        assert httpx2.get(f"http://127.0.0.1:{port}/api/voices").status_code == 200
