"""The voice library's use cases, the same for every face: clone or get, list, get, rename, delete,
export, import, stats.

Each runs its disk work in one worker-thread hop (cloning through the engine host, the only one that needs
the model), returns the result models every face shows, and announces changes on `App.changes` so the
other faces (an MCP client listening for list changes) hear of them.
"""

from __future__ import annotations

import builtins
import shutil
import tempfile
import time
from pathlib import Path

import anyio.to_thread

from glmtts_mcp.app.cloning import clone_or_get
from glmtts_mcp.app.core import App, export_protected_folders
from glmtts_mcp.app.schemas import (
    CacheStatsResult,
    CloneVoiceResult,
    DeleteVoiceResult,
    ExportVoiceResult,
    ImportVoiceResult,
    ListVoicesResult,
    RenameVoiceResult,
    VoiceSummary,
)
from glmtts_mcp.app.stats import collect_stats
from glmtts_mcp.engine.types import ProgressCallback
from glmtts_mcp.voices import VoiceListing, VoicePage, VoiceRecord
from glmtts_mcp.voices.archive import ARCHIVE_SUFFIX


class VoiceService:
    """The library as the faces use it."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._library = app.library

    async def clone(
        self,
        source: Path | bytes,
        name: str | None,
        transcript: str | None,
        language: str | None,
        progress: ProgressCallback | None = None,
    ) -> CloneVoiceResult:
        """The stored voice for this clip, extracted and stored first if it is new (`existed` says which)."""
        started = time.perf_counter()
        outcome = await self._app.host.run(
            lambda engine: clone_or_get(engine, self._library, source, name, transcript, language, progress)
        )
        if not outcome.existed:
            await self._app.changes.publish()
        record = outcome.record
        timings = dict(outcome.timings)
        timings["total"] = time.perf_counter() - started
        return CloneVoiceResult(
            voice_id=record.id,
            name=record.name,
            existed=outcome.existed,
            transcript=record.transcript,
            transcript_source=record.transcript_source,
            language=record.language,
            duration_s=outcome.duration_s,
            timings=timings,
            warnings=outcome.warnings,
        )

    async def page(self, query: str | None = None, limit: int = 20, cursor: str | None = None) -> VoicePage:
        """One page of the library's listings, sorted by name (whole transcripts)."""
        return await anyio.to_thread.run_sync(
            lambda: self._library.list_voices(query=query, limit=limit, cursor=cursor)
        )

    async def list(self, query: str | None = None, limit: int = 20, cursor: str | None = None) -> ListVoicesResult:
        """One page of voices, sorted by name, with transcript excerpts and health flags."""
        page = await self.page(query, limit, cursor)
        return ListVoicesResult(voices=[VoiceSummary.of(v) for v in page.voices], next_cursor=page.next_cursor)

    async def all(self) -> builtins.list[VoiceListing]:
        """Every voice that can speak (broken ones left out), page by page."""

        def collect() -> builtins.list[VoiceListing]:
            records: builtins.list[VoiceListing] = []
            cursor = None
            while True:
                page = self._library.list_voices(limit=200, cursor=cursor)
                records += [v for v in page.voices if not v.broken]
                if page.next_cursor is None:
                    return records
                cursor = page.next_cursor

        return await anyio.to_thread.run_sync(collect)

    async def get(self, voice: str) -> VoiceRecord:
        """A voice's record, by id or name."""
        return await anyio.to_thread.run_sync(lambda: self._library.resolve(voice))

    async def rename(self, voice: str, name: str) -> RenameVoiceResult:
        """Give a voice a new name (its id never changes)."""

        def rename() -> tuple[VoiceRecord, VoiceRecord]:
            old = self._library.resolve(voice)
            return old, self._library.rename(old.id, name)

        old, record = await anyio.to_thread.run_sync(rename)
        await self._app.changes.publish()
        return RenameVoiceResult(voice_id=record.id, old_name=old.name, name=record.name)

    async def delete(self, voice: str) -> DeleteVoiceResult:
        """Delete a voice and its files (VoiceNotFound when there is none)."""
        record = await anyio.to_thread.run_sync(lambda: self._library.delete(voice))
        await self._app.changes.publish()
        if record is None:  # a broken voice whose meta.json was unreadable, deleted by its id
            return DeleteVoiceResult(voice_id=voice, name=None, deleted=True, message=f"deleted voice {voice}")
        return DeleteVoiceResult(
            voice_id=record.id, name=record.name, deleted=True, message=f"deleted voice {record.name} ({record.id})"
        )

    async def reference_audio(self, voice: str) -> tuple[VoiceRecord, Path]:
        """The reference recording a voice keeps (FLAC, or float WAV: see voices/reference_file.py)."""

        def locate() -> tuple[VoiceRecord, Path]:
            record = self._library.resolve(voice)
            return record, self._library.reference_audio_path(record.id)

        return await anyio.to_thread.run_sync(locate)

    async def export_to(self, voice: str, destination: Path) -> ExportVoiceResult:
        """Write a voice's archive to `destination` (a confined path the face has checked)."""
        settings = self._app.settings

        def export() -> ExportVoiceResult:
            record = self._library.resolve(voice)
            written = self._library.export_voice(record.id, destination, protected=export_protected_folders(settings))
            return ExportVoiceResult(
                voice_id=record.id, name=record.name, path=str(written), bytes=written.stat().st_size
            )

        return await anyio.to_thread.run_sync(export)

    async def export_bytes(self, voice: str) -> tuple[str, bytes]:
        """A voice's archive as a file name and its bytes (for a download)."""

        def export() -> tuple[str, bytes]:
            folder = Path(tempfile.mkdtemp(prefix="glmtts-export-"))  # private (0700), always removed
            try:
                written = self._library.export_voice(voice, folder)
                return written.name, written.read_bytes()
            finally:
                shutil.rmtree(folder, ignore_errors=True)

        return await anyio.to_thread.run_sync(export)

    async def import_from(self, archive: Path | bytes, name: str | None) -> ImportVoiceResult:
        """Add a voice from an archive (a confined path, or uploaded bytes), checked before anything is stored."""

        def import_archive() -> tuple[VoiceRecord, bool]:
            if isinstance(archive, Path):
                return self._library.import_voice(archive, name=name)
            folder = Path(tempfile.mkdtemp(prefix="glmtts-import-"))  # private (0700), always removed
            try:
                path = folder / f"upload{ARCHIVE_SUFFIX}"
                path.write_bytes(archive)
                return self._library.import_voice(path, name=name)
            finally:
                shutil.rmtree(folder, ignore_errors=True)

        record, existed = await anyio.to_thread.run_sync(import_archive)
        if not existed:
            await self._app.changes.publish()
        return ImportVoiceResult(
            voice_id=record.id,
            name=record.name,
            existed=existed,
            transcript=record.transcript,
            duration_s=record.duration_s,
        )

    async def stats(self) -> CacheStatsResult:
        """Hits per tier, time saved, voices, bytes, outputs and the engine's state."""
        return await anyio.to_thread.run_sync(lambda: collect_stats(self._app))
