"""The REST API under /api: the voice library, streamed synthesis and the cache statistics.

Every handler does what the matching MCP tool does, through the same helpers (clone-or-get, the
library, collect_stats); uploads arrive as multipart files and never touch a path of the caller's.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from glmtts_mcp.app.core import App
from glmtts_mcp.app.cloning import checked_language, clone_or_get
from glmtts_mcp.app.schemas import (
    CacheStatsResult,
    CloneVoiceResult,
    DeleteVoiceResult,
    ImportVoiceResult,
    ListVoicesResult,
    RenameVoiceResult,
    VoiceSummary,
)
from glmtts_mcp.mcp_face.stats import collect_stats
from glmtts_mcp.mcp_face.voice_tools import clone_result, deleted_result, publish_voices_changed
from glmtts_mcp.voices import VoiceRecord
from glmtts_mcp.voices.archive import ARCHIVE_SUFFIX
from glmtts_mcp.web.audio_stream import STREAM_FORMATS, AudioEncoder, encoded_chunks, open_narration
from glmtts_mcp.web.errors import WebError, web_errors

MAX_SEED = 2**63 - 1
VoicePath = Annotated[str, Field(min_length=1, max_length=256, description="voice id or name")]


class RenameRequest(BaseModel):
    name: str = Field(min_length=1, max_length=256, description="the new name")


class TtsRequest(BaseModel):
    text: str = Field(min_length=1, description="the text to speak")
    voice: str = Field(min_length=1, max_length=256, description="voice id or name from the library")
    format: str = Field(
        default="wav",
        description="wav, pcm (raw 16-bit mono), ogg (Ogg/Opus): streamed segment by segment; mp3, flac: sent whole",
    )
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="the same seed gives the same audio")


def checked_text(text: str, max_chars: int, field: str) -> str:
    """The text to speak, stripped; refused when empty or over the limit (naming the request field)."""
    text = text.strip()
    if not text:
        raise WebError(400, f"field `{field}` is empty: send the words to speak", field)
    if len(text) > max_chars:
        raise WebError(
            400,
            f"field `{field}` has {len(text)} characters; the limit is {max_chars} "
            "(split it into several requests, or raise --max-text-chars)",
            field,
        )
    return text


def _optional(value: str | None) -> str | None:
    """An empty form field means 'not given'."""
    return value.strip() or None if value is not None else None


async def read_upload(upload: UploadFile, field: str, limit: int) -> bytes:
    """The uploaded file's bytes (FastAPI spools them to memory or an anonymous temp file)."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise WebError(413, f"field `{field}` is larger than the {limit}-byte upload limit (--max-upload-bytes)", field)
    if not data:
        raise WebError(400, f"field `{field}` is an empty file: choose a recording of 5-15 s of speech", field)
    return data


def rest_routes(app: App) -> APIRouter:
    """The /api routes over `app`."""
    router = APIRouter(prefix="/api", tags=["REST"])
    library = app.library
    settings = app.settings

    @router.post(
        "/voices",
        response_model=CloneVoiceResult,
        status_code=201,
        responses={200: {"description": "the clip was already a voice (`existed: true`)"}},
    )
    async def clone_voice(
        audio: Annotated[UploadFile, File(description="reference recording: 3-30 s of one speaker (WAV, FLAC, OGG, MP3)")],
        name: Annotated[str | None, Form(max_length=256)] = None,
        transcript: Annotated[str | None, Form(description="what the clip says; omitted: Whisper transcribes it")] = None,
        language: Annotated[str | None, Form(description="language code, e.g. en, zh")] = None,
    ) -> JSONResponse:
        """Clone a voice from an uploaded clip (or return the stored one for a known clip)."""
        start = time.perf_counter()
        data = await read_upload(audio, "audio", settings.max_upload_bytes)
        with web_errors(field="language"):
            code = checked_language(_optional(language))
        with web_errors(field="audio", fields=("name", "transcript")):
            outcome = await app.host.run(
                lambda engine: clone_or_get(engine, library, data, _optional(name), _optional(transcript), code, None)
            )
        if not outcome.existed:
            await publish_voices_changed(app)
        result = clone_result(outcome, start)
        return JSONResponse(result.model_dump(mode="json"), status_code=200 if outcome.existed else 201)

    @router.get("/voices", response_model=ListVoicesResult)
    async def list_voices(
        query: Annotated[str | None, Query(description="part of a name, id, transcript, language or tag")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ) -> ListVoicesResult:
        """The voices, sorted by name, with transcript excerpts and health flags (`stale`, `broken`)."""
        with web_errors():
            page = await anyio.to_thread.run_sync(lambda: library.list_voices(query=query, limit=limit, cursor=cursor))
        return ListVoicesResult(voices=[VoiceSummary.of(v) for v in page.voices], next_cursor=page.next_cursor)

    @router.get("/voices/{voice}", response_model=VoiceRecord)
    async def get_voice(voice: VoicePath) -> VoiceRecord:
        """One voice's metadata (by id or name)."""
        with web_errors(field="voice"):
            return await anyio.to_thread.run_sync(lambda: library.resolve(voice))

    @router.patch("/voices/{voice}", response_model=RenameVoiceResult)
    async def rename_voice(voice: VoicePath, body: RenameRequest) -> RenameVoiceResult:
        """Give a voice a new name (its id never changes)."""

        def rename() -> tuple[VoiceRecord, VoiceRecord]:
            old = library.resolve(voice)
            return old, library.rename(old.id, body.name)

        with web_errors(field="name"):
            old, record = await anyio.to_thread.run_sync(rename)
        await publish_voices_changed(app)
        return RenameVoiceResult(voice_id=record.id, old_name=old.name, name=record.name)

    @router.delete("/voices/{voice}", response_model=DeleteVoiceResult)
    async def delete_voice(voice: VoicePath) -> DeleteVoiceResult:
        """Delete a voice and its files (an unknown voice is 404: nothing was deleted)."""
        with web_errors(field="voice"):
            record = await anyio.to_thread.run_sync(lambda: library.delete(voice))
        await publish_voices_changed(app)
        return deleted_result(record, voice)

    @router.get("/voices/{voice}/audio", response_class=FileResponse)
    async def reference_audio(voice: VoicePath) -> FileResponse:
        """The reference audio the voice keeps (16-bit FLAC)."""

        def locate() -> tuple[VoiceRecord, Path]:
            record = library.resolve(voice)
            return record, library.reference_audio_path(record.id)

        with web_errors(field="voice"):
            record, path = await anyio.to_thread.run_sync(locate)
        return FileResponse(path, media_type="audio/flac", filename=f"{record.name}.flac")

    @router.get("/voices/{voice}/export", response_class=Response)
    async def export_voice(voice: VoicePath) -> Response:
        """The archive export_voice writes (reference audio, transcript, features), as a download."""

        def export() -> tuple[str, bytes]:
            folder = Path(tempfile.mkdtemp(prefix="glmtts-export-"))  # private (0700), removed below
            try:
                written = library.export_voice(voice, folder)
                return written.name, written.read_bytes()
            finally:
                shutil.rmtree(folder, ignore_errors=True)

        with web_errors(field="voice"):
            filename, data = await anyio.to_thread.run_sync(export)
        return Response(
            data,
            media_type="application/zip",
            headers={"content-disposition": f'attachment; filename="{_header_safe(filename)}"'},
        )

    @router.post("/voices/import", response_model=ImportVoiceResult, status_code=201)
    async def import_voice(
        archive: Annotated[UploadFile, File(description=f"an archive made by export ({ARCHIVE_SUFFIX})")],
        name: Annotated[str | None, Form(max_length=256)] = None,
    ) -> JSONResponse:
        """Add a voice from an uploaded archive (checked before anything is stored)."""
        data = await read_upload(archive, "archive", settings.max_upload_bytes)

        def import_from_upload() -> tuple[VoiceRecord, bool]:
            folder = Path(tempfile.mkdtemp(prefix="glmtts-import-"))  # private (0700), always removed
            try:
                path = folder / f"upload{ARCHIVE_SUFFIX}"
                path.write_bytes(data)
                return library.import_voice(path, name=_optional(name))
            finally:
                shutil.rmtree(folder, ignore_errors=True)

        with web_errors(field="archive"):
            record, existed = await anyio.to_thread.run_sync(import_from_upload)
        if not existed:
            await publish_voices_changed(app)
        result = ImportVoiceResult(
            voice_id=record.id,
            name=record.name,
            existed=existed,
            transcript=record.transcript,
            duration_s=record.duration_s,
        )
        return JSONResponse(result.model_dump(mode="json"), status_code=200 if existed else 201)

    @router.post(
        "/tts",
        response_class=StreamingResponse,
        responses={200: {"content": {"audio/wav": {}, "audio/ogg": {}, "audio/mpeg": {}, "audio/flac": {}}}},
    )
    async def tts(body: TtsRequest) -> StreamingResponse:
        """Speak `text` in a library voice; the audio streams back as each segment is synthesized."""
        return await stream_speech(app, body.text, body.voice, body.format, body.seed, "text", "format")

    @router.get("/cache/stats", response_model=CacheStatsResult)
    async def cache_stats() -> CacheStatsResult:
        """What the cache_stats tool returns: hits per tier, time saved, voices, bytes, the engine's state."""
        with web_errors():
            return await anyio.to_thread.run_sync(lambda: collect_stats(app))

    return router


async def stream_speech(
    app: App, text: str, voice: str, fmt: str, seed: int, text_field: str, format_field: str
) -> StreamingResponse:
    """The streamed answer of /api/tts (and /v1/audio/speech with stream_format=audio)."""
    fmt = fmt.strip().lower()
    if fmt not in STREAM_FORMATS:
        raise WebError(400, f"field `{format_field}` is {fmt!r}: use one of {', '.join(STREAM_FORMATS)}", format_field)
    text = checked_text(text, app.settings.max_text_chars, text_field)
    with web_errors():
        narration = await open_narration(app, text, voice, seed)
    encoder = AudioEncoder(fmt, narration.sample_rate)
    headers = {
        "x-voice-id": narration.voice_id,
        "x-voice-name": _header_safe(narration.voice_name or ""),
        "x-cache-tier": narration.tier,
        "x-sample-rate": str(narration.sample_rate),
        "x-segments": str(narration.segments),
        "x-streamed": "true" if encoder.streams else "false",
    }
    return StreamingResponse(encoded_chunks(app, narration, encoder), media_type=encoder.media_type, headers=headers)


def _header_safe(value: str) -> str:
    """A value for an HTTP header: printable ASCII only (names may hold any character)."""
    return "".join(ch if 32 <= ord(ch) < 127 and ch != '"' else "_" for ch in value)
