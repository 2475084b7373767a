"""The REST API on a live server: the library round trip, streamed synthesis, honest errors."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
import httpx2
import numpy as np
import pytest
import soundfile as sf
from mcp import Client
from web_helpers import LiveServer

from glmtts_mcp.app.audio_out import wav_stream_header
from glmtts_mcp.config import Settings
from glmtts_mcp.voices import NewVoiceData

# Three segments on any checkpoint: the frontend cuts sentences of at least 30 weighted characters.
LONG_TEXT = "One. Two. Three. Four. " * 12


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=server.url, timeout=120) as c:
        yield c


def clone(client: httpx2.Client, data: bytes, **fields: str) -> httpx2.Response:
    return client.post(
        "/api/voices", files={"audio": ("clip.wav", data, "audio/wav")}, data={"transcript": "hello there", **fields}
    )


def test_library_round_trip(client: httpx2.Client, clip_bytes: Callable[..., bytes]) -> None:
    created = clone(client, clip_bytes(180.0), name="round-trip")
    assert created.status_code == 201, created.text
    voice = created.json()
    assert voice["existed"] is False and voice["name"] == "round-trip" and voice["transcript"] == "hello there"

    again = clone(client, clip_bytes(180.0))
    assert again.status_code == 200 and again.json()["existed"] is True
    assert again.json()["voice_id"] == voice["voice_id"]

    listed = client.get("/api/voices", params={"query": "round"}).json()
    assert [v["voice_id"] for v in listed["voices"]] == [voice["voice_id"]]
    assert listed["voices"][0]["transcript_excerpt"] == "hello there"

    meta = client.get(f"/api/voices/{voice['voice_id']}").json()
    assert meta["name"] == "round-trip" and meta["id"] == voice["voice_id"]

    renamed = client.patch("/api/voices/round-trip", json={"name": "renamed"})
    assert renamed.status_code == 200 and renamed.json() == {
        "voice_id": voice["voice_id"],
        "old_name": "round-trip",
        "name": "renamed",
    }

    reference = client.get("/api/voices/renamed/audio")
    assert reference.status_code == 200 and reference.headers["content-type"] == "audio/flac"
    pcm, rate = sf.read(io.BytesIO(reference.content))
    assert rate > 0 and len(pcm) > rate  # the kept reference: over a second of audio

    exported = client.get("/api/voices/renamed/export")
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    assert zipfile.is_zipfile(io.BytesIO(exported.content))

    deleted = client.delete("/api/voices/renamed")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert client.get(f"/api/voices/{voice['voice_id']}").status_code == 404

    archive = {"archive": ("renamed.glmtts-voice.zip", exported.content, "application/zip")}
    imported = client.post("/api/voices/import", files=archive)
    assert imported.status_code == 201, imported.text
    assert imported.json()["voice_id"] == voice["voice_id"] and imported.json()["existed"] is False
    assert client.post("/api/voices/import", files=archive).json()["existed"] is True
    assert client.get(f"/api/voices/{voice['voice_id']}").json()["name"] == "renamed"


def test_name_taken_is_409(client: httpx2.Client, clip_bytes: Callable[..., bytes]) -> None:
    assert clone(client, clip_bytes(200.0), name="first").status_code == 201
    assert clone(client, clip_bytes(240.0), name="second").status_code == 201
    clash = client.patch("/api/voices/second", json={"name": "first"})
    assert clash.status_code == 409
    assert "first" in clash.json()["error"]
    taken = clone(client, clip_bytes(260.0), name="first")
    assert taken.status_code == 409


def test_bad_uploads(client: httpx2.Client, web_app, clip_bytes: Callable[..., bytes]) -> None:
    not_audio = client.post("/api/voices", files={"audio": ("notes.wav", b"this is not audio" * 40, "audio/wav")})
    assert not_audio.status_code == 415
    body = not_audio.json()
    assert body["field"] == "audio" and "could not be decoded as audio" in body["error"] and "WAV" in body["error"]

    empty = client.post("/api/voices", files={"audio": ("empty.wav", b"", "audio/wav")})
    assert empty.status_code == 400 and empty.json()["field"] == "audio"

    missing = client.post("/api/voices", data={"name": "x"})
    assert missing.status_code == 422 and missing.json()["field"] == "audio"

    huge = client.post(
        "/api/voices", files={"audio": ("big.wav", b"\0" * (web_app.settings.max_upload_bytes + 100_000))}
    )
    assert huge.status_code == 413 and "--max-upload-bytes" in huge.json()["error"]

    bad_archive = client.post("/api/voices/import", files={"archive": ("x.zip", b"PK not a zip", "application/zip")})
    assert bad_archive.status_code == 400 and bad_archive.json()["field"] == "archive"

    for form_field, value, needle in (
        ("language", "klingon", "is not one the text frontend knows"),
        ("transcript", "word " * 200, "characters, but the clip has only"),
    ):
        refused = clone(client, clip_bytes(230.0), **{form_field: value})
        assert refused.status_code == 400 and refused.json()["field"] == form_field, refused.text
        assert needle in refused.json()["error"]

    silence = io.BytesIO()
    sf.write(silence, np.zeros(16000 * 3, dtype=np.float32), 16000, format="WAV")
    silent = client.post("/api/voices", files={"audio": ("silent.wav", silence.getvalue())}, data={"transcript": "hi"})
    assert silent.status_code == 400 and "silent" in silent.json()["error"]


def test_unknown_voices_are_404_with_rest_advice(client: httpx2.Client) -> None:
    for response in (
        client.get("/api/voices/nobody"),
        client.patch("/api/voices/nobody", json={"name": "x"}),
        client.delete("/api/voices/nobody"),
        client.get("/api/voices/nobody/audio"),
        client.get("/api/voices/nobody/export"),
        client.post("/api/tts", json={"text": "Hello.", "voice": "nobody"}),
    ):
        assert response.status_code == 404, response.text
        assert "GET /api/voices to see the stored voices" in response.json()["error"]


def test_tts_validation(client: httpx2.Client, clip_bytes: Callable[..., bytes]) -> None:
    clone(client, clip_bytes(300.0), name="checks")
    assert client.post("/api/tts", json={"voice": "checks"}).status_code == 422
    blank = client.post("/api/tts", json={"text": "   ", "voice": "checks"})
    assert blank.status_code == 400 and blank.json()["field"] == "text"
    fmt = client.post("/api/tts", json={"text": "Hi there.", "voice": "checks", "format": "aiff"})
    assert fmt.status_code == 400 and fmt.json()["field"] == "format" and "wav" in fmt.json()["error"]
    symbols = client.post("/api/tts", json={"text": "...", "voice": "checks"})
    assert symbols.status_code == 400 and "nothing to speak" in symbols.json()["error"]
    assert client.post("/api/tts", json={"text": "Hi", "voice": "checks", "seed": -1}).status_code == 422
    for seed in (True, False):  # Python counts True as 1: a JSON boolean is no seed
        boolean = client.post("/api/tts", json={"text": "Hi", "voice": "checks", "seed": seed})
        assert boolean.status_code == 422 and boolean.json()["field"] == "seed", boolean.text
        assert "a boolean is not a number" in boolean.json()["error"]


@pytest.mark.parametrize("fmt", ["wav", "ogg", "mp3", "flac"])
def test_tts_formats_decode(client: httpx2.Client, clip_bytes: Callable[..., bytes], fmt: str) -> None:
    clone(client, clip_bytes(320.0), name="formats")
    response = client.post("/api/tts", json={"text": "Hello there, how are you?", "voice": "formats", "format": fmt})
    assert response.status_code == 200, response.text
    assert response.headers["x-streamed"] == ("true" if fmt in ("wav", "ogg") else "false")
    data = response.content
    if fmt == "wav":
        assert data.startswith(wav_stream_header(24000))  # unknown length: written before the audio exists
        pcm = np.frombuffer(data[44:], dtype="<i2")
    else:
        pcm, _ = sf.read(io.BytesIO(data))
    assert len(pcm) > 2400


@dataclass
class HeldSegments:
    """Every segment after the first `free` waits in the engine (flow + vocoder) until `gate` is set."""

    free: int
    gate: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)
    voiced: list[int] = field(default_factory=list)


@contextmanager
def held_segments(engine, free: int, settings: Settings) -> Iterator[HeldSegments]:
    """Holds offline mode's per-segment flow + vocoder, so the narrations run in offline mode meanwhile."""
    held = HeldSegments(free)
    original = engine._voice
    mode, settings.synthesis_mode = settings.synthesis_mode, "offline"

    def gated_voice(*args, **kwargs):
        held.entered.set()
        if len(held.voiced) >= held.free:
            assert held.gate.wait(60), "the test never opened the gate"
        held.voiced.append(1)
        return original(*args, **kwargs)

    engine._voice = gated_voice
    try:
        yield held
    finally:
        held.gate.set()
        engine._voice = original
        settings.synthesis_mode = mode


def wait_until(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.mark.slow
def test_tts_streams_the_first_segment_before_the_rest_exists(
    server: LiveServer, client: httpx2.Client, clip_bytes: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Later segments wait on a gate the test opens only after the first bytes arrived (offline mode: one
    piece per segment; stream mode's chunks: tests/web/test_stream_lifetime.py)."""
    monkeypatch.setattr(server.app.settings, "synthesis_mode", "offline")
    clone(client, clip_bytes(340.0), name="streamer")
    engine = server.app.host.ensure_loaded()
    segments = engine.text_frontend.synthesis_segments(LONG_TEXT)
    assert len(segments) >= 3
    with (
        held_segments(engine, free=1, settings=server.app.settings) as held,
        client.stream("POST", "/api/tts", json={"text": LONG_TEXT, "voice": "streamer", "format": "pcm"}) as r,
    ):
        assert r.status_code == 200 and r.headers["x-segments"] == str(len(segments))
        stream = r.iter_raw()
        first = next(stream)
        assert len(first) > 0 and len(held.voiced) == 1  # the first segment's audio left; the second is not made
        held.gate.set()
        rest = b"".join(stream)
    assert len(held.voiced) == len(segments)
    whole = client.post("/api/tts", json={"text": LONG_TEXT, "voice": "streamer", "format": "pcm"}).content
    assert first + rest == whole  # the stream is the same audio as an unhurried request


def test_a_client_that_leaves_mid_stream_frees_the_engine(
    server: LiveServer, client: httpx2.Client, clip_bytes: Callable[..., bytes]
) -> None:
    clone(client, clip_bytes(350.0), name="leaver")
    engine = server.app.host.ensure_loaded()
    with (
        held_segments(engine, free=1, settings=server.app.settings) as held,
        client.stream("POST", "/api/tts", json={"text": LONG_TEXT, "voice": "leaver", "format": "pcm"}) as r,
    ):
        assert next(r.iter_raw())  # the first segment, then the client goes away
    wait_until(lambda: engine.jobs.stats().running == 0)
    assert engine.jobs.stats().running == 0 and len(held.voiced) < 3  # stopped early, its turn in the job queue over
    again = client.post("/api/tts", json={"text": "Hello.", "voice": "leaver", "format": "pcm"})
    assert again.status_code == 200 and len(again.content) > 0


def test_rest_and_mcp_wait_in_one_job_queue(
    server: LiveServer, client: httpx2.Client, clip_bytes: Callable[..., bytes]
) -> None:
    """A REST narration holds the engine; an MCP synthesize on the same port queues behind it."""
    clone(client, clip_bytes(380.0), name="shared")
    engine = server.app.host.ensure_loaded()
    results: dict = {}

    async def mcp_synthesize() -> None:
        async with Client(f"{server.url}/mcp") as mcp:
            results["mcp"] = await mcp.call_tool(
                "synthesize", {"text": "Hello.", "voice": "shared", "return_mode": "path"}
            )

    def rest_tts() -> None:
        results["rest"] = httpx2.post(f"{server.url}/api/tts", json={"text": "Hello.", "voice": "shared"}, timeout=120)

    threads = [threading.Thread(target=rest_tts), threading.Thread(target=lambda: anyio.run(mcp_synthesize))]
    with held_segments(engine, free=0, settings=server.app.settings) as held:
        threads[0].start()
        assert held.entered.wait(60)  # the REST narration is inside the engine, taking its turn
        threads[1].start()
        wait_until(lambda: engine.queue_depth >= 1)
        # the MCP call waits its turn (an earlier test's abandoned stream may still hold a place in the queue)
        assert client.get("/api/cache/stats").json()["engine"]["queue_depth"] >= 1
        assert "mcp" not in results
    for thread in threads:
        thread.join(120)
    assert results["rest"].status_code == 200 and not results["mcp"].is_error


def test_cache_stats(client: httpx2.Client, clip_bytes: Callable[..., bytes]) -> None:
    clone(client, clip_bytes(360.0), name="stats")
    client.post("/api/tts", json={"text": "Hello.", "voice": "stats"})
    stats = client.get("/api/cache/stats").json()
    assert stats["voice_count"] >= 1 and stats["clones_created"] >= 1
    assert stats["memory_hits"] + stats["device_hits"] + stats["disk_hits"] >= 1
    assert stats["engine"]["model_loaded"] is True and stats["engine"]["device"] == "cpu"


def test_docs_work_offline(client: httpx2.Client) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "https://" not in docs.text  # nothing from a CDN
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"):
        assert client.get(asset).status_code == 200
    schema = client.get("/openapi.json").json()
    for path in (
        "/api/voices",
        "/api/voices/{voice}",
        "/api/voices/{voice}/audio",
        "/api/voices/{voice}/export",
        "/api/voices/import",
        "/api/tts",
        "/api/cache/stats",
        "/v1/audio/speech",
        "/v1/audio/voices",
    ):
        assert path in schema["paths"], path


def test_unknown_path_and_method(client: httpx2.Client) -> None:
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and "/docs" in missing.json()["error"]
    wrong = client.put("/api/voices")
    assert wrong.status_code == 405 and "PUT" in wrong.json()["error"]


def test_rest_changes_reach_mcp_listeners(
    server: LiveServer, client: httpx2.Client, clip_bytes: Callable[..., bytes]
) -> None:
    """An MCP client listening for resource-list changes (2026-07-28 `subscriptions/listen`) hears every
    change the REST API makes to the library: clone, rename, delete and import, one event each."""
    made = clone(client, clip_bytes(410.0), name="heard").json()
    archive = client.get(f"/api/voices/{made['voice_id']}/export").content
    heard: list[object] = []
    listening = threading.Event()

    async def listen() -> None:
        async with Client(f"{server.url}/mcp") as mcp, mcp.listen(resources_list_changed=True) as events:
            listening.set()
            with anyio.fail_after(60):
                async for event in events:
                    heard.append(event)
                    if len(heard) == 4:
                        return

    def heard_after(change: Callable[[], httpx2.Response], status: int) -> int:
        before = len(heard)
        assert change().status_code == status
        deadline = time.monotonic() + 30
        while len(heard) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(heard) - before

    listener = threading.Thread(target=lambda: anyio.run(listen))
    listener.start()
    assert listening.wait(30)
    voice = made["voice_id"]
    assert heard_after(lambda: client.patch(f"/api/voices/{voice}", json={"name": "heard-too"}), 200) == 1
    assert heard_after(lambda: client.delete(f"/api/voices/{voice}"), 200) == 1
    assert (
        heard_after(lambda: client.post("/api/voices/import", files={"archive": ("v.glmtts-voice.zip", archive)}), 201)
        == 1
    )
    assert heard_after(lambda: clone(client, clip_bytes(430.0), name="heard-3"), 201) == 1
    listener.join(90)
    assert [type(event).__name__ for event in heard] == ["ResourcesListChanged"] * 4


def test_a_float_reference_downloads_as_the_float_wav_it_is(
    client: httpx2.Client, web_app, clip_bytes: Callable[..., bytes]
) -> None:
    """An `upstream` voice of a float source keeps a 32-bit float WAV: the download is that file, as audio/wav."""
    donor = clone(client, clip_bytes(330.0), name="float-donor").json()["voice_id"]
    tensors = {k: v.clone() for k, v in web_app.library.load_features(donor).tensors.items()}
    frames = round(24000 * web_app.library.resolve(donor).duration_s)  # as long as the clip the features are of
    floats = (0.2 * np.random.default_rng(3).standard_normal((frames, 2))).astype(np.float32)
    record, _ = web_app.library.get_or_create(
        floats,
        24000,
        "hello there",
        lambda: NewVoiceData(tensors, "hello there", "user", "en", frames / 24000),
        name="float-voice",
        processing="upstream",
    )
    reference = client.get("/api/voices/float-voice/audio")
    assert reference.status_code == 200 and reference.headers["content-type"] == "audio/wav"
    assert 'filename="float-voice.wav"' in reference.headers["content-disposition"]
    assert reference.content == web_app.library.reference_audio_path(record.id).read_bytes()
    np.testing.assert_array_equal(sf.read(io.BytesIO(reference.content), dtype="float32")[0], floats)


def test_errors_never_show_the_server_folders(
    server: LiveServer, client: httpx2.Client, clip_bytes: Callable[..., bytes]
) -> None:
    """A refused upload names its archive by role, a voice whose files were damaged on disk is answered
    without the library's path: an HTTP client never learns where the server keeps its folders."""
    import tempfile

    folders = [str(server.app.settings.voices_dir.resolve()), tempfile.gettempdir()]
    bad_archive = client.post("/api/voices/import", files={"archive": ("x.zip", b"PK not a zip", "application/zip")})
    assert bad_archive.status_code == 400 and "a temporary folder" in bad_archive.json()["error"]
    record = clone(client, clip_bytes(455.0), name="hidden").json()
    voice_dir = next(p for p in server.app.settings.voices_dir.rglob(record["voice_id"]) if p.is_dir())
    (voice_dir / "reference.flac").unlink()
    (voice_dir / "reference.flac").mkdir()  # a file the server cannot read as one
    answers = [
        client.get(f"/api/voices/{record['voice_id']}/export"),
        client.get(f"/api/voices/{record['voice_id']}/audio"),
        client.get("/api/voices/nobody"),
        client.get("/static/../../etc/passwd"),
        bad_archive,
    ]
    for answer in answers:
        assert answer.status_code >= 400, answer.text
        assert not any(folder in answer.text for folder in folders), answer.text
