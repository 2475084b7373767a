"""What is in voices/ right now, kept current cheaply across processes.

The index maps ids and names to parsed records or to the reason a voice is broken. Every writer
changes the root's `generation` token, so the hot path checks one small file; a rescan re-reads
only folders whose file signatures changed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from glmtts_mcp.voices.errors import VoiceNotFound
from glmtts_mcp.voices.identity import name_key, name_problem
from glmtts_mcp.voices.records import VoiceRecord, meta_problem
from glmtts_mcp.voices.rules import FeatureRules
from glmtts_mcp.voices.schema import FeatureSchema, header_shapes, read_safetensors_arrays, read_safetensors_header
from glmtts_mcp.voices.store import FEATURES_FILE, META_FILE, FileSignature, VoiceStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexEntry:
    """One voice folder as last seen: a record (None if meta.json is unreadable) and why it is broken."""

    voice_id: str
    signature: tuple[FileSignature, ...]
    record: VoiceRecord | None
    broken: str | None

    @property
    def disk_bytes(self) -> int:
        """Bytes of the folder's files."""
        return sum(sig[2] for sig in self.signature if sig is not None)

    @property
    def features_bytes(self) -> int:
        """Bytes of features.safetensors."""
        sig = self.signature[0]
        return sig[2] if sig is not None else 0


class VoiceIndex:
    """Thread-safe view of the voice folders of one store."""

    def __init__(
        self, store: VoiceStore, schema: FeatureSchema, rules: FeatureRules | None = None, fingerprint: str = ""
    ) -> None:
        self._store = store
        self._schema = schema
        self._rules = rules
        self._fingerprint = fingerprint
        self._lock = threading.RLock()
        self._entries: dict[str, IndexEntry] = {}
        self._names: dict[str, str] = {}
        self._generation: str | None = None

    def refresh(self, full: bool = False) -> set[str]:
        """Bring the index up to date; returns ids that changed or vanished.

        Without `full`, nothing is scanned unless another writer changed the generation token.
        """
        with self._lock:
            generation = self._store.read_generation()
            if not full and generation == self._generation:
                return set()
            fresh: dict[str, IndexEntry] = {}
            changed: set[str] = set()
            for voice_id in self._store.voice_ids():
                signature = self._store.signature(voice_id)
                old = self._entries.get(voice_id)
                if old is not None and old.signature == signature:
                    fresh[voice_id] = old
                    continue
                entry = self._inspect(voice_id, signature)
                if entry is not None:  # None: deleted since the listing
                    fresh[voice_id] = entry
                changed.add(voice_id)
            changed |= set(self._entries) - set(fresh)
            self._entries = fresh
            self._rebuild_names()
            self._generation = generation
            return changed

    def refresh_one(self, voice_id: str) -> IndexEntry | None:
        """Re-check one folder's file signatures (catches edits no writer announced); its entry."""
        with self._lock:
            self.refresh()
            signature = self._store.signature(voice_id)
            old = self._entries.get(voice_id)
            if old is not None and old.signature == signature:
                return old
            entry = None
            if any(sig is not None for sig in signature) or self._store.folder_exists(voice_id):
                entry = self._inspect(voice_id, signature)
            if entry is None:
                if old is not None:
                    del self._entries[voice_id]
                    self._rebuild_names()
                return None
            self._entries[voice_id] = entry
            self._rebuild_names()
            return entry

    def _rebuild_names(self) -> None:
        names: dict[str, str] = {}
        for voice_id in sorted(self._entries, key=self._creation_order):
            record = self._entries[voice_id].record
            if record is None:
                continue
            key = name_key(record.name)
            if key in names:
                log.warning(
                    "voices %s and %s share the name %r; the name resolves to %s",
                    names[key],
                    voice_id,
                    record.name,
                    names[key],
                )
                continue
            names[key] = voice_id
        self._names = names

    def _creation_order(self, voice_id: str) -> tuple[str, str]:
        record = self._entries[voice_id].record
        return (record.created_at.isoformat() if record else "~", voice_id)

    def _inspect(self, voice_id: str, signature: tuple[FileSignature, ...]) -> IndexEntry | None:
        """Parse and sanity-check a folder without reading tensor data; None if it is gone (deleted meanwhile)."""
        if not self._store.folder_exists(voice_id):
            return None
        problem = self._store.folder_problem(voice_id)
        if problem:
            return IndexEntry(voice_id, signature, None, problem)
        try:
            record = VoiceRecord.model_validate_json(self._store.read(voice_id, META_FILE))
        except ValidationError as exc:
            return IndexEntry(voice_id, signature, None, meta_problem(exc))
        except VoiceNotFound:  # deleted between the check above and this read
            return None
        except (OSError, ValueError) as exc:
            return IndexEntry(voice_id, signature, None, f"meta.json cannot be read: {exc}")
        return IndexEntry(voice_id, signature, record, self._record_problem(voice_id, record, signature))

    def _record_problem(self, voice_id: str, record: VoiceRecord, signature: tuple[FileSignature, ...]) -> str | None:
        if record.id != voice_id:
            return f"meta.json names id {record.id!r} but the folder is {voice_id!r}"
        bad_name = name_problem(record.name)
        if bad_name:
            return f"meta.json holds an unusable name: {bad_name}"
        features_sig, _, *reference_sigs = signature
        reference_sig = next((sig for sig in reference_sigs if sig is not None), None)
        if reference_sig is None or reference_sig[2] != record.reference_bytes:
            name = self._store.reference_name(voice_id)
            return f"{name} does not have the {record.reference_bytes} bytes meta.json records"
        if features_sig is None or features_sig[2] != record.features_bytes:
            return f"{FEATURES_FILE} does not have the {record.features_bytes} bytes meta.json records"
        path = self._store.voice_dir(voice_id) / FEATURES_FILE
        header, problem = read_safetensors_header(path)
        if problem or record.schema_version != self._schema.version:
            return problem
        problem = self._schema.header_problem(header)
        if problem or self._rules is None or (self._fingerprint and record.fingerprint != self._fingerprint):
            return problem  # a stale voice's features are re-extracted (and checked) before any use
        return self._rules_problem(path, header, record.duration_s)

    def _rules_problem(self, path: Path, header: dict[str, Any], duration_s: float) -> str | None:
        """The model's rules on the stored features: shapes from the header, ids read on their own (a few KB)."""
        assert self._rules is not None
        problem = self._rules.shape_problem(header_shapes(header), duration_s)
        if problem is None:
            arrays, problem = read_safetensors_arrays(path, header, self._rules.ranged)
            problem = problem or self._rules.value_problem(arrays)
        return f"features do not fit this model: {problem}" if problem else None

    def mark_broken(self, voice_id: str, reason: str) -> None:
        """Remember a problem found while loading (e.g. a hash mismatch) until the files change."""
        with self._lock:
            entry = self._entries.get(voice_id)
            if entry is not None:
                self._entries[voice_id] = IndexEntry(voice_id, entry.signature, entry.record, reason)

    def get(self, voice_id: str) -> IndexEntry | None:
        """The entry of an id, as of the last refresh."""
        with self._lock:
            return self._entries.get(voice_id)

    def by_name(self, name: str) -> IndexEntry | None:
        """The entry whose name matches case-insensitively."""
        with self._lock:
            voice_id = self._names.get(name_key(name))
            return self._entries.get(voice_id) if voice_id else None

    def entries(self) -> list[IndexEntry]:
        """All entries, healthy and broken."""
        with self._lock:
            return list(self._entries.values())
