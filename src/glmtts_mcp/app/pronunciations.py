"""Pronunciation dictionaries for every face: the global one, each voice's own, and what a narration reads.

Entries are checked in `voices/pronunciations.py`; here they are listed, added, removed, imported and
exported, and merged for a narration: global, then the voice's, then the request's inline entries (a later
scope wins for the same text).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from glmtts_mcp.app.core import App
from glmtts_mcp.app.schemas import PronunciationEntry, PronunciationsResult
from glmtts_mcp.engine.frontend.g2p import substitute
from glmtts_mcp.engine.frontend.text_normalize import TextFrontend
from glmtts_mcp.engine.types import Pronunciation, PronunciationMode
from glmtts_mcp.errors import Kind, Term, UserError
from glmtts_mcp.voices import VoiceNotFound
from glmtts_mcp.voices.pronunciations import Entry, check_dictionary, check_entry, from_bytes, to_bytes


def entries(app: App, voice: str | None) -> dict[str, str]:
    """text -> reading of the global dictionary (`voice` None) or of a voice's own."""
    return {text: entry.reading for text, entry in sorted(app.library.pronunciations(voice).items())}


def listing(app: App, voice: str | None, message: str | None = None) -> PronunciationsResult:
    """The dictionary as every face returns it (in a worker thread: it reads the file)."""
    voice_id = app.library.resolve(voice).id if voice is not None else None
    found = app.library.pronunciations(voice_id)
    return PronunciationsResult(
        voice_id=voice_id,
        entries=[
            PronunciationEntry(text=e.text, reading=e.reading, kind=e.kind, replacement=e.replacement)
            for _, e in sorted(found.items())
        ],
        message=message,
    )


def add(app: App, voice: str | None, text: str, reading: str) -> Entry:
    """Add or replace one entry; the whole dictionary is checked again (size, cycles) before it is written."""
    entry = check_entry(text, reading)
    current = app.library.pronunciations(voice)
    merged = check_dictionary({**{t: e.reading for t, e in current.items()}, entry.text: entry.reading})
    app.library.set_pronunciations(voice, merged)
    return entry


def remove(app: App, voice: str | None, text: str) -> None:
    """Remove one entry; an entry that is not there is an error naming it."""
    current = app.library.pronunciations(voice)
    if text.strip() not in current:
        raise UserError(
            f"{{argument}} has no entry {text.strip()!r}",
            "list the entries to see their exact text",
            argument=Term.PRONUNCIATIONS,
            kind=Kind.NOT_FOUND,
        )
    del current[text.strip()]
    app.library.set_pronunciations(voice, current)


def replace(app: App, voice: str | None, new: Mapping[str, str]) -> int:
    """Put `new` in place of the whole dictionary (checked first; empty removes it); how many entries it has."""
    checked = check_dictionary(new)
    app.library.set_pronunciations(voice, checked)
    return len(checked)


def import_file(app: App, voice: str | None, data: bytes, where: str, replace_all: bool = False) -> int:
    """Merge (or with `replace_all`, put in place of) the entries of a dictionary file; how many there are now."""
    incoming = {t: e.reading for t, e in from_bytes(data, where).items()}
    return replace(app, voice, incoming if replace_all else {**entries(app, voice), **incoming})


def export_bytes(app: App, voice: str | None) -> bytes:
    """The dictionary as a file in the documented format (docs/pronunciation.md)."""
    return to_bytes(app.library.pronunciations(voice))


def preview(
    app: App, text: str, voice: str | None, mode: PronunciationMode | None, inline: Mapping[str, str] | None
) -> tuple[PronunciationMode, str]:
    """(mode, text as read) for `text` in `voice`'s dictionaries without narrating it: the engine's own text
    path (normalisation, splitting, dictionaries, phoneme-in), which needs no model. A worker-thread call."""
    voice_id = app.library.resolve(voice).id if voice is not None else None
    wording = narration_pronunciation(app, mode, voice_id, inline, text)
    segments = TextFrontend(app.settings.text_chunk_chars).synthesis_segments(text, pronunciation=wording)
    return wording.mode, "".join(segments)


def narration_pronunciation(
    app: App, mode: PronunciationMode | None, voice_id: str | None, inline: Mapping[str, str] | None, text: str
) -> Pronunciation:
    """What the engine is given for one narration of `text` (in a worker thread: it reads the dictionary files);
    refused when the respellings make the text longer than the server's text limit."""
    merged: dict[str, Entry] = dict(app.library.pronunciations(None))
    if voice_id is not None:
        with contextlib.suppress(VoiceNotFound):  # deleted since its features loaded: it goes on as it began
            merged.update(app.library.pronunciations(voice_id))
    merged.update(check_dictionary(inline or {}))
    respellings = {e.text: e.replacement for e in merged.values() if e.kind == "respelling"}
    respelled = len(substitute(text, respellings)) if respellings else len(text)
    if respelled > app.settings.max_text_chars:
        raise UserError(
            f"{{argument}} has {respelled} characters once respelled; the limit is {app.settings.max_text_chars}",
            "split it into several requests, or shorten the respellings",
            argument=Term.TEXT,
        )
    return Pronunciation(
        mode=mode or app.settings.pronunciation,
        respellings=tuple((e.text, e.replacement) for e in merged.values() if e.kind == "respelling"),
        readings=tuple((e.text, e.replacement) for e in merged.values() if e.kind == "pinyin"),
    )
