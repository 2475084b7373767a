"""What cache_stats shows on every face: the library's counters and gauges, the engine's state, the outputs."""

from __future__ import annotations

from glmtts_mcp.app.core import App
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
