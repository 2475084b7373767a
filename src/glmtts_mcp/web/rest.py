"""The REST API under /api: the voice library, streamed synthesis and the cache statistics.

Every handler does what the matching MCP tool does, through the same application services (the voice
service, the narration); uploads arrive as multipart files and never touch a path of the caller's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from glmtts_mcp.app.audio_out import MEDIA_TYPES, STREAM_FORMATS, STREAMED_FORMATS
from glmtts_mcp.app.cloning import checked_language
from glmtts_mcp.app.core import App
from glmtts_mcp.app.narration import MAX_SEED, NarrationRequest, checked_text
from glmtts_mcp.app.schemas import (
    CacheStatsResult,
    CloneVoiceResult,
    DeleteVoiceResult,
    ImportVoiceResult,
    ListVoicesResult,
    RenameVoiceResult,
    WholeNumber,
)
from glmtts_mcp.app.voice_service import VoiceService
from glmtts_mcp.errors import Term, UserError, render_text
from glmtts_mcp.voices import VoiceRecord
from glmtts_mcp.voices.archive import ARCHIVE_SUFFIX
from glmtts_mcp.web.errors import WebError, rest_words
from glmtts_mcp.web.speech_stream import disconnect_of, encoded, open_speech

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
    seed: WholeNumber = Field(default=0, ge=0, le=MAX_SEED, description="the same seed gives the same audio")


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
    voices = VoiceService(app)
    settings = app.settings

    @router.post(
        "/voices",
        response_model=CloneVoiceResult,
        status_code=201,
        responses={200: {"description": "the clip was already a voice (`existed: true`)"}},
    )
    async def clone_voice(
        audio: Annotated[
            UploadFile, File(description="reference recording: 3-30 s of one speaker (WAV, FLAC, OGG, MP3)")
        ],
        name: Annotated[str | None, Form(max_length=256)] = None,
        transcript: Annotated[
            str | None, Form(description="what the clip says; omitted: Whisper transcribes it")
        ] = None,
        language: Annotated[str | None, Form(description="language code, e.g. en, zh")] = None,
    ) -> JSONResponse:
        """Clone a voice from an uploaded clip (or return the stored one for a known clip)."""
        data = await read_upload(audio, "audio", settings.max_upload_bytes)
        code = checked_language(_optional(language))
        result = await voices.clone(data, _optional(name), _optional(transcript), code)
        result.warnings = [render_text(w, rest_words()) for w in result.warnings]
        return JSONResponse(result.model_dump(mode="json"), status_code=200 if result.existed else 201)

    @router.get("/voices", response_model=ListVoicesResult)
    async def list_voices(
        query: Annotated[str | None, Query(description="part of a name, id, transcript, language or tag")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ) -> ListVoicesResult:
        """The voices, sorted by name, with transcript excerpts and health flags (`stale`, `broken`)."""
        return await voices.list(query, limit, cursor)

    @router.get("/voices/{voice}", response_model=VoiceRecord)
    async def get_voice(voice: VoicePath) -> VoiceRecord:
        """One voice's metadata (by id or name)."""
        return await voices.get(voice)

    @router.patch("/voices/{voice}", response_model=RenameVoiceResult)
    async def rename_voice(voice: VoicePath, body: RenameRequest) -> RenameVoiceResult:
        """Give a voice a new name (its id never changes)."""
        return await voices.rename(voice, body.name)

    @router.delete("/voices/{voice}", response_model=DeleteVoiceResult)
    async def delete_voice(voice: VoicePath) -> DeleteVoiceResult:
        """Delete a voice and its files (an unknown voice is 404: nothing was deleted)."""
        return await voices.delete(voice)

    @router.get("/voices/{voice}/audio", response_class=FileResponse)
    async def reference_audio(voice: VoicePath) -> FileResponse:
        """The reference audio the voice keeps (16-bit FLAC)."""
        record, path = await voices.reference_audio(voice)
        return FileResponse(path, media_type="audio/flac", filename=f"{record.name}.flac")

    @router.get("/voices/{voice}/export", response_class=Response)
    async def export_voice(voice: VoicePath) -> Response:
        """The archive export_voice writes (reference audio, transcript, features), as a download."""
        filename, data = await voices.export_bytes(voice)
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
        result = await voices.import_from(data, _optional(name))
        return JSONResponse(result.model_dump(mode="json"), status_code=200 if result.existed else 201)

    @router.post(
        "/tts",
        response_class=StreamingResponse,
        responses={200: {"content": {"audio/wav": {}, "audio/ogg": {}, "audio/mpeg": {}, "audio/flac": {}}}},
    )
    async def tts(body: TtsRequest, request: Request) -> StreamingResponse:
        """Speak `text` in a library voice; the audio streams back as each segment is synthesized."""
        return await stream_speech(app, body.text, body.voice, body.format, body.seed, disconnect_of(request.receive))

    @router.get("/cache/stats", response_model=CacheStatsResult)
    async def cache_stats() -> CacheStatsResult:
        """What the cache_stats tool returns: hits per tier, time saved, voices, bytes, the engine's state."""
        return await voices.stats()

    return router


async def stream_speech(
    app: App, text: str, voice: str, fmt: str, seed: int, disconnected: Callable[[], Awaitable[None]]
) -> StreamingResponse:
    """The streamed answer of /api/tts (and /v1/audio/speech with stream_format=audio); `disconnected`
    ends when the client leaves (the narration is stopped then, wherever it is)."""
    fmt = fmt.strip().lower()
    if fmt not in STREAM_FORMATS:
        raise UserError(f"{{argument}} is {fmt!r}", f"use one of {', '.join(STREAM_FORMATS)}", argument=Term.FORMAT)
    request = NarrationRequest(text=checked_text(text, app.settings.max_text_chars), voice=voice, seed=seed)
    speech = await open_speech(app, request, disconnected)
    headers = {
        "x-voice-id": speech.voice.voice_id,
        "x-voice-name": _header_safe(speech.voice.voice_name or ""),
        "x-cache-tier": speech.voice.tier,
        "x-sample-rate": str(speech.first.sample_rate),
        "x-segments": str(speech.first.segment_count),
        "x-streamed": "true" if fmt in STREAMED_FORMATS else "false",
    }
    return StreamingResponse(encoded(speech, fmt), media_type=MEDIA_TYPES[fmt], headers=headers)


def _header_safe(value: str) -> str:
    """A value for an HTTP header: printable ASCII only (names may hold any character)."""
    return "".join(ch if 32 <= ord(ch) < 127 and ch != '"' else "_" for ch in value)
