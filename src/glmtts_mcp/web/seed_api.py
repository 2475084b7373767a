"""GLM-TTS-Enhanced v1.1.0's REST contract, served beside ours so its users' scripts keep working.

This project grew from that one (neosun100/GLM-TTS-Enhanced, release ed3b37b). Its requests are form
posts: `POST /api/tts` and `POST /api/tts/with_voice` speak `text` in a `voice_id`, or clone
`prompt_audio` and speak in one call (the "traditional" mode: the clone lands in the library, so the
next call is fast), and answer a whole WAV as an attachment with a task id whose progress
`GET /api/tts/progress/{task_id}` streams. `/health` and `/api/gpu/*` are its operator routes. Everything
runs through the same application core as every face (the narration, the voice service, the engine host);
the shapes it answers in are built here. docs/migrating-from-glm-tts-enhanced.md lists the differences.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.datastructures import FormData, UploadFile

from glmtts_mcp import __version__
from glmtts_mcp.app.core import App
from glmtts_mcp.app.device_status import DeviceStatus, device_status
from glmtts_mcp.app.narration import TEMPERATURE_RANGE, TOP_P_RANGE, NarrationRequest, checked_text
from glmtts_mcp.app.saving import narrate_to_store
from glmtts_mcp.app.schemas import CacheStatsResult, CloneVoiceResult, ListVoicesResult, VoiceSummary
from glmtts_mcp.errors import Term, UserError
from glmtts_mcp.voices import LibraryStats, VoiceRecord
from glmtts_mcp.web.errors import STATUS, WebError, field_name, rest_words
from glmtts_mcp.web.forms import optional, read_upload
from glmtts_mcp.web.seed_tasks import FINAL, TaskBoard

SAMPLING_STRATEGIES = ("fast", "balanced", "quality")
# The seed's form names for what errors name.
SEED_FIELDS: dict[Term, str] = {Term.VOICE: "voice_id", Term.REFERENCE: "prompt_audio", Term.TRANSCRIPT: "prompt_text"}
PROGRESS_POLL_S = 0.5  # the seed's cadence: one event per half second
PROGRESS_MAX_S = 1800.0  # a progress stream ends (with an error event) after this long
TASK_GRACE_S = 5.0  # a progress request for a task not started yet waits this long before its 404
_FORM_LIMITS = {"max_files": 2, "max_fields": 32}


class SeedVoiceMetadata(BaseModel):
    """A voice as the seed's metadata.json described it (its clients read these keys)."""

    voice_id: str
    prompt_text: str = Field(description="what the reference clip says (the voice's transcript)")
    sample_rate: int = Field(description="of the kept reference recording")
    audio_file: str = Field(default="reference.flac", description="the kept reference's file name (no path)")
    created_at: datetime
    last_used: datetime = Field(description="the voice's last use (its creation while never used)")


def seed_metadata(record: VoiceRecord) -> SeedVoiceMetadata:
    return SeedVoiceMetadata(
        voice_id=record.id,
        prompt_text=record.transcript,
        sample_rate=record.sample_rate,
        created_at=record.created_at,
        last_used=record.last_used_at or record.created_at,
    )


class SeedLibraryStats(BaseModel):
    """The seed's cache statistics (its four keys; no server paths) and the library's own gauges."""

    total_voices: int
    memory_cached: int = Field(description="voices whose features are in memory now")
    total_size_mb: float = Field(description="MiB of all voice folders")
    memory_cache_enabled: bool
    voice_count: int
    broken_voices: int
    stale_voices: int
    disk_bytes: int
    memory_voices: int
    memory_bytes: int
    memory_capacity_bytes: int
    device_voices: int
    device_bytes: int


SEED_STATS_KEYS = {"total_voices", "memory_cached", "total_size_mb", "memory_cache_enabled"}


class SeedCacheStats(CacheStatsResult):
    """GET /api/cache/stats: ours, with the seed's four keys at top level."""

    total_voices: int
    memory_cached: int
    total_size_mb: float
    memory_cache_enabled: bool


class SeedVoiceSummary(VoiceSummary):
    """A voice of GET /api/voices: ours, with the seed's `prompt_text` (the whole transcript)."""

    prompt_text: str | None


class SeedVoiceList(ListVoicesResult):
    """GET /api/voices: the page of voices and the seed's `stats`."""

    voices: list[SeedVoiceSummary]  # type: ignore[assignment]  # the same items, with prompt_text
    stats: SeedLibraryStats


class SeedCloneResult(CloneVoiceResult):
    """POST /api/voices: ours, with the seed's `metadata` and `message`."""

    metadata: SeedVoiceMetadata
    message: str


class SeedVoiceDetail(VoiceRecord):
    """GET /api/voices/{voice}: the record, with the seed's `voice_id` and `metadata`."""

    voice_id: str
    metadata: SeedVoiceMetadata


def seed_stats(stats: LibraryStats) -> SeedLibraryStats:
    return SeedLibraryStats(
        total_voices=stats.voice_count,
        memory_cached=stats.memory_voices,
        total_size_mb=round(stats.disk_bytes / 1024**2, 2),
        memory_cache_enabled=stats.memory_capacity_bytes > 0,
        **stats.model_dump(
            include={
                "voice_count",
                "broken_voices",
                "stale_voices",
                "disk_bytes",
                "memory_voices",
                "memory_bytes",
                "memory_capacity_bytes",
                "device_voices",
                "device_bytes",
            }
        ),
    )


def switch_field(value: str | None, field: str) -> bool:
    """A yes/no form field as the seed's clients send it: 1/0, true/false (any case), yes/no, on/off."""
    word = (value or "").strip().lower()
    if word in ("", "0", "false", "no", "off"):
        return False
    if word in ("1", "true", "yes", "on"):
        return True
    raise WebError(400, f"field `{field}` is {value!r}: use 1 or 0 (true or false)", field)


def is_form(request: Request) -> bool:
    """Whether the body is a form (multipart or urlencoded) rather than JSON."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind in ("multipart/form-data", "application/x-www-form-urlencoded")


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is not None and not isinstance(value, str):
        raise WebError(400, f"field `{name}` must be text, not a file", name)
    return optional(value)


def _number(form: FormData, name: str) -> float | None:
    value = _text(form, name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise WebError(400, f"field `{name}` is {value!r}: send a number", name) from None


async def read_speak_form(app: App, form: FormData, voice_required: bool) -> NarrationRequest:
    """The seed's form fields as a narration request: `text`, `voice_id` or `prompt_audio` (with
    `prompt_text` or Whisper) and the sampling fields; a library voice must exist (checked before the
    model is loaded for it)."""
    text = _text(form, "text")
    if text is None:
        raise WebError(400, "field `text` is required: the words to speak", "text")
    voice = _text(form, "voice_id")
    if voice is None and voice_required:
        raise WebError(400, "field `voice_id` is required: a voice id or name (GET /api/voices lists them)", "voice_id")
    upload = form.get("prompt_audio")
    if upload is not None and not isinstance(upload, UploadFile):
        raise WebError(400, "field `prompt_audio` must be a file upload", "prompt_audio")
    transcript = _text(form, "prompt_text")
    if upload is not None and transcript is None and switch_field(_text(form, "skip_whisper"), "skip_whisper"):
        raise WebError(
            400,
            "field `skip_whisper` asks to skip transcription but field `prompt_text` is empty: send what the "
            "clip says in `prompt_text`, or leave `skip_whisper` out to let Whisper transcribe it",
            "prompt_text",
        )
    strategy = _text(form, "sampling_strategy")
    if strategy is not None and strategy.lower() not in SAMPLING_STRATEGIES:
        raise WebError(
            400,
            f"field `sampling_strategy` is {strategy!r}: use one of {', '.join(SAMPLING_STRATEGIES)}",
            "sampling_strategy",
        )
    reference = await read_upload(upload, "prompt_audio", app.settings.max_upload_bytes) if upload else None
    request = NarrationRequest(
        text=checked_text(text, app.settings.max_text_chars),
        voice=voice,
        reference=reference,
        transcript=transcript if reference is not None else None,
        temperature=_number(form, "temperature"),
        top_p=_number(form, "top_p"),
    )
    if voice is not None:
        await anyio.to_thread.run_sync(app.library.resolve, voice)
    return request


def seed_words_error(exc: UserError) -> WebError:
    """A user error in the seed's field names (voice_id, prompt_audio, prompt_text)."""
    field = field_name(exc.argument, SEED_FIELDS) if exc.argument is not None else None
    return WebError(STATUS[exc.kind], exc.render(rest_words(SEED_FIELDS)), field)


async def speak_form(app: App, tasks: TaskBoard, request: Request, voice_required: bool) -> FileResponse:
    """A seed synthesis request run to its end: the whole WAV as an attachment, its task id in `x-task-id`."""
    form = await request.form(**_FORM_LIMITS)
    task_id = tasks.start(_text(form, "task_id"))
    try:
        try:
            speak = await read_speak_form(app, form, voice_required)
            tasks.update(task_id, "processing", "starting" if app.host.model_loaded else "loading the model")
            ready, done, stored = await narrate_to_store(
                app, speak, "wav", lambda _done, _total, message: tasks.update(task_id, "processing", message)
            )
        except UserError as exc:
            raise seed_words_error(exc) from exc
    except WebError as exc:
        tasks.update(task_id, "error", exc.message)
        raise
    except BaseException as exc:  # a client gone or a bug: the reader still learns the task ended
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
        tasks.update(task_id, "error", "cancelled" if cancelled else f"internal error ({type(exc).__name__})")
        raise
    finally:
        await form.close()
    if ready.created:
        await app.changes.publish()
    tasks.update(task_id, "completed", "done")
    return FileResponse(
        stored.path,
        media_type="audio/wav",
        filename="generated.wav",
        headers={
            "x-task-id": task_id,
            "x-voice-id": ready.voice_id,
            "x-cache-tier": ready.tier,
            "x-duration-s": f"{done.duration_s:.3f}",
        },
    )


class Health(BaseModel):
    status: str = Field(description="ok whenever the server answers (the model's state is beside it)")
    model_loaded: bool
    model_state: str = Field(description="unloaded, loading, loaded or failed")
    model_error: str | None = Field(description="why the last load failed (the next request tries again)")
    active_jobs: int = Field(description="engine calls running now")
    backend: str
    version: str


class SeedGpuStatus(DeviceStatus):
    """Ours, with the seed's keys beside (`loaded`; MB figures only where a GPU is used)."""

    loaded: bool
    gpu_memory_used: int | None = Field(description="MB in use on the GPU (the seed's nvidia-smi figure)")
    gpu_memory_total: int | None = Field(description="MB on the GPU")


class OffloadResult(BaseModel):
    status: str = Field(description="offloaded")
    was_loaded: bool = Field(description="false when the model was not in memory (nothing to free)")
    model_loaded: bool
    unloads: int = Field(description="unloads since the server started")


def seed_routes(app: App, tasks: TaskBoard) -> APIRouter:
    """/health, /api/tts/with_voice, /api/tts/progress/{task_id}, /api/gpu/status and /api/gpu/offload."""
    router = APIRouter(tags=["GLM-TTS-Enhanced contract"])
    host = app.host

    @router.get("/health", response_model=Health)
    async def health() -> Health:
        """Liveness and the model's state (cheap: touches neither the model nor the disk)."""
        return Health(
            status="ok",
            model_loaded=host.model_loaded,
            model_state=host.state,
            model_error=host.load_error,
            active_jobs=host.active_jobs,
            backend=host.backend,
            version=__version__,
        )

    @router.post(
        "/api/tts/with_voice",
        response_class=FileResponse,
        openapi_extra=form_body(voice_required=True),
        responses={200: {"content": {"audio/wav": {}}}},
    )
    async def tts_with_voice(request: Request) -> FileResponse:
        """Speak `text` in the library voice `voice_id` (form fields); the whole WAV as an attachment."""
        return await speak_form(app, tasks, request, voice_required=True)

    @router.get("/api/tts/progress/{task_id}", response_class=StreamingResponse)
    async def tts_progress(task_id: str) -> StreamingResponse:
        """The task's `{status, step, elapsed}` as server-sent events every 0.5 s until completed or error."""
        deadline = anyio.current_time() + TASK_GRACE_S  # a caller's own task id may be opened before its post
        while tasks.read(task_id) is None:
            if anyio.current_time() > deadline:
                raise WebError(404, f"no task {task_id!r}: it never started here, or ended too long ago", "task_id")
            await anyio.sleep(PROGRESS_POLL_S / 5)
        return StreamingResponse(
            _progress_events(tasks, task_id), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )

    @router.get("/api/gpu/status", response_model=SeedGpuStatus)
    async def gpu_status() -> SeedGpuStatus:
        """The model's device, its memory in use and free, whether the model is loaded, how long idle."""
        status = await anyio.to_thread.run_sync(lambda: device_status(app))
        mb = 1024**2
        gpu = status.gpu_available and status.memory_used_bytes is not None and status.memory_total_bytes is not None
        return SeedGpuStatus(
            **status.model_dump(),
            loaded=status.model_loaded,
            gpu_memory_used=status.memory_used_bytes // mb if gpu and status.memory_used_bytes is not None else None,
            gpu_memory_total=status.memory_total_bytes // mb if gpu and status.memory_total_bytes is not None else None,
        )

    @router.post("/api/gpu/offload", response_model=OffloadResult)
    async def gpu_offload() -> OffloadResult:
        """Unload the model now (its memory is freed); the next request that needs it loads it again."""
        if host.active_jobs:
            raise WebError(409, f"{host.active_jobs} engine call(s) are running: offload when they end")
        was_loaded = host.model_loaded
        await anyio.to_thread.run_sync(lambda: host.unload(reason="offload asked for (POST /api/gpu/offload)"))
        return OffloadResult(
            status="offloaded", was_loaded=was_loaded, model_loaded=host.model_loaded, unloads=host.unloads
        )

    return router


async def _progress_events(tasks: TaskBoard, task_id: str) -> AsyncIterator[bytes]:
    """One `data: {status, step, elapsed}` event per poll, ending at completed or error (or the time limit)."""
    with anyio.move_on_after(PROGRESS_MAX_S):
        while True:
            state = tasks.read(task_id)
            if state is None:
                yield _event({"status": "error", "step": "the task is no longer kept", "elapsed": 0})
                return
            yield _event(state)
            if state["status"] in FINAL:
                return
            await anyio.sleep(PROGRESS_POLL_S)
    yield _event({"status": "error", "step": f"progress stream ended after {PROGRESS_MAX_S:.0f} s", "elapsed": 0})


def _event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def form_body(voice_required: bool) -> dict[str, Any]:
    """The OpenAPI request body of a seed synthesis form (the handler reads the form itself)."""
    properties: dict[str, Any] = {
        "text": {"type": "string", "description": "the text to speak"},
        "voice_id": {"type": "string", "description": "a library voice's id or name"},
        "temperature": {"type": "number", "minimum": TEMPERATURE_RANGE[0], "maximum": TEMPERATURE_RANGE[1]},
        "top_p": {"type": "number", "minimum": TOP_P_RANGE[0], "maximum": TOP_P_RANGE[1]},
        "sampling_strategy": {
            "type": "string",
            "enum": list(SAMPLING_STRATEGIES),
            "description": "accepted; no effect",
        },
        "task_id": {"type": "string", "description": "your id for GET /api/tts/progress/{task_id} (else one is made)"},
    }
    if not voice_required:
        properties |= {
            "prompt_audio": {
                "type": "string",
                "format": "binary",
                "description": "instead of voice_id: a clip to clone",
            },
            "prompt_text": {"type": "string", "description": "what the clip says; left out: Whisper transcribes it"},
            "skip_whisper": {"type": "string", "description": "1: never transcribe (then prompt_text is required)"},
        }
    schema = {
        "type": "object",
        "properties": properties,
        "required": ["text", "voice_id"] if voice_required else ["text"],
    }
    return {"requestBody": {"content": {"multipart/form-data": {"schema": schema}}, "required": True}}
