"""Session and lifetime counters; lifetime totals persist in the root across library instances."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from voicelib_helpers import RATE, make_pcm, make_voice

from glmtts_mcp.voices import VoiceLibrary, VoiceNotFound


def test_session_counters(library: VoiceLibrary) -> None:
    record, _ = library.get_or_create(make_pcm(1), RATE, "t", lambda: make_voice(1))
    library.get_or_create(make_pcm(1), RATE, "t", lambda: make_voice(1))
    for _ in range(3):
        library.load_features(record.id)
    with pytest.raises(VoiceNotFound):
        library.load_features("nobody")
    stats = library.stats()
    s = stats.session
    assert s.clones_created == 1 and s.clones_existing == 1 and s.memory_hits == 3 and s.misses == 1
    assert s.extraction_s_spent == pytest.approx(0.75)
    assert s.extraction_s_saved == pytest.approx(4 * 0.75)  # one repeated clone + three loads
    assert s.memory_load_s_total > 0 and s.memory_load_ms_mean is not None and s.disk_load_ms_mean is None
    assert stats.voice_count == 1 and stats.broken_voices == 0
    assert stats.features_disk_bytes == record.features_bytes
    assert stats.disk_bytes > record.features_bytes + record.reference_bytes
    assert stats.memory_bytes > 0 and stats.memory_voices == 1


def test_lifetime_persists_across_instances(open_library: Callable[..., VoiceLibrary]) -> None:
    first = open_library()
    record, _ = first.get_or_create(make_pcm(1), RATE, "t", lambda: make_voice(1))
    first.load_features(record.id)
    first.close()
    second = open_library()
    assert second.stats().session.memory_hits == 0
    second.load_features(record.id)
    second.load_features(record.id)
    lifetime = second.stats().lifetime  # includes what this instance has not flushed yet
    assert lifetime.clones_created == 1 and lifetime.memory_hits == 2 and lifetime.disk_hits == 1
    second.close()
    third = open_library()
    stats = third.stats()
    assert stats.lifetime.memory_hits == 2 and stats.lifetime.disk_hits == 1 and stats.session.disk_hits == 0
    assert stats.lifetime.extraction_s_saved == pytest.approx(3 * 0.75)
    assert stats.lifetime_since is not None and stats.lifetime_since <= stats.session_started_at


def test_two_live_instances_add_up(open_library: Callable[..., VoiceLibrary]) -> None:
    a, b = open_library(), open_library()
    record, _ = a.get_or_create(make_pcm(1), RATE, "t", lambda: make_voice(1))
    b.load_features(record.id)
    a.load_features(record.id)
    a.flush()
    b.flush()
    b.flush()  # nothing pending: no double counting
    lifetime = open_library().stats().lifetime
    assert lifetime.memory_hits == 1 and lifetime.disk_hits == 1 and lifetime.clones_created == 1


def test_background_flush_and_last_used(open_library: Callable[..., VoiceLibrary]) -> None:
    library = open_library(flush_interval_s=0.1)
    record, _ = library.get_or_create(make_pcm(1), RATE, "t", lambda: make_voice(1))
    meta_path = library.root / "voices" / record.id / "meta.json"
    created = json.loads(meta_path.read_text())["last_used_at"]
    time.sleep(0.01)
    library.load_features(record.id)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats_file = library.root / "stats.json"
        if stats_file.exists() and json.loads(stats_file.read_text())["counters"]["memory_hits"] == 1:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the background timer never flushed the stats")
    deadline = time.monotonic() + 10
    while json.loads(meta_path.read_text())["last_used_at"] == created and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads(meta_path.read_text())["last_used_at"] > created
    assert library.resolve(record.id).last_used_at is not None


def test_corrupt_stats_file_starts_over(open_library: Callable[..., VoiceLibrary]) -> None:
    library = open_library()
    (library.root / "stats.json").write_text("{broken")
    library.get_or_create(make_pcm(1), RATE, "t", lambda: make_voice(1))
    library.flush()
    assert json.loads((library.root / "stats.json").read_text())["counters"]["clones_created"] == 1
