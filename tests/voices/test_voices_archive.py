"""Export to one file and import elsewhere; hostile or corrupt archives are refused, nothing written."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save as save_tensors
from voicelib_helpers import RATE, SCHEMA, make_pcm, make_tensors, make_voice

from glmtts_mcp.voices import (
    ArchiveError,
    FeatureSchema,
    InvalidVoiceName,
    VoiceExists,
    VoiceLibrary,
    VoiceLibraryError,
)
from glmtts_mcp.voices import archive as archive_module


@pytest.fixture
def exported(open_library: Callable[..., VoiceLibrary], tmp_path: Path) -> Path:
    source = open_library(tmp_path / "source")
    source.get_or_create(make_pcm(1), RATE, "hello there", lambda: make_voice(1), name="Traveller")
    return source.export_voice("traveller", tmp_path)


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rebuild(path: Path, files: dict[str, bytes], fix_hashes: bool = True) -> Path:
    """Write `files` as an archive, with a manifest matching them unless told otherwise."""
    if fix_hashes and "manifest.json" in files:
        manifest = json.loads(files["manifest.json"])
        manifest["files"] = {
            n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
            for n, d in files.items()
            if n != "manifest.json"
        }
        files = {**files, "manifest.json": json.dumps(manifest).encode()}
    out = path.with_name("edited.zip")
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out


def with_meta(files: dict[str, bytes], **changes: object) -> dict[str, bytes]:
    meta = json.loads(files["meta.json"])
    meta.update(changes)
    return {**files, "meta.json": json.dumps(meta).encode()}


def test_export_import_roundtrip(open_library: Callable[..., VoiceLibrary], exported: Path, tmp_path: Path) -> None:
    assert exported.name == "Traveller.glmtts-voice.zip"
    assert sorted(members(exported)) == ["features.safetensors", "manifest.json", "meta.json", "reference.flac"]
    target = open_library(tmp_path / "target")
    record, existed = target.import_voice(exported)
    assert not existed and record.name == "Traveller" and record.transcript == "hello there"
    assert record.id == target.voice_id_for(make_pcm(1), RATE, "hello there")
    loaded = target.load_features("traveller")
    assert all(torch.equal(loaded.tensors[k], v) for k, v in make_voice(1).tensors.items())
    assert target.import_voice(exported)[1] is True  # already here
    assert target.stats().session.imports == 1


def test_export_rereads_a_voice_replaced_midway(
    open_library: Callable[..., VoiceLibrary], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """meta.json read after the features may describe a newer version: export reads again, never mixes the two."""
    source = open_library(tmp_path / "source")
    source.get_or_create(make_pcm(1), RATE, "hello there", lambda: make_voice(1), name="Traveller")
    real_read = source._store.read
    newer_meta_reads = [1]

    def read(voice_id: str, name: str) -> bytes:
        data = real_read(voice_id, name)
        if name == "meta.json" and newer_meta_reads[0] > 0:
            newer_meta_reads[0] -= 1
            return json.dumps({**json.loads(data), "features_sha256": "0" * 64}).encode()
        return data

    monkeypatch.setattr(source._store, "read", read)
    written = source.export_voice("traveller", tmp_path)
    record, existed = open_library(tmp_path / "target").import_voice(written)
    assert not existed and record.name == "Traveller"
    newer_meta_reads[0] = 3
    with pytest.raises(VoiceLibraryError, match="keeps changing on disk"):
        source.export_voice("traveller", tmp_path)


def test_import_name_conflicts(open_library: Callable[..., VoiceLibrary], exported: Path, tmp_path: Path) -> None:
    target = open_library(tmp_path / "target")
    target.get_or_create(make_pcm(9), RATE, "other", lambda: make_voice(9), name="traveller")
    with pytest.raises(VoiceExists):
        target.import_voice(exported, name="TRAVELLER")
    with pytest.raises(InvalidVoiceName):
        target.import_voice(exported, name="../x")
    record, _ = target.import_voice(exported)
    assert record.name == "Traveller-2"


def test_export_to_file_path(open_library: Callable[..., VoiceLibrary], exported: Path, tmp_path: Path) -> None:
    source = open_library(tmp_path / "source")
    dest = source.export_voice("Traveller", tmp_path / "custom.zip")
    assert dest == tmp_path / "custom.zip" and members(dest) == members(exported)
    with pytest.raises(Exception, match="does not exist"):
        source.export_voice("Traveller", tmp_path / "missing" / "x.zip")


def test_export_never_clobbers(open_library: Callable[..., VoiceLibrary], tmp_path: Path) -> None:
    """An export writes .zip files outside protected folders and replaces only older exports."""
    source = open_library(tmp_path / "source")
    record, _ = source.get_or_create(make_pcm(1), RATE, "hello there", lambda: make_voice(1), name="Traveller")
    meta = tmp_path / "source" / "voices" / record.id / "meta.json"
    meta_before = meta.read_bytes()
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    protected = {"the output folder": outputs}

    for inside in (meta, meta.parent, tmp_path / "source" / "x.zip", outputs / "x.zip", outputs):
        with pytest.raises(
            VoiceLibraryError, match=r"^path .* is inside the (voice library|output folder).*Pass a path"
        ):
            source.export_voice("traveller", inside, protected=protected)
    assert meta.read_bytes() == meta_before and list(outputs.iterdir()) == []
    assert source.resolve("traveller").id == record.id

    recording = tmp_path / "clip.wav"
    recording.write_bytes(b"RIFF....WAVEdata")
    with pytest.raises(VoiceLibraryError, match=r"does not end in \.zip.*Pass a path ending in \.zip"):
        source.export_voice("traveller", recording)
    assert recording.read_bytes() == b"RIFF....WAVEdata"

    foreign = tmp_path / "photos.zip"  # a zip, but not ours: the marker decides, not the extension
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("manifest.json", json.dumps({"format": "someone-else"}))
    not_a_zip = tmp_path / "notes.zip"
    not_a_zip.write_text("plain text")
    link = tmp_path / "link.zip"
    link.symlink_to(foreign)
    for existing in (foreign, not_a_zip, link):
        before = existing.read_bytes()
        with pytest.raises(VoiceLibraryError, match=r"already exists and is not a voice archive.*new file name"):
            source.export_voice("traveller", existing)
        assert existing.read_bytes() == before
    assert link.is_symlink()

    first = source.export_voice("traveller", tmp_path / "traveller.ZIP")  # the extension is case-insensitive
    source.rename("traveller", "Wanderer")
    again = source.export_voice("wanderer", first)  # an older export of ours is replaced
    assert again == first and json.loads(members(again)["meta.json"])["name"] == "Wanderer"


def symlink_member(files: dict[str, bytes], path: Path) -> Path:
    out = path.with_name("symlink.zip")
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            if name == "reference.flac":
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                archive.writestr(info, "/etc/passwd")
            else:
                archive.writestr(name, data)
    return out


def junk(files: dict[str, bytes], path: Path) -> Path:
    out = path.with_name("junk.zip")
    out.write_bytes(b"PK\x03\x04 nonsense")
    return out


def extra_member(files: dict[str, bytes], path: Path, name: str) -> Path:
    return rebuild(path, {**files, name: b"evil"}, fix_hashes=False)


HOSTILE: dict[str, tuple[Callable[[dict[str, bytes], Path], Path], str]] = {
    "traversal": (lambda f, p: extra_member(f, p, "../evil.txt"), "traversal"),
    "absolute": (lambda f, p: extra_member(f, p, "/etc/cron.d/evil"), "absolute"),
    "nested": (lambda f, p: extra_member(f, p, "sub/meta.json"), "not part of a voice archive"),
    "symlink": (symlink_member, "symlink"),
    "tampered features": (
        lambda f, p: rebuild(
            p, {**f, "features.safetensors": f["features.safetensors"][:-1] + b"\x00"}, fix_hashes=False
        ),
        "sha256",
    ),
    "tampered transcript": (lambda f, p: rebuild(p, with_meta(f, transcript_input="other words")), "does not follow"),
    "meta hash lies": (lambda f, p: rebuild(p, with_meta(f, features_sha256="0" * 64)), "tampered"),
    "missing member": (lambda f, p: rebuild(p, {k: v for k, v in f.items() if k != "reference.flac"}), "lacks"),
    "bad name": (lambda f, p: rebuild(p, with_meta(f, name="../../etc")), "unusable"),
    "not a zip": (junk, "not a readable zip"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_refused(
    open_library: Callable[..., VoiceLibrary], exported: Path, tmp_path: Path, case: str
) -> None:
    build, message = HOSTILE[case]
    hostile = build(members(exported), exported)
    target = open_library(tmp_path / "target")
    with pytest.raises(ArchiveError, match=message):
        target.import_voice(hostile)
    assert target.list_voices().voices == []
    assert not (tmp_path / "evil.txt").exists()
    assert not any((tmp_path / "target" / "voices").iterdir())


def test_oversized_member_refused(
    open_library: Callable[..., VoiceLibrary], exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(archive_module.MEMBER_LIMITS, "reference.flac", 1000)
    with pytest.raises(ArchiveError, match="limit"):
        open_library(tmp_path / "target").import_voice(exported)


def test_zip_lying_about_size_refused(
    open_library: Callable[..., VoiceLibrary], exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = members(exported)
    bomb = rebuild(exported, {**files, "meta.json": files["meta.json"] + b" " * 5_000_000})
    # The central directory understates a member: zipfile stops at the declared size, the CRC then fails.
    real_infolist = zipfile.ZipFile.infolist

    def lying_infolist(self: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
        infos = real_infolist(self)
        for info in infos:
            if info.filename == "meta.json":
                info.file_size = 100
        return infos

    monkeypatch.setattr(zipfile.ZipFile, "infolist", lying_infolist)
    with pytest.raises(ArchiveError, match="not a readable zip"):
        open_library(tmp_path / "target").import_voice(bomb)


def test_wrong_schema_refused(open_library: Callable[..., VoiceLibrary], exported: Path, tmp_path: Path) -> None:
    files = members(exported)
    tensors = make_tensors(1)
    tensors["prompt_speech_ids"] = tensors["prompt_speech_ids"].to(torch.int32)
    features = save_tensors(tensors)
    forged = with_meta(
        {**files, "features.safetensors": features},
        features_sha256=hashlib.sha256(features).hexdigest(),
        features_bytes=len(features),
    )
    with pytest.raises(ArchiveError, match=r"schema.*prompt_speech_ids"):
        open_library(tmp_path / "target").import_voice(rebuild(exported, forged))


def test_wrong_audio_refused(open_library: Callable[..., VoiceLibrary], exported: Path, tmp_path: Path) -> None:
    files = members(exported)
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(1000, np.int32), RATE, format="FLAC", subtype="PCM_24")
    wide = buffer.getvalue()
    forged = with_meta(
        {**files, "reference.flac": wide}, reference_sha256=hashlib.sha256(wide).hexdigest(), reference_bytes=len(wide)
    )
    with pytest.raises(ArchiveError, match="a clean reference's PCM must be float in \\[-1, 1\\] or int16, got int32"):
        open_library(tmp_path / "target").import_voice(rebuild(exported, forged))  # clean voices keep 16 bits
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(1000, np.float32), RATE, format="WAV", subtype="FLOAT")
    floats = buffer.getvalue()
    forged = with_meta(
        {**files, "reference.flac": floats},
        reference_sha256=hashlib.sha256(floats).hexdigest(),
        reference_bytes=len(floats),
    )
    with pytest.raises(ArchiveError, match=r"reference.flac must be 16- or 24-bit FLAC .* found WAV/FLOAT"):
        open_library(tmp_path / "target").import_voice(rebuild(exported, forged))  # a format under another's name
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((1000, 2), np.int16), RATE, format="FLAC", subtype="PCM_16")
    stereo = buffer.getvalue()  # a channel more than the voice was cloned from: another id
    forged = with_meta(
        {**files, "reference.flac": stereo},
        reference_sha256=hashlib.sha256(stereo).hexdigest(),
        reference_bytes=len(stereo),
    )
    with pytest.raises(ArchiveError, match="does not follow from the reference audio"):
        open_library(tmp_path / "target").import_voice(rebuild(exported, forged))


def test_other_schema_version_needs_reextraction(
    open_library: Callable[..., VoiceLibrary], exported: Path, tmp_path: Path
) -> None:
    bumped = FeatureSchema(SCHEMA.version + 1, dict(SCHEMA.tensors))
    with pytest.raises(ArchiveError, match="schema v"):
        open_library(tmp_path / "bare", schema=bumped).import_voice(exported)
    calls: list[str] = []

    def reextract(pcm: np.ndarray, rate: int, transcript: str, language: str | None):
        calls.append(transcript)
        return make_tensors(77), {"mel": 0.1}

    target = open_library(tmp_path / "target", schema=bumped, reextract=reextract)
    record, existed = target.import_voice(exported)
    assert not existed and calls == ["hello there"] and record.schema_version == bumped.version
    assert torch.equal(target.load_features(record.id).tensors["prompt_mel"], make_tensors(77)["prompt_mel"])
