"""The narrate_script tool: a multi-voice script (text lines or structured items) -> audio, subtitles, timeline.

The script is narrated line by line into the output store (app/script_narration.py) with progress per
line and per segment; a cancelled call stops the line being made and leaves no file.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Literal

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ContentBlock, ToolAnnotations
from pydantic import Field

from glmtts_mcp.app.core import App
from glmtts_mcp.app.narration import MAX_SEED
from glmtts_mcp.app.outputs import AUDIO_MIME, StoredOutput
from glmtts_mcp.app.script_narration import ScriptNarration
from glmtts_mcp.app.script_parse import ScriptItem, parse_script_items, parse_script_text
from glmtts_mcp.app.script_results import NarrateScriptResult, script_result
from glmtts_mcp.app.script_saving import StoreTarget
from glmtts_mcp.config import parse_return_mode
from glmtts_mcp.errors import Term, UserError, render_text
from glmtts_mcp.mcp_face.errors import tool_words, user_errors
from glmtts_mcp.mcp_face.progress import relay_for
from glmtts_mcp.mcp_face.results import render_audio


def register_script_tool(server: MCPServer, app: App) -> None:
    """Add `narrate_script` to `server`."""
    settings = app.settings

    @server.tool(
        title="Narrate a multi-voice script",
        annotations=ToolAnnotations(
            title="Narrate a multi-voice script",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=False,
        ),
    )
    async def narrate_script(
        ctx: Context,
        script: Annotated[
            str | None,
            Field(
                description="lines `Name: text` (names or ids of library voices); a line without a name goes on "
                "in the last voice; `[pause 800ms]` or `[pause 1.5s]` for silence; a blank line for a paragraph "
                "pause; `# Title` starts a chapter"
            ),
        ] = None,
        items: Annotated[
            list[ScriptItem] | None,
            Field(
                description="instead of `script`: items {voice, text, pause_after_ms?, seed?, pronunciation?}, {pause_ms} or {chapter}"
            ),
        ] = None,
        format: Annotated[
            str | None,
            Field(description=f"audio format: {', '.join(AUDIO_MIME)} (ogg is Ogg/Opus); default from config"),
        ] = None,
        split_chapters: Annotated[bool, Field(description="one audio file per chapter instead of one")] = False,
        cues: Annotated[
            Literal["segment", "line"], Field(description="one subtitle cue per segment (sentence) or per line")
        ] = "segment",
        return_mode: Annotated[
            str | None,
            Field(description="audio, resource, link, path or a '+' combination; default from config"),
        ] = None,
        seed: Annotated[
            int | None, Field(description="random seed of every line without its own", ge=0, le=MAX_SEED)
        ] = None,
        words: Annotated[
            bool, Field(description="also time every word (Whisper's alignment; needs its weights installed)")
        ] = False,
    ) -> Annotated[CallToolResult, NarrateScriptResult]:
        """Narrate a dialogue or a long text in several library voices: one audio file (or one per chapter),
        SRT and WebVTT subtitles, and a timeline whose times are the exact sample offsets of every line and
        segment. Every line is brought to one loudness. Voices must be in the library (clone_voice first);
        an unknown name is refused before anything is synthesized. Progress is reported per line and segment.
        """
        with user_errors({Term.SCRIPT: "items"} if items is not None else None):
            fmt = (format or settings.format).strip().lower()
            if fmt not in AUDIO_MIME:
                raise ToolError(f"unknown format {fmt!r}: use one of {', '.join(AUDIO_MIME)}")
            try:
                mode = "+".join(parse_return_mode(return_mode or settings.return_mode))
            except ValueError as exc:
                raise ToolError(f"return_mode: {exc}") from exc
            if (script is None) == (items is None):
                raise UserError(
                    "pass the script one way", "give exactly one of `script` or `items`", argument=Term.SCRIPT
                )
            if script is not None:
                parsed = parse_script_text(script, settings.max_text_chars, settings.max_script_chars)
            else:
                assert items is not None
                parsed = parse_script_items(items, settings.max_text_chars, settings.max_script_chars)
            relay = relay_for(ctx)
            start = time.perf_counter()
            narration = ScriptNarration(
                app,
                parsed,
                StoreTarget(app.outputs, fmt),
                settings.script_loudness_lufs,
                split_chapters=split_chapters,
                seed=seed or 0,
                progress=relay,
                words=words,
            )
            async with relay.running():
                await relay.report(0, len(parsed.lines), "starting" if app.host.model_loaded else "loading the model")
                outcome = await narration.run()
            result = script_result(outcome, fmt, settings.script_loudness_lufs, cues, _stored_fields)
            result.timings["total"] = round(time.perf_counter() - start, 3)
            result.warnings = [render_text(w, tool_words()) for w in result.warnings]
            seconds = sum(o.duration_s for o in result.outputs)
            summary = (
                f"Narrated {len(result.lines)} line(s) in {len(result.voices)} voice(s) "
                f"({seconds:.1f} s of {fmt} in {len(result.outputs)} file(s)); subtitles and timeline in the "
                "structured result."
            )
            budget = settings.max_result_bytes - len(json.dumps(result.model_dump(mode="json")))
            blocks: list[ContentBlock] = []
            returned: set[str] = set()
            notes = []
            share = max(budget // len(outcome.outputs), 0)
            for output in outcome.outputs:
                text = summary if output.index == 0 else f"Chapter file {output.index + 1}:"
                rendered = await anyio.to_thread.run_sync(render_audio, output.file, mode, share, text)
                blocks += rendered.blocks
                returned.update(rendered.parts)
                if rendered.note:
                    notes.append(rendered.note)
            result.returned = sorted(returned)
            result.note = notes[0] if notes else None
            return CallToolResult(content=blocks, structured_content=result.model_dump(mode="json"))


def _stored_fields(stored: StoredOutput) -> dict[str, object]:
    return {"path": str(stored.path), "uri": stored.uri, "bytes": stored.path.stat().st_size}
