"""Arguments that fail a tool's input schema read like every other tool error: the argument, the problem
and the fix, with no pydantic dump, documentation URL or echo of a huge value. One hook covers every tool."""

from __future__ import annotations

from typing import Any

import mcp_types as types
import pytest
from mcp import Client

from glmtts_mcp.app.core import App
from glmtts_mcp.mcp_face.server import build_server

pytestmark = pytest.mark.anyio


async def _refusal(client: Client, tool: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, result
    text = " ".join(b.text for b in result.content if isinstance(b, types.TextContent))
    assert "pydantic" not in text and "http" not in text and "Input should" not in text, text
    return text


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_invalid_arguments_get_problem_and_fix_sentences(library_app: App, mode: str) -> None:
    async with Client(build_server(library_app), mode=mode) as client:
        empty = await _refusal(client, "synthesize", {"text": "", "voice": "anyone"})
        assert "argument `text` is empty: pass at least 1 character" in empty
        seed = await _refusal(client, "synthesize", {"text": "Hi.", "voice": "anyone", "seed": -1})
        assert "argument `seed` is -1; it must be at least 0" in seed
        too_many = await _refusal(client, "list_voices", {"limit": 500})
        assert "argument `limit` is 500; it must be at most 200" in too_many
        boolean = await _refusal(client, "synthesize", {"text": "Hi.", "voice": "anyone", "seed": True})
        assert "argument `seed`" in boolean and "a boolean is not a number" in boolean, boolean
        boolean_limit = await _refusal(client, "list_voices", {"limit": True})
        assert "argument `limit`" in boolean_limit and "a boolean is not a number" in boolean_limit, boolean_limit
        not_number = await _refusal(client, "list_voices", {"limit": "many"})
        assert "argument `limit` must be a whole number, not 'many'" in not_number
        long_name = await _refusal(client, "rename_voice", {"voice": "a", "name": "n" * 10_000})
        assert "argument `name` has 10000 characters; the limit is 256: pass a shorter one" in long_name
        assert "n" * 100 not in long_name
        missing = await _refusal(client, "delete_voice", {})
        assert "argument `voice` is missing: pass it" in missing
        assert (await client.call_tool("list_voices", {})).is_error is False  # still serving
