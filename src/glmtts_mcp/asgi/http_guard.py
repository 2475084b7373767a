"""Bounds on HTTP connections, so that silent or slow clients cannot take the server down.

uvicorn closes a connection that is idle *between* requests (keep-alive timeout), but not one that
never sends a request or dribbles its headers or its body, and it accepts connections without limit:
300 silent sockets used up a 256-descriptor limit and made the server unreachable. The protocol below
adds a header timeout (from connect, and from the end of each response, until the next request's
headers are complete), a body rate floor (once the headers are in, at least BODY_MIN_BYTES of the body
in every BODY_WINDOW_S until it is complete: a stalled or dribbled body is cut, a slow honest upload is
not) and a connection cap. A request being answered is never timed out: an SSE or Streamable HTTP event
stream is a long response, not an idle connection.

At the cap, a new connection makes room rather than being refused: the connections that wait for a
request (idle keep-alive ones, silent ones, those whose headers are still coming) are closed first, idle
keep-alive ones (answered before, not a byte of the next request since) before the others, oldest first,
from the address that holds the most of them, so a flood from one address closes its own sockets, never
another caller's. A connection that has just opened counts by its age, not as idle: its request may
already be in the kernel's buffer, and closing it then resets an honest caller. Waiting connections may
fill the cap but for a reserve (a tenth of it), kept for connections that have sent a complete request.
Only when every connection is answering a request is a new one refused (503).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

# Descriptors kept for everything else the process opens (model files, the voice library, logs).
FD_RESERVE = 64
# A request body must bring at least this many bytes in every window (1 KiB/s): a client that stalls or
# dribbles its body holds a connection and a request task for no more than one window.
BODY_WINDOW_S = 10.0
BODY_MIN_BYTES = 10 * 1024

# Orders connections by when they began to wait: a counter, since uvloop's clock ticks in milliseconds and
# a burst of connections would tie.
_waiting_turns = itertools.count()

_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
)
_BUSY_TEXT = b"too many open connections to this server: retry in a few seconds\n"


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout, a body rate floor and a connection cap that closes
    waiting connections (the flooding address's first) to make room."""

    def __init__(self, *args: Any, header_timeout_s: float, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.max_connections = max_connections
        self.reserve = max_connections // 10  # kept for connections with a complete request
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_bytes = 0  # received in the current body window
        self._waiting_turn = 0  # when it began to wait for its next request (connect, end of a response)
        self._answered = False  # whether a response on it has been completed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as H11Protocol's
        super().connection_made(transport)
        self._waiting_turn = next(_waiting_turns)
        if not self._make_room():
            log.warning(
                "%d connections open, every one answering a request: over the cap of %d (--http-max-connections), "
                "refusing new ones",
                len(self.connections) - 1,
                self.max_connections,
            )
            transport.write(_BUSY_RESPONSE % (len(_BUSY_TEXT), _BUSY_TEXT))
            transport.close()
            return
        self._start_header_timer()

    @property
    def address(self) -> str:
        return self.client[0] if self.client else ""

    def waiting_for_request(self) -> bool:
        """Open, and not answering a request: silent, idle between requests, or its headers still coming."""
        answering = self.cycle is not None and not self.cycle.response_complete
        return not answering and not self.transport.is_closing()

    def idle_keep_alive(self) -> bool:
        """Answered before, and not a byte of its next request received: its client reopens at no loss."""
        return self._answered and not self.conn.trailing_data[0]

    def _make_room(self) -> bool:
        """Whether this new connection may stay: under the cap, or after closing a waiting one."""
        others = [c for c in self.connections if c is not self and not c.transport.is_closing()]
        waiting = [c for c in others if isinstance(c, GuardedH11Protocol) and c.waiting_for_request()]
        over_cap = len(others) + 1 > self.max_connections
        if not over_cap and len(waiting) + 1 <= self.max_connections - self.reserve:
            return True
        held = Counter(c.address for c in waiting)
        victim = min(waiting, key=lambda c: (-held[c.address], not c.idle_keep_alive(), c._waiting_turn), default=None)
        if victim is None:
            return not over_cap
        log.info(
            "at the connection cap of %d (--http-max-connections): closed a waiting connection of %s, which holds %d",
            self.max_connections,
            victim.address,
            held[victim.address],
        )
        victim.transport.close()
        return True

    def data_received(self, data: bytes) -> None:
        if self._body_timer is not None:
            self._body_bytes += len(data)
        super().data_received(data)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request's headers are complete: it is being answered
            self._cancel_header_timer()
        if self.conn.their_state is not h11.SEND_BODY:
            self._cancel_body_timer()
        elif self._body_timer is None:  # its body is still to come
            self._start_body_window()

    def on_response_complete(self) -> None:
        self._answered = True
        self._waiting_turn = next(_waiting_turns)
        self._start_header_timer()  # before super(): it may start a pipelined request at once
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        waiting_for_request = self.cycle is None or self.cycle.response_complete
        if waiting_for_request and not self.transport.is_closing():
            self.transport.close()

    def _start_body_window(self) -> None:
        self._body_bytes = 0
        self._body_timer = self.loop.call_later(BODY_WINDOW_S, self._body_window_over)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_window_over(self) -> None:
        self._body_timer = None
        if self.conn.their_state is not h11.SEND_BODY or self.transport.is_closing():
            return
        if self._body_bytes < BODY_MIN_BYTES and not self.flow.read_paused:  # paused: the app is behind, not the client
            log.info(
                "closed a connection whose request body brought %d bytes in %.0f s (under %d)",
                self._body_bytes,
                BODY_WINDOW_S,
                BODY_MIN_BYTES,
            )
            self.transport.close()
            return
        self._start_body_window()


def guarded_http_protocol(header_timeout_s: float, max_connections: int) -> Any:
    """The protocol factory for uvicorn.Config(http=...)."""
    return functools.partial(GuardedH11Protocol, header_timeout_s=header_timeout_s, max_connections=max_connections)


def connection_cap(configured: int) -> int:
    """The configured cap, lowered when the process's open-file limit could not hold that many
    connections beside what it already has open (accepting past the limit fails in a loop)."""
    try:
        import resource  # POSIX only; Windows has no such per-process limit on sockets
    except ImportError:
        return configured
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    room = soft - _open_descriptors() - FD_RESERVE
    if configured <= room:
        return configured
    cap = max(1, room)
    log.warning(
        "the open-file limit (%d, `ulimit -n`) leaves room for %d connections, not %d (--http-max-connections): "
        "capping at %d; raise the limit to allow more",
        soft,
        cap,
        configured,
        cap,
    )
    return cap


def _open_descriptors() -> int:
    for listing in (Path("/proc/self/fd"), Path("/dev/fd")):
        try:
            return len(os.listdir(listing))
        except OSError:
            continue
    return 0
