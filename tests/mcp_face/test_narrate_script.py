"""narrate_script through the MCP SDK's client: a dialogue from structured items with subtitles and a
timeline, progress per line and segment, refusals in the tool's words, a cancelled call that leaves no file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
import soundfile as sf
import srt
from mcp import Client
from mcp_calls import error_text, settled_scheduler, structured

from glmtts_mcp.app.core import App, build_app
from glmtts_mcp.config import Settings
from glmtts_mcp.mcp_face.server import build_server

pytestmark = pytest.mark.anyio


async def _voice(client: Client, clip: Path, name: str) -> str:
    args = {"audio": str(clip), "transcript": "hi", "name": name}
    return str((await structured(client, "clone_voice", args))["voice_id"])


async def test_items_with_chapters_give_one_file_per_chapter_with_subtitles(
    engine_app: App, tmp_path: Path, clip_writer: Callable[..., Path]
) -> None:
    messages: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with Client(build_server(engine_app)) as client:
        await _voice(client, clip_writer(tmp_path / "a.wav", pitch=220.0), "Host")
        await _voice(client, clip_writer(tmp_path / "b.wav", pitch=140.0), "Guest")
        items = [
            {"chapter": "Opening"},
            {"voice": "Host", "text": "Welcome to the show.", "pause_after_ms": 500},
            {"voice": "Guest", "text": "Glad to be here.", "seed": 7},
            {"chapter": "Closing"},
            {"voice": "host", "text": "Goodbye."},
        ]
        result = await client.call_tool(
            "narrate_script",
            {"items": items, "format": "flac", "split_chapters": True, "cues": "line", "return_mode": "path"},
            progress_callback=on_progress,
        )
    assert not result.is_error, error_text(result)
    out = result.structured_content
    assert out is not None
    assert [o["output"] for o in out["outputs"]] == [0, 1] and out["format"] == "flac"
    assert [c["title"] for c in out["chapters"]] == ["Opening", "Closing"]
    assert [(line["voice"], line["output"]) for line in out["lines"]] == [("Host", 0), ("Guest", 0), ("host", 1)]
    assert out["voices"]["Host"] == out["voices"]["host"]
    for output in out["outputs"]:
        info = sf.info(output["path"])
        assert info.frames == output["samples"] and output["uri"].startswith("audio://")
        cues = list(srt.parse(output["srt"]))
        lines = [line for line in out["lines"] if line["output"] == output["output"]]
        assert [(round(c.start.total_seconds() * 1000), round(c.end.total_seconds() * 1000)) for c in cues] == [
            (line["start_ms"], line["end_ms"]) for line in lines
        ]
    assert out["lines"][2]["start_sample"] == 0  # the second chapter's file starts with its first line
    gap = out["lines"][1]["start_sample"] - out["lines"][0]["end_sample"]
    assert gap == round(0.5 * out["sample_rate"]) - 2 * round(0.02 * out["sample_rate"])
    assert any(m.startswith("line 2/3 (Guest): segment 1/") for m in messages)
    assert all(line["loudness_lufs"] is not None for line in out["lines"])


async def test_refusals_name_the_tool_arguments(engine_app: App, tmp_path: Path, clip: Path) -> None:
    async with Client(build_server(engine_app)) as client:
        await _voice(client, clip, "Host")
        unknown = await client.call_tool("narrate_script", {"script": "Host: Hi.\nNobody: Hello."})
        both = await client.call_tool("narrate_script", {"script": "Host: Hi.", "items": []})
        bad_item = await client.call_tool("narrate_script", {"items": [{"voice": "Host"}]})
    assert "`script` names voices the library does not have: 'Nobody' (line 2)" in error_text(unknown)
    assert "call clone_voice" in error_text(unknown)
    assert "exactly one of `script` or `items`" in error_text(both)
    assert "item 1 of `items`" in error_text(bad_item)
    assert engine_app.outputs.files() == []


async def test_a_cancelled_call_stops_the_script(engine_settings: Callable[..., Settings], clip: Path) -> None:
    app = build_app(engine_settings(max_batch=2))
    script = "\n".join(f"Host: Line {n} of a script that would go on for a long while." for n in range(20))
    try:
        async with Client(build_server(app)) as client:
            await _voice(client, clip, "Host")
            second_line = anyio.Event()

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                if message and message.startswith("line 2/20"):
                    second_line.set()

            async def call() -> None:
                await client.call_tool("narrate_script", {"script": script}, progress_callback=on_progress)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                with anyio.fail_after(120):
                    await second_line.wait()
                tg.cancel_scope.cancel()  # the client abandons the call

            scheduler = await settled_scheduler(app)
            assert scheduler.running == scheduler.waiting == 0
            assert app.outputs.files() == []  # nothing half-written reached the store
    finally:
        app.close()
