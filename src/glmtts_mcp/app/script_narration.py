"""A script narrated line by line into one file, or one per chapter, with exact timing.

Every name the script uses is resolved against the library before anything is synthesized, so an unknown
voice costs nothing. Each line is one `Narration` in its voice (features reused from the library's
tiers); its audio is held until it is complete, brought to the loudness target (`loudness.py`), then
joined to the file through the engine's `Crossfader` (short raised-cosine fades into and out of the
pauses, so a join never clicks) and written as soon as the lines before it are. The next line is made
while one finishes (`LINES_IN_FLIGHT`), so lines of different voices decode side by side in the engine's
batch; memory holds those lines, never the script. Every line's and every segment's start and end are
the sample offsets of what was written, so subtitles and the timeline follow the audio exactly. Nothing
appears at the output until the whole script is done; a cancelled or failed script leaves no file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import anyio.abc
import anyio.to_thread
import numpy as np

from glmtts_mcp.app.audio_out import AudioFileWriter
from glmtts_mcp.app.core import App
from glmtts_mcp.app.loudness import level_line
from glmtts_mcp.app.narration import Audio, Done, Narration, NarrationRequest, VoiceReady
from glmtts_mcp.app.script_parse import Script, Silence, Speech, describe_places, voice_names
from glmtts_mcp.app.task_groups import lone_errors
from glmtts_mcp.engine.checkpoint.layout import CheckpointError
from glmtts_mcp.engine.models.transcribe import WordTime
from glmtts_mcp.engine.runtime.output_encoding import Crossfader
from glmtts_mcp.engine.runtime.pipeline import CROSSFADE_MS, Engine
from glmtts_mcp.engine.types import AudioInputError, NarrationCancelled, ProgressCallback
from glmtts_mcp.errors import Kind, Term, UserError
from glmtts_mcp.voices import VoiceNotFound, VoiceRecord

log = logging.getLogger(__name__)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
LINES_IN_FLIGHT = 2  # lines made at once: the next line decodes beside the one finishing
_VOICES_LISTED = 30


class OutputTarget(Protocol[T_co]):
    """Where a script's files go: `open` a writer for output `index`, `finish` puts a written one in place."""

    def open(self, index: int, sample_rate: int) -> AudioFileWriter: ...

    def finish(self, writer: AudioFileWriter) -> T_co: ...


@dataclass(frozen=True)
class TimedSegment:
    index: int
    text: str
    start: int  # samples from the start of its output file
    end: int


@dataclass(frozen=True)
class TimedWord:
    word: str
    start: int  # samples from the start of its output file
    end: int


@dataclass(frozen=True)
class TimedLine:
    """One spoken line: where it is in its output file, in whose voice, at which loudness."""

    number: int  # 1-based, over the whole script
    where: str  # where the script wrote it ("line 12", "item 3")
    chapter: int  # 0-based index of the chapter
    output: int  # 0-based index of the output file
    voice: str  # as the script names it
    voice_id: str
    voice_name: str | None
    text: str
    start: int
    end: int
    segments: tuple[TimedSegment, ...]
    measured_lufs: float | None
    words: tuple[TimedWord, ...]
    lufs: float | None
    gain_db: float


@dataclass(frozen=True)
class ChapterMark:
    index: int
    title: str | None
    output: int
    start: int  # samples from the start of its output file


@dataclass
class ScriptOutput(Generic[T]):
    index: int
    file: T
    samples: int


@dataclass
class ScriptOutcome(Generic[T]):
    sample_rate: int
    outputs: list[ScriptOutput[T]]
    chapters: list[ChapterMark]
    lines: list[TimedLine]
    voices: dict[str, VoiceRecord]  # each name the script uses -> its voice
    warnings: list[str]
    timings: dict[str, float]


@dataclass
class _Narrated:
    """What the lines made: the files' lengths (index, samples), before the files are put in place."""

    sample_rate: int
    sizes: list[tuple[int, int]]
    chapters: list[ChapterMark]
    lines: list[TimedLine]
    warnings: list[str]


@dataclass
class _LineAudio:
    pcm: np.ndarray
    sample_rate: int
    ready: VoiceReady
    done: Done
    segments: list[tuple[int, str, int]]  # index, text, start sample within the line
    words: list[tuple[str, int, int]] = field(default_factory=list)  # word, start and end within the line
    notes: list[str] = field(default_factory=list)  # why words are missing


class _LinesAhead:
    """Lines made ahead of the writer, at most `in_flight` at once and in memory; `take(i)` waits for line i.

    A line that fails is kept as its exception and raised when it is taken, so errors come in script order."""

    def __init__(
        self,
        make: Callable[[int], Awaitable[_LineAudio]],
        count: int,
        in_flight: int,
        tasks: anyio.abc.TaskGroup,
    ) -> None:
        self._make = make
        self._slots: list[_LineAudio | Exception | None] = [None] * count
        self._ready = [anyio.Event() for _ in range(count)]
        self._room = anyio.Semaphore(in_flight)
        self._tasks = tasks
        tasks.start_soon(self._produce, count)

    async def _produce(self, count: int) -> None:
        for index in range(count):
            await self._room.acquire()
            self._tasks.start_soon(self._one, index)

    async def _one(self, index: int) -> None:
        try:
            self._slots[index] = await self._make(index)
        except Exception as exc:  # raised by take(), in the script's order
            self._slots[index] = exc
        self._ready[index].set()

    async def take(self, index: int) -> _LineAudio:
        await self._ready[index].wait()
        value, self._slots[index] = self._slots[index], None
        self._room.release()
        if isinstance(value, Exception):
            raise value
        assert value is not None
        return value


@dataclass
class _OpenOutput:
    """One output file being written: the crossfader in front of it and the samples already written."""

    index: int
    writer: AudioFileWriter
    fader: Crossfader
    written: int = 0

    def push(self, pcm: np.ndarray) -> int:
        """Join `pcm` to the file; where it starts in the file (its first samples overlap the held tail)."""
        start = self.written + self.fader.held - min(self.fader.held, len(pcm))
        self._write(self.fader.push(pcm))
        return start

    def close(self) -> int:
        self._write(self.fader.flush())
        return self.written

    def _write(self, pcm: np.ndarray) -> None:
        if len(pcm):
            self.writer.write(pcm)
            self.written += len(pcm)


@dataclass
class ScriptNarration(Generic[T]):
    """One script in flight: `await run()` once; `cancel()` from anywhere stops it at the engine's next step."""

    app: App
    script: Script
    target: OutputTarget[T]
    loudness_lufs: float  # 0: no leveling
    split_chapters: bool = False
    seed: int = 0
    progress: ProgressCallback | None = None
    words: bool = False  # word times from Whisper's alignment (its weights installed, the local engine)
    _current: list[Narration] = field(default_factory=list)
    _cancelled: bool = False
    _reported: float = 0.0
    _writers: list[AudioFileWriter] = field(default_factory=list)

    def cancel(self) -> None:
        self._cancelled = True
        for narration in list(self._current):
            narration.cancel()

    async def run(self) -> ScriptOutcome[T]:
        started = time.perf_counter()
        voices = await anyio.to_thread.run_sync(self._resolve_voices)
        try:
            made = await self._narrate(voices)
            outputs = []
            for index, samples in made.sizes:
                file = await anyio.to_thread.run_sync(self.target.finish, self._writers[index])
                outputs.append(ScriptOutput(index, file, samples))
        except BaseException:
            for writer in self._writers:
                writer.discard()
            raise
        timings = {"total": time.perf_counter() - started}
        result = ScriptOutcome(made.sample_rate, outputs, made.chapters, made.lines, voices, made.warnings, timings)
        log.info("narrated a script: %d line(s), %d file(s)", len(result.lines), len(result.outputs))
        return result

    def _resolve_voices(self) -> dict[str, VoiceRecord]:
        """Every voice the script names, or one error naming all the unknown ones and the library's voices."""
        library = self.app.library
        found: dict[str, VoiceRecord] = {}
        unknown: list[str] = []
        for name, places in voice_names(self.script).items():
            try:
                found[name] = library.resolve(name)
            except VoiceNotFound:
                unknown.append(f"{name!r} ({describe_places(places)})")
        if unknown:
            listing = library.list_voices(limit=_VOICES_LISTED).voices
            names = ", ".join(v.name or v.id for v in listing if v.broken is None)
            more = " and more" if len(listing) == _VOICES_LISTED else ""
            has = f"the library has {names}{more}" if names else "the library has no voices yet"
            raise UserError(
                f"{{argument}} names voices the library does not have: {'; '.join(unknown)}; {has}",
                "use those names or ids, or {clone_voice} first ({list_voices} to see them all)",
                argument=Term.SCRIPT,
                kind=Kind.NOT_FOUND,
            )
        return found

    async def _narrate(self, voices: dict[str, VoiceRecord]) -> _Narrated:
        """The lines in order, the next ones made while one is written (side by side in the engine's batch)."""
        speeches = self.script.lines
        total = len(speeches)

        async def make(index: int) -> _LineAudio:
            line = speeches[index]
            return await self._speak(line, voices[line.voice], index, total)

        in_flight = max(1, min(LINES_IN_FLIGHT, self.app.settings.max_batch))
        with lone_errors():
            async with anyio.create_task_group() as tasks:
                ahead = _LinesAhead(make, total, in_flight, tasks)
                try:
                    made = await self._write(ahead)
                finally:
                    tasks.cancel_scope.cancel()  # lines still being made when the writing stopped (an error)
        return made

    async def _write(self, ahead: _LinesAhead) -> _Narrated:
        chapters = [c for c in self.script.chapters if c.lines or not self.split_chapters]
        groups = [[c] for c in chapters] if self.split_chapters else [chapters]
        lines: list[TimedLine] = []
        marks: list[ChapterMark] = []
        sizes: list[tuple[int, int]] = []
        warnings: list[str] = []
        sample_rate = 0
        chapter_index = 0
        for output_index, group in enumerate(groups):
            current: _OpenOutput | None = None
            pending_ms = 0  # silence owed before the next line (or at the end of the file)
            for chapter in group:
                mark: ChapterMark | None = None
                for part in chapter.parts:
                    if isinstance(part, Silence):
                        pending_ms += part.ms
                        continue
                    audio = await ahead.take(len(lines))
                    sample_rate = sample_rate or audio.sample_rate
                    if audio.sample_rate != sample_rate:
                        raise RuntimeError(f"the engine changed its rate mid-script ({audio.sample_rate})")
                    if current is None:
                        current = await self._open(output_index, sample_rate)
                    line = await anyio.to_thread.run_sync(
                        self._place, current, audio, part, pending_ms, len(lines) + 1, chapter_index
                    )
                    pending_ms = 0
                    lines.append(line)
                    mark = mark or ChapterMark(chapter_index, chapter.title, output_index, line.start)
                    warnings += [f"{part.where}: {w}" for w in [*audio.done.warnings, *audio.notes]]
                    if line.lufs is not None and abs(line.lufs - self.loudness_lufs) > 0.05 and self.loudness_lufs:
                        warnings.append(
                            f"{part.where}: brought to {line.lufs:.1f} LUFS, not {self.loudness_lufs:.1f}: "
                            "louder would clip"
                        )
                if mark is None:  # a heading with no line: it marks where the file is now
                    start = current.written + current.fader.held if current is not None else 0
                    mark = ChapterMark(chapter_index, chapter.title, output_index, start)
                marks.append(mark)
                chapter_index += 1
            if current is None:
                continue
            if pending_ms:
                current.push(np.zeros(_samples(pending_ms, sample_rate), dtype=np.float32))
            samples = await anyio.to_thread.run_sync(current.close)
            sizes.append((current.index, samples))
        return _Narrated(sample_rate, sizes, marks, lines, warnings)

    async def _open(self, index: int, sample_rate: int) -> _OpenOutput:
        writer = await anyio.to_thread.run_sync(self.target.open, index, sample_rate)
        self._writers.append(writer)
        assert len(self._writers) == index + 1
        return _OpenOutput(index, writer, Crossfader(sample_rate, CROSSFADE_MS))

    def _place(
        self, out: _OpenOutput, audio: _LineAudio, part: Speech, pause_ms: int, number: int, chapter: int
    ) -> TimedLine:
        """In a worker thread: the pause owed, then the leveled line, into the file; where the line landed."""
        if self.loudness_lufs:
            leveled = level_line(audio.pcm, audio.sample_rate, self.loudness_lufs)
            pcm, measured, lufs, gain = leveled.pcm, leveled.measured_lufs, leveled.lufs, leveled.gain_db
        else:
            pcm, measured, lufs, gain = audio.pcm, None, None, 0.0
        if pause_ms:
            out.push(np.zeros(_samples(pause_ms, audio.sample_rate), dtype=np.float32))
        start = out.push(pcm)
        end = start + len(pcm)
        bounds = [s for _, _, s in audio.segments[1:]] + ([len(pcm)] if audio.segments else [])
        segments = tuple(
            TimedSegment(index, text, start + begin, start + stop)
            for (index, text, begin), stop in zip(audio.segments, bounds, strict=True)
        )
        return TimedLine(
            number=number,
            where=part.where,
            chapter=chapter,
            output=out.index,
            voice=part.voice,
            voice_id=audio.ready.voice_id,
            voice_name=audio.ready.voice_name,
            text=part.text,
            start=start,
            end=end,
            segments=segments,
            words=tuple(TimedWord(word, start + begin, start + stop) for word, begin, stop in audio.words),
            measured_lufs=measured,
            lufs=lufs,
            gain_db=gain,
        )

    async def _speak(self, line: Speech, voice: VoiceRecord, done_lines: int, total: int) -> _LineAudio:
        """One line, whole, in its voice; progress per line and per segment."""
        if self._cancelled:
            raise NarrationCancelled("the script was cancelled")
        label = f"line {done_lines + 1}/{total} ({line.voice})"
        await self._report(done_lines, total, label)
        request = NarrationRequest(
            text=line.text,
            voice=voice.id,
            seed=self.seed if line.seed is None else line.seed,
            pronunciation=line.pronunciation,
        )
        pieces: list[np.ndarray] = []
        segments: list[tuple[int, str, int]] = []
        ready: VoiceReady | None = None
        async with Narration(self.app, request) as narration:
            self._current.append(narration)
            if self._cancelled:
                narration.cancel()
            try:
                async for event in narration:
                    if isinstance(event, VoiceReady):
                        ready = event
                    elif isinstance(event, Audio):
                        pieces.append(event.pcm)
                        if not segments or segments[-1][0] != event.segment_index:
                            segments.append((event.segment_index, event.text, event.start_sample))
                        fraction = (event.segment_index + 1) / max(event.segment_count, 1)
                        await self._report(
                            done_lines + fraction,
                            total,
                            f"{label}: segment {event.segment_index + 1}/{event.segment_count}",
                        )
                    elif isinstance(event, Done):
                        assert ready is not None
                        pcm = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
                        line_audio = _LineAudio(pcm, event.sample_rate, ready, event, segments)
                        if self.words:
                            await self._align(line_audio)
                        return line_audio
            finally:
                self._current.remove(narration)
        raise NarrationCancelled("the script was cancelled")

    async def _align(self, line: _LineAudio) -> None:
        """Word times from Whisper's alignment of each segment's known text, or a note saying why not."""
        host = self.app.host
        async with host.lease() as engine:
            if not isinstance(engine, Engine):
                line.notes.append("word timing needs the local engine (--engine local): none given")
                return
            bounds = [begin for _, _, begin in line.segments[1:]] + [len(line.pcm)]
            for (_, text, begin), stop in zip(line.segments, bounds, strict=True):

                def align(piece: np.ndarray = line.pcm[begin:stop], said: str = text) -> list[WordTime]:
                    return engine.align_words(piece, line.sample_rate, said)

                try:
                    found = await host.work(align)
                except (CheckpointError, AudioInputError) as exc:
                    line.notes.append(f"no word timing: {exc}")
                    return
                line.words += [
                    (w.word, begin + round(w.start_s * line.sample_rate), begin + round(w.end_s * line.sample_rate))
                    for w in found
                ]

    async def _report(self, done: float, total: float, message: str) -> None:
        """Progress from a worker thread, as the engine reports it (a face's relay hops back to the loop);
        never backwards, though the next line may report before the last one is done."""
        self._reported = max(self._reported, done)
        if self.progress is not None:
            await anyio.to_thread.run_sync(self.progress, self._reported, total, message)


def _samples(ms: int, sample_rate: int) -> int:
    return round(ms * sample_rate / 1000)
