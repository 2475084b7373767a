"""cache_stats: the library's counters and gauges, the engine's state and the output store."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

from glmtts_mcp.app.core import App
from glmtts_mcp.app.schemas import CacheStatsResult
from glmtts_mcp.app.voice_service import VoiceService
from glmtts_mcp.mcp_face.errors import user_errors


def register_stats_tool(server: MCPServer, app: App) -> None:
    """Add `cache_stats` to `server`."""

    @server.tool(
        title="Voice cache and model statistics",
        annotations=ToolAnnotations(
            title="Voice cache and model statistics", read_only_hint=True, open_world_hint=False
        ),
    )
    async def cache_stats() -> CacheStatsResult:
        """Library hits and misses per tier (since this server started), bytes, voices, time saved,
        and the model's state (loaded or not, device, memory, queue depth)."""
        with user_errors():
            return await VoiceService(app).stats()
