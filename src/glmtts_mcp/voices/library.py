"""VoiceLibrary: clone once, load forever. Ties the store, index, tiers, stats and archives together.

The library never imports the engine: it stores named tensors checked against a `FeatureSchema`,
and asks the engine for features only through the `create` argument of `get_or_create` and the
`reextract` callback (for voices whose schema version or engine fingerprint went stale).
"""

from __future__ import annotations

import atexit
import base64
import binascii
import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from glmtts_mcp.errors import Term
from glmtts_mcp.voices.archive import ArchiveContents, export_destination, read_archive, write_archive
from glmtts_mcp.voices.cache import ByteLRU, SharedTensors
from glmtts_mcp.voices.errors import (
    ArchiveError,
    BrokenVoice,
    InvalidVoiceName,
    StaleVoice,
    VoiceExists,
    VoiceLibraryError,
    VoiceNotFound,
)
from glmtts_mcp.voices.identity import (
    MAX_NAME_LENGTH,
    canonical_pcm,
    is_voice_id,
    lookup_problem,
    name_key,
    name_problem,
    tags_problem,
    voice_id,
)
from glmtts_mcp.voices.index import IndexEntry, VoiceIndex
from glmtts_mcp.voices.pronunciations import Entry
from glmtts_mcp.voices.pronunciations import from_bytes as pronunciations_from_bytes
from glmtts_mcp.voices.pronunciations import to_bytes as pronunciations_to_bytes
from glmtts_mcp.voices.records import (
    LibraryStats,
    LoadedVoice,
    NewVoiceData,
    Tier,
    VoiceListing,
    VoicePage,
    VoiceRecord,
)
from glmtts_mcp.voices.reference_file import decode_reference, encode_reference, listening_flac, reference_file_name
from glmtts_mcp.voices.rules import FeatureRules
from glmtts_mcp.voices.schema import FeatureSchema, tensors_nbytes
from glmtts_mcp.voices.stats import StatsKeeper
from glmtts_mcp.voices.store import (
    FEATURES_FILE,
    MAX_FILE_BYTES,
    META_FILE,
    PRONUNCIATIONS_FILE,
    VoiceStore,
    sha256_hex,
)

log = logging.getLogger(__name__)

DEFAULT_MEMORY_BYTES = 256 << 20
DEFAULT_FLUSH_INTERVAL_S = 30.0
MAX_PAGE_SIZE = 500
_SEE_VOICES = "{list_voices} to see the stored voices, or {clone_voice} first"
BROKEN_FIX = "Delete it and clone it again, or import an exported copy."

Tensors = dict[str, torch.Tensor]
Reextract = Callable[[np.ndarray, int, str, str | None], tuple[Tensors, dict[str, float]]]
Progress = Callable[[float, float, str], None]


def _now() -> datetime:
    return datetime.now(UTC)


def _meta_bytes(record: VoiceRecord) -> bytes:
    return record.model_dump_json(indent=1, exclude={"extraction_s"}).encode()


def _cpu_copies(tensors: Tensors) -> Tensors:
    return {name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()}


def _normalized_device(device: str | torch.device | None) -> torch.device | None:
    """'cuda' and 'cuda:0' are one device tier entry: give CUDA devices their index."""
    if device is None:
        return None
    target = torch.device(device)
    if target.type == "cuda" and target.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return target


def _moved(tensors: Mapping[str, torch.Tensor], target: torch.device) -> Tensors:
    """The tensors on `target`: the one copy a device tier entry holds (or a caller gets without that tier)."""
    return {name: t.to(target) for name, t in tensors.items()}


class _FeaturesChanged(Exception):
    """The features on disk no longer match the record we looked up (replaced meanwhile)."""


class VoiceLibrary:
    """A folder of voices (see the package docstring for the full contract)."""

    def __init__(
        self,
        root: Path,
        schema: FeatureSchema,
        fingerprint: str = "",
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        device_bytes: int = 0,
        reextract: Reextract | None = None,
        *,
        rules: FeatureRules | None = None,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
    ) -> None:
        self.schema = schema
        self.rules = rules
        self.fingerprint = fingerprint
        self._reextract = reextract
        self._store = VoiceStore(Path(root))
        self.root = self._store.root
        self._index = VoiceIndex(self._store, schema, rules, fingerprint)
        self._memory: ByteLRU[tuple[str, str], SharedTensors] = ByteLRU(memory_bytes)
        self._device: ByteLRU[tuple[str, str, str], SharedTensors] = ByteLRU(device_bytes)
        self._stats = StatsKeeper(self._store)
        self._last_used: dict[str, datetime] = {}
        self._last_used_lock = threading.Lock()
        with self._store.write_lock():  # taking it clears what a killed writer left in tmp/
            pass
        self._index.refresh(full=True)
        self._closed = False
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if flush_interval_s > 0:
            self._flusher = threading.Thread(
                target=self._flush_loop, args=(flush_interval_s,), name="voice-library-flush", daemon=True
            )
            self._flusher.start()
        atexit.register(self.close)

    # ----- identity and lookup -----
    def voice_id_for(self, pcm: np.ndarray, sample_rate: int, transcript: str | None, processing: str = "clean") -> str:
        """The id a clone of this audio and transcript gets (None transcript: Whisper decides)."""
        try:
            return voice_id(pcm, sample_rate, transcript, processing)
        except ValueError as exc:
            raise VoiceLibraryError(f"cannot identify the reference audio: {exc}") from exc

    def _lookup(self, id_or_name: str) -> IndexEntry:
        problem = lookup_problem(id_or_name)
        if problem is not None and is_voice_id(str(id_or_name).lower()):
            id_or_name, problem = str(id_or_name).lower(), None
        if problem is not None:
            raise InvalidVoiceName(problem, "pass a voice id or name as {list_voices} shows them", argument=Term.VOICE)
        for full in (False, True):  # a full rescan also catches folders a killed writer never announced
            if full:
                self._full_refresh()
            else:
                self._index.refresh()
            entry = self._index.get(id_or_name) if is_voice_id(id_or_name) else self._index.by_name(id_or_name)
            if entry is not None:
                return entry
        self._stats.add(misses=1)
        raise VoiceNotFound(f"no voice {id_or_name!r} in the library", _SEE_VOICES, argument=Term.VOICE)

    def _healthy(self, entry: IndexEntry) -> VoiceRecord:
        if entry.broken is not None or entry.record is None:
            label = f"{entry.voice_id} ({entry.record.name})" if entry.record else entry.voice_id
            raise BrokenVoice(f"voice {label} is broken: {entry.broken}. {BROKEN_FIX}")
        return entry.record

    def resolve(self, id_or_name: str) -> VoiceRecord:
        """The record of a voice given its id or (case-insensitive) name."""
        return self._healthy(self._lookup(id_or_name))

    def is_stale(self, record: VoiceRecord) -> bool:
        """True when the voice's features come from another schema version or engine fingerprint."""
        if record.schema_version != self.schema.version:
            return True
        return bool(self.fingerprint) and record.fingerprint != self.fingerprint

    def reference_audio_path(self, id_or_name: str) -> Path:
        """The kept reference audio of a voice (16- or 24-bit FLAC, or float WAV: see reference_file)."""
        record = self.resolve(id_or_name)
        path = self._store.voice_dir(record.id) / self._store.reference_name(record.id)
        if path.is_symlink() or not path.is_file():
            self._broken(record, f"{path.name} is missing or not a regular file")
        return path

    def reference_flac(self, id_or_name: str) -> bytes:
        """The voice's reference audio as FLAC, for listening (a float reference as 24-bit FLAC: listening_flac)."""
        path = self.reference_audio_path(id_or_name)
        return listening_flac(path.name, path.read_bytes())

    # ----- clone -----
    def get_or_create(
        self,
        pcm: np.ndarray,
        sample_rate: int,
        transcript: str | None,
        create: Callable[[], NewVoiceData],
        name: str | None = None,
        processing: Literal["clean", "upstream"] = "clean",
    ) -> tuple[VoiceRecord, bool]:
        """Return the stored voice for this audio+transcript, or call `create` once and store it.

        Concurrent callers (threads or processes) with the same audio wait for the first; they get
        (record, True) without calling `create`. `name` is used only for a new voice. `processing`
        (how the engine prepared `pcm`) is recorded and is part of the id.
        """
        vid = self.voice_id_for(pcm, sample_rate, transcript, processing)
        if name is not None and (problem := name_problem(name)):
            raise InvalidVoiceName(problem, "choose another name", argument=Term.NAME)
        found = self._existing(vid)
        if found is not None:
            return found, True
        with self._store.clone_lock(vid):
            self._full_refresh()
            found = self._existing(vid)
            if found is not None:
                return found, True
            if name is not None:
                self._check_name_free(name, vid)
            started = time.perf_counter()
            data = create()
            self._check_new_voice(data)
            log.info("extracted voice %s in %.2f s", vid, time.perf_counter() - started)
            tensors = _cpu_copies(data.tensors)
            features = save_tensors(tensors)
            kept = canonical_pcm(pcm, processing)
            reference_name, reference = reference_file_name(kept), encode_reference(kept, int(sample_rate))
            with self._store.write_lock():
                self._index.refresh(full=True)
                if name is not None:
                    self._check_name_free(name, vid)
                now = _now()
                record = VoiceRecord(
                    id=vid,
                    name=name or self._default_name(vid),
                    transcript=data.transcript,
                    transcript_input=transcript,
                    transcript_source=data.transcript_source,
                    language=data.language,
                    created_at=now,
                    last_used_at=now,
                    duration_s=float(data.duration_s),
                    sample_rate=int(sample_rate),
                    reference_sha256=sha256_hex(reference),
                    reference_bytes=len(reference),
                    features_sha256=sha256_hex(features),
                    features_bytes=len(features),
                    schema_version=self.schema.version,
                    fingerprint=self.fingerprint,
                    reference_processing=processing,
                    tags=list(data.tags),
                    timings=dict(data.timings),
                )
                self._stats.add(clones_created=1, extraction_s_spent=record.extraction_s)  # flushed by the commit
                self._commit(record, {FEATURES_FILE: features, reference_name: reference})
        self._remember(record, tensors)
        return record, False

    @contextmanager
    def pinned(self, vid: str) -> Iterator[None]:
        """Hold off deletes (and other clones) of voice `vid`, across threads and processes.

        A caller that clones a voice and then uses it holds this around both steps, so the voice it
        got cannot vanish in between (a delete waits, then deletes).
        """
        with self._store.clone_lock(vid):
            yield

    def _existing(self, vid: str, count_as_clone: bool = True) -> VoiceRecord | None:
        """A healthy stored voice with this id (a repeated clone saves its extraction), or None."""
        entry = self._index.refresh_one(vid)
        if entry is None or entry.broken is not None or entry.record is None:
            return None
        if count_as_clone:
            self._stats.add(clones_existing=1, extraction_s_saved=entry.record.extraction_s)
            self._touch(vid)
        return entry.record

    def _check_new_voice(self, data: NewVoiceData) -> None:
        """The engine's output must fit the schema; anything else is a bug worth a clear error."""
        if not isinstance(data, NewVoiceData):
            raise VoiceLibraryError(f"create() must return NewVoiceData, got {type(data).__name__}")
        problem = self.schema.problem_with(data.tensors)
        if problem is None and not isinstance(data.transcript, str):
            problem = "transcript is not text"
        if problem is None and data.transcript_source not in ("user", "whisper"):
            problem = f"transcript_source {data.transcript_source!r} is not 'user' or 'whisper'"
        if problem is None and not (math.isfinite(data.duration_s) and data.duration_s > 0):
            problem = f"duration_s {data.duration_s!r} is not a positive number"
        if problem is None and self.rules is not None:
            problem = self.rules.problem_with(data.tensors, data.duration_s)
        if problem is None and not all(isinstance(v, int | float) and math.isfinite(v) for v in data.timings.values()):
            problem = "timings must be finite seconds"
        if problem is None:
            problem = tags_problem(data.tags)
        if problem is not None:
            raise VoiceLibraryError(f"the new voice's data cannot be stored: {problem}")

    def _check_name_free(self, name: str, owner: str) -> None:
        entry = self._index.by_name(name)
        if entry is not None and entry.voice_id != owner:
            raise VoiceExists(
                f"the name {name!r} already belongs to voice {entry.voice_id}; "
                "choose another name, or rename or delete that voice first."
            )

    def _default_name(self, vid: str) -> str:
        """Keep a broken predecessor's name, else 'voice-<id prefix>', lengthened until unique."""
        entry = self._index.get(vid)
        if entry is not None and entry.record is not None and self._index.by_name(entry.record.name) is entry:
            return entry.record.name
        for length in range(6, len(vid) + 1):
            candidate = f"voice-{vid[:length]}"
            if self._index.by_name(candidate) is None:
                return candidate
        raise VoiceExists(f"no free default name for voice {vid}; pass a name")

    def _unique_variant(self, name: str, vid: str) -> str:
        """`name`, or `name-2`, `name-3`, ... (for imports whose name is taken)."""
        owner = self._index.by_name(name)
        if owner is None or owner.voice_id == vid:
            return name
        for counter in range(2, 10_000):
            suffix = f"-{counter}"
            candidate = name[: MAX_NAME_LENGTH - len(suffix)].rstrip() + suffix
            if self._index.by_name(candidate) is None:
                return candidate
        return self._default_name(vid)

    def _full_refresh(self) -> None:
        """Rescan voices/, after waiting out (or, for a killed writer, finishing) any replacement half done.

        A replaced voice is first moved aside; a reader that came then would miss it. Taking the write
        lock waits for a live writer, and as the outermost holder restores what a dead one left
        (VoiceStore._recover), so readers always see the last complete voice.
        """
        if self._store.voices_aside():
            with self._store.write_lock():
                pass
        self._index.refresh(full=True)

    def _commit(self, record: VoiceRecord, files: dict[str, bytes]) -> None:
        """Write a whole voice folder (write lock held) and announce it."""
        self._store.commit_voice(record.id, {**files, META_FILE: _meta_bytes(record)})
        self._after_write()

    def _after_write(self) -> None:
        self._store.bump_generation()
        self._flush_locked()
        self._index.refresh()

    # ----- load -----
    def load_features(self, id_or_name: str, device: str | torch.device | None = None) -> LoadedVoice:
        """The voice's tensors on `device` (default CPU), shared and read-only.

        Served from the device tier, the memory tier or disk, in that order; stale voices are
        re-extracted first when a `reextract` callback was given. A hit hands out the tier's own
        tensors (no copy per hit): the caller must not write into them (see `SharedTensors`).
        """
        started = time.perf_counter()
        target = _normalized_device(device)
        entry = self._lookup(id_or_name)
        for _ in range(3):
            try:
                return self._load(entry, target, started)
            except _FeaturesChanged:
                self._full_refresh()
                entry = self._lookup(entry.voice_id)
            except VoiceNotFound:
                if not self._store.voices_aside():
                    raise
                self._full_refresh()  # the folder was moved aside by a replacement: read what it left
                entry = self._lookup(entry.voice_id)
        raise VoiceLibraryError(f"voice {entry.voice_id} keeps changing on disk while loading; retry")

    def _load(self, entry: IndexEntry, target: torch.device | None, started: float) -> LoadedVoice:
        if entry.broken is not None:
            self._stats.add(broken_loads=1)
        record = self._healthy(entry)
        tensors: Mapping[str, torch.Tensor] | None = None
        tier: Tier
        if self.is_stale(record):
            if self._reextract is not None:
                record, tensors = self._refresh_voice(record.id)
            elif record.schema_version != self.schema.version:
                raise StaleVoice(
                    f"voice {record.name} ({record.id}) was stored under feature schema v{record.schema_version}; "
                    f"this engine needs v{self.schema.version}. Load it through the server with its engine "
                    "(which re-extracts it from the kept reference audio), or clone it again."
                )
        use_device = target is not None and target.type != "cpu" and self._device.capacity_bytes > 0
        device_key = (record.id, record.features_sha256, str(target))
        if tensors is not None:
            tier = "reextracted"
        elif use_device and (cached := self._intact(self._device, device_key)) is not None:
            return self._served(record, cached.tensors, "device", started)
        else:
            if use_device:
                self._stats.add(device_misses=1)
            shared = self._intact(self._memory, (record.id, record.features_sha256))
            tier = "memory"
            if shared is None:
                self._stats.add(memory_misses=1)
                shared = self._remember(record, self._read_features(record))
                tier = "disk"
            tensors = shared.tensors
        if target is None or target.type == "cpu":
            return self._served(record, tensors, tier, started)
        moved = SharedTensors(_moved(tensors, target))  # the one copy on the device
        if use_device:
            evicted = self._device.put(device_key, moved, tensors_nbytes(moved.tensors))
            self._stats.add(device_evictions=evicted)
        return self._served(record, moved.tensors, tier, started)

    def _intact(self, tier: ByteLRU[Any, SharedTensors], key: tuple[str, ...]) -> SharedTensors | None:
        """The tier's entry, unless a caller wrote into its tensors: then it is dropped (a bug, logged)."""
        shared = tier.get(key)
        if shared is None or shared.intact():
            return shared
        log.error(
            "a caller wrote into the shared features of voice %s; dropped them from the cache "
            "(features handed out by load_features are read-only)",
            key[0],
        )
        tier.discard_where(lambda other: other == key)
        return None

    def _served(
        self, record: VoiceRecord, tensors: Mapping[str, torch.Tensor], tier: Tier, started: float
    ) -> LoadedVoice:
        load_s = time.perf_counter() - started
        if tier != "reextracted":  # a re-extraction is counted by _refresh_voice, not as a hit
            self._stats.add(
                **{f"{tier}_hits": 1, f"{tier}_load_s_total": load_s, "extraction_s_saved": record.extraction_s}
            )
        self._touch(record.id)
        return LoadedVoice(record=record, tensors=tensors, tier=tier, load_s=load_s)

    def _read_features(self, record: VoiceRecord) -> Tensors:
        """Read, hash-check and schema-check features from disk; marks the voice broken on failure."""
        try:
            data = self._store.read(record.id, FEATURES_FILE)
        except VoiceNotFound as exc:
            raise VoiceNotFound(
                f"voice {record.name} ({record.id}) was deleted while loading", _SEE_VOICES, argument=Term.VOICE
            ) from exc
        except OSError as exc:
            self._broken(record, f"{FEATURES_FILE} cannot be read: {exc}")
        if sha256_hex(data) != record.features_sha256:
            if self._changed_on_disk(record):
                raise _FeaturesChanged
            self._broken(record, f"{FEATURES_FILE} does not match its recorded sha256 (corrupt)")
        try:
            tensors = load_tensors(data)
        except (SafetensorError, ValueError, RuntimeError) as exc:
            self._broken(record, f"{FEATURES_FILE} is corrupt: {exc}")
        problem = self.schema.problem_with(tensors)
        if problem is not None:
            self._broken(record, f"features do not fit the schema: {problem}")
        if self.rules is not None and (problem := self.rules.problem_with(tensors, record.duration_s)):
            self._broken(record, f"features do not fit this model: {problem}")
        return tensors

    def _changed_on_disk(self, record: VoiceRecord) -> bool:
        try:
            current = VoiceRecord.model_validate_json(self._store.read(record.id, META_FILE))
        except (VoiceLibraryError, OSError, ValidationError):
            return False
        return current.features_sha256 != record.features_sha256

    @staticmethod
    def _meta_changed(record: VoiceRecord, meta: bytes) -> bool:
        """Whether these meta.json bytes describe other features or audio than `record` (a newer version)."""
        try:
            current = VoiceRecord.model_validate_json(meta)
        except ValidationError:
            return False  # unreadable: the hash checks against `record` decide
        return (current.features_sha256, current.reference_sha256) != (record.features_sha256, record.reference_sha256)

    def _broken(self, record: VoiceRecord, reason: str) -> NoReturn:
        self._index.mark_broken(record.id, reason)
        self._drop_cached(record.id)
        self._stats.add(broken_loads=1)
        raise BrokenVoice(f"voice {record.name} ({record.id}) is broken: {reason}. {BROKEN_FIX}")

    def _remember(self, record: VoiceRecord, tensors: Tensors) -> SharedTensors:
        """Keep the tensors in the memory tier (when they fit); they are shared from now on."""
        shared = SharedTensors(tensors)
        evicted = self._memory.put((record.id, record.features_sha256), shared, tensors_nbytes(tensors))
        self._stats.add(memory_evictions=evicted)
        return shared

    def _drop_cached(self, vid: str) -> None:
        self._memory.discard_where(lambda key: key[0] == vid)
        self._device.discard_where(lambda key: key[0] == vid)

    def _touch(self, vid: str) -> None:
        """Note a use; meta.json's last_used_at is written later by flush (never on the load path)."""
        with self._last_used_lock:
            self._last_used[vid] = _now()

    # ----- stale features -----
    def stale_voices(self) -> list[VoiceRecord]:
        """Healthy voices whose features predate the current schema version or engine fingerprint."""
        self._full_refresh()
        return [e.record for e in self._index.entries() if e.broken is None and e.record and self.is_stale(e.record)]

    def refresh_stale(self, progress: Progress | None = None) -> int:
        """Re-extract every stale voice from its kept reference audio; returns how many were refreshed.

        A voice that fails is logged and left stale; the others go on.
        """
        if self._reextract is None:
            raise VoiceLibraryError(
                "this library has no re-extraction callback; open it through the server "
                "with its engine loaded to refresh stale voices."
            )
        stale = self.stale_voices()
        refreshed = 0
        for done, record in enumerate(stale):
            if progress is not None:
                progress(done, len(stale), f"re-extracting {record.name}")
            try:
                self._refresh_voice(record.id)
                refreshed += 1
            except VoiceLibraryError as exc:
                log.warning("could not refresh voice %s: %s", record.id, exc)
        if progress is not None:
            progress(len(stale), len(stale), f"refreshed {refreshed} of {len(stale)} stale voices")
        return refreshed

    def _refresh_voice(self, vid: str) -> tuple[VoiceRecord, Mapping[str, torch.Tensor] | None]:
        """Re-extract one voice in place (same id and name); the new (shared) tensors, None if it was fresh."""
        if self._reextract is None:
            raise VoiceLibraryError("no re-extraction callback was given to the voice library")
        with self._store.clone_lock(vid):
            self._full_refresh()
            record = self._healthy(self._lookup(vid))
            if not self.is_stale(record):
                return record, None
            reference_name = self._store.reference_name(vid)
            reference = self._store.read(vid, reference_name)
            if sha256_hex(reference) != record.reference_sha256:
                self._broken(record, f"{reference_name} does not match its recorded sha256 (corrupt)")
            try:
                pcm, sample_rate = decode_reference(reference_name, reference)
            except ValueError as exc:
                self._broken(record, str(exc))
            tensors, timings = self._run_reextract(pcm, sample_rate, record.transcript, record.language)
            features = save_tensors(tensors)
            with self._store.write_lock():
                current = VoiceRecord.model_validate_json(self._store.read(vid, META_FILE))
                record = current.model_copy(
                    update={
                        "features_sha256": sha256_hex(features),
                        "features_bytes": len(features),
                        "schema_version": self.schema.version,
                        "fingerprint": self.fingerprint,
                        "timings": timings,
                    }
                )
                self._stats.add(reextractions=1, extraction_s_spent=record.extraction_s)
                self._commit(record, {FEATURES_FILE: features, reference_name: reference})
        self._drop_cached(vid)
        shared = self._remember(record, tensors)
        log.info("re-extracted stale voice %s (%s)", record.name, vid)
        return record, shared.tensors

    def _run_reextract(
        self, pcm: np.ndarray, sample_rate: int, transcript: str, language: str | None
    ) -> tuple[Tensors, dict[str, float]]:
        assert self._reextract is not None
        tensors, timings = self._reextract(pcm, sample_rate, transcript, language)  # exactly the kept samples
        problem = self.schema.problem_with(tensors)
        if problem is None and self.rules is not None:
            problem = self.rules.problem_with(tensors, len(pcm) / sample_rate)
        if problem is not None:
            raise VoiceLibraryError(f"re-extracted features do not fit the schema or the model: {problem}")
        return _cpu_copies(tensors), {str(k): float(v) for k, v in timings.items()}

    # ----- listing, rename, delete -----
    def list_voices(self, query: str | None = None, limit: int = 50, cursor: str | None = None) -> VoicePage:
        """A page of voices sorted by name, broken ones included with the reason.

        `query` matches (case-insensitively) id, name, transcript, language and tags.
        """
        if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
            raise VoiceLibraryError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit!r}")
        after = self._decode_cursor(cursor) if cursor else None
        self._full_refresh()
        listings = sorted((self._listing(e) for e in self._index.entries()), key=self._sort_key)
        if query:
            needle = query.casefold()
            listings = [item for item in listings if needle in self._haystack(item)]
        if after is not None:
            listings = [item for item in listings if self._sort_key(item) > after]
        page = listings[:limit]
        more = len(listings) > limit
        return VoicePage(voices=page, next_cursor=self._encode_cursor(self._sort_key(page[-1])) if more else None)

    def _listing(self, entry: IndexEntry) -> VoiceListing:
        record = entry.record
        broken = f"{entry.broken}. {BROKEN_FIX}" if entry.broken is not None else None
        if record is None:
            return VoiceListing(id=entry.voice_id, broken=broken)
        return VoiceListing(
            id=entry.voice_id,
            name=record.name,
            transcript=record.transcript,
            language=record.language,
            duration_s=record.duration_s,
            created_at=record.created_at,
            last_used_at=record.last_used_at,
            tags=record.tags,
            stale=self.is_stale(record),
            broken=broken,
        )

    @staticmethod
    def _sort_key(item: VoiceListing) -> tuple[str, str]:
        return (name_key(item.name) if item.name else "\U0010ffff", item.id)

    @staticmethod
    def _haystack(item: VoiceListing) -> str:
        return "\n".join([item.id, item.name or "", item.transcript or "", item.language or "", *item.tags]).casefold()

    @staticmethod
    def _encode_cursor(key: tuple[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()

    @staticmethod
    def _decode_cursor(cursor: str) -> tuple[str, str]:
        try:
            key = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
            if isinstance(key, list) and len(key) == 2 and all(isinstance(part, str) for part in key):
                return (key[0], key[1])
        except (ValueError, UnicodeError, binascii.Error):
            pass
        raise InvalidVoiceName(
            "the cursor is not one this library returned; pass next_cursor from the last page, "
            "or no cursor to start over."
        )

    def rename(self, id_or_name: str, new_name: str) -> VoiceRecord:
        """Give a voice another (unique, case-insensitive) name."""
        if problem := name_problem(new_name):
            raise InvalidVoiceName(problem, "choose another name", argument=Term.NAME)
        vid = self._lookup(id_or_name).voice_id
        with self._store.write_lock():
            self._index.refresh(full=True)
            self._healthy(self._lookup(vid))
            self._check_name_free(new_name, vid)
            try:
                current = VoiceRecord.model_validate_json(self._store.read(vid, META_FILE))
            except (OSError, ValidationError) as exc:
                raise BrokenVoice(
                    f"voice {vid} has an unreadable meta.json ({exc}); delete it and clone it again"
                ) from exc
            record = current.model_copy(update={"name": new_name})
            self._store.replace_meta(vid, _meta_bytes(record))
            self._stats.add(renames=1)
            self._after_write()
        return record

    # ----- pronunciation dictionaries (voices/pronunciations.py) -----
    def pronunciations(self, id_or_name: str | None) -> dict[str, Entry]:
        """The global dictionary (None) or a voice's own; empty when there is none."""
        if id_or_name is None:
            data = self._store.read_root_file(PRONUNCIATIONS_FILE, MAX_FILE_BYTES[PRONUNCIATIONS_FILE])
            where = "the global pronunciation dictionary"
        else:
            vid = self.resolve(id_or_name).id
            try:
                data = self._store.read(vid, PRONUNCIATIONS_FILE)
            except FileNotFoundError:
                data = None
            where = f"voice {vid}'s pronunciation dictionary"
        return {} if data is None else pronunciations_from_bytes(data, where)

    def set_pronunciations(self, id_or_name: str | None, entries: Mapping[str, Entry]) -> None:
        """Replace the global dictionary (None) or a voice's own, atomically; no entries removes the file.
        The voice's id and files are untouched: its dictionary travels with it on export."""
        data = pronunciations_to_bytes(entries) if entries else None
        with self._store.write_lock():
            if id_or_name is None:
                if data is None:
                    (self.root / PRONUNCIATIONS_FILE).unlink(missing_ok=True)
                else:
                    self._store.write_root_file(PRONUNCIATIONS_FILE, data)
            else:
                self._index.refresh(full=True)
                vid = self._healthy(self._lookup(id_or_name)).id
                self._store.replace_voice_file(vid, PRONUNCIATIONS_FILE, data)
            self._after_write()

    def delete(self, id_or_name: str) -> VoiceRecord | None:
        """Delete a voice (healthy or broken); returns its record, None if its meta.json was unreadable.

        Callers already holding its tensors keep them: loaded tensors never point into the files.
        A caller that has the voice `pinned` finishes first.
        """
        entry = self._lookup(id_or_name)
        with self._store.clone_lock(entry.voice_id), self._store.write_lock():  # waits for whoever pinned it
            self._store.remove_voice(entry.voice_id)
            self._stats.add(deletes=1)
            self._after_write()
        self._drop_cached(entry.voice_id)
        with self._last_used_lock:
            self._last_used.pop(entry.voice_id, None)
        return entry.record

    # ----- archives -----
    def export_voice(self, id_or_name: str, dest_path: Path, protected: Mapping[str, Path] | None = None) -> Path:
        """Write the voice to one archive file; a folder as `dest_path` gets '<name>.glmtts-voice.zip'.

        `protected` maps labels to more folders exports must never write into (the server passes its
        output and checkpoint folders); the library's own root is always one. See archive.py.
        """
        for _ in range(3):  # the files are read one by one: a re-extraction may replace the folder meanwhile
            record = self.resolve(id_or_name)
            reference_name = self._store.reference_name(record.id)
            try:
                files = {name: self._store.read(record.id, name) for name in (FEATURES_FILE, META_FILE, reference_name)}
            except OSError as exc:  # gone or not a file: replaced meanwhile, or the folder is damaged
                if self._changed_on_disk(record):
                    id_or_name = record.id
                    continue
                self._broken(record, _unreadable(exc))
            with contextlib.suppress(FileNotFoundError):  # a voice without its own dictionary has no file
                files[PRONUNCIATIONS_FILE] = self._store.read(record.id, PRONUNCIATIONS_FILE)
            if self._meta_changed(record, files[META_FILE]):
                id_or_name = record.id
                continue
            for name, digest in ((FEATURES_FILE, record.features_sha256), (reference_name, record.reference_sha256)):
                if sha256_hex(files[name]) != digest:
                    if self._changed_on_disk(record):
                        break
                    self._broken(record, f"{name} does not match its recorded sha256 (corrupt)")
            else:
                break
            id_or_name = record.id
        else:
            raise VoiceLibraryError(f"voice {record.id} keeps changing on disk while exporting; retry")
        dest = export_destination(Path(dest_path), record.name, {"the voice library": self.root, **(protected or {})})
        write_archive(dest, files)
        self._stats.add(exports=1)
        return dest

    def import_voice(self, archive_path: Path, name: str | None = None) -> tuple[VoiceRecord, bool]:
        """Add a voice from an archive made by export_voice; (record, existed).

        Everything is validated before anything is written (see archive.py). A voice already here
        is returned as is. Without `name`, the archive's name is kept, suffixed '-2', '-3'... if taken.
        With a `reextract` callback (the server's engine) the features are re-extracted from the archive's
        reference and ours are kept; the archive's must match them (`_reextracted_import`).
        """
        if name is not None and (problem := name_problem(name)):
            raise InvalidVoiceName(problem, "choose another name", argument=Term.NAME)
        path = Path(archive_path).expanduser()
        contents = read_archive(path, self.schema, self.rules, self.fingerprint)
        incoming = contents.record
        with self._store.clone_lock(incoming.id):
            self._full_refresh()
            found = self._existing(incoming.id, count_as_clone=False)
            if found is not None:
                return found, True
            if self._reextract is not None:
                incoming, tensors = self._reextracted_import(path, contents)
                features = save_tensors(tensors)
                incoming = incoming.model_copy(
                    update={"features_sha256": sha256_hex(features), "features_bytes": len(features)}
                )
            elif contents.tensors is None:
                raise ArchiveError(
                    f"{archive_path} holds features of schema v{incoming.schema_version}; this library needs "
                    f"v{self.schema.version}. Import it through the server with its engine loaded."
                )
            else:
                tensors, features = contents.tensors, contents.files[FEATURES_FILE]
            with self._store.write_lock():
                self._index.refresh(full=True)
                if name is not None:
                    self._check_name_free(name, incoming.id)
                final_name = name or self._unique_variant(incoming.name, incoming.id)
                record = incoming.model_copy(update={"name": final_name, "last_used_at": None})
                self._stats.add(imports=1)
                reference = {n: d for n, d in contents.files.items() if n not in (META_FILE, FEATURES_FILE)}
                self._commit(record, {**reference, FEATURES_FILE: features})
        self._remember(record, tensors)
        return record, False

    def _reextracted_import(self, path: Path, contents: ArchiveContents) -> tuple[VoiceRecord, Tensors]:
        """Features extracted here from the archive's reference, after checking the archive's against them.

        Ours are kept: a voice's features then always follow from its reference and transcript, which is
        all its id (and a later clone of the same clip, answered `existed`) stands for. The archive's are
        compared first when the same model made them: features that do not match their own reference
        (another voice's put under this one, or edited) are refused rather than silently replaced, so
        whoever holds that archive learns it is not what it claims. Features of another schema version or
        model cannot be compared; they are simply replaced.
        """
        incoming = contents.record
        tensors, timings = self._run_reextract(
            contents.pcm, contents.sample_rate, incoming.transcript, incoming.language
        )
        if contents.tensors is not None and self.rules is not None and not self.is_stale(incoming):
            mismatch = self.rules.mismatch(contents.tensors, tensors)
            if mismatch is not None:
                raise ArchiveError(
                    f"{path}: its features were not extracted from its own reference audio ({mismatch}): the "
                    "archive was edited, or holds another voice's features. Export the voice again from the "
                    "library that made it, or clone its recording instead."
                )
        record = incoming.model_copy(
            update={"schema_version": self.schema.version, "fingerprint": self.fingerprint, "timings": timings}
        )
        self._stats.add(reextractions=1, extraction_s_spent=record.extraction_s)
        return record, tensors

    # ----- stats and lifecycle -----
    def stats(self) -> LibraryStats:
        """Session and lifetime counters, plus what is on disk and in the tiers now."""
        self._index.refresh()
        entries = self._index.entries()
        broken = [e for e in entries if e.broken is not None]
        usable = [e.record for e in entries if e.broken is None and e.record is not None]
        lifetime, since = self._stats.lifetime()
        return LibraryStats(
            root=str(self.root),
            session_started_at=self._stats.started_at,
            session=self._stats.session(),
            lifetime=lifetime,
            lifetime_since=since,
            voice_count=len(usable),
            broken_voices=len(broken),
            stale_voices=sum(self.is_stale(record) for record in usable),
            disk_bytes=sum(e.disk_bytes for e in entries),
            features_disk_bytes=sum(e.features_bytes for e in entries),
            memory_bytes=self._memory.nbytes,
            memory_capacity_bytes=self._memory.capacity_bytes,
            memory_voices=len(self._memory),
            device_bytes=self._device.nbytes,
            device_capacity_bytes=self._device.capacity_bytes,
            device_voices=len(self._device),
        )

    def flush(self) -> None:
        """Write pending last-used times and add pending counts to the lifetime stats file."""
        with self._store.write_lock():
            self._flush_locked()

    def _flush_locked(self) -> None:
        with self._last_used_lock:
            pending, self._last_used = self._last_used, {}
        wrote = False
        for vid, when in pending.items():
            try:
                current = VoiceRecord.model_validate_json(self._store.read(vid, META_FILE))
                if current.last_used_at is None or current.last_used_at < when:
                    self._store.replace_meta(vid, _meta_bytes(current.model_copy(update={"last_used_at": when})))
                    wrote = True
            except (VoiceLibraryError, OSError, ValidationError):
                continue  # deleted or broken meanwhile: nothing to note
        if wrote:
            self._store.bump_generation()
        self._stats.flush()

    def _flush_loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.flush()
            except Exception:  # the timer must survive a full disk or a busy lock; the next tick retries
                log.exception("flushing voice library stats failed")

    def close(self) -> None:
        """Stop the flush timer, write what is pending, drop the tiers. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(timeout=10)
        try:
            self.flush()
        except Exception:  # at exit, a failed flush must not mask the real shutdown reason
            log.exception("final flush of the voice library failed")
        atexit.unregister(self.close)
        self._memory.clear()
        self._device.clear()

    def __enter__(self) -> VoiceLibrary:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _unreadable(exc: OSError) -> str:
    """Why a voice's file cannot be read, naming the file but never the folder it is in."""
    if exc.filename:
        return f"{Path(exc.filename).name} cannot be read ({exc.strerror or type(exc).__name__})"
    return str(exc)
