"""POST /api/scripts on a live server: the result's files download from their url, the subtitles parse, and
refusals come back as REST problems naming the field."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator

import httpx2
import pytest
import soundfile as sf
import srt
from web_helpers import LiveServer


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=server.url, timeout=300) as c:
        yield c


def _clone(client: httpx2.Client, data: bytes, name: str) -> None:
    files = {"audio": ("clip.wav", data, "audio/wav")}
    answer = client.post("/api/voices", files=files, data={"transcript": "hello there", "name": name})
    assert answer.status_code in (200, 201), answer.text


def test_a_dialogue_over_rest(client: httpx2.Client, clip_bytes: Callable[..., bytes]) -> None:
    _clone(client, clip_bytes(230.0), "Ann")
    _clone(client, clip_bytes(130.0), "Ben")
    answer = client.post(
        "/api/scripts", json={"script": "Ann: Hello, Ben.\n[pause 600ms]\nBen: Hello, Ann.", "format": "ogg"}
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    (output,) = result["outputs"]
    audio = client.get(output["url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/ogg"
    assert len(audio.content) == output["bytes"] and sf.info(io.BytesIO(audio.content)).duration > 0
    cues = list(srt.parse(output["srt"]))
    assert [c.content.split(":")[0] for c in cues] == [e["voice"] for e in result["timeline"]]
    assert [round(c.start.total_seconds() * 1000) for c in cues] == [e["start_ms"] for e in result["timeline"]]
    assert "path" not in output or output["path"] is None  # a server path is no business of a REST client


def test_refusals_name_the_field(client: httpx2.Client, clip_bytes: Callable[..., bytes]) -> None:
    _clone(client, clip_bytes(230.0), "Ann")
    unknown = client.post("/api/scripts", json={"script": "Ann: Hi.\nZed: Hello."})
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "script" and "'Zed' (line 2)" in unknown.json()["error"]
    assert "POST /api/voices" in unknown.json()["error"]
    bad_item = client.post("/api/scripts", json={"items": [{"voice": "Ann", "pause_ms": 10}]})
    assert bad_item.status_code == 400 and bad_item.json()["field"] == "items"
    assert "item 1 of field `items`" in bad_item.json()["error"]
    assert client.get("/api/outputs/19990101T000000-00000000.wav").status_code == 404


def test_a_client_that_hangs_up_cancels_the_script(
    server: LiveServer, client: httpx2.Client, clip_bytes: Callable[..., bytes]
) -> None:
    _clone(client, clip_bytes(230.0), "Ann")
    script = "\n".join(f"Ann: Line {n} of a script that would go on for a long while." for n in range(20))
    before = len(server.app.outputs.files())
    with httpx2.Client(base_url=server.url, timeout=4) as impatient, pytest.raises(httpx2.TimeoutException):
        impatient.post("/api/scripts", json={"script": script})
    engine = server.app.host.ensure_loaded()
    deadline = time.monotonic() + 30
    while (
        engine.scheduler_stats().running or server.app.host.describe()["active_jobs"]
    ) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert engine.scheduler_stats().running == 0 and server.app.host.describe()["active_jobs"] == 0
    assert len(server.app.outputs.files()) == before  # nothing of the abandoned script was kept
