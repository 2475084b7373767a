"""POST /api/scripts (what narrate_script does, over REST) and GET /api/outputs/{id} (the files it made).

The script is narrated into the output store; the answer is the JSON result (subtitles, chapters, lines,
timeline) whose files each carry a `url` to download them from.
"""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from glmtts_mcp.app.core import App
from glmtts_mcp.app.narration import MAX_SEED
from glmtts_mcp.app.outputs import AUDIO_MIME, StoredOutput
from glmtts_mcp.app.script_narration import ScriptNarration, ScriptOutcome
from glmtts_mcp.app.script_parse import ScriptItem, parse_script_items, parse_script_text
from glmtts_mcp.app.script_results import NarrateScriptResult, script_result
from glmtts_mcp.app.script_saving import StoreTarget
from glmtts_mcp.app.task_groups import lone_errors
from glmtts_mcp.errors import Term, UserError, render_text
from glmtts_mcp.web.errors import STATUS, WebError, field_name, rest_words

OUTPUTS_PATH = "/api/outputs"
DISCONNECT_POLL_S = 0.5


class ScriptRequest(BaseModel):
    script: str | None = Field(
        default=None,
        description="lines `Name: text`, `[pause 800ms]`, blank lines (paragraph pauses), `# Chapter` headings",
    )
    items: list[ScriptItem] | None = Field(
        default=None,
        description="instead of `script`: {voice, text, pause_after_ms?, seed?, pronunciation?}, {pause_ms}, {chapter}",
    )
    format: str = Field(default="wav", description=f"audio format: {', '.join(AUDIO_MIME)}")
    split_chapters: bool = Field(default=False, description="one audio file per chapter")
    cues: Literal["segment", "line"] = Field(default="segment", description="one subtitle cue per segment or line")
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="the seed of every line without its own")
    words: bool = Field(default=False, description="also time every word (Whisper's alignment)")


def script_routes(app: App) -> APIRouter:
    """The /api routes of scripts and their files."""
    router = APIRouter(prefix="/api", tags=["REST"])
    settings = app.settings

    @router.post("/scripts", response_model=NarrateScriptResult)
    async def narrate_script(body: ScriptRequest, request: Request) -> NarrateScriptResult:
        """Narrate a multi-voice script into the output store: audio, SRT and WebVTT subtitles, the timeline.
        A client that hangs up cancels it (no file is kept)."""
        overrides = {Term.SCRIPT: "items"} if body.items is not None else None
        try:
            fmt = body.format.strip().lower()
            if fmt not in AUDIO_MIME:
                raise UserError(f"{{argument}} is {fmt!r}", f"use one of {', '.join(AUDIO_MIME)}", argument=Term.FORMAT)
            if (body.script is None) == (body.items is None):
                raise UserError(
                    "pass the script one way",
                    "give exactly one of field `script` or field `items`",
                    argument=Term.SCRIPT,
                )
            if body.script is not None:
                script = parse_script_text(body.script, settings.max_text_chars, settings.max_script_chars)
            else:
                script = parse_script_items(body.items or [], settings.max_text_chars, settings.max_script_chars)
            narration = ScriptNarration(
                app,
                script,
                StoreTarget(app.outputs, fmt),
                settings.script_loudness_lufs,
                split_chapters=body.split_chapters,
                seed=body.seed,
                words=body.words,
            )
            outcome = await _run_while_connected(request, narration)
        except UserError as exc:
            field = field_name(exc.argument, overrides) if exc.argument is not None else None
            raise WebError(STATUS[exc.kind], exc.render(rest_words(overrides)), field) from exc
        result = script_result(outcome, fmt, settings.script_loudness_lufs, body.cues, _stored_fields)
        result.warnings = [render_text(w, rest_words(overrides)) for w in result.warnings]
        return result

    @router.get("/outputs/{output_id}", response_class=FileResponse)
    async def output_file(output_id: Annotated[str, Path(max_length=64)]) -> FileResponse:
        """A file the server narrated (an audio://{id} of the store), while the store keeps it."""
        stored = app.outputs.get(output_id)
        if stored is None:
            raise WebError(404, f"no output {output_id!r}: it was never made or the store has pruned it")
        return FileResponse(stored.path, media_type=stored.mime_type, filename=stored.output_id)

    return router


async def _run_while_connected(
    request: Request, narration: ScriptNarration[StoredOutput]
) -> ScriptOutcome[StoredOutput]:
    """Run the narration, cancelling it once the client has hung up (a JSON answer gives no other sign)."""

    async def cancel_when_gone() -> None:
        while not await request.is_disconnected():  # noqa: ASYNC110  # Starlette only answers when asked
            await anyio.sleep(DISCONNECT_POLL_S)
        narration.cancel()

    with lone_errors():
        async with anyio.create_task_group() as watch:
            watch.start_soon(cancel_when_gone)
            try:
                outcome = await narration.run()
            finally:
                watch.cancel_scope.cancel()
    return outcome


def _stored_fields(stored: StoredOutput) -> dict[str, object]:
    return {"uri": stored.uri, "url": f"{OUTPUTS_PATH}/{stored.output_id}", "bytes": stored.path.stat().st_size}
