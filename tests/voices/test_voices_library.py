"""Core behaviour of VoiceLibrary on real folders: clone once, resolve, load, list, rename, delete."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from voicelib_helpers import RATE, make_pcm, make_voice

from glmtts_mcp.voices import (
    InvalidVoiceName,
    NewVoiceData,
    VoiceExists,
    VoiceLibrary,
    VoiceLibraryError,
    VoiceNotFound,
)


def counting(data: NewVoiceData) -> tuple[Callable[[], NewVoiceData], list[int]]:
    calls: list[int] = []

    def create() -> NewVoiceData:
        calls.append(1)
        return data

    return create, calls


def test_voice_id_is_content_derived(library: VoiceLibrary) -> None:
    pcm = make_pcm(1)
    vid = library.voice_id_for(pcm, RATE, "hi")
    assert len(vid) == 20 and all(c in "0123456789abcdef" for c in vid)
    assert library.voice_id_for(pcm.copy(), RATE, "hi") == vid
    as_int16 = np.rint(pcm.astype(np.float64) * 32767).astype(np.int16)
    assert library.voice_id_for(as_int16, RATE, "hi") == vid
    assert library.voice_id_for(pcm, RATE, None) != library.voice_id_for(pcm, RATE, "")
    assert library.voice_id_for(pcm, RATE, "hi!") != vid
    assert library.voice_id_for(pcm, 16_000, "hi") != vid
    assert library.voice_id_for(make_pcm(2), RATE, "hi") != vid
    for bad in (np.zeros((2, 100), np.float32), np.array([], np.float32), np.array([np.nan], np.float32)):
        with pytest.raises(VoiceLibraryError):
            library.voice_id_for(bad, RATE, "hi")


def test_clone_once_then_existing(library: VoiceLibrary) -> None:
    pcm = make_pcm(1)
    create, calls = counting(make_voice(1))
    record, existed = library.get_or_create(pcm, RATE, "hello there", create, name="Alice")
    assert not existed and calls == [1]
    again, existed = library.get_or_create(pcm, RATE, "hello there", create)
    assert existed and calls == [1] and again.id == record.id and again.name == "Alice"
    folder = library.root / "voices" / record.id
    assert sorted(p.name for p in folder.iterdir()) == ["features.safetensors", "meta.json", "reference.flac"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["name"] == "Alice" and meta["transcript"] == "hello there" and meta["transcript_source"] == "user"
    assert meta["schema_version"] == library.schema.version
    assert meta["timings"] == {"speech_tokenizer": 0.25, "campplus": 0.5}
    assert meta["sample_rate"] == RATE and meta["created_at"] and meta["tags"] == ["test"]
    audio, rate = sf.read(folder / "reference.flac", dtype="int16")
    assert rate == RATE and sf.info(folder / "reference.flac").subtype == "PCM_16"
    assert np.array_equal(audio, np.rint(pcm.astype(np.float64) * 32767).astype(np.int16))
    assert library.reference_audio_path("alice") == folder / "reference.flac"


def test_whisper_transcript_kept_apart_from_id_input(library: VoiceLibrary) -> None:
    data = make_voice(3, transcript="what whisper heard")
    data.transcript_source = "whisper"
    record, _ = library.get_or_create(make_pcm(3), RATE, None, lambda: data)
    assert record.transcript == "what whisper heard" and record.transcript_input is None
    assert record.id == library.voice_id_for(make_pcm(3), RATE, None)


def test_default_names_are_readable_and_unique(library: VoiceLibrary) -> None:
    first, _ = library.get_or_create(make_pcm(1), RATE, "a", lambda: make_voice(1))
    assert first.name == f"voice-{first.id[:6]}"
    second, _ = library.get_or_create(make_pcm(2), RATE, "b", lambda: make_voice(2))
    assert second.name != first.name


def test_resolve_by_id_name_any_case(library: VoiceLibrary) -> None:
    record, _ = library.get_or_create(make_pcm(1), RATE, "a", lambda: make_voice(1), name="Narrator One")
    for key in (record.id, record.id.upper(), "narrator one", "NARRATOR ONE"):
        assert library.resolve(key).id == record.id
    with pytest.raises(VoiceNotFound, match="list_voices"):
        library.resolve("nobody")
    with pytest.raises(VoiceNotFound):
        library.resolve("0" * 20)


@pytest.mark.parametrize(
    "hostile",
    [
        "../x",
        "/etc",
        "/etc/passwd",
        "a\\b",
        "a/b",
        "x\x00y",
        "tab\there",
        "a" * 10_000,
        "",
        " padded",
        "..",
        ".hidden",
        "new\nline",
        "0123456789abcdef0123",
        "\u202eevil",
    ],
)
def test_hostile_names_and_ids_are_refused(library: VoiceLibrary, hostile: str) -> None:
    record, _ = library.get_or_create(make_pcm(1), RATE, "a", lambda: make_voice(1), name="safe")
    before = sorted(p.name for p in library.root.rglob("*"))
    with pytest.raises(InvalidVoiceName if hostile != "0123456789abcdef0123" else VoiceNotFound):
        library.resolve(hostile)
    with pytest.raises(InvalidVoiceName):
        library.rename(record.id, hostile)
    with pytest.raises(InvalidVoiceName):
        library.get_or_create(make_pcm(2), RATE, "b", lambda: make_voice(2), name=hostile)
    with pytest.raises((InvalidVoiceName, VoiceNotFound)):
        library.delete(hostile)
    assert sorted(p.name for p in library.root.rglob("*")) == before
    assert library.resolve("safe").id == record.id


def test_names_unique_case_insensitively_and_rename(library: VoiceLibrary) -> None:
    a, _ = library.get_or_create(make_pcm(1), RATE, "a", lambda: make_voice(1), name="Alice")
    b, _ = library.get_or_create(make_pcm(2), RATE, "b", lambda: make_voice(2), name="Bob")
    create, calls = counting(make_voice(3))
    with pytest.raises(VoiceExists, match="rename or delete"):
        library.get_or_create(make_pcm(3), RATE, "c", create, name="ALICE")
    assert calls == []  # refused before any extraction
    with pytest.raises(VoiceExists):
        library.rename(b.id, "alice")
    renamed = library.rename("alice", "ALICE")  # its own name in another case is fine
    assert renamed.name == "ALICE" and renamed.id == a.id
    renamed = library.rename(a.id, "Carol")
    assert library.resolve("carol").id == a.id
    with pytest.raises(VoiceNotFound):
        library.resolve("alice")
    meta = json.loads((library.root / "voices" / a.id / "meta.json").read_text())
    assert meta["name"] == "Carol"


def test_a_cached_voice_survives_writes_into_loaded_tensors(library: VoiceLibrary) -> None:
    data = make_voice(1)
    expected = {k: v.clone() for k, v in data.tensors.items()}
    record, _ = library.get_or_create(make_pcm(1), RATE, "a", lambda: data)
    data.tensors["prompt_mel"].zero_()  # the engine reusing its buffers must not reach the library
    first = library.load_features(record.id)
    assert first.tier == "memory"
    first.tensors["prompt_mel"].fill_(7.0)  # breaks the read-only rule: the tier drops that entry
    second = library.load_features(record.name)
    for name, tensor in expected.items():
        assert torch.equal(second.tensors[name], tensor)
        assert second.tensors[name].dtype == tensor.dtype


def test_disk_load_in_a_new_instance(open_library: Callable[..., VoiceLibrary], tmp_path: Path) -> None:
    data = make_voice(5)
    record, _ = open_library().get_or_create(make_pcm(5), RATE, "a", lambda: data)
    other = open_library()
    loaded = other.load_features(record.id)
    assert loaded.tier == "disk" and loaded.load_s > 0
    assert all(torch.equal(loaded.tensors[k], v) for k, v in data.tensors.items())
    assert other.load_features(record.id).tier == "memory"


def test_list_query_and_pagination(library: VoiceLibrary) -> None:
    names = ["delta", "Alpha", "charlie", "bravo", "echo"]
    for i, name in enumerate(names):
        data = make_voice(i, f"text {name}")
        library.get_or_create(make_pcm(i), RATE, data.transcript, lambda d=data: d, name=name)
    seen, cursor = [], None
    while True:
        page = library.list_voices(limit=2, cursor=cursor)
        seen += [v.name for v in page.voices]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["Alpha", "bravo", "charlie", "delta", "echo"]
    assert [v.name for v in library.list_voices(query="CHAR").voices] == ["charlie"]
    assert all(not v.broken and not v.stale for v in library.list_voices().voices)
    with pytest.raises(InvalidVoiceName, match="cursor"):
        library.list_voices(cursor="not-a-cursor")
    with pytest.raises(VoiceLibraryError):
        library.list_voices(limit=0)


def test_delete(library: VoiceLibrary) -> None:
    record, _ = library.get_or_create(make_pcm(1), RATE, "a", lambda: make_voice(1), name="gone")
    library.load_features(record.id)
    deleted = library.delete("gone")
    assert deleted is not None and deleted.id == record.id
    assert not (library.root / "voices" / record.id).exists()
    assert library.list_voices().voices == []
    with pytest.raises(VoiceNotFound):
        library.load_features(record.id)
    with pytest.raises(VoiceNotFound):
        library.delete(record.id)
    assert library.stats().memory_voices == 0


def test_threads_cloning_same_audio_create_once(library: VoiceLibrary) -> None:
    calls: list[int] = []
    gate = threading.Event()

    def create() -> NewVoiceData:
        calls.append(1)
        gate.wait(0.3)
        return make_voice(1)

    results: list[tuple[str, bool]] = []

    def worker() -> None:
        record, existed = library.get_or_create(make_pcm(1), RATE, "same", create)
        results.append((record.id, existed))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len({vid for vid, _ in results}) == 1 and sorted(e for _, e in results) == [False] + [True] * 7


def test_threads_mixed_operations(library: VoiceLibrary) -> None:
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(4):
                seed = 100 * k + i
                record, _ = library.get_or_create(make_pcm(seed, 0.1), RATE, "t", lambda s=seed: make_voice(s))
                library.load_features(record.id)
                library.rename(record.id, f"w{k}-{i}")
                library.list_voices()
                if i % 2:
                    library.delete(record.id)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    names = sorted(v.name for v in library.list_voices().voices)
    assert names == sorted(f"w{k}-{i}" for k in range(4) for i in (0, 2))
    assert not list((library.root / "tmp").iterdir())


def test_delete_while_loading_never_crashes(open_library: Callable[..., VoiceLibrary]) -> None:
    loader_lib, deleter_lib = open_library(memory_bytes=0), open_library()
    for round_ in range(10):
        record, _ = deleter_lib.get_or_create(make_pcm(round_, 0.1), RATE, "d", lambda r=round_: make_voice(r))
        outcomes: list[str] = []
        loading = threading.Event()

        def load_loop(vid: str = record.id, outcomes: list[str] = outcomes, loading: threading.Event = loading) -> None:
            for _ in range(100_000):
                try:
                    loaded = loader_lib.load_features(vid)
                    assert loaded.tensors["prompt_mel"].shape == (25, 80)
                    outcomes.append("ok")
                    loading.set()
                except VoiceNotFound:
                    outcomes.append("gone")
                    return

        thread = threading.Thread(target=load_loop)
        thread.start()
        assert loading.wait(10)
        deleter_lib.delete(record.id)
        thread.join(30)
        assert outcomes[-1] == "gone" and set(outcomes[:-1]) == {"ok"}


def test_create_failure_leaves_nothing(library: VoiceLibrary) -> None:
    def failing() -> NewVoiceData:
        raise RuntimeError("extraction exploded")

    with pytest.raises(RuntimeError):
        library.get_or_create(make_pcm(1), RATE, "a", failing)
    bad = make_voice(1)
    bad.tensors["prompt_mel"] = bad.tensors["prompt_mel"].double()
    with pytest.raises(VoiceLibraryError, match="prompt_mel"):
        library.get_or_create(make_pcm(1), RATE, "a", lambda: bad)
    assert library.list_voices().voices == [] and not list((library.root / "voices").iterdir())
    record, existed = library.get_or_create(make_pcm(1), RATE, "a", lambda: make_voice(1))
    assert not existed and record.id
