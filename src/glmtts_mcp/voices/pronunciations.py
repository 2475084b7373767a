"""Pronunciation dictionaries: entries `text -> reading`, checked once here, wherever they come from.

A reading is pinyin with tone numbers ("chong2 qing4": every word letters then a tone digit), turned into
the model's phoneme tokens and matched in the normalised text, or else a plain-text respelling ("Nguyen" ->
"win"), substituted in the raw text before normalisation. Both are applied longest key first in one pass:
a replacement is never read again. The file format (``pronunciations.json``, in the library root for the
global dictionary and in a voice's folder for its own) is
``{"format": "glmtts-mcp-pronunciations", "version": 1, "entries": {"重庆": "chong2 qing4"}}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from glmtts_mcp.engine.frontend.g2p import ReadingError, reading_tokens
from glmtts_mcp.errors import Term, UserError

FILE_NAME = "pronunciations.json"
FILE_FORMAT = "glmtts-mcp-pronunciations"
MAX_FILE_BYTES = 1 << 20
MAX_ENTRIES = 2000
MAX_TEXT_CHARS = 64
MAX_READING_CHARS = 256
_PINYIN_WORD = re.compile(r"(?:[a-zA-ZüÜ:]+[0-9])+")

ReadingKind = Literal["pinyin", "respelling"]


@dataclass(frozen=True)
class Entry:
    """One checked entry: what the user wrote and what the model is given."""

    text: str
    reading: str
    kind: ReadingKind
    replacement: str  # phoneme tokens (pinyin) or the respelling's text


def _refuse(text: str, problem: str, fix: str) -> UserError:
    return UserError(f"{{argument}} entry {text!r}: {problem}", fix, argument=Term.PRONUNCIATIONS)


def reading_kind(reading: str) -> ReadingKind:
    """Pinyin when every word is letters each followed by a tone digit; anything else is a respelling."""
    words = reading.split()
    return "pinyin" if words and all(_PINYIN_WORD.fullmatch(word) for word in words) else "respelling"


def check_entry(text: str, reading: str) -> Entry:
    """One entry, or a UserError naming it and what is wrong."""
    if not isinstance(text, str) or not isinstance(reading, str):
        raise _refuse(str(text), "text and reading must both be strings", "write the entry as text: reading")
    text, reading = text.strip(), " ".join(reading.split())
    if not text:
        raise _refuse(text, "the text is empty", "give the word or name to read differently")
    if len(text) > MAX_TEXT_CHARS or len(reading) > MAX_READING_CHARS:
        raise _refuse(
            text[:MAX_TEXT_CHARS],
            f"over {MAX_TEXT_CHARS} characters of text or {MAX_READING_CHARS} of reading",
            "use one word or name per entry",
        )
    if not reading:
        raise _refuse(text, "the reading is empty", 'give pinyin with tone numbers ("chong2 qing4") or a respelling')
    if "<|" in text or "<|" in reading:
        raise _refuse(text, "it contains '<|'", "write pinyin with tone numbers, not the model's tokens")
    if reading_kind(reading) == "respelling":
        return Entry(text, reading, "respelling", reading)
    try:
        tokens = reading_tokens(reading)
    except ReadingError as exc:
        raise _refuse(text, str(exc), "write each syllable as pinyin followed by its tone 1-5, e.g. hang2") from exc
    syllables = len(re.findall(r"[0-9]", reading))
    if syllables > max(8, 2 * len(text)):
        raise _refuse(
            text, f"{syllables} syllables for {len(text)} characters", "give one syllable per character it reads"
        )
    return Entry(text, reading, "pinyin", tokens)


def check_dictionary(entries: Mapping[str, str]) -> dict[str, Entry]:
    """Every entry checked, at most MAX_ENTRIES, and no respellings that lead back to each other."""
    if not isinstance(entries, Mapping):
        raise UserError(
            "{argument} is not a set of entries", "pass an object of text: reading", argument=Term.PRONUNCIATIONS
        )
    if len(entries) > MAX_ENTRIES:
        raise UserError(
            f"{{argument}} has {len(entries)} entries; the limit is {MAX_ENTRIES}",
            "keep the entries for words the model misreads",
            argument=Term.PRONUNCIATIONS,
        )
    checked: dict[str, Entry] = {}
    for text, reading in entries.items():
        entry = check_entry(text, reading)
        checked[entry.text] = entry
    _refuse_cycles(checked)
    return checked


def _refuse_cycles(entries: Mapping[str, Entry]) -> None:
    """A respelling that holds another entry's text, which in turn leads back, says two opposite things."""
    respellings = {e.text: e.reading for e in entries.values() if e.kind == "respelling"}
    leads = {a: [b for b in respellings if b != a and b in reading] for a, reading in respellings.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in leads[node]:
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                raise _refuse(
                    nxt,
                    "respellings lead back to it: " + " -> ".join(repr(t) for t in cycle),
                    "remove one of these entries",
                )
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(respellings):
        if start not in state:
            visit(start, [start])


def to_bytes(entries: Mapping[str, Entry]) -> bytes:
    """The file's bytes (entries sorted, UTF-8, human-editable)."""
    document = {
        "format": FILE_FORMAT,
        "version": 1,
        "entries": {text: entries[text].reading for text in sorted(entries)},
    }
    return (json.dumps(document, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def from_bytes(data: bytes, where: str) -> dict[str, Entry]:
    """A dictionary file's entries, checked; a UserError naming `where` for anything else."""
    if len(data) > MAX_FILE_BYTES:
        raise UserError(
            f"{where} is {len(data)} bytes, over the {MAX_FILE_BYTES}-byte limit for a pronunciation dictionary",
            "keep the entries for words the model misreads",
        )
    try:
        document = json.loads(data.decode("utf-8"))
        ok = isinstance(document, dict) and document.get("format") == FILE_FORMAT
        entries = document["entries"] if ok else None
    except (ValueError, KeyError) as exc:
        raise UserError(f"{where} is not a pronunciation dictionary ({exc})", _FORMAT_FIX) from exc
    if not isinstance(entries, dict):
        raise UserError(f"{where} is not a pronunciation dictionary", _FORMAT_FIX)
    return check_dictionary(entries)


_FORMAT_FIX = 'write {"format": "glmtts-mcp-pronunciations", "version": 1, "entries": {"text": "reading"}}'
