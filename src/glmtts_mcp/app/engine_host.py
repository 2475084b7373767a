"""The one engine of the process, and the one owner of the model's life: load, reload, unload.

Every load goes through `ensure_loaded` (first use, the background preload, the first call after an
idle unload), so each is counted, timed and, when it fails, remembered with its reason: every engine
tool then answers with that reason and the fix, and the next call tries again (the user may have run
`glmtts-mcp download`). Unloading drops the engine; the next call builds a fresh one here.
Tools that only need the voice library never touch this object.

The engine is an `EngineBackend`: the in-process `Engine`, or with `--engine ray` the client of engine
replicas on Ray Serve (engine_ray/), which the faces use the same way.

Engine calls take a worker thread only when it is their turn: they queue on an async limiter of
`job_slots` tokens (the engine's own limit on work in flight), not on anyio's shared pool of 40 worker
threads, so any number of queued narrations leaves the library tools their threads. The queue is
bounded: with `job_slots` leases running and `max_queue` more waiting, a further lease is refused at
once (`ServerBusy`: 503 with Retry-After on HTTP, a tool error on MCP) instead of waiting behind
work that may never be read.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

import anyio
import anyio.lowlevel
import anyio.to_thread

from glmtts_mcp.engine.types import (
    AudioChunk,
    EngineError,
    ExtractedVoice,
    ProgressCallback,
    ReferenceAudio,
    SynthesisOptions,
    VoiceFeatures,
)
from glmtts_mcp.errors import Kind, UserError

if TYPE_CHECKING:
    import torch

    from glmtts_mcp.engine.frontend.reference_clip import ReferenceProcessing

log = logging.getLogger(__name__)
T = TypeVar("T")

ModelState = Literal["unloaded", "loading", "loaded", "failed"]
BackendName = Literal["local", "ray"]


class EngineBackend(Protocol):
    """What the faces use of an engine; `Engine` (in this process) and `RayEngine` (replicas) both are one."""

    @property
    def reference_processing(self) -> ReferenceProcessing: ...

    @property
    def device(self) -> torch.device:
        """Where voice features are loaded for this engine."""

    @property
    def queue_depth(self) -> int: ...

    def prepare_reference(self, source: str | Path | bytes) -> ReferenceAudio: ...

    def extract_voice(
        self,
        ref: ReferenceAudio,
        transcript: str | None = None,
        language: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> ExtractedVoice: ...

    def synthesize(
        self,
        text: str,
        features: VoiceFeatures,
        options: SynthesisOptions = ...,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Generator[AudioChunk, None, None]:
        """Chunks as they are made; setting `cancel` stops the narration at the next decode step."""

    def memory_info(self) -> dict[str, object]: ...

    def scheduler_stats(self) -> Any: ...

    def unload(self) -> None: ...


@runtime_checkable
class ReplicaPool(Protocol):
    """An engine made of replicas (`--engine ray`): cache_stats shows each one."""

    def pool_stats(self) -> dict[str, Any]: ...


EngineLoader = Callable[[], EngineBackend]


class EngineUnavailable(EngineError):
    """The model could not be loaded; the message carries the cause and the fix."""

    kind = Kind.UNAVAILABLE


class ServerBusy(UserError):
    """Every engine slot is taken and the queue behind them is full: retry after `retry_after_s`."""

    kind = Kind.UNAVAILABLE
    retry_after_s = 5


class EngineHost:
    """Owns the Engine: load under a lock, count jobs, unload after `idle_unload_s` without work."""

    def __init__(
        self,
        loader: EngineLoader,
        checkpoint: Path,
        idle_unload_s: float,
        job_slots: int = 1,
        backend: BackendName = "local",
        max_queue: int | None = None,
    ) -> None:
        if job_slots < 1:
            raise ValueError(f"job_slots must be at least 1, got {job_slots}")
        if max_queue is not None and max_queue < 0:
            raise ValueError(f"max_queue must be at least 0, got {max_queue}")
        self._max_queue = max_queue  # None: no bound
        self._loader = loader
        self.backend = backend
        self._job_slots = job_slots
        self._limiters: dict[object, anyio.CapacityLimiter] = {}  # one per event loop (tests run several)
        self._checkpoint = checkpoint
        self._idle_unload_s = idle_unload_s
        self._engine: EngineBackend | None = None
        self._load_lock = threading.Lock()  # held while loading or unloading (slow)
        self._loading = False
        self._preloading = False  # a background load was asked for (its thread may not hold the lock yet)
        self._lock = threading.Lock()  # guards the job count and the timer (fast: the event loop takes it)
        self._active = 0
        self._last_used = time.monotonic()
        self._timer: threading.Timer | None = None
        self.load_error: str | None = None
        self.load_s: float | None = None
        self.loads = 0
        self.unloads = 0
        self.refused_busy = 0  # leases refused because the queue was full

    @property
    def model_loaded(self) -> bool:
        """Whether the model's weights are in memory now."""
        return self._engine is not None

    @property
    def active_jobs(self) -> int:
        """Engine calls in flight now (narrations, clones)."""
        return self._active

    def idle_s(self) -> float | None:
        """Seconds since the last engine call ended; None while one runs."""
        with self._lock:
            return None if self._active else time.monotonic() - self._last_used

    @property
    def state(self) -> ModelState:
        """What cache_stats shows: a load in progress, a model in memory, the last load failed, or none."""
        if self._loading or self._preloading:
            return "loading"
        if self._engine is not None:
            return "loaded"
        return "failed" if self.load_error else "unloaded"

    def ensure_loaded(self) -> EngineBackend:
        """Load the engine if needed (blocking: call from a worker thread) and return it.

        A call that arrives during a load (the background preload, another tool) waits for it.
        """
        with self._load_lock:
            if self._engine is not None:
                return self._engine
            start = time.perf_counter()
            self._loading = True
            try:
                engine = self._loader()
            except Exception as exc:  # any loader failure becomes a message the user can act on
                self.load_error = _explain_load_failure(exc, self._checkpoint)
                log.error("model failed to load: %s", self.load_error)
                raise EngineUnavailable(self.load_error) from exc
            finally:
                self._loading = False
            self._engine = engine
            self.load_error = None
            self.load_s = time.perf_counter() - start
            self.loads += 1
            log.info("model loaded in %.1f s on %s", self.load_s, getattr(engine, "device", "?"))
            return engine

    def load_in_background(self) -> threading.Thread:
        """Start loading now without waiting (`--preload start`): the server answers meanwhile, and
        engine tools wait for this load instead of starting their own."""

        def load() -> None:
            try:
                self.ensure_loaded()
            except EngineUnavailable:
                pass  # remembered in load_error; engine tools report it, library tools keep working
            finally:
                self._preloading = False

        self._preloading = True
        thread = threading.Thread(target=load, name="glmtts-preload", daemon=True)
        thread.start()
        return thread

    async def run(self, job: Callable[[EngineBackend], T]) -> T:
        """Run `job(engine)` in a worker thread, loading the engine first; the event loop keeps serving."""
        async with self.lease() as engine:
            return await self.work(lambda: job(engine))

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[EngineBackend]:
        """The engine, loaded, for as long as the body runs: it counts as work in flight, so an idle
        unload never lands in the middle (a narration read slowly between its pieces holds it too).
        Refused at once with `ServerBusy` when `job_slots` leases run and `max_queue` more wait."""
        with self._lock:
            if self._max_queue is not None and self._active >= self._job_slots + self._max_queue:
                self.refused_busy += 1
                raise ServerBusy(
                    f"the server is busy: {self._active} requests hold or wait for its {self._job_slots} engine "
                    f"slot(s), and it queues at most {self._max_queue} more (--max-queue)",
                    f"retry in {ServerBusy.retry_after_s} s",
                )
            self._active += 1
            self._cancel_timer()
        try:
            yield await anyio.to_thread.run_sync(self.ensure_loaded, limiter=self._limiter())
        finally:
            with self._lock:
                self._active -= 1
                self._last_used = time.monotonic()
                self._arm_timer()

    async def work(self, step: Callable[[], T], *, abandon_on_cancel: bool = False) -> T:
        """Run one blocking step of leased work in a worker thread once a place is free. With
        `abandon_on_cancel`, a cancelled caller stops waiting at once (the step must be told to stop)."""
        return await anyio.to_thread.run_sync(step, limiter=self._limiter(), abandon_on_cancel=abandon_on_cancel)

    def _limiter(self) -> anyio.CapacityLimiter:
        """This event loop's limiter: waiting for it is asynchronous, so a queued call holds no thread."""
        loop = anyio.lowlevel.current_token()
        limiter = self._limiters.get(loop)
        if limiter is None:
            self._limiters.clear()  # an earlier loop has ended (only tests run more than one)
            limiter = self._limiters[loop] = anyio.CapacityLimiter(self._job_slots)
        return limiter

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm_timer(self) -> None:
        """Start the idle countdown once no job runs (lock held)."""
        if self._idle_unload_s <= 0 or self._active or self._engine is None:
            return
        self._cancel_timer()
        self._timer = threading.Timer(self._idle_unload_s, self._unload_if_idle)
        self._timer.daemon = True
        self._timer.start()

    def _unload_if_idle(self) -> None:
        with self._load_lock:  # a call arriving now waits, then loads a fresh engine through ensure_loaded
            with self._lock:
                idle = time.monotonic() - self._last_used
                if self._active or self._engine is None or idle < self._idle_unload_s * 0.99:
                    return
                self._timer = None
                engine = self._engine
            self._release(engine, reason=f"idle for {idle:.0f} s")

    def unload(self, reason: str = "requested") -> None:
        """Free the model's memory now (the engine waits for running jobs); the next call loads it again."""
        with self._load_lock:
            with self._lock:
                self._cancel_timer()
                engine = self._engine
            if engine is not None:
                self._release(engine, reason)

    def _release(self, engine: EngineBackend, reason: str) -> None:
        """Free the engine's models, then drop it (load lock held: a call arriving meanwhile waits, then
        loads a fresh engine). cache_stats sees the model loaded until the unload is done and counted."""
        try:
            engine.unload()
        except Exception:  # unloading must never take the server down; a fresh engine replaces this one
            log.exception("engine unload failed; the next call loads a fresh engine")
        with self._lock:
            self._engine = None
            self.unloads += 1
        log.info("model unloaded (%s)", reason)

    def describe(self) -> dict[str, Any]:
        """Engine figures for cache_stats: loaded or not, device, memory, queue."""
        engine = self._engine
        info: dict[str, Any] = {
            "backend": self.backend,
            "model_loaded": self.model_loaded,
            "state": self.state,
            "model_error": self.load_error,
            "checkpoint": str(self._checkpoint),
            "load_s": self.load_s,
            "loads": self.loads,
            "unloads": self.unloads,
            "idle_unload_s": self._idle_unload_s,
            "active_jobs": self._active,
            "max_queue": self._max_queue,
            "refused_busy": self.refused_busy,
        }
        if engine is not None:
            info["device"] = str(engine.device)
            info["memory"] = engine.memory_info()
            info["queue_depth"] = engine.queue_depth
            scheduler = engine.scheduler_stats()
            if scheduler is not None:
                info["scheduler"] = dataclasses.asdict(scheduler)
            if isinstance(engine, ReplicaPool):
                info["ray"] = engine.pool_stats()
        return info


def _explain_load_failure(exc: Exception, checkpoint: Path) -> str:
    """The reason plus the fix, whatever the loader raised."""
    if isinstance(exc, EngineError):
        return f"the GLM-TTS model could not be loaded: {exc}"
    return (
        f"the GLM-TTS model could not be loaded from {checkpoint}: {type(exc).__name__}: {exc}. "
        "Check the checkpoint (`glmtts-mcp download`, or --checkpoint / GLMTTS_MCP_CHECKPOINT), "
        "the device (--device cpu) and the dtype (--dtype float32)."
    )
