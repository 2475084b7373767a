"""OpenAI's speech API on the voice library: POST /v1/audio/speech and GET /v1/audio/voices.

Any OpenAI client (the `openai` package, Open WebUI, ...) pointed at `http://HOST:PORT/v1` speaks
with library voices: `voice` is a voice id or name. `model` is accepted as given (`tts-1`,
`tts-1-hd`, `gpt-4o-mini-tts`, `glm-tts`, ...): there is one model. `instructions` are ignored
(GLM-TTS takes its style from the reference clip). `temperature` and `top_p` are extension fields (the
sampler's knobs; left out, upstream's sampling). `speed` other than 1.0 and formats this server
cannot write are refused by name, never approximated.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from glmtts_mcp.app.audio_out import STREAMED_FORMATS
from glmtts_mcp.app.core import App
from glmtts_mcp.app.narration import TEMPERATURE_RANGE, TOP_P_RANGE, NarrationRequest, checked_text
from glmtts_mcp.app.schemas import Number
from glmtts_mcp.app.voice_service import VoiceService
from glmtts_mcp.web.errors import WebError
from glmtts_mcp.web.rest import stream_speech
from glmtts_mcp.web.speech_stream import OpenSpeech, disconnect_of, encoded, open_speech, reading_headers

# OpenAI's names for the formats this server writes (opus is Ogg/Opus, as OpenAI sends it).
OPENAI_FORMATS = {"mp3": "mp3", "opus": "ogg", "wav": "wav", "flac": "flac", "pcm": "pcm"}
SPEECH_TOKENS_PER_S = 25  # GLM-TTS speaks 25 speech tokens per second: the `usage` of the done event


class VoiceRef(BaseModel):
    id: str = Field(min_length=1, max_length=256)


class SpeechRequest(BaseModel):
    """OpenAI's request body; unknown fields are ignored, as OpenAI clients send new ones over time."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="accepted as given (tts-1, tts-1-hd, gpt-4o-mini-tts, glm-tts, ...)")
    input: str = Field(min_length=1, description="the text to speak")
    voice: Annotated[str, Field(min_length=1, max_length=256)] | VoiceRef = Field(
        description='a voice id or name from the library (or {"id": ...})'
    )
    response_format: str = Field(default="mp3", description="mp3, opus, wav, flac or pcm (24 kHz 16-bit mono)")
    speed: Number = Field(default=1.0, description="only 1.0: GLM-TTS has no honest speed control")
    stream_format: str = Field(default="audio", description="audio (the bytes) or sse (speech.audio.delta events)")
    instructions: str | None = Field(default=None, description="ignored: the voice's style comes from its clip")
    temperature: float | None = Field(
        default=None,
        description=f"extension: sampling temperature {TEMPERATURE_RANGE[0]}-{TEMPERATURE_RANGE[1]}; left out: upstream's",
    )
    top_p: float | None = Field(
        default=None, description=f"extension: nucleus size {TOP_P_RANGE[0]}-{TOP_P_RANGE[1]}; left out: upstream's"
    )
    pronunciation: Literal["text", "phoneme"] | None = Field(
        default=None, description="extension (OpenAI clients omit it): text or phoneme; default from the server"
    )
    pronunciations: dict[str, str] | None = Field(
        default=None, description="extension: this request's own dictionary, text -> pinyin or a respelling"
    )


class VoiceEntry(BaseModel):
    id: str
    name: str


class VoicesResponse(BaseModel):
    voices: list[VoiceEntry]


def openai_routes(app: App) -> APIRouter:
    """The /v1 routes over `app`."""
    router = APIRouter(prefix="/v1/audio", tags=["OpenAI-compatible"])

    @router.post(
        "/speech",
        response_class=StreamingResponse,
        responses={200: {"content": {"audio/mpeg": {}, "audio/ogg": {}, "audio/wav": {}, "text/event-stream": {}}}},
    )
    async def create_speech(body: SpeechRequest, request: Request) -> StreamingResponse:
        """Speak `input` in a library voice; streamed as segments are synthesized (mp3/flac: when complete)."""
        voice = body.voice.id if isinstance(body.voice, VoiceRef) else body.voice
        if body.speed != 1.0:
            raise WebError(
                400,
                f"speed {body.speed:g} is not supported: GLM-TTS has no honest speed control; send speed 1.0 "
                "(or leave it out) and change the playback rate in the player",
                "speed",
            )
        fmt = OPENAI_FORMATS.get(body.response_format.strip().lower())
        if fmt is None:
            raise WebError(
                400,
                f"response_format {body.response_format!r} is not supported here: use one of "
                f"{', '.join(OPENAI_FORMATS)}",
                "response_format",
            )
        if body.stream_format == "audio":
            return await stream_speech(
                app,
                body.input,
                voice,
                fmt,
                0,
                disconnect_of(request.receive),
                temperature=body.temperature,
                top_p=body.top_p,
                pronunciation=body.pronunciation,
                pronunciations=body.pronunciations,
            )
        if body.stream_format != "sse":
            raise WebError(400, f"stream_format {body.stream_format!r} is unknown: use audio or sse", "stream_format")
        text = checked_text(body.input, app.settings.max_text_chars)
        narration = NarrationRequest(
            text=text,
            voice=voice,
            temperature=body.temperature,
            top_p=body.top_p,
            pronunciation=body.pronunciation,
            pronunciations=body.pronunciations,
            stream=app.settings.streams(fmt in STREAMED_FORMATS),
        )
        speech = await open_speech(app, narration, disconnect_of(request.receive))
        return StreamingResponse(
            _sse_events(speech, fmt, len(text)),
            media_type="text/event-stream",
            headers={
                "cache-control": "no-cache",
                "x-voice-id": speech.voice.voice_id,
                "x-segments": str(speech.first.segment_count),
                **reading_headers(app, narration, speech),
            },
        )

    @router.get("/voices", response_model=VoicesResponse)
    async def list_voices() -> VoicesResponse:
        """Every voice of the library as {id, name} (what TTS front ends show in their voice picker)."""

        records = await VoiceService(app).all()
        return VoicesResponse(voices=[VoiceEntry(id=v.id, name=v.name or v.id) for v in records])

    return router


async def _sse_events(speech: OpenSpeech, fmt: str, input_chars: int) -> AsyncIterator[bytes]:
    """speech.audio.delta events (base64 audio, one per encoded piece), then speech.audio.done with usage."""
    async for piece in encoded(speech, fmt):
        yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(piece).decode("ascii")})
    output = round(speech.duration_s * SPEECH_TOKENS_PER_S)
    yield _event(
        {
            "type": "speech.audio.done",
            "usage": {"input_tokens": input_chars, "output_tokens": output, "total_tokens": input_chars + output},
        }
    )


def _event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()
