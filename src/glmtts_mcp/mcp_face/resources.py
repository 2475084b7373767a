"""Resources: voice://{voice_id} (metadata JSON), voice://{voice_id}/reference (FLAC), audio://{id} (outputs).

A template's MIME type is fixed, so outputs get one template per audio format.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from glmtts_mcp.app.core import App
from glmtts_mcp.app.outputs import AUDIO_MIME
from glmtts_mcp.voices import VoiceLibraryError, VoiceNotFound


@contextmanager
def _resource_errors(reading: str | None = None) -> Iterator[None]:
    """Library failures as MCP resource errors: an unknown voice is "not found", any other library
    error is a resource error; with `reading` (what a handler reads), an OSError is one too, naming it."""
    caught: tuple[type[Exception], ...] = (VoiceLibraryError, OSError) if reading else (VoiceLibraryError,)
    try:
        yield
    except VoiceNotFound as exc:
        raise ResourceNotFoundError(str(exc)) from exc
    except caught as exc:
        raise ResourceError(f"cannot read {reading}: {exc}" if reading else str(exc)) from exc


def register_resources(server: MCPServer, app: App) -> None:
    """Add the voice and audio resource templates to `server`."""
    library = app.library

    @server.resource(
        "voice://{voice_id}",
        name="voice",
        title="Voice metadata",
        description="A stored voice: name, transcript, language, duration, timings (JSON).",
        mime_type="application/json",
    )
    async def voice_metadata(voice_id: str) -> str:
        with _resource_errors():
            record = await anyio.to_thread.run_sync(lambda: library.resolve(voice_id))
        return record.model_dump_json(indent=2)

    @server.resource(
        "voice://{voice_id}/reference",
        name="voice_reference",
        title="Voice reference audio",
        description="The reference recording a voice was cloned from (FLAC; a float reference as 24-bit FLAC).",
        mime_type="audio/flac",
    )
    async def voice_reference(voice_id: str) -> bytes:
        with _resource_errors(reading=f"the reference audio of {voice_id!r}"):
            # reference_flac resolves the voice (index refresh, disk reads): keep it off the event loop
            return await anyio.to_thread.run_sync(lambda: library.reference_flac(voice_id))

    for fmt, mime in AUDIO_MIME.items():
        _register_output_template(server, app, fmt, mime)


def _register_output_template(server: MCPServer, app: App, fmt: str, mime: str) -> None:
    @server.resource(
        f"audio://{{output_id}}.{fmt}",
        name=f"audio_{fmt}",
        title=f"Synthesized speech ({fmt})",
        description="Audio made by synthesize, kept in the bounded output store (oldest files are pruned).",
        mime_type=mime,
    )
    async def output_audio(output_id: str) -> bytes:
        stored = app.outputs.get(f"{output_id}.{fmt}")
        if stored is None:
            raise ResourceNotFoundError(
                f"no synthesized audio audio://{output_id}.{fmt}: it never existed or was pruned by the retention policy"
            )
        with _resource_errors(reading=f"audio://{output_id}.{fmt}"):
            return await anyio.to_thread.run_sync(stored.path.read_bytes)
