"""The REST API under /api: the voice library, streamed synthesis and the cache statistics.

Every handler does what the matching MCP tool does, through the same application services (the voice
service, the narration); uploads arrive as multipart files and never touch a path of the caller's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, ValidationError

from glmtts_mcp.app.audio_out import MEDIA_TYPES, STREAM_FORMATS, STREAMED_FORMATS
from glmtts_mcp.app.cloning import checked_language
from glmtts_mcp.app.core import App
from glmtts_mcp.app.narration import MAX_SEED, TEMPERATURE_RANGE, TOP_P_RANGE, NarrationRequest, checked_text
from glmtts_mcp.app.schemas import (
    DeleteVoiceResult,
    ImportVoiceResult,
    RenameVoiceResult,
    VoiceSummary,
    WholeNumber,
)
from glmtts_mcp.app.voice_service import VoiceService
from glmtts_mcp.engine.types import PronunciationMode
from glmtts_mcp.errors import Term, UserError, render_text
from glmtts_mcp.voices.archive import ARCHIVE_SUFFIX
from glmtts_mcp.web.errors import WebError, rest_words
from glmtts_mcp.web.forms import optional, read_upload
from glmtts_mcp.web.seed_api import (
    SEED_STATS_KEYS,
    SeedCacheStats,
    SeedCloneResult,
    SeedVoiceDetail,
    SeedVoiceList,
    SeedVoiceSummary,
    is_form,
    seed_metadata,
    seed_stats,
    speak_form,
    switch_field,
)
from glmtts_mcp.web.seed_api import form_body as seed_form_body
from glmtts_mcp.web.seed_tasks import TaskBoard
from glmtts_mcp.web.speech_stream import disconnect_of, encoded, open_speech, reading_headers

Body = TypeVar("Body", bound=BaseModel)
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
    temperature: float | None = Field(
        default=None,
        description=f"sampling temperature {TEMPERATURE_RANGE[0]}-{TEMPERATURE_RANGE[1]}; left out: upstream's",
    )
    top_p: float | None = Field(
        default=None, description=f"nucleus size {TOP_P_RANGE[0]}-{TOP_P_RANGE[1]}; left out: upstream's"
    )
    pronunciation: Literal["text", "phoneme"] | None = Field(
        default=None, description="text, or phoneme (upstream's phoneme-in for Chinese); default from the server"
    )
    pronunciations: dict[str, str] | None = Field(
        default=None, description="this request only: text -> pinyin with tone numbers, or a respelling"
    )


def rest_routes(app: App, tasks: TaskBoard) -> APIRouter:
    """The /api routes over `app` (seed-style synthesis requests report progress on `tasks`)."""
    router = APIRouter(prefix="/api", tags=["REST"])
    voices = VoiceService(app)
    settings = app.settings

    @router.post(
        "/voices",
        response_model=SeedCloneResult,
        status_code=201,
        responses={200: {"description": "the clip was already a voice (`existed: true`), or a seed-style request"}},
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
        prompt_text: Annotated[str | None, Form(description="the seed's name for `transcript`")] = None,
        skip_whisper: Annotated[
            str | None, Form(description="the seed's: true never transcribes (then a transcript is required)")
        ] = None,
    ) -> JSONResponse:
        """Clone a voice from an uploaded clip (or return the stored one for a known clip).

        New voices answer 201, known clips 200; a request in the seed's fields (`prompt_text`,
        `skip_whisper`) always answers 200, as GLM-TTS-Enhanced did."""
        data = await read_upload(audio, "audio", settings.max_upload_bytes)
        code = checked_language(optional(language))
        spoken = _one_transcript(optional(transcript), optional(prompt_text))
        if spoken is None and switch_field(skip_whisper, "skip_whisper"):
            raise WebError(
                400, "field `skip_whisper` is set but no transcript was sent: send `prompt_text`", "prompt_text"
            )
        result = await voices.clone(data, optional(name), spoken, code)
        result.warnings = [render_text(w, rest_words()) for w in result.warnings]
        record = await voices.get(result.voice_id)
        answer = SeedCloneResult(
            **result.model_dump(),
            metadata=seed_metadata(record),
            message="Voice already cached" if result.existed else "Voice cached successfully",
        )
        seed_style = prompt_text is not None or skip_whisper is not None
        return JSONResponse(answer.model_dump(mode="json"), status_code=200 if result.existed or seed_style else 201)

    @router.get("/voices", response_model=SeedVoiceList)
    async def list_voices(
        query: Annotated[str | None, Query(description="part of a name, id, transcript, language or tag")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ) -> SeedVoiceList:
        """The voices, sorted by name, with transcripts and health flags (`stale`, `broken`), and `stats`."""
        page = await voices.page(query, limit, cursor)
        stats = await anyio.to_thread.run_sync(app.library.stats)
        items = [SeedVoiceSummary(**VoiceSummary.of(v).model_dump(), prompt_text=v.transcript) for v in page.voices]
        return SeedVoiceList(voices=items, next_cursor=page.next_cursor, stats=seed_stats(stats))

    @router.get("/voices/{voice}", response_model=SeedVoiceDetail)
    async def get_voice(voice: VoicePath) -> SeedVoiceDetail:
        """One voice's metadata (by id or name), with the seed's `voice_id` and `metadata`."""
        record = await voices.get(voice)
        return SeedVoiceDetail(**record.model_dump(), voice_id=record.id, metadata=seed_metadata(record))

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
        """The reference audio the voice keeps, exactly: FLAC (16- or 24-bit), or 32-bit float WAV for an
        `upstream` voice of a float source."""
        record, path = await voices.reference_audio(voice)
        media_type = "audio/wav" if path.suffix == ".wav" else "audio/flac"
        return FileResponse(path, media_type=media_type, filename=f"{record.name}{path.suffix}")

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
        result = await voices.import_from(data, optional(name))
        return JSONResponse(result.model_dump(mode="json"), status_code=200 if result.existed else 201)

    @router.post(
        "/tts",
        response_class=StreamingResponse,
        openapi_extra=_tts_bodies(),
        responses={200: {"content": {"audio/wav": {}, "audio/ogg": {}, "audio/mpeg": {}, "audio/flac": {}}}},
    )
    async def tts(request: Request) -> Response:
        """Speak `text` in a library voice. JSON: the audio streams back as each segment is synthesized.
        A form (GLM-TTS-Enhanced's fields): `voice_id`, or `prompt_audio` to clone and speak in one call;
        the whole WAV comes back as an attachment, its task id in `x-task-id`."""
        if is_form(request):
            return await speak_form(app, tasks, request, voice_required=False)
        body = await _json_body(request, TtsRequest)
        return await stream_speech(
            app,
            body.text,
            body.voice,
            body.format,
            body.seed,
            disconnect_of(request.receive),
            temperature=body.temperature,
            top_p=body.top_p,
            pronunciation=body.pronunciation,
            pronunciations=body.pronunciations,
        )

    @router.get("/cache/stats", response_model=SeedCacheStats)
    async def cache_stats() -> SeedCacheStats:
        """What the cache_stats tool returns: hits per tier, time saved, voices, bytes, the engine's state;
        with the seed's `total_voices`, `memory_cached`, `total_size_mb` and `memory_cache_enabled`."""
        stats = await voices.stats()
        return SeedCacheStats(**stats.model_dump(), **seed_stats(stats.library).model_dump(include=SEED_STATS_KEYS))

    return router


async def stream_speech(
    app: App,
    text: str,
    voice: str,
    fmt: str,
    seed: int,
    disconnected: Callable[[], Awaitable[None]],
    *,
    temperature: float | None = None,
    top_p: float | None = None,
    pronunciation: PronunciationMode | None = None,
    pronunciations: dict[str, str] | None = None,
) -> StreamingResponse:
    """The streamed answer of /api/tts (and /v1/audio/speech with stream_format=audio); the text as the model
    reads it goes in `x-text-as-read` (UTF-8, percent-encoded), its mode in `x-pronunciation`; `disconnected`
    ends when the client leaves (the narration is stopped then, wherever it is)."""
    fmt = fmt.strip().lower()
    if fmt not in STREAM_FORMATS:
        raise UserError(f"{{argument}} is {fmt!r}", f"use one of {', '.join(STREAM_FORMATS)}", argument=Term.FORMAT)
    request = NarrationRequest(
        text=checked_text(text, app.settings.max_text_chars),
        voice=voice,
        seed=seed,
        temperature=temperature,
        top_p=top_p,
        pronunciation=pronunciation,
        pronunciations=pronunciations,
        stream=app.settings.streams(fmt in STREAMED_FORMATS),  # a whole-file format gains nothing from chunks
    )
    speech = await open_speech(app, request, disconnected)
    headers = {
        "x-voice-id": speech.voice.voice_id,
        "x-voice-name": _header_safe(speech.voice.voice_name or ""),
        "x-cache-tier": speech.voice.tier,
        "x-sample-rate": str(speech.first.sample_rate),
        "x-segments": str(speech.first.segment_count),
        "x-streamed": "true" if fmt in STREAMED_FORMATS else "false",
        **reading_headers(app, request, speech),
    }
    return StreamingResponse(encoded(speech, fmt), media_type=MEDIA_TYPES[fmt], headers=headers)


def _one_transcript(transcript: str | None, prompt_text: str | None) -> str | None:
    """`transcript`, or the seed's `prompt_text` for it; both only when they agree."""
    if transcript is not None and prompt_text is not None and transcript != prompt_text:
        raise WebError(400, "fields `transcript` and `prompt_text` differ: send one of them", "prompt_text")
    return transcript if transcript is not None else prompt_text


async def _json_body(request: Request, model: type[Body]) -> Body:
    """The JSON body as `model`, refused as FastAPI refuses a body it validates itself (422)."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in exc.errors()]) from exc


def _tts_bodies() -> dict[str, Any]:
    """POST /api/tts's two request bodies in the OpenAPI schema: our JSON, and the seed's form."""
    form = seed_form_body(voice_required=False)["requestBody"]["content"]
    json_body = {"application/json": {"schema": TtsRequest.model_json_schema()}}
    return {"requestBody": {"content": {**json_body, **form}, "required": True}}


def _header_safe(value: str) -> str:
    """A value for an HTTP header: printable ASCII only (names may hold any character)."""
    return "".join(ch if 32 <= ord(ch) < 127 and ch != '"' else "_" for ch in value)
