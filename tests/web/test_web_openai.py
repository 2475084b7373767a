"""The OpenAI-compatible endpoint, driven by OpenAI's own Python client against a live server."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from urllib.parse import unquote

import httpx2
import numpy as np
import openai
import pytest
import soundfile as sf
from web_helpers import LiveServer


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-needed-on-loopback", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def voice(server: LiveServer, clip_bytes: Callable[..., bytes]) -> str:
    response = httpx2.post(
        f"{server.url}/api/voices",
        files={"audio": ("clip.wav", clip_bytes(210.0), "audio/wav")},
        data={"transcript": "hello there", "name": "narrator"},
        timeout=120,
    )
    assert response.status_code == 201, response.text
    return "narrator"


def test_create_returns_the_requested_format(client: openai.OpenAI, voice: str) -> None:
    for response_format, expected in (("wav", "WAV"), ("mp3", "MP3"), ("opus", "OGG"), ("flac", "FLAC")):
        audio = client.audio.speech.create(
            model="tts-1", voice=voice, input="Hello there.", response_format=response_format
        )
        info = sf.info(io.BytesIO(audio.content)) if response_format != "wav" else None
        if info is not None:
            assert info.format == expected and info.frames > 0
        else:
            assert audio.content[:4] == b"RIFF" and len(audio.content) > 44 + 4800
    pcm = client.audio.speech.create(model="glm-tts", voice=voice, input="Hello there.", response_format="pcm")
    assert len(pcm.content) % 2 == 0 and len(pcm.content) > 4800


def test_default_format_is_mp3_and_voice_may_be_an_object(
    client: openai.OpenAI, server: LiveServer, voice: str
) -> None:
    voice_id = httpx2.get(f"{server.url}/api/voices/{voice}").json()["id"]
    audio = client.audio.speech.create(model="gpt-4o-mini-tts", voice={"id": voice_id}, input="Good morning.")
    pcm, rate = sf.read(io.BytesIO(audio.content))
    assert rate == 24000 and len(pcm) > 2400


def test_pronunciation_extension_through_the_openai_package(client: openai.OpenAI, voice: str) -> None:
    """The extension fields travel in `extra_body`; the text as read comes back in a header."""
    raw = client.audio.speech.with_raw_response.create(
        model="tts-1",
        voice=voice,
        input="我们去重庆。",
        response_format="wav",
        extra_body={"pronunciation": "phoneme", "pronunciations": {"重庆": "chong2 qing4"}},
    )
    assert raw.headers["x-pronunciation"] == "phoneme"
    assert unquote(raw.headers["x-text-as-read"]) == "我们去<|CH|><|ONG2|><|Q|><|ING4|>。"
    assert raw.parse().content[:4] == b"RIFF"
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice=voice, input="银行。", stream_format="sse", extra_body={"pronunciation": "phoneme"}
    ) as events:
        assert unquote(events.headers["x-text-as-read"]) == "银<|H|><|ANG2|>。"
    with pytest.raises(openai.BadRequestError, match="tone 6"):
        client.audio.speech.create(
            model="tts-1", voice=voice, input="重庆", extra_body={"pronunciations": {"重庆": "chong6"}}
        )


def test_streaming_response(client: openai.OpenAI, voice: str) -> None:
    text = "One. Two. Three. Four. " * 12
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice=voice, input=text, response_format="wav"
    ) as response:
        assert response.headers["content-type"] == "audio/wav"
        pieces = list(response.iter_bytes())
    data = b"".join(pieces)
    samples = np.frombuffer(data[44:], dtype="<i2")
    assert data[:4] == b"RIFF" and len(samples) > 24000  # three segments of speech


def test_sse_events(client: openai.OpenAI, voice: str) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice=voice, input="Hello there, friend.", response_format="pcm", stream_format="sse"
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = response.read().decode()
    events = [json.loads(line[len("data: ") :]) for line in body.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1) and len(events) >= 2
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert len(audio) > 4800
    done = events[-1]
    assert done["type"] == "speech.audio.done"
    usage = done["usage"]
    assert usage["input_tokens"] == len("Hello there, friend.") and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_tokens"] == round(len(audio) / 2 / 24000 * 25)


def test_refusals_name_the_problem(client: openai.OpenAI, voice: str) -> None:
    with pytest.raises(openai.BadRequestError, match=r"speed 1.25 is not supported"):
        client.audio.speech.create(model="tts-1", voice=voice, input="Hi.", speed=1.25)
    with pytest.raises(openai.UnprocessableEntityError, match=r"field `speed`: .*a boolean is not a number"):
        client.audio.speech.create(model="tts-1", voice=voice, input="Hi.", speed=True)  # not 1.0
    with pytest.raises(openai.BadRequestError, match="response_format 'aac' is not supported"):
        client.audio.speech.create(model="tts-1", voice=voice, input="Hi.", response_format="aac")
    with pytest.raises(openai.NotFoundError, match="no voice 'alloy'"):
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
    with pytest.raises(openai.BadRequestError, match="field `input` is empty"):
        client.audio.speech.create(model="tts-1", voice=voice, input="   ")
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.audio.speech.create(model="tts-1", voice=voice, input="")
    assert caught.value.body["param"] == "input"


def test_voices_list(server: LiveServer, voice: str) -> None:
    listed = httpx2.get(f"{server.url}/v1/audio/voices").json()
    assert {"id": httpx2.get(f"{server.url}/api/voices/{voice}").json()["id"], "name": voice} in listed["voices"]


def test_sampling_extension_fields(client: openai.OpenAI, voice: str) -> None:
    """`temperature` and `top_p` (extension fields, sent as extra_body): left out, upstream's sampling."""

    def speak(**knobs: float) -> bytes:
        return client.audio.speech.create(
            model="tts-1", voice=voice, input="Sampling decides.", response_format="wav", extra_body=knobs
        ).content

    plain = speak()
    assert plain == speak(temperature=1.0, top_p=0.8) != speak(temperature=0.1)
    with pytest.raises(openai.BadRequestError, match=r"field `temperature` is 1\.9"):
        speak(temperature=1.9)
