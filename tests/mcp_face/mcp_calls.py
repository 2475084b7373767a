"""Helpers of the MCP tool tests: a call that must succeed, and the text of one that must fail."""

from __future__ import annotations

import time
from typing import Any

import anyio
import mcp_types as types
from mcp import Client

from glmtts_mcp.app.core import App
from glmtts_mcp.engine.runtime.scheduler import SchedulerStats


def error_text(result: types.CallToolResult) -> str:
    """The text of a tool error (asserts that it is one)."""
    assert result.is_error, result
    return " ".join(b.text for b in result.content if isinstance(b, types.TextContent))


async def structured(client: Client, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """The structured result of a call that must succeed (its error text otherwise)."""
    result = await client.call_tool(name, args or {})
    assert not result.is_error, error_text(result)
    assert result.structured_content is not None
    return result.structured_content


async def settled_scheduler(app: App, within_s: float = 10.0) -> SchedulerStats:
    """The LLM scheduler's statistics once nothing runs or waits in it (a cancelled sequence leaves at its
    next decode step), or as they are after `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        stats = app.host.ensure_loaded().scheduler_stats()
        if stats.running == stats.waiting == 0 or time.monotonic() > deadline:
            return stats
        await anyio.sleep(0.05)
