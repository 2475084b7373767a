"""A streamed narration lives as long as its client: one that hangs up stops the engine's work for it (its
sequence leaves the batch at the next decode step), and one that reads slowly keeps the model loaded. In stream
mode the first audio leaves before the first segment's LLM is done."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from web_helpers import LiveServer, live_server, make_web_app

from decode_gate import DecodeGate

LONG_TEXT = "Hello there, this is one sentence of a longer story that goes on for a while. " * 30


@pytest.fixture
def batching(tmp_path: Path, tiny_checkpoint: Path) -> Iterator[LiveServer]:
    """A server whose engine batches (max_batch 2) and unloads the model after half a second idle."""
    app = make_web_app(tmp_path, tiny_checkpoint, max_batch=2, idle_unload_s=0.5)
    with live_server(app) as live:
        yield live
    app.close()


def _voice(client: httpx2.Client, clip: bytes) -> str:
    answer = client.post("/api/voices", files={"audio": ("clip.wav", clip, "audio/wav")}, data={"transcript": "hi"})
    assert answer.status_code in (200, 201), answer.text
    return str(answer.json()["voice_id"])


def _settled(live: LiveServer) -> object:
    """The scheduler's figures once no sequence is left in it (or after 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        stats = live.app.host.ensure_loaded().scheduler_stats()
        assert stats is not None
        if stats.running == stats.waiting == 0 or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def test_a_client_that_hangs_up_frees_its_batch_slot(batching: LiveServer, clip_bytes: Callable[..., bytes]) -> None:
    with httpx2.Client(base_url=batching.url, timeout=120) as client:
        voice = _voice(client, clip_bytes())
        with client.stream("POST", "/api/tts", json={"text": LONG_TEXT, "voice": voice, "format": "pcm"}) as answer:
            assert answer.status_code == 200 and int(answer.headers["x-segments"]) > 4
            next(answer.iter_bytes())  # the first segment is here; the next one is decoding
        # leaving the block hangs up
        stats = _settled(batching)
        assert stats.cancelled >= 1 and stats.running == stats.waiting == 0  # type: ignore[attr-defined]
        # and the server serves on
        short = client.post("/api/tts", json={"text": "Hi.", "voice": voice, "format": "wav"})
        assert short.status_code == 200 and short.content[:4] == b"RIFF"


def test_a_stream_paused_past_the_idle_unload_completes(batching: LiveServer, clip_bytes: Callable[..., bytes]) -> None:
    """The narration holds the engine for its whole life: a reader that pauses for four times the idle limit
    still gets every segment, and the model is unloaded once the server is done."""
    with httpx2.Client(base_url=batching.url, timeout=120) as client:
        voice = _voice(client, clip_bytes())
        unloads = batching.app.host.unloads
        text = LONG_TEXT[: len(LONG_TEXT) // 6]
        with client.stream("POST", "/api/tts", json={"text": text, "voice": voice, "format": "pcm"}) as answer:
            rate = int(answer.headers["x-sample-rate"])
            pieces = answer.iter_bytes()
            received = len(next(pieces))
            time.sleep(2.0)
            received += sum(len(piece) for piece in pieces)
        whole = client.post("/api/tts", json={"text": text, "voice": voice, "format": "pcm"}).content
        assert received == len(whole) > 2 * rate  # every segment arrived, as unpaused
        deadline = time.monotonic() + 10
        while batching.app.host.unloads == unloads and time.monotonic() < deadline:
            time.sleep(0.1)
        assert batching.app.host.unloads > unloads  # idle after the streams: unloaded


@pytest.fixture
def streaming(tmp_path: Path, tiny_checkpoint: Path) -> Iterator[LiveServer]:
    """A server in stream mode's default (synthesis_mode auto: streamed formats stream) with a 10-token first block."""
    app = make_web_app(tmp_path, tiny_checkpoint, stream_first_block=10, stream_first_look_ahead=5)
    with live_server(app) as live:
        yield live
    app.close()


FIRST_SENTENCE = "The quick brown fox jumps over the lazy dog and then it runs far away into the dark forest."


def test_a_streamed_answer_starts_before_the_first_segments_llm_is_done(
    streaming: LiveServer, clip_bytes: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LLM is held at its 16th decode step of the first segment: audio bytes still arrive (the first
    block's chunk), then, released, the rest of the segment follows; a client that leaves there stops the
    sequence at the very next step."""
    with httpx2.Client(base_url=streaming.url, timeout=120) as client:
        voice = _voice(client, clip_bytes())
        held = DecodeGate(monkeypatch, at=15)
        body = {"text": FIRST_SENTENCE, "voice": voice, "format": "pcm"}
        with client.stream("POST", "/api/tts", json=body) as answer:
            assert answer.status_code == 200 and answer.headers["x-segments"] == "1"
            pieces = answer.iter_bytes()  # kept: an iterator dropped here would close the connection at once
            first = next(pieces)
            assert len(first) > 0 and len(held.steps) <= 15  # the first segment's LLM has not passed step 15
            assert held.scheduler is not None and len(held.scheduler._live) == 1  # and is still decoding
            assert held.waiting.wait(120)  # step 15 has begun and is held
            (entry,) = held.scheduler._live
        # leaving the block hangs up mid-segment; the step in flight finishes, no later one runs it
        deadline = time.monotonic() + 20
        while not entry.cancel.is_set() and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.01)
        assert entry.cancel.is_set()  # type: ignore[attr-defined]
        held.open.set()
        stats = _settled(streaming)
        assert stats.cancelled >= 1  # type: ignore[attr-defined]
        assert entry in held.steps[15] and all(entry not in live for live in held.steps[16:])
