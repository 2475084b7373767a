"""Library tools and resources through a real in-process MCP client, in both protocol eras, with no model.

The checkpoint is missing on purpose: list/delete/rename/export/import/cache_stats keep working,
and the engine tools answer with a clear error that says how to fix it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp_calls import error_text, structured

from glmtts_mcp.app.core import App
from glmtts_mcp.mcp_face.server import build_server

pytestmark = pytest.mark.anyio
MODES = ["legacy", "auto"]

EXPECTED_TOOLS = {
    "clone_voice": {"read_only_hint": False, "destructive_hint": False, "idempotent_hint": True},
    "synthesize": {"read_only_hint": False, "destructive_hint": False, "idempotent_hint": False},
    "list_voices": {"read_only_hint": True},
    "delete_voice": {"read_only_hint": False, "destructive_hint": True, "idempotent_hint": True},
    "cache_stats": {"read_only_hint": True},
    "rename_voice": {"read_only_hint": False, "destructive_hint": False},
    "export_voice": {"read_only_hint": False},
    "import_voice": {"read_only_hint": False, "destructive_hint": False},
    "add_pronunciation": {"read_only_hint": False, "destructive_hint": False},
    "remove_pronunciation": {"read_only_hint": False, "destructive_hint": True},
    "list_pronunciations": {"read_only_hint": True},
    "narrate_script": {"read_only_hint": False, "destructive_hint": False, "idempotent_hint": False},
}


@pytest.mark.parametrize("mode", MODES)
async def test_tool_list_schemas_and_annotations(library_app: App, mode: str) -> None:
    async with Client(build_server(library_app), mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == set(EXPECTED_TOOLS)
        for name, hints in EXPECTED_TOOLS.items():
            tool = tools[name]
            assert tool.output_schema is not None, name
            assert tool.annotations is not None and tool.annotations.open_world_hint is False
            for key, value in hints.items():
                assert getattr(tool.annotations, key) == value, (name, key)
        assert list(tools["clone_voice"].input_schema["properties"]) == ["audio", "name", "transcript", "language"]
        assert set(tools["synthesize"].input_schema["properties"]) == {
            "text",
            "voice",
            "reference_audio",
            "format",
            "return_mode",
            "seed",
            "temperature",
            "top_p",
            "pronunciation",
            "pronunciations",
        }
        assert list(tools["list_voices"].input_schema["properties"]) == ["query", "limit", "cursor"]
        assert list(tools["delete_voice"].input_schema["properties"]) == ["voice"]
        assert tools["cache_stats"].input_schema.get("properties", {}) == {}
        out = tools["synthesize"].output_schema["properties"]
        for key in ("voice_id", "cache_hit", "duration_s", "sample_rate", "format", "uri", "path", "timings"):
            assert key in out
        out = tools["clone_voice"].output_schema["properties"]
        for key in ("voice_id", "name", "existed", "transcript", "transcript_source", "duration_s", "timings"):
            assert key in out
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert {"voice://{voice_id}", "voice://{voice_id}/reference"} <= templates
        assert {f"audio://{{output_id}}.{f}" for f in ("wav", "flac", "ogg", "mp3")} <= templates


@pytest.mark.parametrize("mode", MODES)
async def test_library_tools_without_model(library_app: App, add_voice: Any, tmp_path: Path, mode: str) -> None:
    alice = add_voice(library_app, 1, name="alice", transcript="the quick brown fox jumps over the lazy dog " * 3)
    bob = add_voice(library_app, 2, name="bob")
    async with Client(build_server(library_app), mode=mode) as client:
        listed = await structured(client, "list_voices")
        assert {v["voice_id"] for v in listed["voices"]} == {alice.id, bob.id}
        row = next(v for v in listed["voices"] if v["name"] == "alice")
        assert row["transcript_excerpt"].endswith("…") and len(row["transcript_excerpt"]) <= 80
        assert row["uri"] == f"voice://{alice.id}" and row["broken"] is None and row["stale"] is False
        assert [v["name"] for v in (await structured(client, "list_voices", {"query": "bob"}))["voices"]] == ["bob"]
        page = await structured(client, "list_voices", {"limit": 1})
        assert len(page["voices"]) == 1 and page["next_cursor"]
        rest = await structured(client, "list_voices", {"limit": 1, "cursor": page["next_cursor"]})
        assert {page["voices"][0]["voice_id"], rest["voices"][0]["voice_id"]} == {alice.id, bob.id}

        meta = await client.read_resource(f"voice://{alice.id}")
        record = json.loads(meta.contents[0].text)
        assert record["id"] == alice.id and record["name"] == "alice"
        assert meta.contents[0].mime_type == "application/json"
        ref = await client.read_resource(f"voice://{alice.id}/reference")
        assert ref.contents[0].mime_type == "audio/flac"
        assert base64.b64decode(ref.contents[0].blob)[:4] == b"fLaC"

        renamed = await structured(client, "rename_voice", {"voice": "alice", "name": "Alice Narrator"})
        assert renamed == {"voice_id": alice.id, "old_name": "alice", "name": "Alice Narrator"}
        taken = await client.call_tool("rename_voice", {"voice": "bob", "name": "alice narrator"})
        assert "already belongs" in error_text(taken)

        exported = await structured(client, "export_voice", {"voice": alice.id, "path": str(tmp_path / "alice.zip")})
        assert exported["bytes"] > 0 and Path(exported["path"]).is_file()
        outside = await client.call_tool("export_voice", {"voice": alice.id, "path": "/etc/alice.zip"})
        assert "outside the allowed folders" in error_text(outside)

        deleted = await structured(client, "delete_voice", {"voice": "Alice Narrator"})
        assert deleted == {
            "voice_id": alice.id,
            "name": "Alice Narrator",
            "deleted": True,
            "message": f"deleted voice Alice Narrator ({alice.id})",
        }

        # an import re-extracts the archive's features from its reference to check them: that takes the model
        refused = error_text(await client.call_tool("import_voice", {"path": exported["path"]}))
        assert "could not be loaded" in refused and "glmtts-mcp download" in refused, refused

        stats = await structured(client, "cache_stats")
        assert stats["voice_count"] == 1
        assert stats["engine"]["model_loaded"] is False
        for key in ("memory_hits", "disk_hits", "misses", "clones_created", "deletes", "outputs_count"):
            assert key in stats
        assert stats["deletes"] == 1 and stats["imports"] == 0


@pytest.mark.parametrize("mode", MODES)
async def test_engine_tools_explain_missing_model(library_app: App, add_voice: Any, tmp_path: Path, mode: str) -> None:
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF0000WAVE")
    bob = add_voice(library_app, 3, name="bob")
    async with Client(build_server(library_app), mode=mode) as client:
        for name, args in (
            ("clone_voice", {"audio": str(clip)}),
            ("synthesize", {"text": "hi", "voice": bob.id}),
            ("synthesize", {"text": "hi", "reference_audio": str(clip)}),
        ):
            text = error_text(await client.call_tool(name, args))
            assert "could not be loaded" in text and "glmtts-mcp download" in text, text
        stats = await structured(client, "cache_stats")
        assert "glmtts-mcp download" in stats["engine"]["model_error"]
        assert (await structured(client, "list_voices"))["voices"][0]["voice_id"] == bob.id


@pytest.mark.parametrize("mode", MODES)
async def test_hostile_input_is_a_tool_error(library_app: App, add_voice: Any, mode: str) -> None:
    add_voice(library_app, 4, name="carol")
    async with Client(build_server(library_app), mode=mode) as client:
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("clone_voice", {"audio": "/etc/shadow"}, "outside the allowed folders"),
            ("clone_voice", {"audio": "file:///etc/passwd"}, "outside the allowed folders"),
            ("clone_voice", {"audio": "../../etc/passwd"}, "relative path"),
            ("clone_voice", {"audio": 42}, "audio"),
            ("synthesize", {"text": "hi", "voice": "nobody"}, "nobody"),
            ("synthesize", {"text": "hi"}, "exactly one of"),
            ("synthesize", {"text": "   ", "voice": "carol"}, "`text` is empty"),
            ("synthesize", {"text": "x" * 10_000_000, "voice": "carol"}, "the limit is"),
            ("synthesize", {"text": "hi", "voice": "carol", "format": "aiff"}, "unknown format"),
            ("synthesize", {"text": "hi", "voice": "carol", "return_mode": "telepathy"}, "invalid return mode"),
            ("synthesize", {"text": "hi", "voice": "carol", "seed": -1}, "seed"),
            ("delete_voice", {"voice": "../../etc"}, ""),
            ("delete_voice", {}, "voice"),
            ("list_voices", {"limit": "many"}, "limit"),
            ("list_voices", {"cursor": "garbage!!"}, "cursor"),
            ("import_voice", {"path": "/etc/hostname"}, "outside the allowed folders"),
        ]
        for name, args, needle in cases:
            result = await client.call_tool(name, args)
            assert needle.lower() in error_text(result).lower(), (name, args, error_text(result))
        unknown = await client.call_tool("no_such_tool", {})
        assert "no_such_tool" in error_text(unknown)
        # still serving
        assert (await structured(client, "list_voices"))["voices"][0]["name"] == "carol"


async def test_list_changed_notification_after_delete(library_app: App, add_voice: Any) -> None:
    voice = add_voice(library_app, 5, name="dave")
    seen: list[Any] = []

    async def on_message(message: Any) -> None:
        seen.append(message)

    async with Client(build_server(library_app), mode="legacy", message_handler=on_message) as client:
        caps = client.session.get_server_capabilities() if hasattr(client.session, "get_server_capabilities") else None
        if caps is not None:
            assert caps.resources is not None and caps.resources.list_changed is True
        await structured(client, "delete_voice", {"voice": voice.id})
    assert any(
        (isinstance(m, types.ServerNotification) and isinstance(m, types.ResourceListChangedNotification))
        or getattr(m, "method", None) == "notifications/resources/list_changed"
        for m in seen
    ), seen
