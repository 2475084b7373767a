"""Narrations a player follows by id while they are made: the audio so far, the segments, the state.

A face starts one (`LiveNarrations.start`) and returns at once; a player then reads it piece by piece from
a cursor (a sample offset) while the rest is generated. Everything here is bounded: how many narrations
are held, how much audio they hold together, how long a finished one stays (a grace period for a late
player or a save), and how long an unfinished one runs with no reader (it is cancelled, freeing its
engine slot). The narrations run in a task group that the serving process opens (`running()`).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import anyio
import numpy as np
from anyio.abc import TaskGroup

from glmtts_mcp.app.core import App
from glmtts_mcp.app.narration import Audio, Done, Narration, NarrationRequest, NarrationWarning, Progress, VoiceReady
from glmtts_mcp.app.outputs import StoredOutput
from glmtts_mcp.errors import Term, UserError, internal_error

log = logging.getLogger(__name__)

State = Literal["queued", "generating", "done", "failed", "cancelled"]
BYTES_PER_SAMPLE = 2  # the audio is held and handed out as 16-bit little-endian PCM


@dataclass(frozen=True)
class LiveLimits:
    """The bounds of the live narrations (the defaults suit one person's conversations)."""

    max_narrations: int = 16  # held at once, finished ones included until their grace period ends
    max_bytes: int = 192 * 1024 * 1024  # of 16-bit audio, all held narrations together (~70 min at 24 kHz)
    grace_s: float = 900.0  # a finished narration stays readable (and savable) this long
    idle_s: float = 60.0  # an unfinished narration nobody read for this long is cancelled
    sweep_s: float = 5.0  # how often the bounds are enforced


@dataclass(frozen=True)
class Segment:
    """One text segment of a narration and where its audio starts."""

    index: int
    text: str
    start_sample: int


@dataclass
class LiveNarration:
    """One narration held for players. Fields change only on the event loop that runs it."""

    id: str
    request: NarrationRequest
    state: State = "queued"
    message: str = "waiting for the engine"
    voice_id: str | None = None
    voice_name: str | None = None
    sample_rate: int = 0
    segment_count: int = 0
    segments: list[Segment] = field(default_factory=list)
    segments_done: int = 0  # segments whose audio is complete (in stream mode a segment comes in chunks)
    warnings: list[str] = field(default_factory=list)
    failure: UserError | None = None  # why it failed, when the user can do something about it
    pcm: bytearray = field(default_factory=bytearray)
    last_read: float = field(default_factory=time.monotonic)
    finished_at: float | None = None
    _scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def samples(self) -> int:
        return len(self.pcm) // BYTES_PER_SAMPLE

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def read(self, cursor: int, max_samples: int) -> tuple[int, bytes]:
        """Up to `max_samples` of audio from sample `cursor` on (clamped to what exists): (start, pcm)."""
        self.last_read = time.monotonic()
        start = min(max(cursor, 0), self.samples)
        end = min(self.samples, start + max(max_samples, 0))
        return start, bytes(self.pcm[start * BYTES_PER_SAMPLE : end * BYTES_PER_SAMPLE])

    async def wait_past(self, cursor: int, timeout_s: float) -> None:
        """Return when there is audio past `cursor`, the narration has ended, or `timeout_s` has passed."""
        self.last_read = time.monotonic()
        with anyio.move_on_after(timeout_s):
            while self.samples <= cursor and not self.finished:
                await self._changed.wait()
        self.last_read = time.monotonic()

    def pcm_float(self) -> np.ndarray:
        """The audio so far as float32 (what the file writers take)."""
        return np.frombuffer(bytes(self.pcm), dtype="<i2").astype(np.float32) / 32768.0

    def _touch(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _apply(self, event: object) -> None:
        if isinstance(event, Progress):
            self.message = event.message
            if self.state == "generating":  # the engine's synthesis: done counts whole segments (cloning's came before)
                self.segments_done = max(self.segments_done, int(event.done))
        elif isinstance(event, VoiceReady):
            self.state, self.message = "generating", "generating"
            self.voice_id, self.voice_name = event.voice_id, event.voice_name
        elif isinstance(event, Audio):
            if event.segment_index >= len(self.segments):
                self.segments.append(Segment(event.segment_index, event.text, event.start_sample))
            self.sample_rate, self.segment_count = event.sample_rate, event.segment_count
            clipped = np.clip(np.asarray(event.pcm, dtype=np.float32), -1.0, 1.0)
            self.pcm.extend((clipped * 32767.0).round().astype("<i2").tobytes())
            self.message = f"generated segment {event.segment_index + 1} of {event.segment_count}"
        elif isinstance(event, NarrationWarning):
            self.warnings.append(event.message)
        elif isinstance(event, Done):
            self.sample_rate = event.sample_rate or self.sample_rate
            self.segment_count = self.segments_done = event.segments
            self._end("done", "done")
        self._touch()

    def _end(self, state: State, message: str, failure: UserError | None = None) -> None:
        if not self.finished:
            self.state, self.message, self.failure = state, message, failure
            self.finished_at = time.monotonic()
        self._touch()


class LiveNarrations:
    """The narrations players follow, by id, within `LiveLimits`."""

    def __init__(self, app: App, limits: LiveLimits | None = None) -> None:
        self._app = app
        self.limits = limits or LiveLimits()
        self._held: dict[str, LiveNarration] = {}
        self._tasks: TaskGroup | None = None
        self._speaking: str | None = None  # the narration whose player last started playing
        self.floor = 0  # counts the claims: a player yields only to a claim later than its own

    @property
    def running(self) -> bool:
        """Whether a serving process runs them (`serve()` is open): only then can one start."""
        return self._tasks is not None

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[None]:
        """Run started narrations and enforce the bounds while the block runs; cancel them all at its end."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            tasks.start_soon(self._sweep_forever)
            try:
                yield
            finally:
                self._tasks = None
                for held in self._held.values():
                    held._scope.cancel()
                tasks.cancel_scope.cancel()

    def start(self, request: NarrationRequest) -> LiveNarration:
        """Begin `request` in the background and hold it under a new id."""
        if self._tasks is None:
            raise RuntimeError("live narrations are not being served (open LiveNarrations.serve() first)")
        self._sweep(time.monotonic())
        self._evict_finished(lambda: len(self._held) >= self.limits.max_narrations)
        if len(self._held) >= self.limits.max_narrations:
            raise UserError(
                f"{self.limits.max_narrations} narrations are playing or being made already",
                "wait for one of them to finish, or ask synthesize for a file instead (give it a return_mode)",
                argument=Term.TEXT,
            )
        live = LiveNarration(id=secrets.token_urlsafe(12), request=request)
        self._held[live.id] = live
        self._tasks.start_soon(self._run, live)
        return live

    def get(self, narration_id: str) -> LiveNarration | None:
        return self._held.get(narration_id)

    def claim(self, narration_id: str) -> None:
        """The player of `narration_id` started playing: the other players pause. One floor per server, not
        per conversation: a server that narrates for one person has one pair of ears to serve, and the
        protocol's newer stateless era has no connection to tell conversations apart by."""
        self._speaking = narration_id
        self.floor += 1

    @property
    def speaking(self) -> str | None:
        """The narration whose player last started playing (while it is held)."""
        return self._speaking if self._speaking in self._held else None

    @property
    def held_bytes(self) -> int:
        return sum(len(held.pcm) for held in self._held.values())

    async def save(self, live: LiveNarration, fmt: str) -> StoredOutput:
        """The narration (complete) as a new output in the store (audio://{id})."""
        if live.state != "done":
            raise UserError(
                f"the narration is {live.state}, not done",
                "save it once it has finished (a failed or cancelled one cannot be saved)",
                argument=Term.TEXT,
            )
        outputs = self._app.outputs

        def write() -> StoredOutput:
            writer = outputs.writer(fmt, live.sample_rate)
            try:
                writer.write(live.pcm_float())
            except BaseException:
                writer.discard()
                raise
            return outputs.finish(writer)

        return await anyio.to_thread.run_sync(write)

    async def _run(self, live: LiveNarration) -> None:
        with live._scope:
            try:
                async with Narration(self._app, live.request) as narration:
                    async for event in narration:
                        live._apply(event)
                        if isinstance(event, Audio):
                            self._keep_in_memory_bound(live)
                        elif isinstance(event, VoiceReady) and event.created:  # a clip cloned on the way
                            await self._app.changes.publish()
            except UserError as exc:  # the player shows it; the face renders it in its words
                live._end("failed", str(exc), exc)
                return
            except Exception as exc:  # a bug or the environment: logged with its traceback, one line shown
                live._end("failed", internal_error(exc))
                return
        if not live.finished:
            live._end("cancelled", "cancelled: no player was reading it")

    def _keep_in_memory_bound(self, growing: LiveNarration) -> None:
        self._evict_finished(lambda: self.held_bytes > self.limits.max_bytes)
        if self.held_bytes > self.limits.max_bytes:
            mib = self.limits.max_bytes // (1024 * 1024)
            too_much = UserError(
                f"the narrations being played hold more than {mib} MiB of audio",
                "ask for a shorter {text}, or wait for the others to finish",
                argument=Term.TEXT,
            )
            growing._end("failed", str(too_much), too_much)
            growing._scope.cancel()

    def _evict_finished(self, over: Callable[[], bool]) -> None:
        """Drop finished narrations, the longest finished first, while `over()` holds."""
        done = sorted((h for h in self._held.values() if h.finished), key=lambda h: h.finished_at or 0.0)
        for held in done:
            if not over():
                return
            del self._held[held.id]

    def _sweep(self, now: float) -> None:
        for held in list(self._held.values()):
            if held.finished:
                if now - (held.finished_at or now) > self.limits.grace_s:
                    del self._held[held.id]
            elif now - held.last_read > self.limits.idle_s:
                log.info("live narration %s cancelled: no player read it for %.0f s", held.id, now - held.last_read)
                held._end("cancelled", "cancelled: no player was reading it")
                held._scope.cancel()

    async def _sweep_forever(self) -> None:
        while True:
            await anyio.sleep(self.limits.sweep_s)
            self._sweep(time.monotonic())
