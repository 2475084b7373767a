"""The bounded store of synthesized audio behind `audio://{id}`: one file per output, pruned on every save.

Retention: at most `keep_count` files, `keep_bytes` bytes, and nothing older than `keep_age_s`
(0 disables the age limit); the oldest files go first. The newest file is always kept.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from glmtts_mcp.app.audio_out import AudioFileWriter
from glmtts_mcp.engine.runtime.output_encoding import AUDIO_FORMATS
from glmtts_mcp.errors import Kind, UserError

AUDIO_MIME: dict[str, str] = {name: f.mime_type for name, f in AUDIO_FORMATS.items()}
_ID_RE = re.compile(rf"^[0-9]{{8}}T[0-9]{{6}}-[0-9a-f]{{8}}\.({'|'.join(AUDIO_MIME)})$")


@dataclass(frozen=True)
class StoredOutput:
    """One saved output: its audio:// id (file name), path and MIME type."""

    output_id: str
    path: Path
    mime_type: str

    @property
    def uri(self) -> str:
        return f"audio://{self.output_id}"


class OutputStore:
    """Synthesized files under one folder; ids are file names, so a URI never reaches outside it."""

    def __init__(self, root: Path, keep_count: int, keep_bytes: int, keep_age_s: float) -> None:
        self.root = root
        self.keep_count = keep_count
        self.keep_bytes = keep_bytes
        self.keep_age_s = keep_age_s
        self._lock = threading.Lock()

    def writer(self, fmt: str, sample_rate: int) -> AudioFileWriter:
        """A new output to write piece by piece (memory stays flat however long it is); `finish` stores it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            return AudioFileWriter(self.root / self._new_id(fmt), fmt, sample_rate)
        except OSError as exc:
            raise self._cannot_save(exc) from exc

    def finish(self, writer: AudioFileWriter) -> StoredOutput:
        """Put a written output in place (atomically), then apply the retention policy."""
        try:
            path = writer.commit()
        except OSError as exc:
            writer.discard()
            raise self._cannot_save(exc) from exc
        self.prune(keep=path)
        return StoredOutput(path.name, path, AUDIO_MIME[writer.fmt])

    @staticmethod
    def _new_id(fmt: str) -> str:
        if fmt not in AUDIO_MIME:
            raise ValueError(f"unknown audio format {fmt!r}")
        return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}.{fmt}"

    def _cannot_save(self, exc: OSError) -> UserError:
        return UserError(
            f"the audio could not be saved in the output folder {self.root}: {exc.strerror or exc}",
            "free some space there or point --output-dir (GLMTTS_MCP_OUTPUT_DIR) at a writable folder",
            kind=Kind.ENVIRONMENT,
        )

    def get(self, output_id: str) -> StoredOutput | None:
        """The stored output with this id, or None when unknown, pruned or malformed."""
        if not _ID_RE.match(output_id):
            return None
        path = self.root / output_id
        if not path.is_file():
            return None
        return StoredOutput(output_id, path, AUDIO_MIME[output_id.rsplit(".", 1)[1]])

    def _entries(self) -> list[tuple[Path, os.stat_result]]:
        """Stored files with one stat each, oldest first; a file another process removed meanwhile is skipped."""
        if not self.root.is_dir():
            return []
        found: list[tuple[Path, os.stat_result]] = []
        for path in self.root.iterdir():
            if not _ID_RE.match(path.name):
                continue
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.append((path, info))
        return sorted(found, key=lambda entry: (entry[1].st_mtime, entry[0].name))

    def files(self) -> list[Path]:
        """Stored files, oldest first."""
        return [path for path, _ in self._entries()]

    def prune(self, keep: Path | None = None) -> int:
        """Delete files beyond the count/bytes/age limits, oldest first; returns how many went."""
        with self._lock:
            entries = self._entries()
            now = time.time()
            total = sum(info.st_size for _, info in entries)
            removed = 0
            for path, info in entries:
                remaining = len(entries) - removed
                too_old = self.keep_age_s > 0 and now - info.st_mtime > self.keep_age_s
                if path == keep or not (remaining > self.keep_count or total > self.keep_bytes or too_old):
                    continue
                path.unlink(missing_ok=True)
                total -= info.st_size
                removed += 1
            return removed

    def stats(self) -> tuple[int, int]:
        """(file count, total bytes) of the store."""
        entries = self._entries()
        return len(entries), sum(info.st_size for _, info in entries)
