"""Subtitles of a narrated script: SRT (the `srt` package) and WebVTT (`webvtt-py`), never written by hand.

A cue is one segment (a sentence, as the engine cut the text) or one line, with the speaker's name:
`Alice: ...` in SRT, which has no speaker field, and a voice span `<v Alice>...` in WebVTT. Its times
are the sample offsets the narration recorded, rounded to the millisecond (the resolution of both formats).
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import srt
import webvtt
from webvtt.models import Timestamp

CueUnit = Literal["segment", "line"]


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    speaker: str
    text: str


def sample_ms(sample: int, sample_rate: int) -> int:
    """A sample offset in whole milliseconds (rounded half up, as a cue time is read)."""
    return (sample * 1000 * 2 + sample_rate) // (2 * sample_rate)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def to_srt(cues: list[Cue]) -> str:
    subtitles = [
        srt.Subtitle(
            index=number,
            start=timedelta(milliseconds=cue.start_ms),
            end=timedelta(milliseconds=cue.end_ms),
            content=f"{_one_line(cue.speaker)}: {_one_line(cue.text)}",
        )
        for number, cue in enumerate(cues, start=1)
    ]
    return srt.compose(subtitles, reindex=False)


def to_vtt(cues: list[Cue]) -> str:
    document = webvtt.WebVTT()
    for number, cue in enumerate(cues, start=1):
        speaker = html.escape(_one_line(cue.speaker).replace(">", " "), quote=False)
        document.captions.append(
            webvtt.Caption(
                start=str(Timestamp.from_seconds(cue.start_ms / 1000)),
                end=str(Timestamp.from_seconds(cue.end_ms / 1000)),
                text=f"<v {speaker}>{html.escape(_one_line(cue.text), quote=False)}",
                identifier=str(number),
            )
        )
    out = io.StringIO()
    document.write(out)
    return out.getvalue()
