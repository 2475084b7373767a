"""A voice's own pronunciation dictionary in the library: written atomically beside the voice, kept when
the voice is re-extracted, no part of its id, and a broken file is refused with its name."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from voicelib_helpers import RATE, make_pcm, make_tensors, make_voice

from glmtts_mcp.errors import UserError
from glmtts_mcp.voices import VoiceLibrary
from glmtts_mcp.voices.pronunciations import check_dictionary


def test_a_voice_dictionary_survives_reextraction(open_library: Callable[..., VoiceLibrary]) -> None:
    old = open_library(fingerprint="model-A")
    record, _ = old.get_or_create(make_pcm(1), RATE, "hello there", lambda: make_voice(1), name="kept")
    entries = check_dictionary({"重庆": "chong2 qing4", "GLM": "G L M"})
    old.set_pronunciations("kept", entries)
    folder = old.root / "voices" / record.id
    assert (folder / "pronunciations.json").is_file()
    assert sorted(p.name for p in (old.root / "tmp").iterdir()) == []  # nothing left half-written

    new = open_library(fingerprint="model-B", reextract=lambda *a: (make_tensors(7), {}))
    assert new.load_features("kept").tier == "reextracted"  # the folder was replaced whole
    assert new.pronunciations("kept") == entries and new.resolve("kept").id == record.id
    new.set_pronunciations(record.id, {})  # no entries: the file goes
    assert not (folder / "pronunciations.json").exists() and new.pronunciations("kept") == {}


def test_a_broken_dictionary_file_is_named(library: VoiceLibrary) -> None:
    (library.root / "pronunciations.json").write_text('{"format": "glmtts-mcp-pronunciations", "entries": {"x": ""}}')
    with pytest.raises(UserError, match="entry 'x': the reading is empty"):
        library.pronunciations(None)
    (library.root / "pronunciations.json").write_text("not json")
    with pytest.raises(UserError, match="global pronunciation dictionary is not a pronunciation dictionary"):
        library.pronunciations(None)
