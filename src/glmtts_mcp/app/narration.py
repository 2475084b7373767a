"""A narration as one stream of typed events, the same for every face.

`Narration` resolves the voice (a library voice, or a reference clip cloned on the way), then pulls the
engine's chunks one worker-thread hop at a time, so a slow reader holds no thread. It holds one engine
lease from start to end, so an idle unload never cuts it, and `cancel()` (or leaving the stream early:
a client gone, an MCP cancellation, a timeout) stops it at the engine's next decode step and frees its
batch slot. Faces decide what the events become: a file, a socket, a tool result, a progress bar.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import numpy as np

from glmtts_mcp.app.cloning import clone_or_get
from glmtts_mcp.app.core import App
from glmtts_mcp.app.engine_host import EngineBackend
from glmtts_mcp.app.pronunciations import narration_pronunciation
from glmtts_mcp.engine.types import (
    AudioChunk,
    NarrationCancelled,
    ProgressCallback,
    PronunciationMode,
    SynthesisOptions,
    VoiceFeatures,
)
from glmtts_mcp.errors import Term, UserError
from glmtts_mcp.voices.pronunciations import check_dictionary

log = logging.getLogger(__name__)

MAX_SEED = 2**63 - 1
# The sampling knobs a caller may set (the range GLM-TTS-Enhanced's API took); left out, upstream's own
# sampling applies (temperature 1.0, top_p 0.8: SynthesisOptions' defaults) and the audio is unchanged.
TEMPERATURE_RANGE = (0.1, 1.5)
TOP_P_RANGE = (0.5, 1.0)


def checked_text(text: str, max_chars: int) -> str:
    """The text to speak, stripped; refused when empty or over `max_chars`. Every face calls this before
    any work (the model may not be loaded yet), and the engine does not check it again."""
    text = text.strip()
    if not text:
        raise UserError("{argument} is empty", "pass the words to speak", argument=Term.TEXT)
    if len(text) > max_chars:
        raise UserError(
            f"{{argument}} has {len(text)} characters; the limit is {max_chars}",
            "split it into several requests, or raise {max_text_chars}",
            argument=Term.TEXT,
        )
    return text


@dataclass(frozen=True)
class NarrationRequest:
    """What to say and in which voice: a library voice (`voice`) or a clip to clone (`reference`)."""

    text: str
    voice: str | None = None
    reference: Path | bytes | None = None
    transcript: str | None = None  # of the reference clip; None lets Whisper transcribe it
    seed: int = 0
    temperature: float | None = None  # None: upstream's sampling
    top_p: float | None = None  # None: upstream's sampling
    pronunciation: PronunciationMode | None = None  # None: the server's --pronunciation
    pronunciations: Mapping[str, str] | None = None  # an inline dictionary for this narration only
    # the engine's stream mode: audio inside a segment while its LLM still generates (the face decides,
    # through Settings.streams: it suits what is played as it arrives, not a whole result)
    stream: bool = False

    def __post_init__(self) -> None:
        self.check_one_voice(self.voice is not None, self.reference is not None)
        _check_range(self.temperature, TEMPERATURE_RANGE, Term.TEMPERATURE)
        _check_range(self.top_p, TOP_P_RANGE, Term.TOP_P)
        if self.pronunciations:
            check_dictionary(self.pronunciations)  # a bad entry is refused before any work

    def options(self) -> SynthesisOptions:
        """The engine's options: the seed, and the sampling knobs that were given (the rest upstream's)."""
        upstream = SynthesisOptions(seed=self.seed)
        return dataclasses.replace(
            upstream,
            temperature=upstream.temperature if self.temperature is None else self.temperature,
            top_p=upstream.top_p if self.top_p is None else self.top_p,
        )

    @staticmethod
    def check_one_voice(voice_given: bool, reference_given: bool) -> None:
        """A narration speaks in a library voice or in a clip's voice: exactly one of the two."""
        if voice_given == reference_given:
            raise UserError(
                "a narration speaks in one voice",
                "pass exactly one of {voice} or {reference} ({list_voices} to see the stored voices)",
                argument=Term.VOICE,
            )


def _check_range(value: float | None, bounds: tuple[float, float], term: Term) -> None:
    low, high = bounds
    if value is not None and not low <= value <= high:
        raise UserError(
            f"{{argument}} is {value:g}",
            f"use a value from {low:g} to {high:g}, or leave it out for upstream's sampling",
            argument=term,
        )


@dataclass(frozen=True)
class VoiceReady:
    """The voice the narration speaks in (first event)."""

    voice_id: str
    voice_name: str | None
    tier: str  # where its features came from: memory, device, disk, or cloned
    created: bool  # cloned by this narration
    timings: dict[str, float]
    warnings: list[str]


@dataclass(frozen=True)
class Progress:
    """How far the narration is, as the engine reports it."""

    done: float
    total: float
    message: str


@dataclass(frozen=True)
class Audio:
    """A piece of the narration: the whole narration is the concatenation of these, in order.

    One per segment, or, in stream mode, several per segment (the same segment_index)."""

    pcm: np.ndarray  # float32 mono
    sample_rate: int
    segment_index: int
    segment_count: int
    text: str  # the segment it belongs to
    start_sample: int  # where it begins in the narration
    as_read: tuple[str, ...] = ()  # the first piece only: every segment as the model reads it


@dataclass(frozen=True)
class NarrationWarning:
    """Something that changed the audio (a cut, a dropped token, a silent segment)."""

    message: str


@dataclass(frozen=True)
class Done:
    """The narration is complete."""

    samples: int
    sample_rate: int
    segments: int
    timings: dict[str, float]
    warnings: list[str]
    pronunciation: PronunciationMode = "text"  # the mode the narration was read in
    text_as_read: str = ""  # the segments as the model read them (normalised; readings and phonemes put in)

    @property
    def duration_s(self) -> float:
        return self.samples / self.sample_rate if self.sample_rate else 0.0


NarrationEvent = VoiceReady | Progress | Audio | NarrationWarning | Done


@dataclass
class _Voice:
    features: VoiceFeatures
    ready: VoiceReady


@dataclass
class Narration:
    """One narration in flight. Iterate it once (`async for event in narration`); `cancel()` from anywhere.

    Use it as `async with Narration(app, request) as narration:` so leaving the block early (an error, a
    cancelled task) stops the engine's work too.
    """

    app: App
    request: NarrationRequest
    progress: ProgressCallback | None = None  # live progress, called from worker threads
    _cancel: threading.Event = field(default_factory=threading.Event)
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    _reports: list[Progress] = field(default_factory=list)
    _reports_lock: threading.Lock = field(default_factory=threading.Lock)

    def cancel(self) -> None:
        """Stop at the engine's next decode step; the stream then ends without `Done`."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    async def __aenter__(self) -> Narration:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()  # a no-op for the engine once the narration is done
        with anyio.CancelScope(shield=True):  # a cancelled caller still releases the lease and the generator
            await self._stack.aclose()

    def __aiter__(self) -> AsyncIterator[NarrationEvent]:
        return self._events()

    def _report(self, done: float, total: float, message: str) -> None:
        with self._reports_lock:
            self._reports.append(Progress(done, total, message))
        if self.progress is not None:
            self.progress(done, total, message)

    def _drain(self) -> list[Progress]:
        with self._reports_lock:
            reports, self._reports = self._reports, []
        return reports

    async def _events(self) -> AsyncIterator[NarrationEvent]:
        started = time.perf_counter()
        host = self.app.host
        engine = await self._stack.enter_async_context(host.lease())
        voice = await host.work(lambda: self._resolve_voice(engine))
        for report in self._drain():
            yield report
        yield voice.ready
        for message in voice.ready.warnings:
            yield NarrationWarning(message)
        wording = await host.work(
            lambda: narration_pronunciation(
                self.app,
                self.request.pronunciation,
                voice.ready.voice_id,
                self.request.pronunciations,
                self.request.text,
            )
        )
        options = dataclasses.replace(self.request.options(), pronunciation=wording, stream=self.request.stream)
        as_read: list[str] = []
        chunks = engine.synthesize(self.request.text, voice.features, options, self._report, cancel=self._cancel)
        stepping = threading.Lock()  # held while a worker thread runs the generator

        def step() -> AudioChunk | None:
            with stepping:
                return next(chunks, None)

        self._stack.callback(_close_unless_running, chunks, stepping)
        synth_start = time.perf_counter()
        samples, sample_rate, segments, warnings = 0, options.sample_rate, 0, list(voice.ready.warnings)
        while True:
            try:
                chunk = await host.work(step, abandon_on_cancel=True)
            except NarrationCancelled:
                return
            for report in self._drain():
                yield report
            if chunk is None:
                break
            sample_rate, segments = chunk.sample_rate, chunk.segment_count
            as_read.append(chunk.text)
            yield Audio(
                pcm=chunk.pcm,
                sample_rate=chunk.sample_rate,
                segment_index=chunk.segment_index,
                segment_count=chunk.segment_count,
                text=chunk.text,
                start_sample=samples,
                as_read=chunk.as_read,
            )
            samples += len(chunk.pcm)
            for message in chunk.warnings:
                warnings.append(message)
                yield NarrationWarning(message)
        timings = dict(voice.ready.timings)
        timings["synthesize"] = time.perf_counter() - synth_start
        timings["narration_total"] = time.perf_counter() - started
        log.info(
            "narrated %d segment(s), %.1f s of audio, voice %s, in %.2f s",
            segments,
            samples / sample_rate,
            voice.ready.voice_id,
            timings["narration_total"],
        )
        yield Done(
            samples=samples,
            sample_rate=sample_rate,
            segments=segments,
            timings=timings,
            warnings=warnings,
            pronunciation=wording.mode,
            text_as_read="".join(as_read),
        )

    def _resolve_voice(self, engine: EngineBackend) -> _Voice:
        """In a worker thread: the voice's features on the engine's device, cloning the clip if needed."""
        library, request = self.app.library, self.request
        if request.reference is not None:
            outcome = clone_or_get(
                engine, library, request.reference, None, request.transcript, None, self._report, load_on=engine.device
            )
            assert outcome.loaded is not None  # asked for with load_on
            loaded, created = outcome.loaded, not outcome.existed
            timings, warnings = dict(outcome.timings), list(outcome.warnings)
        else:
            assert request.voice is not None
            loaded, created = library.load_features(request.voice, engine.device), False
            timings, warnings = {}, []
        timings["voice_features"] = loaded.load_s
        record = loaded.record
        ready = VoiceReady(
            voice_id=record.id,
            voice_name=record.name,
            tier="cloned" if created else loaded.tier,
            created=created,
            timings=timings,
            warnings=warnings,
        )
        return _Voice(VoiceFeatures(tensors=loaded.tensors, digest=record.features_sha256), ready)


def _close_unless_running(chunks: Generator[AudioChunk, None, None], stepping: threading.Lock) -> None:
    """Close the engine's generator (which cancels its queued work) unless a worker thread is inside it;
    that thread sees the cancel signal and ends the generator itself."""
    if stepping.acquire(blocking=False):
        try:
            chunks.close()
        finally:
            stepping.release()


async def collect(narration: Narration, on_audio: Callable[[Audio], Awaitable[None]]) -> tuple[VoiceReady, Done]:
    """Run a narration to its end, handing each piece of audio to `on_audio`; the voice and the summary."""
    ready: VoiceReady | None = None
    async for event in narration:
        if isinstance(event, VoiceReady):
            ready = event
        elif isinstance(event, Audio):
            await on_audio(event)
        elif isinstance(event, Done):
            assert ready is not None
            return ready, event
    raise NarrationCancelled("the narration was cancelled")
