"""Work for HTTP clients that left is stopped, and the queue is bounded.

Twenty `POST /api/tts` of a 40-sentence text whose sockets close before the first byte (raw sockets: a
client library would hide when the close happens) draw fewer speech tokens, all together, than one
sentence narrated to its end; the next request then finds the engine idle. With every engine slot held
and `--max-queue` waiting, one more request is refused at once: 503 with Retry-After over REST and
OpenAI, a tool error over MCP, each naming the setting.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from web_helpers import LiveServer, live_server, make_web_app

from glmtts_mcp.app.core import App
from glmtts_mcp.mcp_face.server import build_server

LONG_TEXT = " ".join(f"This is sentence number {i} of a long story." for i in range(40))
FIRST_SENTENCE = "This is sentence number 0 of a long story."


def _engine_figures(app: App) -> tuple[int, int, int]:
    """Requests holding or waiting for the engine, LLM sequences running or waiting, tokens drawn."""
    described = app.host.describe()
    scheduler = described.get("scheduler") or {"running": 0, "waiting": 0, "tokens": 0}
    return described["active_jobs"], scheduler["running"] + scheduler["waiting"], scheduler["tokens"]


def _wait_idle(app: App, within_s: float = 120.0) -> int:
    """Wait until no request holds the engine and no sequence decodes; the tokens drawn so far."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        active, sequences, tokens = _engine_figures(app)
        if active == 0 and sequences == 0:
            return tokens
        time.sleep(0.05)
    raise AssertionError(f"the engine is still busy after {within_s} s: {_engine_figures(app)}")


def _abandoned_tts(url: str, voice: str) -> None:
    """Send a whole POST /api/tts, then close the socket at once, before any answer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    body = httpx2.Request("POST", url, json={"text": LONG_TEXT, "voice": voice}).read()
    head = (
        f"POST /api/tts HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body)


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[LiveServer]:
    """Room for the twenty to wait: the default queue bound, two LLM slots."""
    app = make_web_app(tmp_path_factory.mktemp("abandoned"), tiny_checkpoint, max_batch=2)
    try:
        with live_server(app) as live:
            yield live
    finally:
        app.close()


def _clone(url: str, clip_bytes: Callable[..., bytes], pitch: float) -> str:
    answer = httpx2.post(
        url + "/api/voices",
        files={"audio": ("clip.wav", clip_bytes(pitch), "audio/wav")},
        data={"transcript": "hello there"},
        timeout=120,
    )
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["voice_id"]


def test_requests_whose_client_left_stop_their_work(roomy: LiveServer, clip_bytes: Callable[..., bytes]) -> None:
    voice = _clone(roomy.url, clip_bytes, 262.0)
    before = _wait_idle(roomy.app)
    one = httpx2.post(roomy.url + "/api/tts", json={"text": FIRST_SENTENCE, "voice": voice}, timeout=120)
    assert one.status_code == 200 and len(one.content) > 44
    one_sentence = _wait_idle(roomy.app) - before
    assert one_sentence > 0
    start = _wait_idle(roomy.app)
    for _ in range(20):
        _abandoned_tts(roomy.url, voice)
    drawn = _wait_idle(roomy.app) - start
    assert drawn < one_sentence, (
        f"20 abandoned narrations drew {drawn} speech tokens; one sentence narrated whole draws {one_sentence}"
    )
    following = httpx2.post(roomy.url + "/api/tts", json={"text": FIRST_SENTENCE, "voice": voice}, timeout=120)
    assert following.status_code == 200 and following.content == one.content  # same seed, same audio


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[LiveServer]:
    """One engine slot and no room to wait."""
    app = make_web_app(tmp_path_factory.mktemp("narrow"), tiny_checkpoint, max_batch=1, concurrency=1, max_queue=0)
    try:
        with live_server(app) as live:
            yield live
    finally:
        app.close()


def _hold_the_engine(app: App) -> tuple[threading.Event, threading.Thread]:
    """Another request holding the one engine slot, until the returned event is set."""
    held, release = threading.Event(), threading.Event()

    async def hold() -> None:
        async with app.host.lease():
            held.set()
            await anyio.to_thread.run_sync(release.wait)

    thread = threading.Thread(target=anyio.run, args=(hold,), daemon=True)
    thread.start()
    assert held.wait(120)
    return release, thread


@pytest.mark.anyio
async def test_a_full_queue_refuses_at_once_on_every_face(narrow: LiveServer, clip_bytes: Callable[..., bytes]) -> None:
    voice = await anyio.to_thread.run_sync(_clone, narrow.url, clip_bytes, 377.0)
    release, thread = await anyio.to_thread.run_sync(_hold_the_engine, narrow.app)
    try:
        async with httpx2.AsyncClient(base_url=narrow.url, timeout=60) as http:
            rest = await http.post("/api/tts", json={"text": "Hello there.", "voice": voice})
            assert rest.status_code == 503 and rest.headers["retry-after"] == "5", rest.text
            assert "--max-queue" in rest.json()["error"] and "retry in 5 s" in rest.json()["error"]
            speech = {"model": "tts-1", "voice": voice, "input": "Hello there.", "response_format": "wav"}
            openai = await http.post("/v1/audio/speech", json=speech)
            assert openai.status_code == 503 and openai.headers["retry-after"] == "5"
            assert openai.json()["error"]["code"] == "model_unavailable"
            assert "--max-queue" in openai.json()["error"]["message"]
        async with Client(build_server(narrow.app)) as client:
            result = await client.call_tool("synthesize", {"text": "Hello there.", "voice": voice})
        text = " ".join(b.text for b in result.content if isinstance(b, types.TextContent))
        assert result.is_error and "--max-queue" in text, text
        assert narrow.app.host.describe()["refused_busy"] == 3
    finally:
        release.set()
        await anyio.to_thread.run_sync(thread.join)
    async with httpx2.AsyncClient(base_url=narrow.url, timeout=120) as http:
        served = await http.post("/api/tts", json={"text": "Hello there.", "voice": voice})
    assert served.status_code == 200 and len(served.content) > 44


def test_a_poisoned_voice_fails_alone_in_its_batch(
    roomy: LiveServer, clip_bytes: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three sound narrations and one whose voice features hold a speech id of 10^12 (damaged below the
    library's checks), sent together: the poisoned one is answered 400 with its own sentence, the three
    get the audio they get alone."""
    import dataclasses

    import torch

    voices = [_clone(roomy.url, clip_bytes, pitch) for pitch in (281.0, 293.0, 307.0, 311.0)]
    poisoned = voices[3]
    library = roomy.app.library
    load_features = library.load_features

    def damaged(id_or_name: str, device: Any = None) -> Any:
        loaded = load_features(id_or_name, device)
        if loaded.record.id != poisoned:
            return loaded
        tensors = dict(loaded.tensors)
        ids = tensors["prompt_speech_ids"].clone()
        ids[-1] = 10**12
        tensors["prompt_speech_ids"] = ids
        return dataclasses.replace(loaded, tensors=tensors)

    def speak(voice: str) -> httpx2.Response:
        text = "A sentence or two for the batch. Then one more."
        return httpx2.post(roomy.url + "/api/tts", json={"text": text, "voice": voice}, timeout=300)

    alone = [speak(voice) for voice in voices[:3]]
    assert all(a.status_code == 200 for a in alone)
    monkeypatch.setattr(library, "load_features", damaged)
    answers: list[httpx2.Response | None] = [None] * 4

    def send(i: int) -> None:
        answers[i] = speak(voices[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bad = answers[3]
    assert bad is not None and bad.status_code == 400 and bad.json()["field"] == "voice", bad and bad.text
    assert "outside this model's vocabulary" in bad.json()["error"] and "POST /api/voices" in bad.json()["error"]
    for got, want in zip(answers[:3], alone, strict=True):
        assert got is not None and got.status_code == 200, got and got.text
        assert got.content == want.content
    assert torch.is_tensor(load_features(poisoned).tensors["prompt_speech_ids"])  # the library itself is intact
