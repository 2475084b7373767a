"""The reference processing is part of a voice: recorded in meta.json and in the id."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from voicelib_helpers import RATE, make_pcm, make_voice

from glmtts_mcp.voices import VoiceLibrary
from glmtts_mcp.voices.identity import canonical_pcm, voice_id
from glmtts_mcp.voices.reference_file import decode_reference


def test_the_same_samples_under_two_processings_are_two_voices(library: VoiceLibrary) -> None:
    pcm = make_pcm(5)
    clean, existed_clean = library.get_or_create(pcm, RATE, "hi", lambda: make_voice(1))
    upstream, existed_upstream = library.get_or_create(pcm, RATE, "hi", lambda: make_voice(2), processing="upstream")
    assert not existed_clean and not existed_upstream and clean.id != upstream.id
    assert (clean.reference_processing, upstream.reference_processing) == ("clean", "upstream")
    meta = json.loads((library.root / "voices" / upstream.id / "meta.json").read_text())
    assert meta["reference_processing"] == "upstream"
    again, existed = library.get_or_create(pcm, RATE, "hi", lambda: make_voice(3), processing="upstream")
    assert existed and again.id == upstream.id


def test_clean_ids_are_unchanged_and_an_old_meta_reads_as_clean(open_library: Callable[..., VoiceLibrary]) -> None:
    """Voices cloned before the setting existed keep their ids and read as `clean`."""
    library = open_library()
    pcm = make_pcm(6)
    record, _ = library.get_or_create(pcm, RATE, "hi", lambda: make_voice(1))
    assert record.id == voice_id(pcm, RATE, "hi")  # the id rule of earlier versions
    meta_path = library.root / "voices" / record.id / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["reference_processing"]
    meta_path.write_text(json.dumps(meta))
    assert open_library().resolve(record.id).reference_processing == "clean"


def test_an_upstream_voice_survives_export_and_import(
    open_library: Callable[..., VoiceLibrary], tmp_path: Path
) -> None:
    """The archive check recomputes the id with the recorded processing."""
    source = open_library(tmp_path / "a")
    record, _ = source.get_or_create(make_pcm(7), RATE, "hi", lambda: make_voice(1), processing="upstream")
    archive = source.export_voice(record.id, tmp_path)
    imported, existed = open_library(tmp_path / "b").import_voice(archive)
    assert not existed and imported.id == record.id and imported.reference_processing == "upstream"


def test_a_stereo_upstream_voice_keeps_its_channels(open_library: Callable[..., VoiceLibrary], tmp_path: Path) -> None:
    """An `upstream` clip's channels are all kept (its features come from channel 0 and from the mix): the
    FLAC holds them, the id counts them (mono ids are unchanged), and an archive of it imports."""
    left, right = canonical_pcm(make_pcm(8)), canonical_pcm(make_pcm(9))
    stereo = np.stack([left, right], axis=1)
    source = open_library(tmp_path / "a")
    record, _ = source.get_or_create(stereo, RATE, "hi", lambda: make_voice(1), processing="upstream")
    assert record.id == voice_id(stereo, RATE, "hi", "upstream") != voice_id(left, RATE, "hi", "upstream")
    kept, rate = decode_reference("reference.flac", source.reference_audio_path(record.id).read_bytes())
    np.testing.assert_array_equal(kept, stereo)
    imported, existed = open_library(tmp_path / "b").import_voice(source.export_voice(record.id, tmp_path))
    assert not existed and imported.id == record.id and rate == RATE
