"""Voice-library tools: clone_voice, list_voices, delete_voice, rename_voice, export_voice, import_voice.

Only clone_voice needs the model; the others keep working when it cannot load.
"""

from __future__ import annotations

import logging
from typing import Annotated

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from glmtts_mcp.app.cloning import checked_language
from glmtts_mcp.app.core import App
from glmtts_mcp.app.schemas import (
    CloneVoiceResult,
    DeleteVoiceResult,
    ExportVoiceResult,
    ImportVoiceResult,
    ListVoicesResult,
    RenameVoiceResult,
    WholeNumber,
)
from glmtts_mcp.app.voice_service import VoiceService
from glmtts_mcp.errors import Term, render_text
from glmtts_mcp.mcp_face.errors import tool_words, user_errors
from glmtts_mcp.mcp_face.paths import (
    audio_source,
    resolve_allowed_path,
    writable_target,
)
from glmtts_mcp.mcp_face.progress import relay_for
from glmtts_mcp.voices import VoiceNotFound, is_voice_id

log = logging.getLogger(__name__)

VoiceArg = Annotated[str, Field(description="voice id or name (see list_voices)", min_length=1, max_length=256)]


async def notify_voices_changed(ctx: Context) -> None:
    """resources/list_changed to this request's session, for clients of protocol versions older than
    2026-07-28 (newer ones listen on `subscriptions/listen`, which App.changes feeds)."""
    try:
        await ctx.session.send_resource_list_changed()
    except Exception as exc:  # stateless requests have no standalone stream
        log.debug("session notify failed: %r", exc)


def register_voice_tools(server: MCPServer, app: App) -> None:
    """Add the library tools to `server`."""
    settings = app.settings
    voices = VoiceService(app)

    @server.tool(
        title="Clone a voice",
        annotations=ToolAnnotations(
            title="Clone a voice",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )
    async def clone_voice(
        audio: Annotated[
            str,
            Field(
                description="reference recording (3-30 s of one speaker): an absolute path or file:// URI inside "
                "the allowed folders; base64 data only for small clips",
                min_length=1,
            ),
        ],
        ctx: Context,
        name: Annotated[str | None, Field(description="a name to use instead of the id", max_length=256)] = None,
        transcript: Annotated[
            str | None,
            Field(
                description="what is said in the clip (at most 30 characters per second of it, plus 60); "
                "omitted: Whisper transcribes it"
            ),
        ] = None,
        language: Annotated[
            str | None, Field(description="language of the clip: en or zh (omitted: Whisper detects it)")
        ] = None,
    ) -> CloneVoiceResult:
        """Clone a voice from a short recording into the voice library and return its id.

        Cloning the same clip (and transcript) again returns the stored voice without recomputing it.
        """
        with user_errors({Term.REFERENCE: "audio"}):
            source = audio_source(audio, settings.allowed_dirs, settings.max_inline_audio_bytes)
            language = checked_language(language)
            relay = relay_for(ctx)
            async with relay.running():
                await relay.report(0, None, "starting" if app.host.model_loaded else "loading the model")
                result = await voices.clone(source, name, transcript, language, relay)
            if not result.existed:
                await notify_voices_changed(ctx)
            return result.model_copy(update={"warnings": [render_text(w, tool_words()) for w in result.warnings]})

    @server.tool(
        title="List voices",
        annotations=ToolAnnotations(title="List voices", read_only_hint=True, open_world_hint=False),
    )
    async def list_voices(
        query: Annotated[
            str | None, Field(description="filter: part of a name, id, transcript, language or tag")
        ] = None,
        limit: Annotated[WholeNumber, Field(description="voices per page", ge=1, le=200)] = 20,
        cursor: Annotated[str | None, Field(description="next_cursor from the previous page")] = None,
    ) -> ListVoicesResult:
        """List the voices in the library (sorted by name), with transcript excerpts and health flags."""
        with user_errors():
            return await voices.list(query, limit, cursor)

    @server.tool(
        title="Delete a voice",
        annotations=ToolAnnotations(
            title="Delete a voice",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )
    async def delete_voice(voice: VoiceArg, ctx: Context) -> DeleteVoiceResult:
        """Delete a voice (by id or name) and its stored files from the library.

        Idempotent: a voice that is not (or no longer) there is no error but `deleted: false`, so a
        host that retries after a lost answer sees success.
        """
        with user_errors():
            try:
                result = await voices.delete(voice)
            except VoiceNotFound:
                given = voice.strip().lower()
                return DeleteVoiceResult(
                    voice_id=given if is_voice_id(given) else None,
                    name=None,
                    deleted=False,
                    message=f"no voice {voice!r} in the library (already deleted, or never stored): nothing was "
                    "deleted. Call list_voices to see the stored voices.",
                )
            await notify_voices_changed(ctx)
            return result

    @server.tool(
        title="Rename a voice",
        annotations=ToolAnnotations(
            title="Rename a voice",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )
    async def rename_voice(
        voice: VoiceArg,
        name: Annotated[str, Field(description="the new name", min_length=1, max_length=256)],
        ctx: Context,
    ) -> RenameVoiceResult:
        """Give a voice a new name (ids never change)."""
        with user_errors():
            result = await voices.rename(voice, name)
            await notify_voices_changed(ctx)
            return result

    @server.tool(
        title="Export a voice",
        annotations=ToolAnnotations(
            title="Export a voice",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )
    async def export_voice(
        voice: VoiceArg,
        path: Annotated[
            str,
            Field(
                description="absolute path ending in .zip (or an existing folder, which gets <name>.glmtts-voice.zip) "
                "inside the allowed folders, outside the voice library, output and checkpoint folders; an existing "
                "file there is replaced only if it is an older export"
            ),
        ],
    ) -> ExportVoiceResult:
        """Write a voice (reference audio, transcript, features) to a portable .zip archive file."""
        with user_errors():
            destination = await anyio.to_thread.run_sync(lambda: writable_target(path, settings.allowed_dirs))
            return await voices.export_to(voice, destination)

    @server.tool(
        title="Import a voice",
        annotations=ToolAnnotations(
            title="Import a voice",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )
    async def import_voice(
        path: Annotated[str, Field(description="absolute path of an archive made by export_voice")],
        ctx: Context,
        name: Annotated[str | None, Field(description="a name for the imported voice", max_length=256)] = None,
    ) -> ImportVoiceResult:
        """Add a voice from an archive made by export_voice: everything is checked before anything is stored,
        and the model re-extracts its features from its reference (it loads if it is not loaded)."""
        with user_errors():
            source = await anyio.to_thread.run_sync(lambda: resolve_allowed_path(path, settings.allowed_dirs))
            result = await voices.import_from(source, name)
            if not result.existed:
                await notify_voices_changed(ctx)
            return result
