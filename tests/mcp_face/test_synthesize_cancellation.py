"""A synthesize call the client abandons (MCP's notifications/cancelled) stops its narration in the engine:
the sequence leaves the batch at the next decode step and the slot is free for the next caller."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp_calls import structured

from glmtts_mcp.app.core import build_app
from glmtts_mcp.config import Settings
from glmtts_mcp.mcp_face.server import build_server

pytestmark = pytest.mark.anyio

LONG_TEXT = "Hello there, this is one sentence of a longer story that goes on for a while. " * 8


async def test_a_cancelled_call_frees_its_batch_slot(engine_settings: Callable[..., Settings], clip: Path) -> None:
    app = build_app(engine_settings(max_batch=2))
    try:
        async with Client(build_server(app)) as client:
            voice = (await structured(client, "clone_voice", {"audio": str(clip), "transcript": "hi"}))["voice_id"]
            first_segment = anyio.Event()

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                if message and "segment 1/" in message:
                    first_segment.set()  # the second segment is decoding now

            async def call() -> None:
                await client.call_tool("synthesize", {"text": LONG_TEXT, "voice": voice}, progress_callback=on_progress)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                with anyio.fail_after(120):
                    await first_segment.wait()
                tg.cancel_scope.cancel()  # the client abandons the call

            scheduler = app.host.ensure_loaded().scheduler_stats()
            deadline = time.monotonic() + 10
            while (scheduler.running or scheduler.waiting) and time.monotonic() < deadline:
                await anyio.sleep(0.05)
                scheduler = app.host.ensure_loaded().scheduler_stats()
            assert scheduler.cancelled >= 1 and scheduler.running == scheduler.waiting == 0
            assert app.outputs.files() == []  # nothing half-written reached the store
            # the server still serves: a short narration right after
            out = await structured(client, "synthesize", {"text": "Hi.", "voice": voice, "return_mode": "path"})
            assert Path(out["path"]).is_file()
    finally:
        app.close()
