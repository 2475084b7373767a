"""The synthesize tool: text + a library voice (or a reference clip, cloned on the way) -> audio.

The narration (app/narration.py) is written to the output store (audio://{id}) as it is made; what goes
back inline follows the return mode and the host's result-size limit (see results.py).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Annotated, Literal

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from glmtts_mcp.app.core import App
from glmtts_mcp.app.narration import MAX_SEED, TEMPERATURE_RANGE, TOP_P_RANGE, NarrationRequest, checked_text
from glmtts_mcp.app.outputs import AUDIO_MIME
from glmtts_mcp.app.saving import narrate_to_store
from glmtts_mcp.app.schemas import SynthesizeOutcome, SynthesizeResult, WholeNumber
from glmtts_mcp.config import parse_return_mode
from glmtts_mcp.errors import render_text
from glmtts_mcp.mcp_face.errors import tool_words, user_errors
from glmtts_mcp.mcp_face.paths import audio_source
from glmtts_mcp.mcp_face.player import PLAYER_URI, renders_apps, start_live
from glmtts_mcp.mcp_face.progress import relay_for
from glmtts_mcp.mcp_face.results import render_audio
from glmtts_mcp.mcp_face.voice_tools import notify_voices_changed

log = logging.getLogger(__name__)


def register_synthesis_tool(server: MCPServer, app: App) -> None:
    """Add `synthesize` to `server`."""
    settings = app.settings

    @server.tool(
        title="Narrate text in a cloned voice",
        annotations=ToolAnnotations(
            title="Narrate text in a cloned voice",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=False,
        ),
        meta={"ui": {"resourceUri": PLAYER_URI}},
    )
    async def synthesize(
        text: Annotated[str, Field(description="the text to speak", min_length=1)],
        ctx: Context,
        voice: Annotated[str | None, Field(description="voice id or name from the library (fast path)")] = None,
        reference_audio: Annotated[
            str | None,
            Field(
                description="instead of `voice`: a reference recording (path or file:// URI), cloned into the library"
            ),
        ] = None,
        format: Annotated[
            str | None,
            Field(description=f"audio format: {', '.join(AUDIO_MIME)} (ogg is Ogg/Opus); default from config"),
        ] = None,
        return_mode: Annotated[
            str | None,
            Field(
                description="audio, resource, link, path or a '+' combination such as 'audio+path'; default from config"
            ),
        ] = None,
        seed: Annotated[
            WholeNumber | None,
            Field(description="random seed: the same seed gives the same audio", ge=0, le=MAX_SEED),
        ] = None,
        temperature: Annotated[
            float | None,
            Field(
                description="sampling temperature; left out: upstream's (1.0)",
                ge=TEMPERATURE_RANGE[0],
                le=TEMPERATURE_RANGE[1],
            ),
        ] = None,
        top_p: Annotated[
            float | None,
            Field(description="nucleus size; left out: upstream's (0.8)", ge=TOP_P_RANGE[0], le=TOP_P_RANGE[1]),
        ] = None,
        pronunciation: Annotated[
            Literal["text", "phoneme"] | None,
            Field(description="text, or phoneme (upstream's phoneme-in for Chinese); default from config"),
        ] = None,
        pronunciations: Annotated[
            dict[str, str] | None,
            Field(description='this call only: {"text": "pinyin with tone numbers or a respelling"}'),
        ] = None,
    ) -> Annotated[CallToolResult, SynthesizeOutcome]:
        """Speak `text` in a cloned voice and return the audio (inline when it fits, else a link and a file path).

        Pass `voice` (from clone_voice or list_voices) or `reference_audio` (cloned automatically, its id is returned).
        Long texts are split into segments; progress is reported per segment.
        In a host that renders MCP Apps, with no `return_mode`, a player plays it in the conversation while it is made.
        """
        with user_errors():
            text = checked_text(text, settings.max_text_chars)
            fmt = (format or settings.format).strip().lower()
            if fmt not in AUDIO_MIME:
                raise ToolError(f"unknown format {fmt!r}: use one of {', '.join(AUDIO_MIME)}")
            try:
                mode = "+".join(parse_return_mode(return_mode or settings.return_mode))
            except ValueError as exc:  # a user's value: say which argument
                raise ToolError(f"return_mode: {exc}") from exc
            NarrationRequest.check_one_voice(voice is not None, reference_audio is not None)
            reference = None
            if reference_audio is not None:
                reference = audio_source(
                    reference_audio, settings.allowed_dirs, settings.max_inline_audio_bytes, argument="reference_audio"
                )
            request = NarrationRequest(
                text=text,
                voice=voice,
                reference=reference,
                seed=seed or 0,
                stream=settings.streams(False),  # one result: chunks only under --synthesis-mode stream
                temperature=temperature,
                top_p=top_p,
                pronunciation=pronunciation,
                pronunciations=pronunciations,
            )
            if voice is not None:
                await anyio.to_thread.run_sync(app.library.resolve, voice)  # unknown voices fail before loading
            if return_mode is None and app.live.running and renders_apps(ctx.client_capabilities):
                # the player plays audio as it arrives: chunks inside a segment suit it (under auto)
                return start_live(app, dataclasses.replace(request, stream=settings.streams(True)), fmt)
            relay = relay_for(ctx)
            start = time.perf_counter()
            async with relay.running():
                await relay.report(0, None, "starting" if app.host.model_loaded else "loading the model")
                ready, done, stored = await narrate_to_store(app, request, fmt, relay)
            if ready.created:
                await notify_voices_changed(ctx)
            timings = dict(done.timings)
            timings["total"] = time.perf_counter() - start
            summary = (
                f"Narrated {len(text)} characters in voice {ready.voice_name or ready.voice_id} "
                f"({done.duration_s:.1f} s of {fmt}, {done.segments} segment(s), voice from {ready.tier})."
            )
            rendered = await anyio.to_thread.run_sync(
                lambda: render_audio(stored, mode, settings.max_result_bytes, summary)
            )
            result = SynthesizeResult(
                voice_id=ready.voice_id,
                voice_name=ready.voice_name,
                cache_hit=not ready.created,
                cache_tier=ready.tier,
                duration_s=round(done.duration_s, 3),
                sample_rate=done.sample_rate,
                format=fmt,
                uri=stored.uri,
                path=str(stored.path),
                bytes=stored.path.stat().st_size,
                segments=done.segments,
                returned=rendered.parts,
                note=rendered.note,
                timings=timings,
                warnings=[render_text(w, tool_words()) for w in done.warnings],
                pronunciation=done.pronunciation,
                text_as_read=done.text_as_read,
            )
            return CallToolResult(content=rendered.blocks, structured_content=result.model_dump(mode="json"))
