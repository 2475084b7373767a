"""The real `glmtts-mcp` program over stdio, Streamable HTTP and SSE (subprocesses on 127.0.0.1, stopped
by the fixtures), both protocol eras; plus Host/Origin checks, the bearer token and the official
MCP Inspector CLI driving the stdio server."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

pytestmark = pytest.mark.anyio
SCRIPT = Path(sys.executable).parent / "glmtts-mcp"
INSPECTOR = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "mcp-inspector"
START_TIMEOUT_S = 90


def _server_env(base: Path, checkpoint: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLMTTS_MCP_")}
    env.update(
        {
            "GLMTTS_MCP_CHECKPOINT": str(checkpoint),
            "GLMTTS_MCP_VOICES_DIR": str(base / "voices"),
            "GLMTTS_MCP_OUTPUT_DIR": str(base / "outputs"),
            "GLMTTS_MCP_ALLOWED_DIRS": str(base),
            "GLMTTS_MCP_WHISPER_MODEL": "tiny-random",
            "GLMTTS_MCP_LOG_LEVEL": "WARNING",
            "XDG_CONFIG_HOME": str(base / "xdg-config"),
        }
    )
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _http_server(transport: str, env: dict[str, str], *extra_args: str) -> Iterator[str]:
    """Start `glmtts-mcp serve --transport ...` and yield its base URL; always stopped afterwards."""
    port = _free_port()
    proc = subprocess.Popen(
        [str(SCRIPT), "serve", "--transport", transport, "--port", str(port), *extra_args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"server exited early: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("server did not start in time")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory, clip_writer: Any) -> Path:
    base = tmp_path_factory.mktemp("served")
    clip_writer(base / "clip.wav")
    return base


@pytest.fixture(scope="module")
def server_env(base_dir: Path, tiny_checkpoint: Path) -> dict[str, str]:
    return _server_env(base_dir, tiny_checkpoint)


@pytest.fixture(scope="module")
def http_base(server_env: dict[str, str]) -> Iterator[str]:
    with _http_server("http", server_env) as url:
        yield url


@pytest.fixture(scope="module")
def sse_base(server_env: dict[str, str]) -> Iterator[str]:
    with _http_server("sse", server_env) as url:
        yield url


async def _exercise(client: Client, clip: Path) -> None:
    """Every tool and resource once, plus an error: what any transport must carry."""
    tools = {t.name for t in (await client.list_tools()).tools}
    assert {"clone_voice", "synthesize", "list_voices", "delete_voice", "cache_stats"} <= tools
    made = await client.call_tool("clone_voice", {"audio": str(clip), "transcript": "hi"})
    assert not made.is_error, made
    voice_id = made.structured_content["voice_id"]
    spoken = await client.call_tool("synthesize", {"text": "Hi.", "voice": voice_id})
    assert not spoken.is_error, spoken
    audio = [b for b in spoken.content if isinstance(b, types.AudioContent)]
    assert audio and base64.b64decode(audio[0].data)[:4] == b"OggS"
    uri = spoken.structured_content["uri"]
    read = await client.read_resource(uri)
    assert base64.b64decode(read.contents[0].blob) == base64.b64decode(audio[0].data)
    meta = await client.read_resource(f"voice://{voice_id}")
    assert json.loads(meta.contents[0].text)["id"] == voice_id
    ref = await client.read_resource(f"voice://{voice_id}/reference")
    assert base64.b64decode(ref.contents[0].blob)[:4] == b"fLaC"
    listed = await client.call_tool("list_voices", {})
    assert voice_id in [v["voice_id"] for v in listed.structured_content["voices"]]
    stats = await client.call_tool("cache_stats", {})
    assert stats.structured_content["engine"]["model_loaded"] is True
    missing = await client.call_tool("synthesize", {"text": "Hi.", "voice": "no-such-voice"})
    assert missing.is_error
    outside = await client.call_tool("clone_voice", {"audio": "/etc/shadow"})
    assert outside.is_error and "outside the allowed folders" in outside.content[0].text
    deleted = await client.call_tool("delete_voice", {"voice": voice_id})
    assert not deleted.is_error
    # still serving after the errors
    assert (await client.call_tool("list_voices", {})).structured_content["voices"] == []


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_stdio(server_env: dict[str, str], base_dir: Path, mode: str) -> None:
    params = StdioServerParameters(command=str(SCRIPT), args=[], env=server_env)
    async with Client(params, mode=mode) as client:
        await _exercise(client, base_dir / "clip.wav")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_streamable_http(http_base: str, base_dir: Path, mode: str) -> None:
    async with Client(f"{http_base}/mcp", mode=mode) as client:
        await _exercise(client, base_dir / "clip.wav")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_sse(sse_base: str, base_dir: Path, mode: str) -> None:
    async with Client(sse_client(f"{sse_base}/sse"), mode=mode) as client:
        await _exercise(client, base_dir / "clip.wav")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_http_oversized_request_is_refused_and_serving_goes_on(http_base: str, mode: str) -> None:
    async with Client(f"{http_base}/mcp", mode=mode) as client:
        with pytest.raises(MCPError):  # the transport refuses the 10 MB body (HTTP 413) before any tool runs
            await client.call_tool("synthesize", {"text": "x" * 10_000_000, "voice": "anyone"})
        assert not (await client.call_tool("list_voices", {})).is_error


async def test_http_checks_host_and_origin(http_base: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient() as http:
        rebinding = await http.post(f"{http_base}/mcp", json=body, headers={**headers, "host": "evil.example:80"})
        assert rebinding.status_code in (400, 403, 421)
        cross_site = await http.post(f"{http_base}/mcp", json=body, headers={**headers, "origin": "http://evil.example"})
        assert cross_site.status_code == 403


async def test_bearer_token(server_env: dict[str, str], base_dir: Path) -> None:
    env = {**server_env, "GLMTTS_MCP_TOKEN": "correct horse battery staple"}
    with _http_server("http", env) as base:
        async with httpx2.AsyncClient() as http:
            denied = await http.post(f"{base}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert denied.status_code == 401 and "Bearer" in denied.headers.get("www-authenticate", "")
            wrong = await http.post(f"{base}/mcp", json={}, headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401
        authed = httpx2.AsyncClient(headers={"authorization": "Bearer correct horse battery staple"}, timeout=60)
        async with authed, Client(streamable_http_client(f"{base}/mcp", http_client=authed)) as client:
            stats = await client.call_tool("cache_stats", {})
            assert not stats.is_error and stats.structured_content["engine"]["model_loaded"] is False


def test_non_loopback_needs_a_token(server_env: dict[str, str]) -> None:
    done = subprocess.run(
        [str(SCRIPT), "serve", "--transport", "http", "--host", "0.0.0.0", "--port", str(_free_port())],
        env=server_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "without a token" in done.stderr and "GLMTTS_MCP_TOKEN" in done.stderr


@pytest.mark.skipif(not INSPECTOR.exists(), reason="MCP Inspector not installed (npm install @modelcontextprotocol/inspector)")
def test_mcp_inspector_cli(server_env: dict[str, str], base_dir: Path, tmp_path: Path) -> None:
    """An MCP client this project did not write; its stdio client passes only -e variables."""
    env = {**server_env, "GLMTTS_MCP_VOICES_DIR": str(tmp_path / "voices")}
    env_flags = [f"-e{k}={v}" for k, v in env.items() if k.startswith("GLMTTS_MCP_") or k == "XDG_CONFIG_HOME"]

    def inspect(*args: str, expect_error: bool = False) -> dict[str, Any]:
        done = subprocess.run(
            [str(INSPECTOR), "--cli", str(SCRIPT), *env_flags, *args],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert (done.returncode != 0) == expect_error, done.stderr + done.stdout
        return json.loads(done.stdout)

    listed = inspect("--method", "tools/list")
    assert {"clone_voice", "synthesize", "list_voices", "delete_voice", "cache_stats"} <= {
        t["name"] for t in listed["tools"]
    }
    spoken = inspect(
        "--method", "tools/call", "--tool-name", "synthesize", "--tool-arg", "text=Hi.",
        "--tool-arg", f"reference_audio={base_dir / 'clip.wav'}", "--tool-arg", "return_mode=path",
    )
    assert not spoken.get("isError") and Path(spoken["structuredContent"]["path"]).is_file()
    assert spoken["structuredContent"]["cache_hit"] is False
    refused = inspect(
        "--method", "tools/call", "--tool-name", "clone_voice", "--tool-arg", "audio=/etc/shadow", expect_error=True
    )
    assert refused["isError"] is True and "outside the allowed folders" in refused["content"][0]["text"]
