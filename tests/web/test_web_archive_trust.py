"""Issue 21, item 1, as a REST client meets it: hostile archives are refused with 400 and the library is left
as it was; a voice poisoned by hand on disk lists as broken and narrating with it is a 409, not a 500."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator

import httpx2
import pytest
from web_helpers import LiveServer

from forged_archives import FEATURE_EDITS, META_EDITS, edited_features, hostile_archives, members
from glmtts_mcp.app.core import App


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=server.url, timeout=120) as c:
        yield c


def clone(client: httpx2.Client, clip: bytes, name: str) -> dict:
    answer = client.post(
        "/api/voices",
        files={"audio": ("clip.wav", clip, "audio/wav")},
        data={"transcript": "hello there", "name": name},
    )
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def voice_ids(client: httpx2.Client) -> list[str]:
    return sorted(v["voice_id"] for v in client.get("/api/voices", params={"limit": 100}).json()["voices"])


def import_archive(client: httpx2.Client, data: bytes) -> httpx2.Response:
    return client.post("/api/voices/import", files={"archive": ("v.glmtts-voice.zip", data, "application/zip")})


@pytest.fixture(scope="module")
def archives(client: httpx2.Client, clip_bytes: Callable[..., bytes]) -> tuple[dict, dict[str, tuple[bytes, str]]]:
    """The voice 'original' (exported, then deleted) and every hostile archive made from its export."""
    original = clone(client, clip_bytes(180.0), "original")
    clone(client, clip_bytes(290.0), "impostor")  # the same length of clip: only its features give it away
    archive = client.get("/api/voices/original/export").content
    impostor = client.get("/api/voices/impostor/export").content
    assert client.delete("/api/voices/original").status_code == 200
    return {**original, "archive": archive}, hostile_archives(members(archive), members(impostor))


@pytest.mark.parametrize("case", [*FEATURE_EDITS, *META_EDITS, "another voice's features"])
def test_hostile_archive_refused_over_rest(
    client: httpx2.Client, archives: tuple[dict, dict[str, tuple[bytes, str]]], case: str
) -> None:
    before = voice_ids(client)
    data, needle = archives[1][case]
    refused = import_archive(client, data)
    assert refused.status_code == 400, refused.text
    assert refused.json()["field"] == "archive" and needle in refused.json()["error"], refused.text
    assert "export the voice again" in refused.json()["error"].lower(), refused.text
    assert voice_ids(client) == before


def test_honest_archive_still_imports_and_speaks(
    client: httpx2.Client, archives: tuple[dict, dict[str, tuple[bytes, str]]], clip_bytes: Callable[..., bytes]
) -> None:
    original = archives[0]
    imported = import_archive(client, original["archive"])
    assert imported.status_code == 201 and imported.json()["voice_id"] == original["voice_id"], imported.text
    again = clone(client, clip_bytes(180.0), "original-again")
    assert again["existed"] is True and again["voice_id"] == original["voice_id"]
    spoken = client.post("/api/tts", json={"text": "Hello.", "voice": "original", "format": "wav"})
    assert spoken.status_code == 200 and spoken.content[:4] == b"RIFF"


def test_poisoned_folder_is_broken_not_a_500(
    client: httpx2.Client, web_app: App, clip_bytes: Callable[..., bytes]
) -> None:
    voice = clone(client, clip_bytes(230.0), "poisoned")
    clone(client, clip_bytes(250.0), "bystander")
    assert client.post("/api/tts", json={"text": "Hello.", "voice": "poisoned", "format": "wav"}).status_code == 200
    folder = web_app.library.root / "voices" / voice["voice_id"]
    features = edited_features((folder / "features.safetensors").read_bytes(), FEATURE_EDITS["speech ids of 10^12"][0])
    (folder / "features.safetensors").write_bytes(features)
    meta = json.loads((folder / "meta.json").read_text())
    meta |= {"features_sha256": hashlib.sha256(features).hexdigest(), "features_bytes": len(features)}
    (folder / "meta.json").write_text(json.dumps(meta))

    listed = {v["voice_id"]: v for v in client.get("/api/voices", params={"limit": 100}).json()["voices"]}
    broken = listed[voice["voice_id"]]["broken"] or ""
    assert "prompt_speech_ids holds ids" in broken and "Delete it and clone it again" in broken, broken
    refused = client.post("/api/tts", json={"text": "Hello.", "voice": "poisoned", "format": "wav"})
    assert refused.status_code == 409, refused.text
    assert "is broken" in refused.json()["error"] and "prompt_speech_ids" in refused.json()["error"]
    spoken = client.post("/api/tts", json={"text": "Hello.", "voice": "bystander", "format": "wav"})
    assert spoken.status_code == 200
