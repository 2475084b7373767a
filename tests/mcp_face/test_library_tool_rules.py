"""The library tools' rules at their edges (protected export folders, URLs never fetched, idempotent deletes,
known languages), through a real in-process MCP client."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_calls import error_text, structured

from glmtts_mcp.app.core import App
from glmtts_mcp.mcp_face.server import build_server

pytestmark = pytest.mark.anyio


async def test_export_stays_out_of_protected_folders(library_app: App, add_voice: Any, tmp_path: Path) -> None:
    """13.1: never inside the library, the output store or the checkpoint; only .zip; only replaces our archives."""
    voice = add_voice(library_app, 1, name="alice")
    settings = library_app.settings
    meta = settings.voices_dir / "voices" / voice.id / "meta.json"
    meta_before = meta.read_bytes()
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    settings.checkpoint.mkdir()
    recording = tmp_path / "clip.wav"
    recording.write_bytes(b"RIFF....WAVE")
    async with Client(build_server(library_app), mode="legacy") as client:
        refusals = {
            str(meta): "inside the voice library",
            str(meta.parent): "inside the voice library",
            str(settings.output_dir / "alice.zip"): "inside the output folder",
            str(settings.checkpoint / "alice.zip"): "inside the checkpoint folder",
            str(recording): "does not end in .zip",
        }
        for path, needle in refusals.items():
            text = error_text(await client.call_tool("export_voice", {"voice": "alice", "path": path}))
            assert "export_voice: path " in text and needle in text and "Pass a path" in text, text
        foreign = tmp_path / "holiday.zip"
        with zipfile.ZipFile(foreign, "w") as archive:
            archive.writestr("photo.jpg", b"\xff\xd8")
        text = error_text(await client.call_tool("export_voice", {"voice": "alice", "path": str(foreign)}))
        assert "is not a voice archive" in text and "new file name" in text
        assert zipfile.ZipFile(foreign).namelist() == ["photo.jpg"]
        assert meta.read_bytes() == meta_before and recording.read_bytes() == b"RIFF....WAVE"
        assert list(settings.output_dir.iterdir()) == []

        first = await structured(client, "export_voice", {"voice": "alice", "path": str(tmp_path)})
        assert first["path"] == str(tmp_path / "alice.glmtts-voice.zip")
        await structured(client, "rename_voice", {"voice": "alice", "name": "alicia"})
        again = await structured(client, "export_voice", {"voice": "alicia", "path": first["path"]})  # our older export
        assert json.loads(zipfile.ZipFile(again["path"]).read("meta.json"))["name"] == "alicia"


async def test_urls_are_not_fetched(library_app: App, tmp_path: Path) -> None:
    """13.18: an http(s) URL is not "a relative path": say URLs are not fetched and what to pass instead."""
    async with Client(build_server(library_app), mode="legacy") as client:
        for tool, args, argument in (
            ("clone_voice", {"audio": "https://example.com/me.wav"}, "audio"),
            ("synthesize", {"text": "hi", "reference_audio": "http://example.com/me.wav"}, "reference_audio"),
            ("import_voice", {"path": "HTTPS://example.com/alice.zip"}, "path"),
            ("export_voice", {"voice": "x", "path": "ftp://example.com/alice.zip"}, "path"),
        ):
            text = error_text(await client.call_tool(tool, args))
            assert f"{tool}: {argument} '" in text and "is a URL, and URLs are not fetched" in text, text
            assert "absolute path" in text and str(tmp_path) in text and "relative" not in text, text


async def test_delete_voice_is_idempotent(library_app: App, add_voice: Any) -> None:
    """13.4: a second delete (by id or by name) succeeds with deleted=false; a malformed argument stays an error."""
    voice = add_voice(library_app, 2, name="bob")
    async with Client(build_server(library_app), mode="legacy") as client:
        first = await structured(client, "delete_voice", {"voice": "bob"})
        assert first["deleted"] is True and first["voice_id"] == voice.id
        by_id = await structured(client, "delete_voice", {"voice": voice.id.upper()})
        assert by_id["deleted"] is False and by_id["voice_id"] == voice.id and by_id["name"] is None
        assert "already deleted, or never stored" in by_id["message"] and "list_voices" in by_id["message"]
        by_name = await structured(client, "delete_voice", {"voice": "bob"})
        assert by_name == {"voice_id": None, "name": None, "deleted": False, "message": by_name["message"]}
        assert "'bob'" in by_name["message"]
        assert "voice" in error_text(await client.call_tool("delete_voice", {"voice": "../../etc"}))


async def test_language_must_be_one_the_frontend_knows(library_app: App, tmp_path: Path) -> None:
    """13.20: `language` is checked (before the model is even needed) against the text frontend's languages."""
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF")
    async with Client(build_server(library_app), mode="legacy") as client:
        for bad in ("../../etc", "fr", "english"):
            text = error_text(await client.call_tool("clone_voice", {"audio": str(clip), "language": bad}))
            assert f"clone_voice: `language` {bad!r} is not one the text frontend knows" in text, text
            assert "zh, en" in text and "could not be loaded" not in text
