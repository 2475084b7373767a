"""What a narrated script returns on every face: its files with their subtitles, the chapters, each line's
timing and loudness, and the timeline (one entry per segment: line, voice, text, start, end)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from glmtts_mcp.app.script_narration import ScriptOutcome, TimedLine
from glmtts_mcp.app.subtitles import Cue, CueUnit, sample_ms, to_srt, to_vtt

T = TypeVar("T")


class ScriptTimelineEntry(BaseModel):
    """One segment (a sentence, as the engine cut the line) where it lies in its output file."""

    line: int = Field(description="1-based line number over the whole script")
    output: int = Field(description="0-based index of the output file it is in")
    chapter: int
    voice: str = Field(description="the voice as the script names it")
    voice_id: str
    segment: int = Field(description="0-based segment of its line")
    text: str
    start_ms: int
    end_ms: int
    start_sample: int
    end_sample: int


class ScriptWord(BaseModel):
    """One word where Whisper's alignment of the known text puts it (only when asked for)."""

    line: int
    output: int
    voice: str
    word: str
    start_ms: int
    end_ms: int
    start_sample: int
    end_sample: int


class ScriptLineTiming(BaseModel):
    """One line: where it lies in its output file, and the loudness it was brought to."""

    line: int
    where: str = Field(description="where the script wrote it: 'line 12' (text) or 'item 3' (structured)")
    output: int
    chapter: int
    voice: str
    voice_id: str
    voice_name: str | None = None
    text: str
    start_ms: int
    end_ms: int
    start_sample: int
    end_sample: int
    measured_lufs: float | None = Field(description="the line's integrated loudness as the model made it")
    loudness_lufs: float | None = Field(description="its loudness in the output (null: not leveled, or silent)")
    gain_db: float


class ScriptChapterMark(BaseModel):
    chapter: int
    title: str | None
    output: int
    start_ms: int
    start_sample: int


class ScriptOutputFile(BaseModel):
    """One audio file of the script (the whole script, or one chapter) and its subtitles."""

    output: int
    duration_s: float
    samples: int
    bytes: int
    path: str | None = Field(default=None, description="the saved audio file")
    uri: str | None = Field(default=None, description="audio://{id}: the saved audio as a resource")
    url: str | None = Field(default=None, description="where to download it (REST)")
    srt: str = Field(description="SRT subtitles, one cue per segment or line, with the speaker's name")
    vtt: str = Field(description="WebVTT subtitles, the speaker in a voice span <v Name>")


class NarrateScriptResult(BaseModel):
    format: str
    sample_rate: int = Field(description="the rate sample offsets count at")
    loudness_target_lufs: float | None = Field(description="every line's target loudness (null: not leveled)")
    cues: CueUnit = Field(description="what one subtitle cue is: a segment (sentence) or a line")
    outputs: list[ScriptOutputFile]
    chapters: list[ScriptChapterMark]
    lines: list[ScriptLineTiming]
    timeline: list[ScriptTimelineEntry]
    words: list[ScriptWord] = Field(
        default_factory=list, description="word times (asked for with `words`; Whisper's alignment of the text)"
    )
    voices: dict[str, str] = Field(description="each name the script uses -> the voice id it resolved to")
    returned: list[str] = Field(default_factory=list, description="the return-mode parts actually in this result")
    note: str | None = None
    timings: dict[str, float]
    warnings: list[str] = Field(default_factory=list)


def script_cues(lines: list[TimedLine], unit: CueUnit, sample_rate: int) -> list[Cue]:
    """The subtitle cues of one output's lines."""
    cues = []
    for line in lines:
        spans = (
            [(line.start, line.end, line.text)] if unit == "line" else [(s.start, s.end, s.text) for s in line.segments]
        )
        speaker = line.voice_name or line.voice
        for start, end, text in spans:
            cues.append(Cue(sample_ms(start, sample_rate), sample_ms(end, sample_rate), speaker, text))
    return cues


def script_result(
    outcome: ScriptOutcome[T],
    fmt: str,
    loudness_lufs: float,
    unit: CueUnit,
    file_fields: Callable[[T], dict[str, Any]],
) -> NarrateScriptResult:
    """The result of a narrated script; `file_fields(file)` says where a face's file is (path, uri, url, bytes)."""
    rate = outcome.sample_rate

    def ms(sample: int) -> int:
        return sample_ms(sample, rate)

    outputs = []
    for output in outcome.outputs:
        cues = script_cues([line for line in outcome.lines if line.output == output.index], unit, rate)
        outputs.append(
            ScriptOutputFile(
                output=output.index,
                duration_s=round(output.samples / rate, 3) if rate else 0.0,
                samples=output.samples,
                srt=to_srt(cues),
                vtt=to_vtt(cues),
                **file_fields(output.file),
            )
        )
    lines = [
        ScriptLineTiming(
            line=line.number,
            where=line.where,
            output=line.output,
            chapter=line.chapter,
            voice=line.voice,
            voice_id=line.voice_id,
            voice_name=line.voice_name,
            text=line.text,
            start_ms=ms(line.start),
            end_ms=ms(line.end),
            start_sample=line.start,
            end_sample=line.end,
            measured_lufs=_rounded(line.measured_lufs),
            loudness_lufs=_rounded(line.lufs),
            gain_db=round(line.gain_db, 2),
        )
        for line in outcome.lines
    ]
    timeline = [
        ScriptTimelineEntry(
            line=line.number,
            output=line.output,
            chapter=line.chapter,
            voice=line.voice,
            voice_id=line.voice_id,
            segment=segment.index,
            text=segment.text,
            start_ms=ms(segment.start),
            end_ms=ms(segment.end),
            start_sample=segment.start,
            end_sample=segment.end,
        )
        for line in outcome.lines
        for segment in line.segments
    ]
    words = [
        ScriptWord(
            line=line.number,
            output=line.output,
            voice=line.voice,
            word=word.word,
            start_ms=ms(word.start),
            end_ms=ms(word.end),
            start_sample=word.start,
            end_sample=word.end,
        )
        for line in outcome.lines
        for word in line.words
    ]
    chapters = [
        ScriptChapterMark(chapter=m.index, title=m.title, output=m.output, start_ms=ms(m.start), start_sample=m.start)
        for m in outcome.chapters
    ]
    return NarrateScriptResult(
        format=fmt,
        sample_rate=rate,
        loudness_target_lufs=loudness_lufs or None,
        cues=unit,
        outputs=outputs,
        chapters=chapters,
        lines=lines,
        timeline=timeline,
        words=words,
        voices={name: record.id for name, record in outcome.voices.items()},
        timings={k: round(v, 3) for k, v in outcome.timings.items()},
        warnings=list(outcome.warnings),
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
