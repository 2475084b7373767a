"""Stale features (new schema version or engine fingerprint) re-extracted from the kept reference audio."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from voicelib_helpers import RATE, SCHEMA, make_pcm, make_tensors, make_voice

from glmtts_mcp.voices import FeatureSchema, StaleVoice, VoiceLibrary, VoiceLibraryError
from glmtts_mcp.voices.identity import canonical_pcm

BUMPED = FeatureSchema(SCHEMA.version + 1, dict(SCHEMA.tensors))


class Reextractor:
    """An engine stand-in: records its inputs, returns new features."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, int, str, str | None]] = []

    def __call__(self, pcm: np.ndarray, rate: int, transcript: str, language: str | None):
        self.calls.append((pcm, rate, transcript, language))
        return make_tensors(1000 + len(self.calls)), {"speech_tokenizer": 0.75}


def test_fingerprint_change_reextracts_lazily(open_library: Callable[..., VoiceLibrary]) -> None:
    pcm = make_pcm(1)
    old = open_library(fingerprint="model-A")
    record, _ = old.get_or_create(pcm, RATE, "hello there", lambda: make_voice(1), name="kept")
    assert old.stale_voices() == []
    engine = Reextractor()
    new = open_library(fingerprint="model-B", reextract=engine)
    assert [r.id for r in new.stale_voices()] == [record.id]
    assert new.list_voices().voices[0].stale
    loaded = new.load_features("kept")
    assert loaded.tier == "reextracted" and len(engine.calls) == 1
    got_pcm, rate, transcript, language = engine.calls[0]
    assert rate == RATE and transcript == "hello there" and language == "en" and got_pcm.dtype == np.int16
    np.testing.assert_array_equal(got_pcm, canonical_pcm(pcm))  # exactly the kept 16-bit samples
    assert torch.equal(loaded.tensors["prompt_mel"], make_tensors(1001)["prompt_mel"])
    assert loaded.record.fingerprint == "model-B" and loaded.record.name == "kept" and loaded.record.id == record.id
    assert loaded.record.timings == {"speech_tokenizer": 0.75}
    assert new.stale_voices() == [] and new.load_features(record.id).tier == "memory"
    third = open_library(fingerprint="model-B", reextract=engine)
    assert third.load_features(record.id).tier == "disk" and len(engine.calls) == 1
    assert new.stats().session.reextractions == 1


def test_schema_bump_refresh_all(open_library: Callable[..., VoiceLibrary]) -> None:
    old = open_library()
    ids = [old.get_or_create(make_pcm(i), RATE, f"t{i}", lambda i=i: make_voice(i))[0].id for i in range(3)]
    engine = Reextractor()
    new = open_library(schema=BUMPED, reextract=engine)
    assert len(new.stale_voices()) == 3
    progress: list[tuple[float, float, str]] = []
    assert new.refresh_stale(lambda done, total, msg: progress.append((done, total, msg))) == 3
    assert [p[:2] for p in progress] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert new.stale_voices() == [] and len(engine.calls) == 3
    assert {new.resolve(v).schema_version for v in ids} == {BUMPED.version}
    assert new.refresh_stale() == 0


def test_schema_bump_without_callback(open_library: Callable[..., VoiceLibrary]) -> None:
    record, _ = open_library().get_or_create(make_pcm(1), RATE, "t", lambda: make_voice(1))
    bare = open_library(schema=BUMPED)
    with pytest.raises(StaleVoice, match="schema"):
        bare.load_features(record.id)
    with pytest.raises(VoiceLibraryError, match="re-extraction"):
        bare.refresh_stale()
    assert bare.stats().stale_voices == 1


def test_fingerprint_only_stale_without_callback_still_loads(open_library: Callable[..., VoiceLibrary]) -> None:
    record, _ = open_library(fingerprint="A").get_or_create(make_pcm(1), RATE, "t", lambda: make_voice(1))
    other = open_library(fingerprint="B")
    assert other.load_features(record.id).tier == "disk"
    assert [r.id for r in other.stale_voices()] == [record.id]


def test_failing_reextraction_leaves_voice_stale(open_library: Callable[..., VoiceLibrary]) -> None:
    record, _ = open_library(fingerprint="A").get_or_create(make_pcm(1), RATE, "t", lambda: make_voice(1))

    def broken_engine(pcm: np.ndarray, rate: int, transcript: str, language: str | None):
        bad = make_tensors(1)
        bad["prompt_mel"] = bad["prompt_mel"][0]
        return bad, {}

    new = open_library(fingerprint="B", reextract=broken_engine)
    assert new.refresh_stale() == 0
    with pytest.raises(VoiceLibraryError, match="prompt_mel"):
        new.load_features(record.id)
    assert [r.id for r in new.stale_voices()] == [record.id]
