"""Issue 13 point 5: calls queued for the engine wait on the event loop, not in anyio's worker threads,
so the library tools keep answering with more engine calls queued than there are worker threads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as types
import pytest
from mcp import Client

from glmtts_mcp.tools.app import build_app
from glmtts_mcp.tools.server import build_server

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
                    while app.host.describe()["active_jobs"] < QUEUED_CALLS:
                        await anyio.sleep(0.05)
                    # a deadlock guard, not a speed assertion: before the fix the listing never got a thread
                    with anyio.fail_after(30):
                        listing = await client.call_tool("list_voices", {})
                    assert not listing.is_error and done == []  # answered while all ten still wait
                finally:
                    release()
            assert len(done) == QUEUED_CALLS and not any(r.is_error for r in done)
    finally:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 40
        app.close()
