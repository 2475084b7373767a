"""Voice folders on disk: confined paths, atomic commits, locks, and crash recovery.

Layout under the root:
    voices/<id>/{features.safetensors, meta.json, reference.flac or .wav}   one folder per voice
    tmp/                                                          work in progress; emptied on recovery
    locks/                                                        file locks shared by processes
    generation                                                    changes on every write (cheap change check)

Every folder is built in tmp/ and renamed into voices/ (files and folders fsynced first), so a
kill at any moment leaves the old voice or the new one. A replaced voice is first moved aside to
tmp/old-<id>-*; recovery puts it back when its successor never arrived. Everything that creates
anything in tmp/ holds the write lock, so whoever holds it may treat tmp/ as leftovers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from glmtts_mcp.voices.errors import VoiceLibraryError, VoiceNotFound
from glmtts_mcp.voices.identity import is_voice_id
from glmtts_mcp.voices.reference_file import FLOAT_REFERENCE_FILE, REFERENCE_FILE, REFERENCE_FILES

log = logging.getLogger(__name__)

FEATURES_FILE = "features.safetensors"
META_FILE = "meta.json"
PRONUNCIATIONS_FILE = "pronunciations.json"
OPTIONAL_VOICE_FILES = (PRONUNCIATIONS_FILE,)  # a voice's own pronunciation dictionary, when it has one
MAX_FILE_BYTES = {
    FEATURES_FILE: 64 << 20,
    META_FILE: 256 << 10,
    REFERENCE_FILE: 256 << 20,
    FLOAT_REFERENCE_FILE: 256 << 20,
    PRONUNCIATIONS_FILE: 1 << 20,
}
WRITE_LOCK_TIMEOUT_S = 120.0
CLONE_LOCK_TIMEOUT_S = 1800.0
_OLD_PREFIX = "old-"

FileSignature = tuple[int, int, int] | None  # (inode, mtime_ns, size) of a regular file, None if absent


def voice_file_names(names: Iterable[str]) -> tuple[str, str, str] | None:
    """(features, meta, reference file) when `names` are exactly a voice's files (one reference file of
    REFERENCE_FILES; optional files such as its dictionary aside), else None."""
    found = set(names) - set(OPTIONAL_VOICE_FILES)
    references = found & set(REFERENCE_FILES)
    if len(references) != 1 or found != {FEATURES_FILE, META_FILE, *references}:
        return None
    return FEATURES_FILE, META_FILE, references.pop()


def sha256_hex(data: bytes) -> str:
    """The digest meta.json and archive manifests record for a file's bytes."""
    return hashlib.sha256(data).hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (new names, renames) durable; a no-op where unsupported."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(path: Path, data: bytes) -> None:
    """Create `path` (never following or replacing anything) with `data`, fsynced."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """All bytes of a regular file, refusing symlinks, devices and files over `max_bytes`."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path.name} is not a regular file")
        if info.st_size > max_bytes:
            raise OSError(f"{path.name} is {info.st_size} bytes, over the {max_bytes}-byte limit")
        chunks = []
        remaining = info.st_size + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise OSError(f"{path.name} grew past the {max_bytes}-byte limit while reading")
        return data
    finally:
        os.close(fd)


def file_signature(path: Path) -> FileSignature:
    """What changes whenever a file is replaced or rewritten; None if it is absent or not regular."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def _remove_tree(path: Path) -> None:
    """Delete a file or folder without following symlinks out of it."""
    try:
        if path.is_symlink() or path.is_file():
            path.unlink()
        else:
            shutil.rmtree(path)
    except FileNotFoundError:
        pass


class _ProcessLock:
    """A lock that holds across threads (threading.RLock) and processes (a file lock)."""

    def __init__(self, path: Path, timeout_s: float, what: str) -> None:
        self._thread_lock = threading.RLock()
        self._file_lock = FileLock(path, thread_local=False)
        self._timeout_s = timeout_s
        self._what = what
        self._depth = 0

    @contextmanager
    def held(self) -> Iterator[bool]:
        """Hold the lock; yields True on the outermost acquisition of this thread."""
        if not self._thread_lock.acquire(timeout=self._timeout_s):
            raise VoiceLibraryError(f"timed out waiting for {self._what} held by another thread; retry later")
        try:
            if self._depth == 0:
                try:
                    self._file_lock.acquire(timeout=self._timeout_s)
                except Timeout as exc:
                    raise VoiceLibraryError(
                        f"timed out after {self._timeout_s:.0f} s waiting for {self._what} "
                        f"({self._file_lock.lock_file}) held by another process; retry, or stop the other process"
                    ) from exc
            self._depth += 1
            try:
                yield self._depth == 1
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._file_lock.release()
        finally:
            self._thread_lock.release()


class VoiceStore:
    """The files of a library root; knows paths, atomicity and locks, not what the files mean."""

    def __init__(self, root: Path) -> None:
        root = Path(root).expanduser()
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve(strict=True)
        self.voices_dir = self._own_dir("voices")
        self.tmp_dir = self._own_dir("tmp")
        self.locks_dir = self._own_dir("locks")
        self.generation_file = self.root / "generation"
        self._write_lock = _ProcessLock(self.locks_dir / "write.lock", WRITE_LOCK_TIMEOUT_S, "the library write lock")
        self._clone_locks: dict[str, _ProcessLock] = {}
        self._clone_locks_mu = threading.Lock()

    def _own_dir(self, name: str) -> Path:
        path = self.root / name
        if path.is_symlink():
            raise VoiceLibraryError(f"{path} is a symlink; the voice library refuses to follow it. Remove it.")
        path.mkdir(exist_ok=True)
        return path

    # ----- paths -----
    def voice_dir(self, voice_id: str) -> Path:
        """The folder of a voice; refuses anything that is not an id (no traversal possible)."""
        if not is_voice_id(voice_id):
            raise VoiceNotFound(f"{voice_id!r} is not a voice id")
        path = self.voices_dir / voice_id
        if path.parent != self.voices_dir:
            raise VoiceNotFound(f"{voice_id!r} is not a voice id")
        return path

    def voice_ids(self) -> list[str]:
        """Ids of every entry in voices/ shaped like a voice folder (healthy or not)."""
        try:
            names = os.listdir(self.voices_dir)
        except FileNotFoundError:
            return []
        return sorted(name for name in names if is_voice_id(name))

    def folder_problem(self, voice_id: str) -> str | None:
        """Why a voice folder is unsafe or incomplete (symlinks, missing files), or None."""
        path = self.voice_dir(voice_id)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return "folder vanished"
        if stat.S_ISLNK(info.st_mode):
            return "voice folder is a symlink (refused)"
        if not stat.S_ISDIR(info.st_mode):
            return "voice entry is not a folder"
        references = [name for name in REFERENCE_FILES if os.path.lexists(path / name)]
        if len(references) > 1:
            return f"it holds both {' and '.join(references)} (a voice keeps one reference file)"
        for name in (FEATURES_FILE, META_FILE, *(references or [REFERENCE_FILE])):
            try:
                mode = os.lstat(path / name).st_mode
            except FileNotFoundError:
                return f"{name} is missing"
            if not stat.S_ISREG(mode):
                return f"{name} is not a regular file (symlinks are refused)"
        return None

    def reference_name(self, voice_id: str) -> str:
        """The reference file the voice's folder holds (REFERENCE_FILE when it holds none: reading it then
        fails as a missing file does)."""
        path = self.voice_dir(voice_id)
        return next((name for name in REFERENCE_FILES if os.path.lexists(path / name)), REFERENCE_FILE)

    def folder_exists(self, voice_id: str) -> bool:
        """Whether voices/<id> exists at all (even as a broken entry)."""
        return os.path.lexists(self.voice_dir(voice_id))

    def signature(self, voice_id: str) -> tuple[FileSignature, ...]:
        """Signatures of a voice's files (features, meta, then each possible reference file): any change to
        any of them changes this."""
        path = self.voice_dir(voice_id)
        return tuple(file_signature(path / name) for name in (FEATURES_FILE, META_FILE, *REFERENCE_FILES))

    def read(self, voice_id: str, name: str) -> bytes:
        """One file of a voice; VoiceNotFound if the voice (or that file) is gone."""
        path = self.voice_dir(voice_id)
        if os.path.islink(path):
            raise OSError("voice folder is a symlink (refused)")
        try:
            return read_regular_file(path / name, MAX_FILE_BYTES[name])
        except FileNotFoundError as exc:
            if not path.exists():
                raise VoiceNotFound(f"voice {voice_id} was deleted") from exc
            raise

    # ----- locks -----
    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Exclusive right to change voices/ and tmp/ (across threads and processes)."""
        with self._write_lock.held() as outermost:
            if outermost and self._recover():
                self.bump_generation()
            yield

    @contextmanager
    def clone_lock(self, voice_id: str) -> Iterator[None]:
        """Serializes creation of one voice id: a second cloner waits, then finds the voice."""
        stripe = voice_id[:2]
        with self._clone_locks_mu:
            lock = self._clone_locks.get(stripe)
            if lock is None:
                lock = _ProcessLock(self.locks_dir / f"clone-{stripe}.lock", CLONE_LOCK_TIMEOUT_S, "a clone lock")
                self._clone_locks[stripe] = lock
        with lock.held():
            yield

    # ----- writes (call with write_lock held) -----
    def _recover(self) -> bool:
        """Finish what a killed writer left: restore voices moved aside, drop everything else.

        Returns True when anything was found (a writer died, so voices/ may have changed unannounced).
        """
        leftovers = sorted(os.listdir(self.tmp_dir))
        for entry in leftovers:
            path = self.tmp_dir / entry
            parts = entry.split("-")
            if entry.startswith(_OLD_PREFIX) and len(parts) >= 2 and is_voice_id(parts[1]):
                target = self.voices_dir / parts[1]
                if not os.path.lexists(target) and path.is_dir() and not path.is_symlink():
                    os.rename(path, target)
                    fsync_dir(self.voices_dir)
                    log.warning("restored voice %s after an interrupted replacement", parts[1])
                    continue
            _remove_tree(path)
            log.info("removed leftover temporary entry %s", path)
        return bool(leftovers)

    def voices_aside(self) -> bool:
        """Whether a voice sits moved aside in tmp/: a replacement is under way, or a writer died mid-way."""
        try:
            return any(entry.startswith(_OLD_PREFIX) for entry in os.listdir(self.tmp_dir))
        except FileNotFoundError:
            return False

    def _scratch(self, kind: str, voice_id: str = "") -> Path:
        suffix = f"{voice_id}-" if voice_id else ""
        return self.tmp_dir / f"{kind}-{suffix}{uuid.uuid4().hex}"

    def commit_voice(self, voice_id: str, files: dict[str, bytes]) -> None:
        """Write a whole voice folder atomically, replacing any existing one; an optional file not given
        (a voice's dictionary when its features are re-extracted) is carried over from the folder replaced."""
        names = voice_file_names(files)
        if names is None:
            raise ValueError(
                f"a voice folder needs exactly {FEATURES_FILE}, {META_FILE} and one of {REFERENCE_FILES}, "
                f"and may have {OPTIONAL_VOICE_FILES}"
            )
        features, meta, reference = names
        target = self.voice_dir(voice_id)
        files = dict(files)
        for name in OPTIONAL_VOICE_FILES:
            if name not in files and os.path.isfile(target / name) and not os.path.islink(target / name):
                files[name] = read_regular_file(target / name, MAX_FILE_BYTES[name])
        staging = self._scratch("new", voice_id)
        staging.mkdir()
        for name in (features, reference, *[n for n in OPTIONAL_VOICE_FILES if n in files], meta):
            write_new_file(staging / name, files[name])
        fsync_dir(staging)
        fsync_dir(self.tmp_dir)
        aside: Path | None = None
        if os.path.lexists(target):
            aside = self._scratch(_OLD_PREFIX.rstrip("-"), voice_id)
            os.rename(target, aside)
        os.rename(staging, target)
        fsync_dir(self.voices_dir)
        fsync_dir(self.tmp_dir)
        if aside is not None:
            _remove_tree(aside)

    def replace_meta(self, voice_id: str, data: bytes) -> None:
        """Atomically replace a voice's meta.json (rename, last-used time)."""
        target_dir = self.voice_dir(voice_id)
        if os.path.islink(target_dir) or not target_dir.is_dir():
            raise VoiceNotFound(f"voice {voice_id} was deleted")
        staging = self._scratch("meta")
        write_new_file(staging, data)
        os.replace(staging, target_dir / META_FILE)
        fsync_dir(target_dir)

    def replace_voice_file(self, voice_id: str, name: str, data: bytes | None) -> None:
        """Atomically replace (or, with None, remove) one optional file of a voice."""
        if name not in OPTIONAL_VOICE_FILES:
            raise ValueError(f"{name} is not an optional voice file")
        target_dir = self.voice_dir(voice_id)
        if os.path.islink(target_dir) or not target_dir.is_dir():
            raise VoiceNotFound(f"voice {voice_id} was deleted")
        if data is None:
            (target_dir / name).unlink(missing_ok=True)
        else:
            staging = self._scratch("optional")
            write_new_file(staging, data)
            os.replace(staging, target_dir / name)
        fsync_dir(target_dir)

    def read_root_file(self, name: str, max_bytes: int) -> bytes | None:
        """A small file at the root, or None when there is none."""
        try:
            return read_regular_file(self.root / name, max_bytes)
        except FileNotFoundError:
            return None

    def remove_voice(self, voice_id: str) -> None:
        """Delete a voice: one rename out of voices/ is the commit point, then the files go."""
        target = self.voice_dir(voice_id)
        if not os.path.lexists(target):
            raise VoiceNotFound(f"voice {voice_id} was already deleted")
        trash = self._scratch("deleted", voice_id)
        os.rename(target, trash)
        fsync_dir(self.voices_dir)
        _remove_tree(trash)

    def read_generation(self) -> str:
        """A token that changes on every write by any process."""
        try:
            return self.generation_file.read_text(encoding="ascii")
        except (FileNotFoundError, UnicodeDecodeError):
            return ""

    def bump_generation(self) -> None:
        """Tell every process sharing the root that something changed."""
        staging = self._scratch("generation")
        write_new_file(staging, uuid.uuid4().hex.encode("ascii"))
        os.replace(staging, self.generation_file)

    def write_root_file(self, name: str, data: bytes) -> None:
        """Atomically replace a small file at the root (e.g. lifetime stats)."""
        staging = self._scratch("rootfile")
        write_new_file(staging, data)
        os.replace(staging, self.root / name)
