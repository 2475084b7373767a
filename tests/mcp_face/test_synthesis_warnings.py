"""A narration whose audio the engine had to change (a segment cut at its length limit, tokens dropped,
a silent segment) says so in the result's `warnings`, not only in the server log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from glmtts_mcp.app.core import App
from glmtts_mcp.engine.models.llm import GLMTTSLLM
from glmtts_mcp.mcp_face.server import build_server

pytestmark = pytest.mark.anyio


async def test_a_segment_cut_at_its_length_limit_is_a_warning(
    engine_app: App, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sequence = GLMTTSLLM.sequence

    def never_ending(self: GLMTTSLLM, *args: Any, **kwargs: Any) -> Any:
        # end-of-speech masked for every step the text allows: each segment runs into its limit
        kwargs.update(min_ratio=3.0, max_ratio=3.0)
        return sequence(self, *args, **kwargs)

    monkeypatch.setattr(GLMTTSLLM, "sequence", never_ending)
    async with Client(build_server(engine_app)) as client:
        voice = (await client.call_tool("clone_voice", {"audio": str(clip), "transcript": "hi"})).structured_content
        result = await client.call_tool(
            "synthesize", {"text": "Hello there.", "voice": voice["voice_id"], "seed": 3, "return_mode": "path"}
        )
    assert not result.is_error
    warnings = result.structured_content["warnings"]
    assert any(w.startswith("segment 1/1 ('hello there.')") and "cut after" in w for w in warnings), warnings


async def test_an_uneventful_narration_has_no_warnings(engine_app: App, clip: Path) -> None:
    async with Client(build_server(engine_app)) as client:
        voice = (await client.call_tool("clone_voice", {"audio": str(clip), "transcript": "hi"})).structured_content
        result = await client.call_tool(
            "synthesize", {"text": "Hello there.", "voice": voice["voice_id"], "seed": 3, "return_mode": "path"}
        )
    assert not result.is_error
    assert not [w for w in result.structured_content["warnings"] if "cut after" in w]
