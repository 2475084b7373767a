"""One-file export of a voice, and an import that trusts nothing in the file.

An archive is a zip holding exactly meta.json, features.safetensors, the reference file (reference.flac,
or reference.wav for float samples) and manifest.json (sha256 and size of the other three). Import refuses
unknown, duplicate, nested, absolute, traversing, symlink or encrypted members, members over their size
limit (counted while reading, whatever the zip claims), hash mismatches, tensors outside the feature schema,
audio that is not one of the reference forms (reference_file.py), an id that does not follow from the audio and
transcript, a meta.json whose values are out of range or whose duration is not the audio's, and features
that break the loaded model's rules (ids outside its vocabularies, widths it cannot take, lengths a clip of
that duration cannot give). Whether the features came from this reference at all needs the model: the
library checks it on import by re-extracting them (VoiceLibrary.import_voice).

Export writes only a path ending in `.zip`, never inside the folders it is told to protect (the
library itself, the output store, the checkpoint), and replaces an existing file only when that file
carries our manifest marker: a path typed by mistake cannot clobber a voice, a recording or a model.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors

from glmtts_mcp.errors import UserError
from glmtts_mcp.voices.errors import ArchiveError, VoiceLibraryError
from glmtts_mcp.voices.identity import is_voice_id, name_problem, tags_problem, voice_id
from glmtts_mcp.voices.pronunciations import from_bytes as pronunciations_from_bytes
from glmtts_mcp.voices.records import VoiceRecord, meta_problem
from glmtts_mcp.voices.reference_file import FLOAT_REFERENCE_FILE, REFERENCE_FILES, decode_reference
from glmtts_mcp.voices.rules import FeatureRules
from glmtts_mcp.voices.schema import FeatureSchema, parse_safetensors_header
from glmtts_mcp.voices.store import (
    FEATURES_FILE,
    MAX_FILE_BYTES,
    META_FILE,
    OPTIONAL_VOICE_FILES,
    PRONUNCIATIONS_FILE,
    fsync_dir,
    sha256_hex,
    voice_file_names,
)

MANIFEST_FILE = "manifest.json"
ARCHIVE_FORMAT = "glmtts-mcp-voice-archive"
ARCHIVE_EXTENSION = ".zip"  # what an export path must end in
ARCHIVE_SUFFIX = ".glmtts-voice.zip"  # the default file name's ending (when a folder is given)
MEMBER_LIMITS = {MANIFEST_FILE: 64 << 10, **MAX_FILE_BYTES}
MAX_ARCHIVE_BYTES = sum(MEMBER_LIMITS.values()) - MAX_FILE_BYTES[FLOAT_REFERENCE_FILE] + (1 << 20)  # one reference
DURATION_TOLERANCE_S = 1e-3  # meta.json's duration_s is the kept samples' count over their rate


@dataclass
class ArchiveContents:
    """A validated archive: the record, the three voice files, and what they decode to."""

    record: VoiceRecord
    files: dict[str, bytes]
    tensors: dict[str, torch.Tensor] | None  # None when stored under another schema version
    pcm: np.ndarray  # as reference_file decodes it
    sample_rate: int


def write_archive(dest: Path, files: dict[str, bytes]) -> Path:
    """Write the archive atomically (temp file beside `dest`, then rename)."""
    manifest = {
        "format": ARCHIVE_FORMAT,
        "version": 1,
        "files": {name: {"sha256": sha256_hex(data), "size": len(data)} for name, data in sorted(files.items())},
    }
    staging = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        with zipfile.ZipFile(staging, "x", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST_FILE, json.dumps(manifest, indent=1))
            for name in (
                META_FILE,
                FEATURES_FILE,
                _reference_name(files),
                *[n for n in OPTIONAL_VOICE_FILES if n in files],
            ):
                archive.writestr(name, files[name])
        with open(staging, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(staging, dest)
        fsync_dir(dest.parent)
    except OSError as exc:  # the user chose the destination: a full disk or a read-only folder is theirs to fix
        raise ArchiveError(
            f"cannot write the archive {dest}: {exc.strerror or exc}; choose a writable folder with free space"
        ) from exc
    finally:
        staging.unlink(missing_ok=True)
    return dest


def is_voice_archive(path: Path) -> bool:
    """Whether `path` is a regular file holding our manifest marker (the contents decide, not the name)."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ARCHIVE_BYTES:
            return False
        with zipfile.ZipFile(path) as archive:
            member = archive.getinfo(MANIFEST_FILE)
            if member.file_size > MEMBER_LIMITS[MANIFEST_FILE]:
                return False
            with archive.open(member) as handle:
                manifest = json.loads(handle.read(MEMBER_LIMITS[MANIFEST_FILE] + 1))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == ARCHIVE_FORMAT


def export_destination(dest: Path, voice_name: str, protected: Mapping[str, Path]) -> Path:
    """The file an export of `voice_name` may write for the `path` argument `dest` (see the module docstring).

    A folder gets '<name>.glmtts-voice.zip' inside it. `protected` maps a label ("the voice library")
    to a folder that exports never write into.
    """
    dest = Path(dest).expanduser()
    if dest.is_dir():
        dest = dest / f"{voice_name}{ARCHIVE_SUFFIX}"
    dest = dest.parent.resolve() / dest.name  # folders' symlinks resolved; the file itself is never followed
    example = f"{voice_name}{ARCHIVE_SUFFIX}"
    for label, folder in protected.items():
        if dest.is_relative_to(Path(folder).expanduser().resolve()):
            raise VoiceLibraryError(
                f"path {str(dest)!r} is inside {label} ({folder}), which exports never write into. "
                f"Pass a path outside it, e.g. a folder of your own such as ~/Documents/{example}."
            )
    if not dest.name.lower().endswith(ARCHIVE_EXTENSION):
        raise VoiceLibraryError(
            f"path {str(dest)!r} does not end in {ARCHIVE_EXTENSION}: a voice archive is a zip file. "
            f"Pass a path ending in {ARCHIVE_EXTENSION} (e.g. {str(dest.parent / example)!r}) or an existing folder."
        )
    if not dest.parent.is_dir():
        raise VoiceLibraryError(
            f"path {str(dest)!r} is in a folder that does not exist ({dest.parent}); create it first or pass "
            "another path."
        )
    if os.path.lexists(dest) and not is_voice_archive(dest):
        raise VoiceLibraryError(
            f"path {str(dest)!r} already exists and is not a voice archive; an export only replaces an "
            "older export. Pass a new file name (or an existing folder), or move that file away first."
        )
    return dest


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"member {name!r} has an absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return f"member {name!r} tries to leave the archive folder (path traversal)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return f"member {name!r} is a symlink"
    if info.is_dir():
        return f"member {name!r} is a folder"
    if info.flag_bits & 0x1:
        return f"member {name!r} is encrypted"
    if name not in MEMBER_LIMITS:
        return f"member {name!r} is not part of a voice archive (expected {sorted(MEMBER_LIMITS)})"
    if info.file_size > MEMBER_LIMITS[name]:
        return f"member {name!r} declares {info.file_size} bytes, over its {MEMBER_LIMITS[name]}-byte limit"
    return None


def _read_members(path: Path) -> dict[str, bytes]:
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ArchiveError(f"cannot read archive {path}: {exc.strerror}; check the path") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ArchiveError(f"{path} is not a regular file; pass the path of a voice archive")
    if info.st_size > MAX_ARCHIVE_BYTES:
        raise ArchiveError(f"{path} is {info.st_size} bytes, over the {MAX_ARCHIVE_BYTES}-byte limit for a voice")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            names = [member.filename for member in members]
            if len(names) != len(set(names)):
                raise ArchiveError(f"{path} has duplicate members; it is not a voice archive from export_voice")
            for member in members:
                problem = _member_problem(member)
                if problem:
                    raise ArchiveError(f"refused {path}: {problem}")
            if MANIFEST_FILE not in names or voice_file_names(set(names) - {MANIFEST_FILE}) is None:
                raise ArchiveError(
                    f"{path} lacks a voice's files ({MANIFEST_FILE}, {META_FILE}, {FEATURES_FILE} and one of "
                    f"{REFERENCE_FILES}); export the voice again"
                )
            contents: dict[str, bytes] = {}
            for member in members:
                limit = MEMBER_LIMITS[member.filename]
                with archive.open(member) as handle:
                    data = handle.read(limit + 1)
                if len(data) > limit:
                    raise ArchiveError(f"refused {path}: member {member.filename!r} expands past {limit} bytes")
                contents[member.filename] = data
            return contents
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise ArchiveError(f"{path} is not a readable zip archive ({exc}); export the voice again") from exc


def _reference_name(files: Mapping[str, bytes]) -> str:
    """The reference file among a voice's files (16/24-bit FLAC or float WAV; _read_members checked there is one)."""
    return next(name for name in REFERENCE_FILES if name in files)


def _check_manifest(path: Path, contents: dict[str, bytes]) -> None:
    try:
        manifest = json.loads(contents[MANIFEST_FILE])
        entries = manifest["files"]
        ok = manifest.get("format") == ARCHIVE_FORMAT and isinstance(entries, dict)
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(f"{path}: manifest.json is unreadable; export the voice again") from exc
    members = set(contents) - {MANIFEST_FILE}
    if not ok or set(entries) != members or voice_file_names(members) is None:
        raise ArchiveError(f"{path}: manifest.json does not describe a voice archive; export the voice again")
    for name, entry in entries.items():
        data = contents[name]
        if not isinstance(entry, dict) or entry.get("sha256") != sha256_hex(data) or entry.get("size") != len(data):
            raise ArchiveError(f"{path}: {name} does not match its sha256 in manifest.json (corrupt or tampered)")


def _check_record(path: Path, record: VoiceRecord, contents: dict[str, bytes]) -> None:
    problem = name_problem(record.name) or tags_problem(record.tags)
    if not is_voice_id(record.id):
        problem = f"id {record.id!r} is not a voice id"
    if problem:
        raise ArchiveError(f"{path}: meta.json is unusable: {problem}")
    for name, digest, size in (
        (FEATURES_FILE, record.features_sha256, record.features_bytes),
        (_reference_name(contents), record.reference_sha256, record.reference_bytes),
    ):
        if sha256_hex(contents[name]) != digest or len(contents[name]) != size:
            raise ArchiveError(f"{path}: {name} does not match the hash meta.json records (corrupt or tampered)")


def _load_features(
    path: Path, record: VoiceRecord, data: bytes, schema: FeatureSchema
) -> dict[str, torch.Tensor] | None:
    header, problem = parse_safetensors_header(data)
    if problem is None and record.schema_version == schema.version:
        problem = schema.header_problem(header)
    if problem:
        raise ArchiveError(f"{path}: features do not fit the feature schema: {problem}")
    if record.schema_version != schema.version:
        return None
    try:
        tensors = load_tensors(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ArchiveError(f"{path}: features.safetensors is corrupt ({exc})") from exc
    problem = schema.problem_with(tensors)
    if problem:
        raise ArchiveError(f"{path}: features do not fit the feature schema: {problem}")
    return tensors


def read_archive(
    path: Path, schema: FeatureSchema, rules: FeatureRules | None = None, fingerprint: str = ""
) -> ArchiveContents:
    """Validate everything in an archive (see module docstring); ArchiveError on any doubt.

    With `rules` (the loaded model's), features extracted by the same model (`fingerprint`) must also
    fit them for the reference's real duration; features of another model are re-extracted on import.
    """
    path = Path(path)
    contents = _read_members(path)
    _check_manifest(path, contents)
    try:
        record = VoiceRecord.model_validate_json(contents[META_FILE])
    except ValidationError as exc:
        raise ArchiveError(f"{path}: {meta_problem(exc)}; export the voice again") from exc
    _check_record(path, record, contents)
    tensors = _load_features(path, record, contents[FEATURES_FILE], schema)
    try:
        pcm, sample_rate = decode_reference(_reference_name(contents), contents[_reference_name(contents)])
        derived_id = voice_id(pcm, sample_rate, record.transcript_input, record.reference_processing)
    except ValueError as exc:  # not a reference file, or samples its processing never keeps
        raise ArchiveError(f"{path}: {exc}") from exc
    if sample_rate != record.sample_rate:
        raise ArchiveError(f"{path}: reference audio is {sample_rate} Hz but meta.json says {record.sample_rate} Hz")
    if derived_id != record.id:
        raise ArchiveError(
            f"{path}: the id in meta.json does not follow from the reference audio and transcript "
            "(tampered or corrupt); export the voice again"
        )
    duration_s = len(pcm) / sample_rate
    if abs(record.duration_s - duration_s) > DURATION_TOLERANCE_S:
        raise ArchiveError(
            f"{path}: meta.json says the reference lasts {record.duration_s:g} s but the reference file holds "
            f"{duration_s:.3f} s (tampered or corrupt); export the voice again"
        )
    same_model = not fingerprint or record.fingerprint == fingerprint
    if (
        tensors is not None
        and rules is not None
        and same_model
        and (problem := rules.problem_with(tensors, duration_s))
    ):
        raise ArchiveError(
            f"{path}: features do not fit this model: {problem}. The archive was edited or damaged: export the "
            "voice again, or clone its recording instead"
        )
    files = {name: contents[name] for name in (META_FILE, FEATURES_FILE, _reference_name(contents))}
    if PRONUNCIATIONS_FILE in contents:  # the voice's own dictionary, checked as any dictionary is
        try:
            pronunciations_from_bytes(contents[PRONUNCIATIONS_FILE], f"{path}: {PRONUNCIATIONS_FILE}")
        except UserError as exc:
            raise ArchiveError(f"{path}: {PRONUNCIATIONS_FILE} is refused: {exc}") from exc
        files[PRONUNCIATIONS_FILE] = contents[PRONUNCIATIONS_FILE]
    return ArchiveContents(record, files, tensors, pcm, sample_rate)
