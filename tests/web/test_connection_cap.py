"""At the connection cap, waiting connections make room: a flood of idle keep-alive or header-dribbling
sockets from one address cannot lock another caller out, and a connection answering a request is never
the one closed. uvicorn runs in-process with the server's own protocol (`guarded_http_protocol`), a cap
of 20; clients are raw sockets, the flood bound to 127.0.0.2 and the caller to 127.0.0.1 (two addresses
on one loopback)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import uvicorn

from glmtts_mcp.asgi import http_guard
from server_processes import free_port, uvicorn_in_thread

CAP = 20
FLOOD = 100
FLOODER = "127.0.0.2"
CALLER = "127.0.0.1"
release = threading.Event()  # /slow answers once it is set


async def tiny_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/slow waits for `release` (a request being answered), anything else answers 'ok' at once."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await anyio.to_thread.run_sync(release.wait)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def port() -> Iterator[int]:
    free = free_port()
    config = uvicorn.Config(
        tiny_app,
        host="127.0.0.1",
        port=free,
        log_level="warning",
        lifespan="off",
        timeout_keep_alive=60,
        http=http_guard.guarded_http_protocol(header_timeout_s=60.0, max_connections=CAP),
    )
    with uvicorn_in_thread(config):
        yield free
        release.set()
    release.clear()


def connect(port: int, source: str) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(10)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything up to the end of one small response (or the close)."""
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith((b"ok", b"\n")):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def get(port: int, source: str, path: str = "/") -> bytes:
    with connect(port, source) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode())
        return answer(sock)


class Flood:
    """FLOOD sockets from one address, kept open: reconnected as soon as the server closes one."""

    def __init__(self, port: int, source: str, start: Any) -> None:
        self.port, self.source, self.start = port, source, start
        self.stop = threading.Event()
        self.reconnects = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Flood:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    def _open(self) -> socket.socket | None:
        try:
            sock = connect(self.port, self.source)
            self.start(sock)
            sock.setblocking(False)
            return sock
        except OSError:
            return None

    def _run(self) -> None:
        socks = [self._open() for _ in range(FLOOD)]
        while not self.stop.is_set():
            for i, sock in enumerate(socks):
                if sock is not None:
                    try:
                        if sock.recv(4096) == b"":
                            raise ConnectionResetError
                        continue
                    except BlockingIOError:
                        try:
                            sock.send(b"x")  # dribble: one more byte of an endless header (or garbage)
                            continue
                        except OSError:
                            pass
                    except OSError:
                        pass
                    sock.close()
                self.reconnects += 1
                socks[i] = self._open()
            time.sleep(0.05)
        for sock in socks:
            if sock is not None:
                sock.close()


def dribble_headers(sock: socket.socket) -> None:
    sock.sendall(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")


def idle_keep_alive(sock: socket.socket) -> None:
    sock.sendall(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    answer(sock)  # then silent, the connection kept open


@pytest.mark.parametrize("flood_kind", [dribble_headers, idle_keep_alive], ids=["dribbling", "idle"])
@pytest.mark.parametrize("caller", [CALLER, FLOODER], ids=["other-address", "same-address"])
def test_a_flood_of_waiting_connections_cannot_lock_a_caller_out(port: int, flood_kind: Any, caller: str) -> None:
    with Flood(port, FLOODER, flood_kind) as flood:
        deadline = time.monotonic() + 60
        while flood.reconnects < FLOOD and time.monotonic() < deadline:  # at the cap and reconnecting
            time.sleep(0.05)
        answers = [get(port, caller) for _ in range(30)]
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers), [a[:40] for a in answers]


def test_connections_answering_requests_are_never_closed_for_room(port: int) -> None:
    """CAP requests being answered fill the cap: a new connection is refused with 503, none of the CAP
    is closed, and each gets its answer."""
    busy = [connect(port, FLOODER) for _ in range(CAP)]
    for sock in busy:
        sock.sendall(b"GET /slow HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    time.sleep(0.5)  # let the server read every request
    refused = get(port, CALLER)
    assert refused.startswith(b"HTTP/1.1 503") and b"too many open connections" in refused
    release.set()
    for sock in busy:
        assert answer(sock).startswith(b"HTTP/1.1 200")
        sock.close()


def test_a_just_opened_connection_is_not_closed_before_older_waiting_ones(port: int) -> None:
    """A connection whose request the server has not read yet looks silent; from the flooding address
    itself it must still outlast the older dribbling sockets (closing it resets an honest caller)."""
    dribblers = [connect(port, FLOODER) for _ in range(CAP - CAP // 10)]  # waiting ones fill all but the reserve
    for sock in dribblers:
        dribble_headers(sock)
    time.sleep(0.5)  # let the server read every unfinished header
    fresh = connect(port, FLOODER)  # silent so far: makes room by closing the oldest dribbler
    assert dribblers[0].recv(1) == b""
    newer = connect(port, FLOODER)  # makes room again: the next-oldest dribbler, not `fresh`
    assert dribblers[1].recv(1) == b""
    fresh.sendall(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    assert answer(fresh).startswith(b"HTTP/1.1 200")
    for sock in [*dribblers, fresh, newer]:
        sock.close()
