"""The real `glmtts-mcp` program over stdio, Streamable HTTP and SSE (subprocesses on 127.0.0.1, stopped
by the fixtures), both protocol eras; plus Host/Origin checks, the bearer token, connection bounds
(silent, slow and idle clients), the explained 413 and the official MCP Inspector CLI driving the stdio
server."""

from __future__ import annotations

import base64
import json
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from server_processes import SCRIPT, free_port, running_server
from server_processes import server_env as confined_env

pytestmark = pytest.mark.anyio
INSPECTOR = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "mcp-inspector"


@contextmanager
def _http_server(
    transport: str, env: dict[str, str], *extra_args: str, log: Path | None = None, max_fds: int | None = None
) -> Iterator[str]:
    """`glmtts-mcp serve --transport ...` (see server_processes.running_server); yields its base URL."""
    port = free_port()
    with running_server(["serve", "--transport", transport, *extra_args], env, port, log=log, max_fds=max_fds):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory, clip_writer: Any) -> Path:
    base = tmp_path_factory.mktemp("served")
    clip_writer(base / "clip.wav")
    return base


@pytest.fixture(scope="module")
def server_env(base_dir: Path, tiny_checkpoint: Path) -> dict[str, str]:
    return confined_env(base_dir, tiny_checkpoint)


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
@pytest.mark.slow
async def test_stdio(server_env: dict[str, str], base_dir: Path, mode: str) -> None:
    params = StdioServerParameters(command=str(SCRIPT), args=[], env=server_env)
    async with Client(params, mode=mode) as client:
        await _exercise(client, base_dir / "clip.wav")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.slow
async def test_streamable_http(http_base: str, base_dir: Path, mode: str) -> None:
    async with Client(f"{http_base}/mcp", mode=mode) as client:
        await _exercise(client, base_dir / "clip.wav")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.slow
async def test_sse(sse_base: str, base_dir: Path, mode: str) -> None:
    async with Client(sse_client(f"{sse_base}/sse"), mode=mode) as client:
        await _exercise(client, base_dir / "clip.wav")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_http_oversized_request_is_refused_and_serving_goes_on(http_base: str, mode: str) -> None:
    async with Client(f"{http_base}/mcp", mode=mode) as client:
        with pytest.raises(MCPError) as refused:  # the transport refuses the 10 MB body (HTTP 413) before any tool runs
            await client.call_tool("synthesize", {"text": "x" * 10_000_000, "voice": "anyone"})
        # the client shows the server's sentence, not "Server returned an error response"
        assert "larger than the 4 MiB" in str(refused.value) and "split long text" in str(refused.value)
        assert not (await client.call_tool("list_voices", {})).is_error


async def test_http_checks_host_and_origin(http_base: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient() as http:
        rebinding = await http.post(f"{http_base}/mcp", json=body, headers={**headers, "host": "evil.example:80"})
        assert rebinding.status_code in (400, 403, 421)
        cross_site = await http.post(
            f"{http_base}/mcp", json=body, headers={**headers, "origin": "http://evil.example"}
        )
        assert cross_site.status_code == 403
        # host names and schemes are case-insensitive (RFC 9110, RFC 6454): the same request in capitals passes
        port = http_base.rsplit(":", 1)[1]
        lower = await http.post(f"{http_base}/mcp", json=body, headers={**headers, "host": f"localhost:{port}"})
        upper = await http.post(
            f"{http_base}/mcp",
            json=body,
            headers={**headers, "host": f"LOCALHOST:{port}", "origin": f"HTTP://LocalHost:{port}"},
        )
        assert upper.status_code == lower.status_code and upper.status_code not in (403, 421), upper.text


async def test_sse_refuses_other_origins(sse_base: str) -> None:
    """The SSE stream and its message endpoint take only this server's origin: not another loopback port,
    not an origin that merely starts like this one."""
    port = int(sse_base.rsplit(":", 1)[1])
    async with httpx2.AsyncClient(base_url=sse_base) as http:
        for origin in (f"http://127.0.0.1:{port + 1}", f"http://127.0.0.1:{port}.evil.example"):
            assert (await http.get("/sse", headers={"origin": origin})).status_code == 403, origin
            posted = await http.post("/messages/?session_id=x", json={}, headers={"origin": origin})
            assert posted.status_code == 403, origin
        async with http.stream("GET", "/sse", headers={"origin": sse_base}) as own:
            assert own.status_code == 200


STRONG_TOKEN = "correct-horse-battery-staple-0123456789"


async def test_bearer_token(server_env: dict[str, str], base_dir: Path) -> None:
    env = {**server_env, "GLMTTS_MCP_TOKEN": STRONG_TOKEN}
    with _http_server("http", env) as base:
        async with httpx2.AsyncClient() as http:
            denied = await http.post(f"{base}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert denied.status_code == 401 and "Bearer" in denied.headers.get("www-authenticate", "")
            wrong = await http.post(f"{base}/mcp", json={}, headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401
        # the scheme is case-insensitive (RFC 9110 §11.1)
        authed = httpx2.AsyncClient(headers={"authorization": f"bearer {STRONG_TOKEN}"}, timeout=60)
        async with authed, Client(streamable_http_client(f"{base}/mcp", http_client=authed)) as client:
            stats = await client.call_tool("cache_stats", {})
            assert not stats.is_error and stats.structured_content["engine"]["model_loaded"] is False


@pytest.mark.parametrize(
    ("host", "token"),
    [
        ("0.0.0.0", None),
        ("0.0.0.0", "x"),
        ("0.0.0.0", " "),
        ("0.0.0.0", "a" * 40),
        ("0.0.0.0", "correct horse battery staple and more words"),
        ("127.0.0.1", "abc"),  # a weak token is refused on loopback too: any local process could guess it
        ("localhost", "0123456789"),
    ],
)
def test_non_loopback_needs_a_strong_token(server_env: dict[str, str], host: str, token: str | None) -> None:
    """No token off loopback, or on any address one a guesser could find (short, one character repeated,
    spaces): refused, saying how to make a good one."""
    env = {**server_env, **({"GLMTTS_MCP_TOKEN": token} if token is not None else {})}
    done = subprocess.run(
        [str(SCRIPT), "serve", "--transport", "http", "--host", host, "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "GLMTTS_MCP_TOKEN" in done.stderr and "secrets.token_urlsafe(32)" in done.stderr
    if token is None:
        assert "without a token" in done.stderr
    else:
        assert "too easy to guess" in done.stderr and "at least 32 characters" in done.stderr


async def test_non_loopback_serves_with_a_strong_token(server_env: dict[str, str]) -> None:
    token = secrets.token_urlsafe(32)
    with _http_server("http", {**server_env, "GLMTTS_MCP_TOKEN": token}, "--host", "0.0.0.0") as base:
        authed = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=60)
        async with authed, Client(streamable_http_client(f"{base}/mcp", http_client=authed)) as client:
            assert not (await client.call_tool("list_voices", {})).is_error


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes `sock` (EOF, after any refusal text) within `within_s` seconds."""
    sock.settimeout(within_s)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.slow
async def test_silent_and_slow_connections_are_closed_and_the_server_answers(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    """50 connections that send nothing or dribble headers, against a cap of 20 under a 256-descriptor limit
    (the macOS default): all are closed within the header timeout, the server keeps answering, idle
    keep-alive connections are closed too, and the log stays a few lines long."""
    env = {
        **server_env,
        "GLMTTS_MCP_HTTP_HEADER_TIMEOUT_S": "1",
        "GLMTTS_MCP_HTTP_KEEP_ALIVE_S": "1",
        "GLMTTS_MCP_HTTP_MAX_CONNECTIONS": "20",
    }
    log = tmp_path / "server.log"
    with _http_server("http", env, log=log, max_fds=256) as base:
        port = int(base.rsplit(":", 1)[1])
        silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(50)]
        for sock in silent[:10]:  # a slow client: request line and one header, never the blank line
            sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        try:
            assert all(_closed_by_server(sock, within_s=15) for sock in silent)
        finally:
            for sock in silent:
                sock.close()
        async with Client(f"{base}/mcp") as client:
            assert not (await client.call_tool("list_voices", {})).is_error
        with socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
            idle.sendall(b"GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert idle.recv(4096).startswith(b"HTTP/1.1 ")
            assert _closed_by_server(idle, within_s=15)  # keep-alive timeout after the response
    assert log.stat().st_size < 20_000, log.read_text()[-2000:]


@pytest.mark.slow
async def test_event_streams_outlive_the_timeouts(server_env: dict[str, str], base_dir: Path) -> None:
    """An SSE stream is a response in progress, not an idle connection: it stays open past both timeouts."""
    env = {**server_env, "GLMTTS_MCP_HTTP_HEADER_TIMEOUT_S": "1", "GLMTTS_MCP_HTTP_KEEP_ALIVE_S": "1"}
    with _http_server("sse", env) as base:
        async with Client(sse_client(f"{base}/sse")) as client:
            assert not (await client.call_tool("list_voices", {})).is_error
            await anyio.sleep(3)
            assert not (await client.call_tool("list_voices", {})).is_error


@pytest.mark.skipif(
    not INSPECTOR.exists(), reason="MCP Inspector not installed (npm install @modelcontextprotocol/inspector)"
)
@pytest.mark.slow
def test_mcp_inspector_cli(server_env: dict[str, str], base_dir: Path, tmp_path: Path) -> None:
    """An MCP client this project did not write; its stdio client passes only -e variables."""
    env = {**server_env, "GLMTTS_MCP_VOICES_DIR": str(tmp_path / "voices")}
    env_flags = [f"-e{k}={v}" for k, v in env.items() if k.startswith("GLMTTS_MCP_") or k == "XDG_CONFIG_HOME"]

    def inspect(*args: str, expect_error: bool = False) -> dict[str, Any]:
        done = subprocess.run(
            # the server imports torch before it answers: on a loaded 2-core machine that outlasts the
            # Inspector's 15 s default, so give the start as long as the whole call may take
            [str(INSPECTOR), "--cli", "--connect-timeout", "150000", str(SCRIPT), *env_flags, *args],
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
        "--method",
        "tools/call",
        "--tool-name",
        "synthesize",
        "--tool-arg",
        "text=Hi.",
        "--tool-arg",
        f"reference_audio={base_dir / 'clip.wav'}",
        "--tool-arg",
        "return_mode=path",
    )
    assert not spoken.get("isError") and Path(spoken["structuredContent"]["path"]).is_file()
    assert spoken["structuredContent"]["cache_hit"] is False
    refused = inspect(
        "--method", "tools/call", "--tool-name", "clone_voice", "--tool-arg", "audio=/etc/shadow", expect_error=True
    )
    assert refused["isError"] is True and "outside the allowed folders" in refused["content"][0]["text"]


def test_connection_cap_fits_under_the_open_file_limit() -> None:
    """A cap above what `ulimit -n` can hold is lowered (accepting past the limit fails in a loop)."""
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128)); "
        "from glmtts_mcp.asgi.http_guard import connection_cap; print(connection_cap(1000), connection_cap(10))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lowered, kept = map(int, done.stdout.split())
    assert 1 <= lowered <= 128 - 64 and kept == 10
