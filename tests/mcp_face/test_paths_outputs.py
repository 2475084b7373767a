"""Path confinement, the audio argument, the output store's retention, and return-mode rendering."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import numpy as np
import pytest
from mcp.server.mcpserver.exceptions import ToolError

from glmtts_mcp.app.outputs import OutputStore, StoredOutput
from glmtts_mcp.mcp_face.paths import audio_source, resolve_allowed_path, writable_target
from glmtts_mcp.mcp_face.results import inline_fits, render_audio


def test_confined_paths(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    clip = allowed / "clip.wav"
    clip.write_bytes(b"RIFF")
    assert resolve_allowed_path(str(clip), [allowed]) == clip.resolve()
    assert resolve_allowed_path(clip.as_uri(), [allowed]) == clip.resolve()
    with pytest.raises(ToolError, match="outside the allowed folders"):
        resolve_allowed_path("/etc/shadow", [allowed])
    with pytest.raises(ToolError, match="outside the allowed folders"):
        resolve_allowed_path(str(allowed / ".." / "x.wav"), [allowed])
    link = allowed / "sneaky.wav"
    link.symlink_to("/etc/passwd")
    with pytest.raises(ToolError, match="outside the allowed folders"):
        resolve_allowed_path(str(link), [allowed])
    with pytest.raises(ToolError, match="relative path"):
        resolve_allowed_path("clip.wav", [allowed])
    with pytest.raises(ToolError, match="does not exist"):
        resolve_allowed_path(str(allowed / "missing.wav"), [allowed])
    with pytest.raises(ToolError, match="not a regular file"):
        resolve_allowed_path(str(allowed), [allowed])
    with pytest.raises(ToolError, match="remote host"):
        resolve_allowed_path("file://evil.example/clip.wav", [allowed])


def test_writable_target(tmp_path: Path) -> None:
    assert writable_target(str(tmp_path / "a.zip"), [tmp_path]) == tmp_path.resolve() / "a.zip"
    with pytest.raises(ToolError, match="outside"):
        writable_target("/etc/cron.d/x", [tmp_path])
    with pytest.raises(ToolError, match=r"^path 'x.zip' is a relative path"):
        writable_target("x.zip", [tmp_path])


def test_audio_argument_base64_bounded(tmp_path: Path) -> None:
    payload = os.urandom(3000)
    b64 = base64.b64encode(payload).decode()
    assert audio_source(b64, [tmp_path], 10_000) == payload
    assert audio_source("data:audio/wav;base64," + b64, [tmp_path], 10_000) == payload
    with pytest.raises(ToolError, match="larger than 1000 bytes"):
        audio_source(b64, [tmp_path], 1000)
    with pytest.raises(ToolError, match="does not decode"):
        audio_source("data:audio/wav;base64,@@@", [tmp_path], 10_000)


def _store(store: OutputStore, samples: int, fmt: str = "wav") -> StoredOutput:
    """An output of `samples` silent samples, written as narrations are."""
    writer = store.writer(fmt, 24000)
    writer.write(np.zeros(samples, dtype=np.float32))
    return store.finish(writer)


def test_output_store_retention(tmp_path: Path) -> None:
    store = OutputStore(tmp_path / "out", keep_count=3, keep_bytes=10_000, keep_age_s=0)
    saved = [_store(store, 100) for _ in range(5)]
    names = [p.name for p in store.files()]
    assert len(names) == 3 and names == [s.output_id for s in saved[2:]]
    assert store.get(saved[0].output_id) is None
    got = store.get(saved[-1].output_id)
    assert got is not None and got.mime_type == "audio/wav" and got.uri.startswith("audio://")
    assert store.get("../../etc/passwd") is None
    # bytes bound: a big file pushes older ones out, but the newest always stays
    big = _store(store, 20_000)  # 40 kB, over the bytes bound
    assert [p.name for p in store.files()] == [big.output_id]
    # age bound
    aged = OutputStore(tmp_path / "aged", keep_count=100, keep_bytes=10**9, keep_age_s=60)
    old = _store(aged, 100, "mp3")
    os.utime(old.path, (time.time() - 3600, time.time() - 3600))
    new = _store(aged, 100, "mp3")
    assert [p.name for p in aged.files()] == [new.output_id]


def test_output_store_skips_vanished_files(tmp_path: Path) -> None:
    """A name that lists but no longer stats (removed by another process, or a dangling link) is skipped."""
    store = OutputStore(tmp_path / "out", keep_count=1, keep_bytes=10_000, keep_age_s=0)
    kept = _store(store, 10)
    (store.root / "20000101T000000-deadbeef.wav").symlink_to(tmp_path / "gone.wav")
    assert store.files() == [kept.path]
    assert store.stats() == (1, kept.path.stat().st_size)
    newest = _store(store, 20)
    assert store.files() == [newest.path] and store.stats() == (1, newest.path.stat().st_size)


def test_render_falls_back_to_link_and_path(tmp_path: Path) -> None:
    store = OutputStore(tmp_path, 10, 10**9, 0)
    small = _store(store, 2400, "ogg")
    r = render_audio(small, "audio+path", 1024 * 1024, "done")
    assert r.parts == ["audio", "path"] and r.note is None
    assert [b.type for b in r.blocks] == ["text", "audio"]
    assert str(small.path) in r.blocks[0].text
    big = _store(store, 450_000)  # 900 kB of 16-bit samples
    assert not inline_fits(big.path.stat().st_size, 1, 1024 * 1024)
    r = render_audio(big, "audio+resource", 1024 * 1024, "done")
    assert r.parts == ["link", "path"]
    assert r.note and "too large" in r.note
    assert [b.type for b in r.blocks] == ["text", "resource_link"]
    assert "too large" in r.blocks[0].text and big.uri in r.blocks[0].text
