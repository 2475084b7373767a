"""Many synthesize calls at once through MCP: queued calls wait on the event loop, not in anyio's worker
threads, concurrent calls are batched in the LLM and get exactly what they get alone,
and cache_stats shows the scheduler."""

from __future__ import annotations

import io
import socket
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as types
import numpy as np
import pytest
import soundfile as sf
from mcp import Client

from glmtts_mcp.app.core import build_app
from glmtts_mcp.asgi.service import HttpService
from glmtts_mcp.engine.runtime.scheduler import SpeechRequest
from glmtts_mcp.mcp_face.server import build_server

pytestmark = pytest.mark.anyio

WORKER_THREADS = 4  # anyio's default limiter, lowered from 40 so a few calls can exhaust it
QUEUED_CALLS = 10


async def test_list_voices_answers_while_more_calls_queue_than_worker_threads(engine_settings: Any, clip: Path) -> None:
    app = build_app(engine_settings())
    anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
    try:
        async with Client(build_server(app)) as client:
            cloned = await client.call_tool("clone_voice", {"audio": str(clip), "transcript": "hi"})
            voice = cloned.structured_content["voice_id"]
            engine = await anyio.to_thread.run_sync(app.host.ensure_loaded)
            done: list[types.CallToolResult] = []

            async def narrate(i: int) -> None:
                args = {"text": "Hi.", "voice": voice, "seed": i, "format": "wav", "return_mode": "path"}
                done.append(await client.call_tool("synthesize", args))

            release = await anyio.to_thread.run_sync(engine.jobs.acquire)  # the engine is busy: every call queues
            async with anyio.create_task_group() as tg:
                for i in range(QUEUED_CALLS):
                    tg.start_soon(narrate, i)
                try:
                    while app.host.describe()["active_jobs"] < QUEUED_CALLS:  # noqa: ASYNC110 - nothing signals the host's count
                        await anyio.sleep(0.05)
                    # a deadlock guard, not a speed assertion: queued calls holding worker threads would starve it
                    with anyio.fail_after(30):
                        listing = await client.call_tool("list_voices", {})
                    assert not listing.is_error and done == []  # answered while all ten still wait
                finally:
                    release()
            assert len(done) == QUEUED_CALLS and not any(r.is_error for r in done)
            scheduler = (await client.call_tool("cache_stats", {})).structured_content["engine"]["scheduler"]
            assert scheduler["max_batch"] == 4 and (scheduler["running"], scheduler["waiting"]) == (0, 0)
            assert scheduler["steps"] > 0 and scheduler["tokens"] > scheduler["steps"] > 0
            assert scheduler["tokens_per_s"] > 0 and sum(scheduler["batch_sizes"].values()) == scheduler["steps"]
    finally:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 40
        app.close()


NARRATIONS = [  # mixed lengths: one and several segments
    ("Hello there, this is the first caller.", 11),
    ("One. Two. Three. Four. " * 12, 22),  # three segments
    ("Short one.", 33),
    ("Numbers too: 1, 2, 3 and then 42 more words to say in this line.", 44),
]
PCM16_STEP = 1 / 32768


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
async def test_four_concurrent_calls_over_http_equal_each_call_alone(
    engine_settings: Any, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same speech tokens and audio batched as alone, through MCP over HTTP."""
    app = build_app(engine_settings(max_batch=4, preload="start"))
    engine = app.host.ensure_loaded()
    tokens: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    submit = engine.scheduler.submit

    def recording(request: SpeechRequest) -> Any:
        future = submit(request)
        key = (request.generator.initial_seed(), tuple(request.text_ids))
        future.add_done_callback(lambda f: tokens.__setitem__(key, f.result()))
        return future

    monkeypatch.setattr(engine.scheduler, "submit", recording)
    port = _free_port()
    try:
        async with anyio.create_task_group() as server:
            server.start_soon(HttpService(app, "http", "127.0.0.1", port).serve)
            for _ in range(100):
                try:
                    await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await anyio.sleep(0.1)
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                cloned = await client.call_tool("clone_voice", {"audio": str(clip), "transcript": "hi there"})
                voice = cloned.structured_content["voice_id"]

                async def narrate(text: str, seed: int) -> np.ndarray:
                    args = {"text": text, "voice": voice, "seed": seed, "format": "wav", "return_mode": "path"}
                    result = await client.call_tool("synthesize", args)
                    assert not result.is_error, result.content
                    return sf.read(io.BytesIO(Path(result.structured_content["path"]).read_bytes()))[0]

                alone = [await narrate(text, seed) for text, seed in NARRATIONS]
                tokens_alone, steps_alone = dict(tokens), engine.scheduler.stats().batch_sizes
                tokens.clear()
                together: list[np.ndarray | None] = [None] * len(NARRATIONS)

                async def one(i: int) -> None:
                    together[i] = await narrate(*NARRATIONS[i])

                async with anyio.create_task_group() as callers:
                    for i in range(len(NARRATIONS)):
                        callers.start_soon(one, i)
                steps_together = engine.scheduler.stats().batch_sizes
            server.cancel_scope.cancel()
    finally:
        app.close()
    assert set(steps_alone) == {1}  # alone: every step decoded one sequence
    assert max(steps_together) >= 2  # together: the calls' segments decoded in shared steps
    assert tokens == tokens_alone and len(tokens) >= len(NARRATIONS) + 2  # every segment of every call
    for got, want in zip(together, alone, strict=True):
        assert got is not None and got.shape == want.shape
        assert float(np.abs(got - want).max()) <= PCM16_STEP  # same tokens, so same audio to the last bit
