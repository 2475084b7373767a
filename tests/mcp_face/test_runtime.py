"""Progress relay (monotonic values, heartbeat) and model loading policies (preload, failure, retry)."""

from __future__ import annotations

import itertools
import shutil
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from mcp import Client

from glmtts_mcp.app.core import build_app, default_loader
from glmtts_mcp.app.engine_host import EngineHost, EngineUnavailable
from glmtts_mcp.engine.types import EngineError
from glmtts_mcp.mcp_face.progress import ProgressRelay
from glmtts_mcp.mcp_face.server import build_server

pytestmark = pytest.mark.anyio


class _RecordingContext:
    """Stands in for the MCP request context: records what would go to the client."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, float | None, str | None]] = []

    async def report_progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        self.sent.append((progress, total, message))


async def test_progress_is_monotonic_across_stages_and_threads() -> None:
    ctx = _RecordingContext()
    relay = ProgressRelay(ctx, anyio.lowlevel.current_token())  # type: ignore[arg-type]

    def worker() -> None:  # a stage that counts 0..3, then one that restarts at 1 of 12
        for i in range(4):
            relay(i, 3, f"stage a {i}/3")
        for i in range(1, 4):
            relay(i, 12, f"segment {i}/12")

    await relay.report(0, None, "loading")
    await anyio.to_thread.run_sync(worker)
    values = [v for v, _, _ in ctx.sent]
    assert len(values) == 8 and all(b > a for a, b in itertools.pairwise(values))
    assert ctx.sent[-1][2] == "segment 3/12"
    assert all(total is None or total >= value for value, total, _ in ctx.sent)


async def test_heartbeat_while_a_job_runs() -> None:
    ctx = _RecordingContext()
    relay = ProgressRelay(ctx, anyio.lowlevel.current_token())  # type: ignore[arg-type]
    async with relay.running(heartbeat_s=0.2):
        await relay.report(1, 4, "segment 1/4")
        await anyio.sleep(1.0)
    beats = [m for _, _, m in ctx.sent if m and "still working" in m]
    assert len(beats) >= 2 and beats[0].startswith("segment 1/4 (still working")
    values = [v for v, _, _ in ctx.sent]
    assert all(b > a for a, b in itertools.pairwise(values))


async def test_job_errors_come_out_unwrapped() -> None:
    relay = ProgressRelay(_RecordingContext(), anyio.lowlevel.current_token())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="boom"):
        async with relay.running():
            raise ValueError("boom")


def test_failed_load_is_remembered_and_retried(tmp_path: Path) -> None:
    attempts: list[int] = []

    def loader() -> Any:
        attempts.append(1)
        raise RuntimeError("CUDA out of memory")

    host = EngineHost(loader, tmp_path, idle_unload_s=0)
    for _ in range(2):
        with pytest.raises(EngineUnavailable, match="CUDA out of memory") as info:
            host.ensure_loaded()
        assert "--device cpu" in str(info.value)
    assert len(attempts) == 2 and "CUDA out of memory" in (host.describe()["model_error"] or "")


def test_concurrent_first_calls_load_once(engine_settings: Any) -> None:
    app = build_app(engine_settings())
    try:
        engines: list[Any] = []
        threads = [threading.Thread(target=lambda: engines.append(app.host.ensure_loaded())) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({id(e) for e in engines}) == 1 and app.host.loads == 1
    finally:
        app.close()


async def test_preload_at_start_loads_in_the_background(engine_settings: Any, clip: Path) -> None:
    """`--preload start` never holds up the server: building the app loads nothing, the load runs in a
    thread, cache_stats says 'loading' and library tools answer meanwhile, and an engine tool waits for
    that same load instead of starting its own."""
    settings = engine_settings(preload="start")
    gate = threading.Event()
    real_loader = default_loader(settings)

    def held_loader() -> Any:
        gate.wait(timeout=60)
        return real_loader()

    app = build_app(settings, loader=held_loader)
    try:
        assert app.host.state == "unloaded"  # the transport starts before any weight is read
        loading = app.start_preload()
        assert loading is not None and loading.is_alive()
        async with Client(build_server(app)) as client:
            engine = (await client.call_tool("cache_stats", {})).structured_content["engine"]
            assert engine["state"] == "loading" and engine["model_loaded"] is False
            assert not (await client.call_tool("list_voices", {})).is_error
            cloned: list[Any] = []

            async def clone() -> None:
                cloned.append(await client.call_tool("clone_voice", {"audio": str(clip), "transcript": "hi"}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(clone)
                await anyio.sleep(0.2)
                assert not cloned  # waiting for the preload
                gate.set()
            assert not cloned[0].is_error
            engine = (await client.call_tool("cache_stats", {})).structured_content["engine"]
            assert engine["state"] == "loaded" and engine["loads"] == 1 and engine["load_s"] > 0
    finally:
        gate.set()
        app.close()


async def test_failed_preload_keeps_the_server_up(make_settings: Any, clip: Path) -> None:
    broken = build_app(make_settings(preload="start"))  # no checkpoint: the server still comes up
    try:
        loading = broken.start_preload()
        assert loading is not None
        loading.join(timeout=60)
        assert broken.host.state == "failed"
        assert not broken.host.model_loaded and "glmtts-mcp download" in (broken.host.load_error or "")
        async with Client(build_server(broken)) as client:
            assert not (await client.call_tool("list_voices", {})).is_error
            failed = await client.call_tool("clone_voice", {"audio": str(clip), "transcript": "hi"})
            assert failed.is_error and "glmtts-mcp download" in failed.content[0].text
    finally:
        broken.close()


def test_the_host_owns_every_reload(engine_settings: Any, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """After an unload the next call loads a fresh engine through the host, so the reload is counted and
    timed, and a reload that fails is recorded and explained like a first load."""
    checkpoint = tmp_path / "GLM-TTS"
    shutil.copytree(tiny_checkpoint, checkpoint)
    app = build_app(engine_settings(checkpoint=checkpoint))
    host = app.host
    try:
        first = host.ensure_loaded()
        host.unload()
        assert host.state == "unloaded" and host.unloads == 1 and not host.model_loaded
        with pytest.raises(EngineError, match="unloaded"):
            first.models  # noqa: B018 - a freed engine never reloads behind the host's back
        second = host.ensure_loaded()
        assert second is not first and host.loads == 2 and host.load_s is not None and host.state == "loaded"

        host.unload()
        (checkpoint / "flow" / "flow.pt").unlink()
        with pytest.raises(EngineUnavailable, match="flow"):
            host.ensure_loaded()
        assert host.loads == 2 and host.state == "failed" and "flow" in (host.describe()["model_error"] or "")
    finally:
        app.close()


def test_the_checkpoint_is_validated_and_fingerprinted_once(
    engine_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building the app and loading the model check the checkpoint's files once and hash its feature
    files once, whatever module asks."""
    import sys

    from glmtts_mcp.engine.checkpoint import layout

    calls: dict[str, int] = {"validate_checkpoint": 0, "fingerprint": 0}
    for name in calls:
        original = getattr(layout, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _original(*args, **kwargs)

        for module in list(sys.modules.values()):
            if getattr(module, "__name__", "").startswith("glmtts_mcp") and getattr(module, name, None) is original:
                monkeypatch.setattr(module, name, counted)
    app = build_app(engine_settings())
    try:
        app.host.ensure_loaded()
        assert calls == {"validate_checkpoint": 1, "fingerprint": 1}
    finally:
        app.close()


def test_loading_the_model_also_reads_the_text_grammars(engine_settings: Any) -> None:
    """The first request pays for no loading: the model load reads the normalisation grammars too."""
    from glmtts_mcp.engine.frontend import text_normalize

    text_normalize._Grammars._loaded.clear()
    app = build_app(engine_settings())
    try:
        app.host.ensure_loaded()
        assert set(text_normalize._Grammars._loaded) == {"zh", "en"}
    finally:
        app.close()
