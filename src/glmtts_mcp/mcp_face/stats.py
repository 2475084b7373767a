"""cache_stats: the voice library's counters and gauges, the engine's state and the output store."""

from __future__ import annotations

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

from glmtts_mcp.app.core import App
from glmtts_mcp.mcp_face.errors import user_errors
from glmtts_mcp.app.schemas import CacheStatsResult, EngineStats


def collect_stats(app: App) -> CacheStatsResult:
    """Everything cache_stats reports (blocking: reads the library's folder)."""
    lib = app.library.stats()
    outputs_count, outputs_bytes = app.outputs.stats()
    return CacheStatsResult(
        **lib.session.model_dump(exclude={"memory_load_ms_mean", "device_load_ms_mean", "disk_load_ms_mean"}),
        voice_count=lib.voice_count,
        broken_voices=lib.broken_voices,
        stale_voices=lib.stale_voices,
        disk_bytes=lib.disk_bytes,
        memory_bytes=lib.memory_bytes,
        memory_capacity_bytes=lib.memory_capacity_bytes,
        device_bytes=lib.device_bytes,
        device_capacity_bytes=lib.device_capacity_bytes,
        outputs_count=outputs_count,
        outputs_bytes=outputs_bytes,
        engine=EngineStats(**app.host.describe()),
        library=lib,
    )


def register_stats_tool(server: MCPServer, app: App) -> None:
    """Add `cache_stats` to `server`."""

    @server.tool(
        title="Voice cache and model statistics",
        annotations=ToolAnnotations(title="Voice cache and model statistics", read_only_hint=True, open_world_hint=False),
    )
    async def cache_stats() -> CacheStatsResult:
        """Library hits and misses per tier (since this server started), bytes, voices, time saved,
        and the model's state (loaded or not, device, memory, queue depth)."""
        with user_errors():
            return await anyio.to_thread.run_sync(lambda: collect_stats(app))
