"""clone_voice's rules when the clip is already a voice, or is deleted while being cloned,
with the real engine on the tiny random-weight checkpoint."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_calls import error_text, structured

from glmtts_mcp.app.cloning import clone_or_get
from glmtts_mcp.app.core import App
from glmtts_mcp.mcp_face.server import build_server
from glmtts_mcp.voices import VoiceLibraryError, VoiceNotFound

pytestmark = pytest.mark.anyio


async def test_known_clip_under_a_new_name_keeps_its_name(engine_app: App, clip: Path) -> None:
    """13.3: the existing voice comes back unchanged (existed=true) with a warning that says how to rename it."""
    async with Client(build_server(engine_app), mode="legacy") as client:
        made = await structured(client, "clone_voice", {"audio": str(clip), "name": "first", "transcript": "hi there"})
        assert made["warnings"] == [] or all("rename_voice" not in w for w in made["warnings"])
        again = await structured(
            client, "clone_voice", {"audio": str(clip), "name": "second", "transcript": "hi there"}
        )
        assert again["existed"] is True and again["voice_id"] == made["voice_id"] and again["name"] == "first"
        hint = f'call rename_voice with voice "{made["voice_id"]}" and name "second"'
        assert any(hint in w for w in again["warnings"]), again["warnings"]
        same = await structured(client, "clone_voice", {"audio": str(clip), "name": "FIRST", "transcript": "hi there"})
        assert not any("rename_voice" in w for w in same["warnings"])  # names compare case-insensitively
    assert engine_app.library.resolve("first").id == made["voice_id"]
    with pytest.raises(VoiceNotFound):
        engine_app.library.resolve("second")


def _delete_during_next_clone(app: App, monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """Start a delete from another thread right after the next get_or_create, the worst moment of the race,
    and give it time to land; returns that thread (the test joins it)."""
    library, started = app.library, []
    real = library.get_or_create

    def racing(*args: Any, **kwargs: Any) -> Any:
        record, existed = real(*args, **kwargs)
        if not started:
            deleter = threading.Thread(target=library.delete, args=(record.id,))
            deleter.start()
            started.append(deleter)
            deleter.join(0.5)  # a delete that is not held off lands now
        return record, existed

    monkeypatch.setattr(library, "get_or_create", racing)
    return started


async def test_clone_racing_a_delete(engine_app: App, clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """13.7: a delete racing a clone lands after it (the clone succeeds and its features load), never in between."""
    async with Client(build_server(engine_app), mode="legacy") as client:
        made = await structured(client, "clone_voice", {"audio": str(clip), "name": "old", "transcript": "hi there"})
        deleters = _delete_during_next_clone(engine_app, monkeypatch)
        again = await structured(client, "clone_voice", {"audio": str(clip), "name": "new", "transcript": "hi there"})
        assert again["voice_id"] == made["voice_id"] and again["existed"] is True and again["name"] == "old"
        deleters[0].join(30)
        assert not deleters[0].is_alive()
        with pytest.raises(VoiceNotFound):  # the delete went through, after the clone
            engine_app.library.resolve(made["voice_id"])

        deleters = _delete_during_next_clone(engine_app, monkeypatch)
        spoken = await structured(client, "synthesize", {"text": "Hi.", "reference_audio": str(clip), "format": "wav"})
        assert spoken["cache_tier"] == "cloned" and spoken["duration_s"] > 0
        deleters[0].join(30)
        assert not deleters[0].is_alive()
        with pytest.raises(VoiceNotFound):
            engine_app.library.resolve(spoken["voice_id"])
        afresh = await structured(client, "clone_voice", {"audio": str(clip), "name": "new", "transcript": "hi there"})
        assert afresh["existed"] is False and afresh["name"] == "new"  # a deleted clip is cloned afresh


def test_threads_cloning_while_another_deletes(engine_app: App, clip: Path) -> None:
    """13.7 under real concurrency: named clones of one clip never fail while another thread keeps deleting it."""
    engine = engine_app.host.ensure_loaded()
    library = engine_app.library
    errors: list[BaseException] = []
    stop = threading.Event()

    def cloner(index: int) -> None:
        try:
            for round_ in range(3):
                name = f"voice-{(index + round_) % 3}"
                outcome = clone_or_get(engine, library, clip, name, "hi there", None, None)
                assert outcome.existed or outcome.record.name == name
        except BaseException as exc:  # every failure is the test's finding
            errors.append(exc)

    def deleter() -> None:
        while not stop.is_set():
            for listing in library.list_voices(limit=500).voices:
                try:
                    library.delete(listing.id)
                except VoiceNotFound:
                    pass
                except VoiceLibraryError as exc:
                    errors.append(exc)
            stop.wait(0.001)

    threads = [threading.Thread(target=cloner, args=(i,)) for i in range(4)]
    remover = threading.Thread(target=deleter)
    remover.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    stop.set()
    remover.join(30)
    assert errors == [], errors


async def test_transcript_must_fit_the_clip(engine_app: App, clip: Path) -> None:
    """13.19: a transcript far longer than the clip could say is refused, naming `transcript` and the fix;
    13.20: a known language is stored case-normalised."""
    async with Client(build_server(engine_app), mode="legacy") as client:
        huge = await client.call_tool("clone_voice", {"audio": str(clip), "transcript": "word " * 20_000})
        assert huge.is_error
        text = error_text(huge)
        assert "`transcript` has 99999 characters, but the clip has only 2.2 s of speech (at most 126" in text, text
        assert "pass only the words spoken in the clip as `transcript`, or omit it" in text
        fits = await structured(
            client, "clone_voice", {"audio": str(clip), "transcript": "x" * 126, "language": " EN "}
        )
        assert fits["existed"] is False and fits["language"] == "en"
    assert len(engine_app.library.list_voices().voices) == 1  # the refused clone stored nothing
