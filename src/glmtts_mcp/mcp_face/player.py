"""The MCP Apps player (the `io.modelcontextprotocol/ui` extension): its ui:// resource and its app-only tools.

A host that declares the extension renders `PLAYER_URI` (linked from synthesize's `_meta.ui.resourceUri`)
in a sandboxed frame; the player's script (player/player.js) then reads the live narration piece by piece
through `poll_narration` and saves it through `save_narration`, both called through the host and hidden
from the model (`visibility: ["app"]`). A host without the extension never sees those two tools and gets
synthesize's usual result.
"""

from __future__ import annotations

import base64
import json
from functools import cache
from importlib import resources
from typing import Annotated, Any

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, Tool, ToolAnnotations
from pydantic import Field

from glmtts_mcp.app.core import App
from glmtts_mcp.app.live_narrations import BYTES_PER_SAMPLE, LiveNarration
from glmtts_mcp.app.narration import NarrationRequest
from glmtts_mcp.app.outputs import AUDIO_MIME
from glmtts_mcp.app.schemas import (
    LiveSegment,
    LiveSynthesizeResult,
    NarrationPoll,
    SavedNarration,
    SynthesizeOutcome,
    SynthesizeResult,
)
from glmtts_mcp.errors import render_text
from glmtts_mcp.mcp_face.errors import tool_words, user_errors

UI_EXTENSION = "io.modelcontextprotocol/ui"
PLAYER_MIME = "text/html;profile=mcp-app"
PLAYER_URI = "ui://glmtts-mcp/player.html"
# The player needs no origin at all: its script and style are inline, its audio comes from blob: URLs made
# from what poll_narration returns, and it talks only to the host (postMessage). Empty lists say so.
PLAYER_CSP: dict[str, list[str]] = {"connectDomains": [], "resourceDomains": [], "frameDomains": []}
APP_ONLY: dict[str, Any] = {"ui": {"visibility": ["app"]}}
# Room a poll result keeps for everything but the audio (segments' text aside, which is measured).
_POLL_OVERHEAD_BYTES = 8 * 1024
_MAX_POLL_WAIT_S = 20.0  # well under the ~60 s hosts give a tool call


def renders_apps(capabilities: Any) -> bool:
    """Whether a client with these capabilities renders MCP Apps (it declared the extension with our MIME type)."""
    extensions = getattr(capabilities, "extensions", None) or {}
    settings = extensions.get(UI_EXTENSION)
    return isinstance(settings, dict) and PLAYER_MIME in (settings.get("mimeTypes") or [])


def tools_for(tools: list[Tool], apps: bool) -> list[Tool]:
    """The tool list a client gets: app-only tools only for hosts that render apps, and synthesize with the
    output schema of the results that host can get (a host without the player: today's result only)."""
    if apps:
        schema = {"type": "object", **SynthesizeOutcome.model_json_schema()}
    else:
        tools = [t for t in tools if "model" in _visibility(t)]
        schema = SynthesizeResult.model_json_schema()
    return [t.model_copy(update={"output_schema": schema}) if t.name == "synthesize" else t for t in tools]


def _visibility(tool: Tool) -> list[str]:
    ui = (tool.meta or {}).get("ui") or {}
    return list(ui.get("visibility") or ["model", "app"])


@cache
def player_html() -> str:
    """The player as one document: player.html with its stylesheet and script inlined (a sandboxed frame
    with no network loads nothing else)."""
    folder = resources.files("glmtts_mcp.mcp_face") / "player"
    html = (folder / "player.html").read_text(encoding="utf-8")
    css = (folder / "player.css").read_text(encoding="utf-8")
    script = (folder / "player.js").read_text(encoding="utf-8")
    html = html.replace('<link rel="stylesheet" href="player.css">', f"<style>\n{css}</style>")
    return html.replace('<script src="player.js"></script>', f"<script>\n{script}</script>")


def start_live(app: App, request: NarrationRequest, fmt: str) -> CallToolResult:
    """synthesize for a host that renders the player: start the narration and return at once."""
    live = app.live.start(request)
    result = LiveSynthesizeResult(
        narration_id=live.id,
        text=request.text,
        voice=request.voice,
        seed=request.seed,
        temperature=request.temperature,
        top_p=request.top_p,
        pronunciation=request.pronunciation,
        pronunciations=dict(request.pronunciations) if request.pronunciations else None,
        format=fmt,
        state=live.state,
    )
    summary = (
        f"Narrating {len(request.text)} characters (narration {live.id}): the player shown with this result "
        "plays it while it is made, and its Save button writes it to the output folder. To get a file "
        "instead, call synthesize again with a return_mode."
    )
    return CallToolResult(
        content=[TextContent(type="text", text=summary)], structured_content=result.model_dump(mode="json")
    )


def register_player(server: MCPServer, app: App) -> None:
    """Add the player resource and its app-only tools to `server`."""
    settings = app.settings

    @server.resource(
        PLAYER_URI,
        name="player",
        title="Narration player",
        description="Plays a narration in the conversation while it is made (MCP Apps view of synthesize).",
        mime_type=PLAYER_MIME,
        meta={"ui": {"csp": PLAYER_CSP, "prefersBorder": True}},
    )
    async def player() -> str:
        return await anyio.to_thread.run_sync(player_html)

    @server.tool(
        title="Read a live narration (player)",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
        meta=APP_ONLY,
    )
    async def poll_narration(
        narration_id: Annotated[str, Field(description="the id synthesize returned", min_length=1, max_length=64)],
        cursor: Annotated[int, Field(description="the first sample wanted (next_cursor of the last poll)", ge=0)] = 0,
        wait_s: Annotated[
            float, Field(description="wait up to this long for audio past cursor", ge=0, le=_MAX_POLL_WAIT_S)
        ] = 10.0,
        claim: Annotated[bool, Field(description="this player starts playing: the other players pause")] = False,
    ) -> Annotated[CallToolResult, NarrationPoll]:
        """The narration's audio from `cursor` on (as much as fits one result) and its state; used by the player."""
        live = _held(app, narration_id)
        if claim:
            app.live.claim(live.id)
        await live.wait_past(cursor, wait_s)
        poll = _poll(live, cursor, settings.max_result_bytes, app.live.speaking, app.live.floor)
        text = f"{poll.state}: {poll.message} ({poll.total_samples} samples so far)"
        return CallToolResult(
            content=[TextContent(type="text", text=text)], structured_content=poll.model_dump(mode="json")
        )

    @server.tool(
        title="Save a live narration (player)",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False),
        meta=APP_ONLY,
    )
    async def save_narration(
        narration_id: Annotated[str, Field(description="the id synthesize returned", min_length=1, max_length=64)],
        format: Annotated[
            str | None, Field(description=f"audio format: {', '.join(AUDIO_MIME)}; default from config")
        ] = None,
    ) -> Annotated[CallToolResult, SavedNarration]:
        """Write a finished live narration to the output store (audio://...) and say where it is."""
        live = _held(app, narration_id)
        fmt = (format or settings.format).strip().lower()
        if fmt not in AUDIO_MIME:
            raise ToolError(f"unknown format {fmt!r}: use one of {', '.join(AUDIO_MIME)}")
        with user_errors():
            stored = await app.live.save(live, fmt)
        result = SavedNarration(
            uri=stored.uri,
            path=str(stored.path),
            format=fmt,
            bytes=stored.path.stat().st_size,
            duration_s=round(live.samples / live.sample_rate, 3) if live.sample_rate else 0.0,
        )
        text = f"Saved the narration to {stored.path}\nResource: {stored.uri}"
        return CallToolResult(
            content=[TextContent(type="text", text=text)], structured_content=result.model_dump(mode="json")
        )


def _held(app: App, narration_id: str) -> LiveNarration:
    live = app.live.get(narration_id)
    if live is None:
        raise ToolError(
            f"no live narration {narration_id!r}: it finished more than "
            f"{app.live.limits.grace_s / 60:.0f} minutes ago, was cancelled, or never existed: call synthesize again"
        )
    return live


def _poll(live: LiveNarration, cursor: int, max_result_bytes: int, speaking: str | None, floor: int) -> NarrationPoll:
    """The poll result with as much audio from `cursor` as keeps the whole result under `max_result_bytes`."""
    message = live.failure.render(tool_words()) if live.failure is not None else live.message
    poll = NarrationPoll(
        narration_id=live.id,
        state=live.state,
        message=message,
        voice_id=live.voice_id,
        voice_name=live.voice_name,
        sample_rate=live.sample_rate,
        segment_count=live.segment_count,
        segments=[LiveSegment(index=s.index, text=s.text, start_sample=s.start_sample) for s in live.segments],
        segments_done=live.segments_done,
        start=cursor,
        samples=0,
        pcm_s16le="",
        next_cursor=cursor,
        total_samples=live.samples,
        done=live.finished,
        speaking=speaking,
        floor=floor,
        warnings=[render_text(w, tool_words()) for w in live.warnings],
    )
    # The structured result travels twice at most (structured content, and hosts that echo it as text).
    room = max_result_bytes - 2 * len(json.dumps(poll.model_dump(mode="json"))) - _POLL_OVERHEAD_BYTES
    max_samples = max(room, 0) * 3 // 4 // BYTES_PER_SAMPLE
    start, pcm = live.read(cursor, max_samples)
    samples = len(pcm) // BYTES_PER_SAMPLE
    poll.start, poll.samples, poll.next_cursor = start, samples, start + samples
    poll.pcm_s16le = base64.b64encode(pcm).decode("ascii")
    poll.done = live.finished and poll.next_cursor >= live.samples
    return poll
