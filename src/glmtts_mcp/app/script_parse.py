"""A multi-voice script, read from its text form or from structured items, checked before any work.

Text form, one line per line:

    # Chapter One              a chapter heading (one output file per chapter when asked)
    Alice: Hello there.        a line spoken by the voice named Alice (a library name or id)
    and how are you?           no name: the previous speaker goes on, as a line of its own
    [pause 800ms]              silence (ms or s), on its own or inside a line
                               a blank line: a paragraph pause

Structured items are `{voice, text, pause_after_ms?, seed?, pronunciation?}`, `{pause_ms}` or `{chapter}`. Both forms
become the same `Script`: chapters of `Speech` and `Silence` in order. Names are not looked up here (the
script narration resolves them all against the library before it synthesizes anything).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from glmtts_mcp.app.narration import MAX_SEED
from glmtts_mcp.engine.types import PronunciationMode
from glmtts_mcp.errors import Term, UserError

LINE_GAP_MS = 300  # between two lines with nothing else between them
PARAGRAPH_MS = 700  # a blank line between two lines
MAX_PAUSE_MS = 60_000
MAX_NAME_CHARS = 64

_PAUSE = re.compile(r"\[\s*pause\s+(\d+(?:\.\d+)?)\s*(ms|s)\s*\]", re.IGNORECASE)
_PAUSE_LIKE = re.compile(r"\[\s*pause\b[^\]]*\]?", re.IGNORECASE)
_SPEAKER = re.compile(rf"^([^\s:#\[][^:\n]{{0,{MAX_NAME_CHARS - 1}}}?)\s*:(?:\s+(\S.*))?$")
_HEADING = re.compile(r"^#+(?:\s+(.*))?$")


@dataclass(frozen=True)
class Speech:
    """A line of the script: `text` in the voice `voice` (as the script names it)."""

    voice: str
    text: str
    seed: int | None
    where: str  # "line 12" or "item 3": how errors point at it
    pronunciation: PronunciationMode | None = None  # None: the script's (or the server's) mode


@dataclass(frozen=True)
class Silence:
    ms: int


@dataclass
class Chapter:
    title: str | None
    parts: list[Speech | Silence] = field(default_factory=list)

    @property
    def lines(self) -> list[Speech]:
        return [p for p in self.parts if isinstance(p, Speech)]


@dataclass(frozen=True)
class Script:
    chapters: tuple[Chapter, ...]

    @property
    def lines(self) -> list[Speech]:
        return [line for chapter in self.chapters for line in chapter.lines]


class ScriptItem(BaseModel):
    """One structured item: a line (`voice` and `text`), a pause (`pause_ms`) or a chapter heading (`chapter`)."""

    model_config = ConfigDict(extra="forbid")

    voice: str | None = Field(default=None, min_length=1, max_length=256, description="voice id or name")
    text: str | None = Field(default=None, description="what the voice says")
    pause_after_ms: int | None = Field(
        default=None, ge=0, le=MAX_PAUSE_MS, description=f"silence after the line (default {LINE_GAP_MS})"
    )
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED, description="this line's random seed")
    pronunciation: PronunciationMode | None = Field(
        default=None, description="text or phoneme for this line (docs/pronunciation.md); default the server's"
    )
    pause_ms: int | None = Field(default=None, ge=0, le=MAX_PAUSE_MS, description="a pause on its own")
    chapter: str | None = Field(default=None, max_length=200, description="a chapter heading (its title)")


def _problem(where: str, problem: str, fix: str) -> UserError:
    return UserError(f"{where} of {{argument}}: {problem}", fix, argument=Term.SCRIPT)


def _pause_ms(match: re.Match[str], where: str) -> int:
    value, unit = float(match.group(1)), match.group(2).lower()
    ms = round(value * 1000 if unit == "s" else value)
    if ms > MAX_PAUSE_MS:
        raise _problem(where, f"a pause of {ms} ms is too long", f"use at most {MAX_PAUSE_MS} ms per pause marker")
    return ms


class _Builder:
    """Chapters of speech and silence, with the default gaps between lines filled in at the end."""

    def __init__(self, max_line_chars: int) -> None:
        self.max_line_chars = max_line_chars
        self.chapters: list[Chapter] = [Chapter(None)]
        self._gap: int | None = None  # the pause asked for after the last line, if any

    def chapter(self, title: str | None) -> None:
        self._gap = None  # a chapter ends with its last line (or the pause written after it)
        self.chapters.append(Chapter(title or None))

    def speech(
        self,
        voice: str,
        text: str,
        seed: int | None,
        where: str,
        gap_after: int | None = None,
        pronunciation: PronunciationMode | None = None,
    ) -> None:
        text = text.strip()
        if not text:
            return
        if len(text) > self.max_line_chars:
            raise UserError(
                f"{where} of {{argument}} has {len(text)} characters; the limit per line is {self.max_line_chars}",
                "split it into several lines, or raise {max_text_chars}",
                argument=Term.SCRIPT,
            )
        self._close_gap()
        self.chapters[-1].parts.append(Speech(voice, text, seed, where, pronunciation))
        self._gap = gap_after

    def pause(self, ms: int) -> None:
        """Silence asked for: it replaces the default gap after the last line."""
        if self._gap is None and self._after_speech():
            self._gap = 0
        if ms:
            self.chapters[-1].parts.append(Silence(ms))

    def paragraph(self) -> None:
        if self._gap is None and self._after_speech():
            self._gap = PARAGRAPH_MS

    def _after_speech(self) -> bool:
        parts = self.chapters[-1].parts
        return bool(parts) and isinstance(parts[-1], Speech)

    def _close_gap(self) -> None:
        """Before the next line (or heading): the silence owed to the last line."""
        if self._after_speech():
            gap = LINE_GAP_MS if self._gap is None else self._gap
            if gap:
                self.chapters[-1].parts.append(Silence(gap))
        self._gap = None

    def script(self) -> Script:
        chapters = tuple(c for c in self.chapters if c.lines or c.title is not None)
        if not any(c.lines for c in chapters):
            raise UserError(
                "{argument} has no line to speak", "write lines as `Name: text`, one per line", argument=Term.SCRIPT
            )
        return Script(chapters)


def _checked_size(size: int, max_script_chars: int) -> None:
    if size > max_script_chars:
        raise UserError(
            f"{{argument}} has {size} characters; the limit is {max_script_chars}",
            "split it into several scripts (a chapter each), or raise {max_script_chars}",
            argument=Term.SCRIPT,
        )


def parse_script_text(text: str, max_line_chars: int, max_script_chars: int) -> Script:
    """The script of its text form (see the module's docstring)."""
    _checked_size(len(text), max_script_chars)
    build = _Builder(max_line_chars)
    speaker: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line, where = raw.strip(), f"line {number}"
        if not line:
            build.paragraph()
            continue
        heading = _HEADING.match(line)
        if heading:
            build.chapter((heading.group(1) or "").strip())
            continue
        named = _SPEAKER.match(line)
        if named:
            speaker, line = named.group(1).strip(), named.group(2) or ""
        elif speaker is None and _PAUSE.sub("", line).strip():
            raise _problem(
                where, "it names no speaker", "begin it with a voice's name and a colon, as `Alice: Hello there.`"
            )
        _speech_with_pauses(build, speaker, line, where)
    return build.script()


def _speech_with_pauses(build: _Builder, voice: str | None, line: str, where: str) -> None:
    """A line's text, cut at its `[pause ...]` markers into speech and silence."""
    position = 0
    for match in _PAUSE.finditer(line):
        if voice is not None:
            build.speech(voice, _checked_brackets(line[position : match.start()], where), None, where)
        build.pause(_pause_ms(match, where))
        position = match.end()
    rest = _checked_brackets(line[position:], where)
    if rest.strip():
        assert voice is not None  # a line with words has a speaker (checked by the caller)
        build.speech(voice, rest, None, where)


def _checked_brackets(text: str, where: str) -> str:
    """Text with no pause marker left in it: a malformed one is refused rather than spoken."""
    bad = _PAUSE_LIKE.search(text)
    if bad:
        raise _problem(where, f"{bad.group(0)!r} is not a pause", "write a pause as `[pause 800ms]` or `[pause 1.5s]`")
    return text


def parse_script_items(items: Sequence[ScriptItem], max_line_chars: int, max_script_chars: int) -> Script:
    """The script of structured items (already validated field by field by their model)."""
    _checked_size(sum(len(item.text or "") for item in items), max_script_chars)
    build = _Builder(max_line_chars)
    for number, item in enumerate(items, start=1):
        where = f"item {number}"
        kinds = [name for name in ("text", "pause_ms", "chapter") if getattr(item, name) is not None]
        line_fields = any(
            value is not None for value in (item.voice, item.pause_after_ms, item.seed, item.pronunciation)
        )
        if len(kinds) != 1 or (line_fields and kinds != ["text"]):
            raise _problem(
                where,
                "an item is one of a line, a pause or a chapter",
                "give it `voice` and `text`, or `pause_ms` alone, or `chapter` alone",
            )
        if item.chapter is not None:
            build.chapter(item.chapter.strip())
        elif item.pause_ms is not None:
            build.pause(item.pause_ms)
        else:
            if item.voice is None or not (item.text or "").strip():
                raise _problem(where, "a line needs a `voice` and some `text`", "give both")
            assert item.text is not None
            build.speech(
                item.voice.strip(),
                item.text,
                item.seed,
                where,
                gap_after=item.pause_after_ms,
                pronunciation=item.pronunciation,
            )
    return build.script()


def voice_names(script: Script) -> dict[str, list[str]]:
    """Each voice the script names, with where it is named (in order of first use)."""
    named: dict[str, list[str]] = {}
    for line in script.lines:
        named.setdefault(line.voice, []).append(line.where)
    return named


def describe_places(places: Iterable[str], most: int = 3) -> str:
    """'line 3, line 9 and 4 more'."""
    places = list(places)
    shown = ", ".join(places[:most])
    return shown + (f" and {len(places) - most} more" if len(places) > most else "")
