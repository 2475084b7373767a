"""Helpers of the MCP tool tests: a call that must succeed, and the text of one that must fail."""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp import Client


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
