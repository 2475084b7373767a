"""The pronunciation tools and synthesize's pronunciation arguments through a real in-process MCP client: a
voice's entry reaches the model's input ids, and hostile entries are refused with the server still up."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client
from mcp_calls import error_text, structured

from glmtts_mcp.app.core import App
from glmtts_mcp.engine.frontend.text_tokenizer import TextTokenizer
from glmtts_mcp.mcp_face.server import build_server

pytestmark = pytest.mark.anyio
CHONGQING = "<|CH|><|ONG2|><|Q|><|ING4|>"


async def test_a_voice_entry_through_mcp(
    engine_app: App, clip: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[int]] = []
    original = TextTokenizer.encode
    monkeypatch.setattr(TextTokenizer, "encode", lambda self, text: calls.append(original(self, text)) or calls[-1])
    tokens = original(TextTokenizer.from_dir(tiny_checkpoint / "vq32k-phoneme-tokenizer"), CHONGQING)
    async with Client(build_server(engine_app)) as client:
        made = await structured(client, "clone_voice", {"audio": str(clip), "name": "tone", "transcript": "hi there"})
        added = await structured(
            client, "add_pronunciation", {"text": "重庆", "reading": "chong2 qing4", "voice": "tone"}
        )
        assert added["voice_id"] == made["voice_id"]
        assert added["entries"] == [
            {"text": "重庆", "reading": "chong2 qing4", "kind": "pinyin", "replacement": CHONGQING}
        ]
        assert (await structured(client, "list_pronunciations"))["entries"] == []  # the global one is apart
        calls.clear()
        out = await structured(client, "synthesize", {"text": "我们去重庆。", "voice": "tone", "return_mode": "path"})
        assert out["pronunciation"] == "text" and out["text_as_read"] == f"我们去{CHONGQING}。"
        assert any(ids[i : i + 4] == tokens for ids in calls for i in range(len(ids)))
        phoneme = await structured(
            client,
            "synthesize",
            {
                "text": "银行。",
                "voice": "tone",
                "return_mode": "path",
                "pronunciation": "phoneme",
                "pronunciations": {"GLM": "G L M"},
            },
        )
        assert phoneme["pronunciation"] == "phoneme" and phoneme["text_as_read"] == "银<|H|><|ANG2|>。"
        # hostile entries: refused, naming the entry; the server answers the next call
        bad = await client.call_tool("add_pronunciation", {"text": "重庆", "reading": "chong7 qing4"})
        assert "重庆" in error_text(bad) and "tone 7" in error_text(bad)
        huge = {f"w{i}": "word" for i in range(10_000)}
        refused = await client.call_tool("synthesize", {"text": "hi", "voice": "tone", "pronunciations": huge})
        assert "10000 entries" in error_text(refused)
        cycle = await client.call_tool(
            "synthesize", {"text": "hi", "voice": "tone", "pronunciations": {"Bob": "Rob", "Rob": "Bob"}}
        )
        assert "lead back" in error_text(cycle) and "`pronunciations`" in error_text(cycle)
        removed = await structured(client, "remove_pronunciation", {"text": "重庆", "voice": "tone"})
        assert removed["entries"] == []
        missing = await client.call_tool("remove_pronunciation", {"text": "重庆", "voice": "tone"})
        assert "no entry '重庆'" in error_text(missing)
