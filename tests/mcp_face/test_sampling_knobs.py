"""synthesize's `temperature` and `top_p` through a real MCP client: left out, the audio is upstream's
sampling; given, the draws change; out of range, refused by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client

from glmtts_mcp.app.core import App
from glmtts_mcp.mcp_face.server import build_server

pytestmark = pytest.mark.anyio


async def test_sampling_knobs(engine_app: App, clip: Path) -> None:
    async with Client(build_server(engine_app)) as client:

        async def spoken(**knobs: Any) -> bytes:
            args = {"text": "Sampling decides every token.", "reference_audio": str(clip), "format": "wav"}
            result = await client.call_tool("synthesize", {**args, "return_mode": "path", **knobs})
            assert not result.is_error, result
            assert result.structured_content is not None
            return Path(result.structured_content["path"]).read_bytes()

        plain = await spoken()
        assert plain == await spoken(temperature=1.0, top_p=0.8)  # upstream's values are the default
        assert plain != await spoken(temperature=0.1)
        refused = await client.call_tool("synthesize", {"text": "Hi.", "voice": "x", "top_p": 0.2})
        assert refused.is_error
        assert "top_p" in " ".join(b.text for b in refused.content if isinstance(b, types.TextContent))
