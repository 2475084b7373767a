"""Progress notifications from engine worker threads to the MCP client, plus a heartbeat.

Hosts time out tool calls after ~60 s unless progress arrives, so while a job runs the relay also
repeats its last message every `heartbeat_s` seconds. Progress values only ever increase (the
protocol requires it), whatever scale the stage that reports them uses.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.from_thread
import anyio.lowlevel
from mcp.server.mcpserver import Context

from glmtts_mcp.app.task_groups import lone_errors

log = logging.getLogger(__name__)


class ProgressRelay:
    """Callable as the engine's `progress(done, total, message)` from any thread."""

    def __init__(self, ctx: Context | None, token: anyio.lowlevel.EventLoopToken | None) -> None:
        self._ctx = ctx
        self._token = token
        self._value = 0.0
        self._total: float | None = None
        self._message = "starting"
        self._sent_at = time.monotonic()
        self._started = time.monotonic()

    def _next_value(self, done: float) -> float:
        """`done`, or just above the last value when a stage restarts its own count."""
        floor = math.floor(self._value)
        value = done if done > self._value else min(self._value + 0.001, floor + 0.999)
        if value <= self._value:  # 1000 repeats within one unit: grow the unit instead
            value = self._value + 0.001
        self._value = value
        return value

    async def report(self, done: float, total: float | None, message: str) -> None:
        """Send one notification (from the event loop); failures only get logged."""
        if self._ctx is None:
            return
        self._total = total if total is not None else self._total
        self._message = message
        self._sent_at = time.monotonic()
        value = self._next_value(done)
        total_out = max(self._total, value) if self._total is not None else None
        try:
            await self._ctx.report_progress(value, total_out, message)
        except Exception as exc:  # a vanished client must not fail the job
            log.debug("progress notification failed: %r", exc)

    def __call__(self, done: float, total: float, message: str) -> None:
        """Engine callback: hop from the worker thread onto the event loop."""
        if self._ctx is None:
            return
        try:
            anyio.from_thread.run(self.report, done, total, message, token=self._token)
        except Exception as exc:  # the loop may be gone (cancelled call): keep computing
            log.debug("progress from worker thread dropped: %r", exc)

    async def _heartbeat(self, every_s: float) -> None:
        while True:
            await anyio.sleep(every_s / 4)
            if time.monotonic() - self._sent_at >= every_s:
                elapsed = int(time.monotonic() - self._started)
                base = self._message.split(" (still working", 1)[0]
                await self.report(self._value, self._total, f"{base} (still working, {elapsed} s)")

    @asynccontextmanager
    async def running(self, heartbeat_s: float = 10.0) -> AsyncIterator[ProgressRelay]:
        """Keep the heartbeat going while the body runs."""
        if self._ctx is None:
            yield self
            return
        with lone_errors():  # the body's own error, not a group: callers match on its type
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeat, heartbeat_s)
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()


def relay_for(ctx: Context | None) -> ProgressRelay:
    """A relay bound to the running event loop (the SDK drops progress when the client sent no token)."""
    return ProgressRelay(ctx, anyio.lowlevel.current_token())
