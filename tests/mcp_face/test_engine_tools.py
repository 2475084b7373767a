"""clone_voice, synthesize and the audio resources through a real in-process MCP client, with the real
engine on the tiny random-weight checkpoint, in both protocol eras."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
import soundfile as sf
from mcp import Client

from glmtts_mcp.app.core import App, build_app
from glmtts_mcp.mcp_face.server import build_server

pytestmark = pytest.mark.anyio
MODES = ["legacy", "auto"]


def _text(result: types.CallToolResult) -> str:
    return " ".join(b.text for b in result.content if isinstance(b, types.TextContent))


async def _ok(client: Client, name: str, args: dict[str, Any], **kw: Any) -> types.CallToolResult:
    result = await client.call_tool(name, args, **kw)
    assert not result.is_error, _text(result)
    assert result.structured_content is not None
    return result


@pytest.mark.parametrize("mode", MODES)
async def test_clone_then_synthesize(engine_app: App, clip: Path, tmp_path: Path, mode: str) -> None:
    async with Client(build_server(engine_app), mode=mode) as client:
        first = await _ok(client, "clone_voice", {"audio": str(clip), "name": "tone", "transcript": "hi there"})
        made = first.structured_content
        assert made["existed"] is False and made["name"] == "tone"
        assert made["transcript"] == "hi there" and made["transcript_source"] == "user"
        assert 2.0 < made["duration_s"] < 2.5 and made["timings"]["total"] > 0
        again = (
            await _ok(client, "clone_voice", {"audio": clip.as_uri(), "transcript": "hi there"})
        ).structured_content
        assert again["existed"] is True and again["voice_id"] == made["voice_id"]
        inline = base64.b64encode(clip.read_bytes()).decode()
        via_b64 = (await _ok(client, "clone_voice", {"audio": inline, "transcript": "hi there"})).structured_content
        assert via_b64["voice_id"] == made["voice_id"] and via_b64["existed"] is True

        result = await _ok(client, "synthesize", {"text": "Hi.", "voice": "tone"})
        out = result.structured_content
        assert out["voice_id"] == made["voice_id"] and out["cache_hit"] is True
        assert out["format"] == "ogg" and out["sample_rate"] == 24000 and out["duration_s"] > 0
        assert out["returned"] == ["audio", "path"] and out["note"] is None
        audio = [b for b in result.content if isinstance(b, types.AudioContent)]
        assert len(audio) == 1 and audio[0].mime_type == "audio/ogg"
        data = base64.b64decode(audio[0].data)
        assert data[:4] == b"OggS" and Path(out["path"]).read_bytes() == data
        info = sf.info(io.BytesIO(data))
        assert abs(info.duration - out["duration_s"]) < 0.05
        assert out["uri"].startswith("audio://") and out["uri"].endswith(".ogg")
        read = await client.read_resource(out["uri"])
        assert read.contents[0].mime_type == "audio/ogg" and base64.b64decode(read.contents[0].blob) == data

        stats = (await _ok(client, "cache_stats", {})).structured_content
        assert stats["engine"]["model_loaded"] is True and stats["engine"]["device"] == "cpu"
        assert stats["engine"]["queue_depth"] == 0 and stats["clones_created"] == 1
        assert stats["clones_existing"] == 2 and stats["outputs_count"] == 1
        assert stats["memory_hits"] + stats["device_hits"] + stats["disk_hits"] >= 1


@pytest.mark.parametrize("mode", MODES)
async def test_one_shot_reference_and_return_modes(engine_app: App, clip: Path, mode: str) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async with Client(build_server(engine_app), mode=mode) as client:
        result = await _ok(
            client,
            "synthesize",
            {
                "text": "Hi. Yo.",
                "reference_audio": str(clip),
                "format": "wav",
                "return_mode": "link+resource",
                "seed": 7,
            },
            progress_callback=on_progress,
        )
        out = result.structured_content
        assert out["cache_hit"] is False and out["cache_tier"] == "cloned"
        listed = (await _ok(client, "list_voices", {})).structured_content["voices"]
        assert [v["voice_id"] for v in listed] == [out["voice_id"]]
        kinds = [b.type for b in result.content]
        assert kinds == ["text", "resource_link", "resource"]
        link = result.content[1]
        assert isinstance(link, types.ResourceLink) and str(link.uri) == out["uri"] and link.mime_type == "audio/wav"
        embedded = result.content[2]
        assert isinstance(embedded, types.EmbeddedResource)
        wav = base64.b64decode(embedded.resource.blob)
        assert wav[:4] == b"RIFF"
        # progress: stages and segments, readable, strictly increasing
        messages = [m for _, _, m in progress]
        assert any(m and "segment 1/" in m for m in messages), messages
        values = [v for v, _, _ in progress]
        assert values == sorted(values) and len(set(values)) == len(values)

        # the same seed gives the same audio; the voice now comes from the library
        same = await _ok(
            client,
            "synthesize",
            {"text": "Hi. Yo.", "voice": out["voice_id"], "format": "wav", "return_mode": "path", "seed": 7},
        )
        assert same.structured_content["cache_hit"] is True
        assert Path(same.structured_content["path"]).read_bytes() == wav
        assert [b.type for b in same.content] == ["text"]
        assert same.structured_content["path"] in _text(same)


async def test_audio_over_the_result_limit_falls_back(engine_settings: Any, clip: Path) -> None:
    app = build_app(engine_settings(max_result_bytes=64 * 1024))
    try:
        async with Client(build_server(app)) as client:
            await _ok(client, "clone_voice", {"audio": str(clip), "transcript": "hi", "name": "v"})
            result = await _ok(
                client, "synthesize", {"text": "Hi. Yo. Go.", "voice": "v", "format": "wav", "return_mode": "audio"}
            )
            out = result.structured_content
            assert out["bytes"] > 48 * 1024
            assert out["returned"] == ["link", "path"] and "too large" in out["note"]
            assert [b.type for b in result.content] == ["text", "resource_link"]
            assert "too large" in _text(result) and Path(out["path"]).is_file()
    finally:
        app.close()


async def test_corrupt_audio_and_unusable_clips(engine_app: App, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 10)
    short = tmp_path / "short.wav"
    sf.write(short, [0.1, -0.1] * 100, 16000)
    async with Client(build_server(engine_app)) as client:
        for path in (corrupt, short):
            result = await client.call_tool("clone_voice", {"audio": str(path), "transcript": "hi"})
            assert result.is_error and "reference" in _text(result).lower(), _text(result)
        result = await client.call_tool("synthesize", {"text": "Hi.", "reference_audio": str(corrupt)})
        assert result.is_error
        assert (await _ok(client, "list_voices", {})).structured_content["voices"] == []


async def test_concurrent_calls_and_idle_unload(engine_settings: Any, clip: Path) -> None:
    app = build_app(engine_settings(idle_unload_s=1.0))
    try:
        async with Client(build_server(app)) as client:
            voice = (await _ok(client, "clone_voice", {"audio": str(clip), "transcript": "hi"})).structured_content
            results: list[types.CallToolResult] = []

            async def one(i: int) -> None:
                args = {
                    "text": "Hi." if i % 5 else "",
                    "voice": voice["voice_id"],
                    "seed": i,
                    "format": "wav",
                    "return_mode": "path",
                }
                results.append(await client.call_tool("synthesize", args))

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, i)
                await anyio.sleep(0.5)
                await _ok(client, "list_voices", {})
                # the event loop keeps serving while the engine works: listing answered before the queue drained
                finished_before_listing_answered = len(results)
            assert finished_before_listing_answered < 20
            errors = [r for r in results if r.is_error]
            assert len(results) == 20 and len(errors) == 4
            assert all("text" in _text(r) and "at least 1 character" in _text(r) for r in errors), [
                _text(r) for r in errors
            ]
            paths = {r.structured_content["path"] for r in results if not r.is_error}
            assert len(paths) == 16 and all(Path(p).is_file() for p in paths)

            assert app.host.model_loaded
            # the idle timer fires after 1 s; freeing the weights takes a while more (a full gc pass)
            with anyio.fail_after(60):
                while True:
                    stats = (await _ok(client, "cache_stats", {})).structured_content["engine"]
                    if stats["model_loaded"] is False:
                        break
                    await anyio.sleep(0.2)
            assert stats["unloads"] == 1 and stats["state"] == "unloaded"  # counted by the time it shows
            again = await _ok(client, "synthesize", {"text": "Hi.", "voice": voice["voice_id"]})
            assert again.structured_content["duration_s"] > 0 and app.host.model_loaded
    finally:
        app.close()
