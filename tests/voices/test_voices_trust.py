"""Features are checked against the model's facts and their own reference; meta.json values against plausible
ranges: a hostile archive is refused and a hand-poisoned folder is listed as broken (issue 21, item 1)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from voicelib_helpers import RATE, make_pcm, make_tensors, make_voice

from forged_archives import FEATURE_EDITS, META_EDITS, edited_features, hostile_archives, members
from glmtts_mcp.app.core import feature_rules
from glmtts_mcp.engine.feature_limits import feature_limits
from glmtts_mcp.errors import Kind
from glmtts_mcp.voices import ArchiveError, BrokenVoice, FeatureRules, VoiceLibrary, VoiceLibraryError, VoiceRecord
from glmtts_mcp.voices.identity import canonical_pcm
from glmtts_mcp.voices.rules import expected_length

Opener = Callable[..., VoiceLibrary]


@pytest.fixture(scope="module")
def rules(tiny_checkpoint: Path) -> FeatureRules:
    """The tiny checkpoint's facts, as the server hands them to its library."""
    return feature_rules(feature_limits(tiny_checkpoint))


def reextract(pcm: np.ndarray, rate: int, transcript: str, language: str | None):
    """What an engine gives for the kept samples of make_pcm(seed): make_tensors(seed), as at clone time."""
    for seed in range(10):
        if np.array_equal(canonical_pcm(make_pcm(seed)), pcm):
            return make_tensors(seed), {"mel": 0.01}
    raise AssertionError("not a clip of these tests")


@pytest.fixture
def archives(open_library: Opener, rules: FeatureRules, tmp_path: Path) -> tuple[bytes, bytes]:
    """Exports of two healthy voices: 'Traveller' (seed 1) and 'Other' (seed 2)."""
    source = open_library(tmp_path / "source", rules=rules)
    source.get_or_create(make_pcm(1), RATE, "hello there", lambda: make_voice(1), name="Traveller")
    source.get_or_create(make_pcm(2), RATE, "hello there", lambda: make_voice(2), name="Other")
    return (
        source.export_voice("Traveller", tmp_path).read_bytes(),
        source.export_voice("Other", tmp_path).read_bytes(),
    )


def test_honest_archive_is_imported_with_features_extracted_here(
    open_library: Opener, rules: FeatureRules, archives: tuple[bytes, bytes], tmp_path: Path
) -> None:
    path = tmp_path / "traveller.zip"
    path.write_bytes(archives[0])
    target = open_library(tmp_path / "target", rules=rules, reextract=reextract)
    record, existed = target.import_voice(path)
    assert not existed and record.name == "Traveller" and record.timings == {"mel": 0.01}
    loaded = target.load_features(record.id)
    assert all(torch.equal(loaded.tensors[k], v) for k, v in make_tensors(1).items())
    assert target.stats().session.reextractions == 1


# Whether features come from their own reference takes the model (a re-extraction): the library alone checks
# everything else.
CASES = [*FEATURE_EDITS, *META_EDITS]
WITH_AND_WITHOUT_ENGINE = [(case, True) for case in [*CASES, "another voice's features"]] + [(c, False) for c in CASES]


@pytest.mark.parametrize(("case", "engine"), WITH_AND_WITHOUT_ENGINE)
def test_hostile_archive_refused_and_library_unchanged(
    open_library: Opener,
    rules: FeatureRules,
    archives: tuple[bytes, bytes],
    tmp_path: Path,
    case: str,
    engine: bool,
) -> None:
    data, needle = hostile_archives(members(archives[0]), members(archives[1]))[case]
    path = tmp_path / "hostile.zip"
    path.write_bytes(data)
    target = open_library(tmp_path / "target", rules=rules, reextract=reextract if engine else None)
    with pytest.raises(ArchiveError, match=re.escape(needle)) as refused:
        target.import_voice(path)
    assert refused.value.kind is Kind.INVALID and "export the voice again" in str(refused.value).lower()
    assert target.list_voices().voices == []
    assert not any((tmp_path / "target" / "voices").iterdir())
    assert target.stats().session.imports == 0


def test_features_of_another_model_are_replaced_not_compared(
    open_library: Opener, rules: FeatureRules, archives: tuple[bytes, bytes], tmp_path: Path
) -> None:
    """Another checkpoint's features cannot be compared with ours: they are re-extracted and ours kept."""
    swapped, _ = hostile_archives(members(archives[0]), members(archives[1]))["another voice's features"]
    path = tmp_path / "swapped.zip"
    path.write_bytes(swapped)
    target = open_library(tmp_path / "target", rules=rules, reextract=reextract, fingerprint="another-model")
    record, existed = target.import_voice(path)
    assert not existed and record.fingerprint == "another-model"
    assert torch.equal(
        target.load_features(record.id).tensors["speaker_embedding"], make_tensors(1)["speaker_embedding"]
    )


def poison_on_disk(library: VoiceLibrary, vid: str, case: str) -> None:
    """Edit a stored voice's files by hand the way `case` edits an archive, its hashes kept consistent."""
    folder = library.root / "voices" / vid
    meta = json.loads((folder / "meta.json").read_text())
    if case in FEATURE_EDITS:
        features = edited_features((folder / "features.safetensors").read_bytes(), FEATURE_EDITS[case][0])
        (folder / "features.safetensors").write_bytes(features)
        meta |= {"features_sha256": hashlib.sha256(features).hexdigest(), "features_bytes": len(features)}
    else:
        meta |= META_EDITS[case][0]
    (folder / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("case", [*FEATURE_EDITS, *META_EDITS])
def test_poisoned_folder_listed_as_broken_and_refused_for_use(
    open_library: Opener, rules: FeatureRules, tmp_path: Path, case: str
) -> None:
    library = open_library(tmp_path / "lib", rules=rules)
    poisoned = library.get_or_create(make_pcm(1), RATE, "t", lambda: make_voice(1), name="poisoned")[0].id
    healthy = library.get_or_create(make_pcm(2), RATE, "t", lambda: make_voice(2), name="healthy")[0].id
    poison_on_disk(library, poisoned, case)
    reopened = open_library(tmp_path / "lib", rules=rules)
    for lib in (library, reopened):  # the library that stored it notices the edit too
        listing = {v.id: v for v in lib.list_voices().voices}
        reason = FEATURE_EDITS[case][1] if case in FEATURE_EDITS else META_EDITS[case][1]
        assert reason in (listing[poisoned].broken or "") and "Delete it and clone it again" in listing[poisoned].broken
        assert listing[healthy].broken is None
        with pytest.raises(BrokenVoice, match="is broken") as refused:
            lib.load_features(poisoned)
        assert refused.value.kind is Kind.CONFLICT
        assert lib.load_features(healthy).tensors["prompt_mel"].shape == (25, 80)


def test_engine_output_that_breaks_the_rules_is_not_stored(open_library: Opener, rules: FeatureRules) -> None:
    library = open_library(rules=rules)
    bad = make_voice(1)
    bad.tensors["prompt_speech_ids"][0] = 10**12
    with pytest.raises(VoiceLibraryError, match="cannot be stored: prompt_speech_ids holds ids"):
        library.get_or_create(make_pcm(1), RATE, "t", lambda: bad)
    assert library.list_voices().voices == []


def test_lengths_allowed_for_a_duration() -> None:
    """Measured: speech tokens ceil(25 d), mel frames floor(50 d); two frames plus 2% either side."""
    assert expected_length(25.0, 2.05) == (48, 55)  # 51.25 -> ceil 52 inside
    assert expected_length(50.0, 29.9) == (1463, 1527)  # 1495 inside
    low, high = expected_length(25.0, 0.5)
    assert low <= 12 <= high and low <= 13 <= high


def _record(**changes: object) -> dict[str, object]:
    now = datetime.now(UTC).isoformat()
    meta: dict[str, object] = {
        "id": "0" * 20,
        "name": "v",
        "transcript": "t",
        "transcript_input": "t",
        "transcript_source": "user",
        "created_at": now,
        "last_used_at": now,
        "duration_s": 1.0,
        "sample_rate": 24000,
        "reference_sha256": "a" * 64,
        "reference_bytes": 10,
        "features_sha256": "b" * 64,
        "features_bytes": 10,
        "schema_version": 1,
        "fingerprint": "f",
    }
    return meta | changes


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("duration_s", -1e308),
        ("duration_s", 0.0),
        ("duration_s", 1e9),
        ("created_at", "9999-12-31T00:00:00Z"),
        ("created_at", "1970-01-01T00:00:00Z"),
        ("last_used_at", (datetime.now(UTC) + timedelta(days=2)).isoformat()),
        ("sample_rate", 0),
        ("sample_rate", 10**9),
        ("transcript", "x" * 30_000),
        ("language", "x" * 100),
        ("features_sha256", "not a digest"),
        ("reference_bytes", -1),
        ("timings", {"mel": -1.0}),
        ("tags", ["x" * 500]),
        ("id", "../../etc"),
    ],
)
def test_meta_values_out_of_range_are_refused(field: str, value: object) -> None:
    VoiceRecord.model_validate_json(json.dumps(_record()))  # the baseline is valid
    with pytest.raises(ValidationError, match=field):
        VoiceRecord.model_validate_json(json.dumps(_record(**{field: value})))
