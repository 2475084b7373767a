"""Corrupt, missing or unsafe files: reported as broken with a reason, never breaking the others."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as save_tensors
from voicelib_helpers import RATE, make_pcm, make_voice

from glmtts_mcp.voices import BrokenVoice, VoiceLibrary


def populate(library: VoiceLibrary, count: int = 3) -> list[str]:
    return [
        library.get_or_create(make_pcm(i), RATE, "t", lambda i=i: make_voice(i), name=f"v{i}")[0].id
        for i in range(count)
    ]


def folder(library: VoiceLibrary, vid: str) -> Path:
    return library.root / "voices" / vid


def check_only_broken(library: VoiceLibrary, broken_id: str, reason: str) -> None:
    """The broken voice is listed with `reason`; every other voice still loads."""
    listing = {v.id: v for v in library.list_voices().voices}
    assert listing[broken_id].broken is not None and reason in listing[broken_id].broken
    for vid, item in listing.items():
        if vid != broken_id:
            assert item.broken is None
            assert library.load_features(vid).tensors["prompt_mel"].shape == (25, 80)
    with pytest.raises(BrokenVoice, match="Delete it"):
        library.load_features(broken_id)
    stats = library.stats()
    assert stats.broken_voices == 1 and stats.voice_count == len(listing) - 1


def test_flipped_byte_in_features_detected_at_load(open_library: Callable[..., VoiceLibrary]) -> None:
    ids = populate(open_library())
    path = folder(open_library(), ids[1]) / "features.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside tensor data: header and size stay valid
    path.write_bytes(bytes(data))
    library = open_library()
    with pytest.raises(BrokenVoice, match="sha256"):
        library.load_features(ids[1])
    check_only_broken(library, ids[1], "sha256")


def test_truncated_features_listed_as_broken(open_library: Callable[..., VoiceLibrary]) -> None:
    ids = populate(open_library())
    path = folder(open_library(), ids[0]) / "features.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    check_only_broken(open_library(), ids[0], "features")


def test_features_outside_schema_listed_as_broken(open_library: Callable[..., VoiceLibrary]) -> None:
    ids = populate(open_library())
    tensors = make_voice(0).tensors
    tensors["speaker_embedding"] = tensors["speaker_embedding"].half()
    data = save_tensors(tensors)
    (folder(open_library(), ids[2]) / "features.safetensors").write_bytes(data)
    meta_path = folder(open_library(), ids[2]) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.update(features_sha256=hashlib.sha256(data).hexdigest(), features_bytes=len(data))
    meta_path.write_text(json.dumps(meta))  # consistent hashes: only the schema check can catch it
    check_only_broken(open_library(), ids[2], "speaker_embedding")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: (d / "meta.json").write_text("{not json"), "meta.json"),
        (lambda d: (d / "meta.json").write_text(json.dumps({"id": "x"})), "meta.json is invalid"),
        (lambda d: (d / "meta.json").unlink(), "meta.json is missing"),
        (lambda d: (d / "reference.flac").unlink(), "reference.flac is missing"),
        (lambda d: (d / "features.safetensors").unlink(), "features.safetensors is missing"),
        (lambda d: (d / "reference.flac").write_bytes(b"short"), "reference.flac"),
        (lambda d: (d / "reference.wav").write_bytes(b"RIFF"), "holds both reference.flac and reference.wav"),
    ],
)
def test_damaged_files_listed_as_broken(
    open_library: Callable[..., VoiceLibrary], damage: Callable[[Path], object], reason: str
) -> None:
    ids = populate(open_library())
    damage(folder(open_library(), ids[1]))
    check_only_broken(open_library(), ids[1], reason)


def test_symlinks_are_refused(open_library: Callable[..., VoiceLibrary], tmp_path: Path) -> None:
    library = open_library()
    ids = populate(library)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.safetensors"
    secret.write_bytes((folder(library, ids[0]) / "features.safetensors").read_bytes())
    target = folder(library, ids[0]) / "features.safetensors"
    target.unlink()
    os.symlink(secret, target)
    check_only_broken(open_library(), ids[0], "symlink")
    # a whole voice folder that is a symlink to somewhere else
    moved = tmp_path / "moved"
    os.rename(folder(library, ids[1]), moved)
    os.symlink(moved, folder(library, ids[1]))
    listing = {v.id: v for v in open_library().list_voices().voices}
    assert "symlink" in (listing[ids[1]].broken or "")


def test_broken_voice_can_be_deleted_and_recloned(open_library: Callable[..., VoiceLibrary]) -> None:
    ids = populate(open_library())
    (folder(open_library(), ids[0]) / "meta.json").write_text("garbage")
    library = open_library()
    assert library.delete(ids[0]) is None  # meta unreadable: nothing to return but the deletion
    assert ids[0] not in {v.id for v in library.list_voices().voices}
    (folder(library, ids[1]) / "features.safetensors").write_bytes(b"")
    record, existed = library.get_or_create(make_pcm(1), RATE, "t", lambda: make_voice(1))
    assert not existed and record.id == ids[1] and record.name == "v1"  # the broken one is replaced in place
    assert torch.equal(library.load_features("v1").tensors["prompt_mel"], make_voice(1).tensors["prompt_mel"])


def test_foreign_entries_are_ignored(open_library: Callable[..., VoiceLibrary]) -> None:
    library = open_library()
    populate(library, 1)
    (library.root / "voices" / "notes.txt").write_text("hi")
    (library.root / "voices" / "..weird").mkdir()
    assert len(open_library().list_voices().voices) == 1
