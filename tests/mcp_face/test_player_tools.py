"""The MCP Apps player's server side through the SDK's client: the ui:// resource, synthesize's link to it,
the app-only tools (listed only to a host that declared the extension), and a live narration read piece
by piece, on the tiny random-weight checkpoint."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp_types as types
import numpy as np
import pytest
import soundfile as sf
from mcp import Client
from mcp.client.extension import advertise
from mcp_calls import error_text, structured

from glmtts_mcp.app.core import App, build_app
from glmtts_mcp.app.live_narrations import LiveLimits
from glmtts_mcp.config import Settings
from glmtts_mcp.mcp_face.player import PLAYER_MIME, PLAYER_URI, UI_EXTENSION
from glmtts_mcp.mcp_face.server import build_server
from polling import until

pytestmark = pytest.mark.anyio
APPS = [advertise(UI_EXTENSION, {"mimeTypes": [PLAYER_MIME]})]
TWO_SEGMENTS = (
    "Hello there, this is the first sentence of a longer story. And here comes a second one, a little longer "
    "than the first, with a few more words in it! The third sentence ends it, as all stories must end somewhere."
)


@asynccontextmanager
async def host(app: App, *, apps: bool = True, mode: str = "auto") -> AsyncIterator[Client]:
    """A client (an MCP Apps host when `apps`) of a server whose live narrations run, as `serve` runs them."""
    async with app.live.serve(), Client(build_server(app), mode=mode, extensions=APPS if apps else None) as client:
        yield client


async def read_all(client: Client, narration_id: str, **poll: Any) -> tuple[dict[str, Any], bytes, list[int]]:
    """Poll to the end: the last poll, the audio, and the size of each piece."""
    cursor, audio, pieces = 0, bytearray(), []
    while True:
        poll_result = await structured(
            client, "poll_narration", {"narration_id": narration_id, "cursor": cursor, "wait_s": 5, **poll}
        )
        assert poll_result["start"] == cursor
        audio += base64.b64decode(poll_result["pcm_s16le"])
        if poll_result["samples"]:
            pieces.append(poll_result["samples"])
        cursor = poll_result["next_cursor"]
        if poll_result["done"]:
            return poll_result, bytes(audio), pieces


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_tools_and_resource_as_each_host_sees_them(library_app: App, mode: str) -> None:
    async with host(library_app, mode=mode) as apps_host:
        tools = {t.name: t for t in (await apps_host.list_tools()).tools}
        assert tools["synthesize"].meta == {"ui": {"resourceUri": PLAYER_URI}}
        for name in ("poll_narration", "save_narration"):
            assert tools[name].meta == {"ui": {"visibility": ["app"]}}
        model_tools = [
            t.name for t in tools.values() if "model" in (t.meta or {}).get("ui", {}).get("visibility", ["model"])
        ]
        assert "synthesize" in model_tools and "poll_narration" not in model_tools
        live_schema = tools["synthesize"].output_schema
        assert live_schema["type"] == "object" and {"SynthesizeResult", "LiveSynthesizeResult"} <= set(
            live_schema["$defs"]
        )

        listed = {str(r.uri): r for r in (await apps_host.list_resources()).resources}
        assert listed[PLAYER_URI].mime_type == PLAYER_MIME
        content = (await apps_host.read_resource(PLAYER_URI)).contents[0]
        assert isinstance(content, types.TextResourceContents) and content.mime_type == PLAYER_MIME
        assert content.meta == {
            "ui": {"csp": {"connectDomains": [], "resourceDomains": [], "frameDomains": []}, "prefersBorder": True}
        }
        html = content.text
        assert "<script>" in html and "<style>" in html and 'src="' not in html and "href=" not in html
        assert "ui/initialize" in html and "poll_narration" in html
    async with host(library_app, apps=False, mode=mode) as plain:
        tools = {t.name: t for t in (await plain.list_tools()).tools}
        assert "poll_narration" not in tools and "save_narration" not in tools
        assert "path" in tools["synthesize"].output_schema["required"]


async def test_unknown_narration_is_a_clear_error(library_app: App) -> None:
    async with host(library_app) as client:
        result = await client.call_tool("poll_narration", {"narration_id": "nope"})
        assert "no live narration 'nope'" in error_text(result) and "call synthesize again" in error_text(result)


@pytest.mark.slow
async def test_live_narration_plays_in_pieces_then_saves(engine_settings: Callable[..., Settings], clip: Path) -> None:
    engine_app = build_app(engine_settings(max_result_bytes=64 * 1024))  # the host's limit: pieces stay under it
    async with host(engine_app) as client:
        cloned = await structured(client, "clone_voice", {"audio": str(clip), "name": "tone", "transcript": "hi"})
        started = await client.call_tool("synthesize", {"text": TWO_SEGMENTS, "voice": "tone", "seed": 3})
        live = started.structured_content
        assert live is not None and live["narration_id"] and live["state"] == "queued" and live["seed"] == 3
        assert "the player shown with this result plays it" in started.content[0].text  # type: ignore[union-attr]
        last, audio, pieces = await read_all(client, live["narration_id"])
        assert last["state"] == "done" and last["voice_id"] == cloned["voice_id"] and last["voice_name"] == "tone"
        assert last["segment_count"] == 2 and [s["index"] for s in last["segments"]] == [0, 1]
        assert last["segments"][1]["start_sample"] > 0 and last["total_samples"] == len(audio) // 2
        assert len(pieces) >= 2 and max(pieces) * 2 * 4 // 3 < 64 * 1024

        saved = await structured(client, "save_narration", {"narration_id": live["narration_id"], "format": "wav"})
        pcm, rate = sf.read(saved["path"], dtype="int16")
        assert rate == last["sample_rate"] and np.array_equal(pcm, np.frombuffer(audio, dtype="<i2"))

        claimed = await structured(
            client, "poll_narration", {"narration_id": live["narration_id"], "claim": True, "wait_s": 0}
        )
        assert claimed["speaking"] == live["narration_id"]
    engine_app.close()


@pytest.mark.slow
async def test_host_without_the_extension_gets_todays_result(engine_app: App, clip: Path) -> None:
    async with host(engine_app, apps=False) as client:
        await structured(client, "clone_voice", {"audio": str(clip), "name": "tone", "transcript": "hi"})
        out = await structured(client, "synthesize", {"text": "Hi.", "voice": "tone"})
        assert "narration_id" not in out and out["returned"] == ["audio", "path"] and Path(out["path"]).exists()


@pytest.mark.slow
async def test_a_narration_nobody_reads_is_cancelled_then_freed(engine_app: App, clip: Path) -> None:
    engine_app.live.limits = LiveLimits(idle_s=0.2, grace_s=0.2, sweep_s=0.05)
    async with host(engine_app) as client:
        await structured(client, "clone_voice", {"audio": str(clip), "name": "tone", "transcript": "hi"})
        live = await structured(client, "synthesize", {"text": TWO_SEGMENTS, "voice": "tone"})
        held = engine_app.live.get(live["narration_id"])
        assert held is not None
        await until(lambda: held.finished, 30)
        assert held.state == "cancelled"
        await until(lambda: engine_app.live.get(live["narration_id"]) is None, 5)


async def test_the_live_result_keeps_what_again_must_ask_for(engine_app: App, clip: Path) -> None:
    """The player's "again" changes only the seed or the voice: the sampling and pronunciation asked for come
    back in the live result for it to pass on."""
    async with host(engine_app) as client:
        await structured(client, "clone_voice", {"audio": str(clip), "name": "tone", "transcript": "hi"})
        asked = {"temperature": 0.7, "top_p": 0.9, "pronunciation": "phoneme", "pronunciations": {"Alex": "Aleks"}}
        live = await structured(client, "synthesize", {"text": "Hi, Alex.", "voice": "tone", **asked})
        assert {name: live[name] for name in asked} == asked
        plain = await structured(client, "synthesize", {"text": "Hi.", "voice": "tone"})
        assert {name: plain[name] for name in asked} == dict.fromkeys(asked)
        for started in (live, plain):
            await read_all(client, started["narration_id"])
