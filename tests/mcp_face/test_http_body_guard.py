"""A client that sends complete headers and then stalls or dribbles its body is cut off after one body
window; one whose body keeps coming is answered. uvicorn runs in-process with the server's own protocol
(`guarded_http_protocol`), its window shortened so the test takes seconds; clients are raw sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from glmtts_mcp.asgi import http_guard
from server_processes import free_port, uvicorn_in_thread

WINDOW_S = 0.5
MIN_BYTES = 1024  # per window: 2 KiB/s


async def body_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, answers with its length."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    text = str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(text))]})
    await send({"type": "http.response.body", "body": text})


@pytest.fixture
def port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(http_guard, "BODY_WINDOW_S", WINDOW_S)
    monkeypatch.setattr(http_guard, "BODY_MIN_BYTES", MIN_BYTES)
    free = free_port()
    config = uvicorn.Config(
        body_length,
        host="127.0.0.1",
        port=free,
        log_level="warning",
        lifespan="off",
        http=http_guard.guarded_http_protocol(header_timeout_s=30.0, max_connections=100),
    )
    with uvicorn_in_thread(config):
        yield free


def headers(length: int) -> bytes:
    return b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % length


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` (EOF or reset, no answer) within `seconds`."""
    sock.settimeout(seconds)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_stalled_body_is_cut_after_one_window(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(headers(100_000) + b"x" * 10)
        started = time.monotonic()
        assert closed_within(sock, seconds=10 * WINDOW_S)
        assert time.monotonic() - started < 4 * WINDOW_S


def test_a_dribbled_body_is_cut(port: int) -> None:
    """A byte every 50 ms keeps the connection busy but brings 20 bytes a second: under the floor."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(headers(1000))
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 10 * WINDOW_S and not closed:
            try:
                sock.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            closed = closed_within(sock, seconds=0.05)
        assert closed and time.monotonic() - started < 6 * WINDOW_S


def test_a_slow_body_above_the_floor_is_answered(port: int) -> None:
    """4 KiB every 0.3 s (about 13 KiB/s) for two seconds: slower than the window, never under the floor."""
    chunk, chunks = b"y" * 4096, 7
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(headers(len(chunk) * chunks))
        for _ in range(chunks):
            time.sleep(0.3)
            sock.sendall(chunk)
        answer = b""
        while not answer.endswith(str(len(chunk) * chunks).encode()) and (part := sock.recv(4096)):
            answer += part
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(str(len(chunk) * chunks).encode())
