"""The pronunciation dictionaries on the REST and OpenAI faces of a live server: a voice's entry reaches the
model's input ids, the text as read comes back, hostile dictionaries are refused and the server stays up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx2
import pytest
from web_helpers import LiveServer

from glmtts_mcp.engine.frontend.text_tokenizer import TextTokenizer

CHONGQING = "<|CH|><|ONG2|><|Q|><|ING4|>"


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=server.url, timeout=120) as c:
        yield c


def test_a_voice_entry_through_rest(
    client: httpx2.Client,
    clip_bytes: Callable[..., bytes],
    tiny_checkpoint: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = client.post(
        "/api/voices",
        files={"audio": ("clip.wav", clip_bytes(150.0), "audio/wav")},
        data={"transcript": "hello there", "name": "say-it"},
    )
    assert made.status_code in (200, 201), made.text
    voice = made.json()["voice_id"]
    added = client.post("/api/voices/say-it/pronunciations", json={"text": "重庆", "reading": "chong2 qing4"})
    assert added.status_code == 200, added.text
    assert added.json()["voice_id"] == voice and added.json()["entries"][0]["replacement"] == CHONGQING
    assert client.get("/api/pronunciations").json()["entries"] == []
    preview = client.post("/api/pronunciations/preview", json={"text": "我们去重庆。", "voice": "say-it"})
    assert preview.json() == {"pronunciation": "text", "text_as_read": f"我们去{CHONGQING}。"}

    calls: list[list[int]] = []
    original = TextTokenizer.encode
    monkeypatch.setattr(TextTokenizer, "encode", lambda self, text: calls.append(original(self, text)) or calls[-1])
    tokens = original(TextTokenizer.from_dir(tiny_checkpoint / "vq32k-phoneme-tokenizer"), CHONGQING)
    spoken = client.post("/api/tts", json={"text": "我们去重庆。", "voice": "say-it"})
    assert spoken.status_code == 200, spoken.text
    assert unquote(spoken.headers["x-text-as-read"]) == f"我们去{CHONGQING}。"
    assert spoken.headers["x-pronunciation"] == "text"
    assert any(ids[i : i + 4] == tokens for ids in calls for i in range(len(ids)))

    openai = client.post(
        "/v1/audio/speech",
        json={
            "model": "tts-1",
            "input": "银行。",
            "voice": "say-it",
            "response_format": "wav",
            "pronunciation": "phoneme",
        },
    )
    assert openai.status_code == 200, openai.text
    assert unquote(openai.headers["x-text-as-read"]) == "银<|H|><|ANG2|>。"

    removed = client.delete("/api/voices/say-it/pronunciations/重庆")
    assert removed.status_code == 200 and removed.json()["entries"] == []
    assert client.delete("/api/voices/say-it/pronunciations/重庆").status_code == 404


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"entries": {"重庆": "chong2 qing6"}}, "tone 6"),
        ({"entries": {"重庆": "xyz1"}}, "'xyz1'"),
        ({"entries": {"Bob": "Rob", "Rob": "Bob"}}, "lead back"),
        ({"entries": {f"w{i}": "word" for i in range(10_000)}}, "10000 entries"),
    ],
)
def test_hostile_dictionaries_are_refused(client: httpx2.Client, body: dict, named: str) -> None:
    refused = client.put("/api/pronunciations", json=body)
    assert refused.status_code == 400, refused.text
    assert named in refused.json()["error"] and refused.json()["field"] == "pronunciations"
    spoken = client.post("/api/tts", json={"text": "hi", "voice": "nobody", "pronunciations": body["entries"]})
    assert spoken.status_code == 400 and named in spoken.json()["error"]
    assert client.get("/api/pronunciations").json()["entries"] == []  # nothing written, the server answers
