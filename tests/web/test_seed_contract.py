"""GLM-TTS-Enhanced v1.1.0's REST contract (neosun100/GLM-TTS-Enhanced, release ed3b37b) on a live server,
driven with plain `requests` as that project's users call it: form posts, the fields and keys its client
reads, its status codes, the progress stream. Our own JSON requests keep working beside it."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable

import anyio
import anyio.to_thread
import numpy as np
import pytest
import requests
import soundfile as sf
from web_helpers import TOKEN, LiveServer

TIMEOUT = 120


@pytest.fixture(scope="module")
def base(server: LiveServer) -> str:
    return server.url


def _wav(response: requests.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["content-disposition"].startswith("attachment")
    pcm, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    assert rate == 24000 and len(pcm) > 0
    return np.asarray(pcm)


def _events(base: str, task_id: str) -> list[dict[str, object]]:
    with requests.get(f"{base}/api/tts/progress/{task_id}", stream=True, timeout=TIMEOUT) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in stream.iter_lines(decode_unicode=True) if line]
    assert all(line.startswith("data: ") for line in lines)
    return [json.loads(line.removeprefix("data: ")) for line in lines]


def test_health_answers_like_the_seed(base: str) -> None:
    health = requests.get(f"{base}/health", timeout=TIMEOUT)
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and isinstance(body["model_loaded"], bool)
    assert body["model_state"] in ("unloaded", "loading", "loaded", "failed") and "version" in body


def test_voice_library_in_the_seeds_fields(base: str, clip_bytes: Callable[..., bytes]) -> None:
    clip = clip_bytes(310.0)
    created = requests.post(
        f"{base}/api/voices", files={"audio": ("ref.wav", clip)}, data={"prompt_text": "a seed voice"}, timeout=TIMEOUT
    )
    assert created.status_code == 200, created.text  # the seed's client accepts only 200
    result = created.json()
    voice_id = result["voice_id"]
    metadata = result["metadata"]
    assert metadata["voice_id"] == voice_id and metadata["prompt_text"] == "a seed voice"
    assert metadata["sample_rate"] > 0 and metadata["created_at"] and metadata["last_used"]
    assert result["message"]
    again = requests.post(
        f"{base}/api/voices", files={"audio": ("ref.wav", clip)}, data={"prompt_text": "a seed voice"}, timeout=TIMEOUT
    )
    assert again.status_code == 200 and again.json()["voice_id"] == voice_id  # a known voice is no error

    listing = requests.get(f"{base}/api/voices", timeout=TIMEOUT).json()
    mine = [v for v in listing["voices"] if v["voice_id"] == voice_id]
    assert mine and mine[0]["prompt_text"] == "a seed voice"
    stats = listing["stats"]
    assert stats["total_voices"] >= 1 and stats["total_size_mb"] > 0
    assert isinstance(stats["memory_cached"], int) and isinstance(stats["memory_cache_enabled"], bool)
    assert "/" not in json.dumps(stats), "no server paths in the answer"
    cache = requests.get(f"{base}/api/cache/stats", timeout=TIMEOUT).json()  # the seed's keys beside ours
    assert cache["total_voices"] == stats["total_voices"] and "memory_cache_enabled" in cache

    one = requests.get(f"{base}/api/voices/{voice_id}", timeout=TIMEOUT).json()
    assert one["voice_id"] == voice_id and one["metadata"]["prompt_text"] == "a seed voice"
    audio = requests.get(f"{base}/api/voices/{voice_id}/audio", timeout=TIMEOUT)
    assert audio.status_code == 200 and sf.info(io.BytesIO(audio.content)).duration > 1.0

    deleted = requests.delete(f"{base}/api/voices/{voice_id}", timeout=TIMEOUT)
    assert deleted.status_code == 200 and deleted.json()["message"]
    assert requests.delete(f"{base}/api/voices/{voice_id}", timeout=TIMEOUT).status_code == 404
    assert requests.get(f"{base}/api/voices/{voice_id}", timeout=TIMEOUT).status_code == 404


def test_skip_whisper_without_a_transcript_is_refused(base: str, clip_bytes: Callable[..., bytes]) -> None:
    refused = requests.post(
        f"{base}/api/voices", files={"audio": ("ref.wav", clip_bytes(320.0))}, data={"skip_whisper": "true"}, timeout=60
    )
    assert refused.status_code == 400 and refused.json()["field"] == "prompt_text"


def test_speak_by_voice_id_with_a_followable_task(base: str, clip_bytes: Callable[..., bytes]) -> None:
    voice_id = requests.post(
        f"{base}/api/voices", files={"audio": ("ref.wav", clip_bytes(330.0))}, data={"prompt_text": "hi"}, timeout=60
    ).json()["voice_id"]
    form = {"text": "Hello from a form.", "voice_id": voice_id, "sampling_strategy": "balanced"}
    spoken = requests.post(f"{base}/api/tts", data=form, timeout=TIMEOUT)  # urlencoded, as the seed's client
    _wav(spoken)
    assert spoken.headers["x-voice-id"] == voice_id
    events = _events(base, spoken.headers["x-task-id"])
    assert events[-1]["status"] == "completed" and set(events[-1]) == {"status", "step", "elapsed"}

    # A task id of the caller's choosing can be followed while the narration runs.
    seen: list[dict[str, object]] = []
    reader = threading.Thread(target=lambda: seen.extend(_events(base, "my-task-1")))
    reader.start()
    quick = requests.post(
        f"{base}/api/tts/with_voice", data={**form, "task_id": "my-task-1", "text": "One. Two. " * 20}, timeout=TIMEOUT
    )
    reader.join(TIMEOUT)
    _wav(quick)
    assert quick.headers["x-task-id"] == "my-task-1"
    statuses = [e["status"] for e in seen]
    assert statuses[-1] == "completed" and "processing" in statuses
    assert any("segment" in str(e["step"]) for e in seen), seen  # the engine's own progress messages
    taken = requests.post(f"{base}/api/tts/with_voice", data={**form, "task_id": "my-task-1"}, timeout=TIMEOUT)
    assert taken.status_code == 409


def test_traditional_mode_clones_into_the_library_and_speaks(base: str, clip_bytes: Callable[..., bytes]) -> None:
    clip = clip_bytes(340.0)
    form = {"text": "Cloned and spoken in one call.", "prompt_text": "the reference", "sampling_strategy": "quality"}
    first = requests.post(f"{base}/api/tts", files={"prompt_audio": ("ref.wav", clip)}, data=form, timeout=TIMEOUT)
    _wav(first)
    voice_id = first.headers["x-voice-id"]
    assert first.headers["x-cache-tier"] == "cloned"
    listed = requests.get(f"{base}/api/voices", params={"query": voice_id}, timeout=TIMEOUT).json()["voices"]
    assert [v["prompt_text"] for v in listed] == ["the reference"]  # the clone landed in the library
    second = requests.post(f"{base}/api/tts", files={"prompt_audio": ("ref.wav", clip)}, data=form, timeout=TIMEOUT)
    _wav(second)
    assert second.headers["x-voice-id"] == voice_id and second.headers["x-cache-tier"] != "cloned"
    events = _events(base, first.headers["x-task-id"])
    assert events[-1]["status"] == "completed"


def test_unknown_voice_and_bad_fields(base: str) -> None:
    for path in ("/api/tts", "/api/tts/with_voice"):
        missing = requests.post(f"{base}{path}", data={"text": "Hi.", "voice_id": "no-such-voice"}, timeout=60)
        assert missing.status_code == 404 and missing.json()["field"] == "voice_id", missing.text
        assert "no-such-voice" in missing.json()["error"]
    checks = {
        "temperature": ("2.5", 400),
        "top_p": ("0.2", 400),
        "sampling_strategy": ("slow", 400),
    }
    for field, (value, status) in checks.items():
        bad = requests.post(f"{base}/api/tts", data={"text": "Hi.", "voice_id": "x", field: value}, timeout=60)
        assert bad.status_code == status and bad.json()["field"] == field, bad.text
    assert requests.post(f"{base}/api/tts", data={"voice_id": "x"}, timeout=60).status_code == 400
    assert requests.post(f"{base}/api/tts/with_voice", data={"text": "Hi."}, timeout=60).status_code == 400
    assert requests.get(f"{base}/api/tts/progress/never-started", timeout=60).status_code == 404


def test_a_failed_task_streams_its_error(base: str) -> None:
    failed = requests.post(
        f"{base}/api/tts", data={"text": "Hi.", "voice_id": "nobody", "task_id": "failing-task"}, timeout=60
    )
    assert failed.status_code == 404
    events = _events(base, "failing-task")
    assert events[-1]["status"] == "error" and "nobody" in str(events[-1]["step"])


def test_sampling_fields_change_the_audio_and_absent_ones_do_not(base: str, clip_bytes: Callable[..., bytes]) -> None:
    voice_id = requests.post(
        f"{base}/api/voices", files={"audio": ("ref.wav", clip_bytes(350.0))}, data={"prompt_text": "hi"}, timeout=60
    ).json()["voice_id"]
    text = "Sampling decides every token."

    def form(**knobs: str) -> np.ndarray:
        return _wav(requests.post(f"{base}/api/tts", data={"text": text, "voice_id": voice_id, **knobs}, timeout=60))

    def json_tts(**knobs: float) -> bytes:
        answer = requests.post(f"{base}/api/tts", json={"text": text, "voice": voice_id, **knobs}, timeout=60)
        assert answer.status_code == 200, answer.text
        return answer.content

    plain = form()
    assert np.array_equal(plain, form(sampling_strategy="fast"))  # the strategy is accepted and changes nothing
    assert np.array_equal(plain, form(temperature="1.0", top_p="0.8"))  # upstream's values are the default
    # The tiny checkpoint's random LLM is nearly flat over its 25 candidates: a sharp temperature moves the draws.
    assert not np.array_equal(plain, form(temperature="0.1", top_p="0.5"))
    assert json_tts() == json_tts(temperature=1.0, top_p=0.8) != json_tts(temperature=0.1)
    bad = requests.post(f"{base}/api/tts", json={"text": text, "voice": voice_id, "top_p": 1.5}, timeout=60)
    assert bad.status_code == 400 and bad.json()["field"] == "top_p"


def test_gpu_status_and_offload(base: str, server: LiveServer, clip_bytes: Callable[..., bytes]) -> None:
    requests.post(f"{base}/api/voices", files={"audio": ("r.wav", clip_bytes(360.0))}, data={"prompt_text": "hi"})
    status = requests.get(f"{base}/api/gpu/status", timeout=60).json()
    assert status["loaded"] is status["model_loaded"] is True
    assert status["device"] == "cpu" and status["gpu_available"] is False and status["gpu_memory_used"] is None
    assert status["memory_used_bytes"] > 0 and status["memory_free_bytes"] > 0 and status["idle_s"] >= 0
    unloads = server.app.host.unloads
    holding, release = threading.Event(), threading.Event()

    async def hold_the_engine() -> None:  # an engine call in flight, as a narration holds it
        async with server.app.host.lease():
            holding.set()
            await anyio.to_thread.run_sync(release.wait)

    worker = threading.Thread(target=anyio.run, args=(hold_the_engine,))
    worker.start()
    try:
        assert holding.wait(30)
        busy = requests.post(f"{base}/api/gpu/offload", timeout=60)
        assert busy.status_code == 409 and server.app.host.model_loaded, busy.text
    finally:
        release.set()
        worker.join(30)
    offloaded = requests.post(f"{base}/api/gpu/offload", timeout=60)
    assert offloaded.status_code == 200 and offloaded.json()["status"] == "offloaded"
    assert server.app.host.unloads == unloads + 1 and not server.app.host.model_loaded
    after = requests.get(f"{base}/api/gpu/status", timeout=60).json()
    assert after["loaded"] is False and after["memory_used_bytes"] == 0
    assert requests.get(f"{base}/health", timeout=60).json()["model_loaded"] is False
    # the next request loads the model again
    voice_id = requests.get(f"{base}/api/voices", timeout=60).json()["voices"][0]["voice_id"]
    _wav(requests.post(f"{base}/api/tts", data={"text": "Back again.", "voice_id": voice_id}, timeout=TIMEOUT))
    assert server.app.host.model_loaded


def test_our_json_and_fields_keep_working(base: str, clip_bytes: Callable[..., bytes]) -> None:
    created = requests.post(
        f"{base}/api/voices", files={"audio": ("r.wav", clip_bytes(370.0))}, data={"transcript": "ours"}, timeout=60
    )
    assert created.status_code == 201  # our fields: 201 for a new voice, as before
    assert created.json()["transcript_source"] == "user"
    body = requests.post(f"{base}/api/tts", json={"text": "Hi.", "voice": created.json()["voice_id"]}, timeout=60)
    assert body.status_code == 200 and body.headers["x-streamed"] == "true"
    invalid = requests.post(f"{base}/api/tts", json={"voice": "x"}, timeout=60)
    assert invalid.status_code == 422 and invalid.json()["field"] == "text"


def test_operator_routes_ask_for_the_token_and_same_origin(token_server: LiveServer) -> None:
    guarded = token_server.url
    for method, path in (("GET", "/api/gpu/status"), ("POST", "/api/gpu/offload"), ("GET", "/health")):
        assert requests.request(method, f"{guarded}{path}", timeout=60).status_code == 401
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert requests.get(f"{guarded}/api/gpu/status", headers=auth, timeout=60).status_code == 200
    cross = requests.post(f"{guarded}/api/gpu/offload", headers={**auth, "origin": "https://evil.example"}, timeout=60)
    assert cross.status_code == 403
    assert requests.post(f"{guarded}/api/gpu/offload", headers=auth, timeout=60).status_code == 200
