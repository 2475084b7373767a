"""Where the model runs and what it holds there: the device, its memory in use and free, the model's state
and how long the engine has been idle (what an operator checks before and after freeing the GPU).

CUDA figures are the whole device's (`cudaMemGetInfo`, what nvidia-smi shows), read only where this process
already uses CUDA: asking an unused GPU would create a CUDA context (hundreds of MB) just to report on it.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, Field

from glmtts_mcp.app.core import App


class DeviceStatus(BaseModel):
    """The engine's device and memory now."""

    device: str = Field(description="the model's device (the configured one while it is not loaded)")
    model_loaded: bool
    state: str = Field(description="unloaded, loading, loaded or failed")
    backend: str = Field(description="local (this process) or ray (engine replicas)")
    gpu_available: bool = Field(description="true when the figures below are a CUDA device's")
    memory_used_bytes: int | None = Field(description="device memory in use (all processes); on CPU the model's")
    memory_free_bytes: int | None = Field(description="device memory free; on CPU the host's available memory")
    memory_total_bytes: int | None
    model_allocated_bytes: int | None = Field(description="what this process's tensors hold on the device")
    active_jobs: int = Field(description="engine calls running now")
    idle_s: float | None = Field(description="seconds since the last engine call ended; null while one runs")
    idle_unload_s: float = Field(description="the model unloads after this long idle (0: never)")


def device_status(app: App) -> DeviceStatus:
    """The figures now (blocking: call from a worker thread)."""
    host = app.host
    info = host.describe()
    device = str(info.get("device") or app.settings.device)
    used = free = total = allocated = None
    cuda = _cuda_device(device)
    if cuda is not None:
        free, total = torch.cuda.mem_get_info(cuda)
        used = total - free
        allocated = torch.cuda.memory_allocated(cuda)
    else:
        total, free = _host_memory()
        params = (info.get("memory") or {}).get("parameter_bytes")
        allocated = sum(params.values()) if isinstance(params, dict) else (0 if info["backend"] == "local" else None)
        used = allocated
    idle = host.idle_s()
    return DeviceStatus(
        device=device,
        model_loaded=host.model_loaded,
        state=host.state,
        backend=host.backend,
        gpu_available=cuda is not None,
        memory_used_bytes=used,
        memory_free_bytes=free,
        memory_total_bytes=total,
        model_allocated_bytes=allocated,
        active_jobs=host.active_jobs,
        idle_s=round(idle, 1) if idle is not None else None,
        idle_unload_s=info["idle_unload_s"],
    )


def _cuda_device(device: str) -> torch.device | None:
    """The CUDA device to read, when this process already uses one (never creates a context)."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    if device.startswith("cuda"):
        return torch.device(device)
    return torch.device("cuda", torch.cuda.current_device()) if device == "auto" else None


def _host_memory() -> tuple[int | None, int | None]:
    """Total and available host memory (Linux /proc/meminfo; None elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.count(":") == 1}
    except (OSError, ValueError, IndexError):
        return None, None
    return fields.get("MemTotal"), fields.get("MemAvailable")
