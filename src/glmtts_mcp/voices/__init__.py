"""The voice library: a cloned voice's prompt features, extracted once and kept.

The library stores named tensors plus metadata and never imports the engine; the server wires the
engine's `FEATURE_SCHEMA` into a `FeatureSchema` and passes the engine's callbacks in.

On disk (root is `Settings.voices_dir`, by default ~/.local/share/glmtts-mcp/voices):
    voices/<id>/features.safetensors   named tensors (never pickles)
    voices/<id>/meta.json              VoiceRecord: name, transcripts, times, hashes, schema, fingerprint...
    voices/<id>/reference.flac         the prepared reference audio (mono, or an upstream clip's channels), to rebuild
                                       features: 16-bit, or 24-bit; an upstream clip of float samples has
    voices/<id>/reference.wav          instead, 32-bit float (see reference_file.py)
    stats.json                         lifetime counters; generation, tmp/, locks/ are bookkeeping

API (what the MCP tools call):
    VoiceLibrary(root, schema, fingerprint="", memory_bytes=256 MiB, device_bytes=0, reextract=None,
                 *, rules=None, flush_interval_s=30.0)
        rules: FeatureRules (per tensor: id range, trailing sizes, frames per second of reference, and the
        tolerance against a re-extraction), the loaded model's facts; without them only the schema is checked.
    .voice_id_for(pcm, sample_rate, transcript) -> str
        sha256 (first 20 hex) of the int16 reference PCM, its rate and the given transcript
        (None = "ask Whisper", distinct from "").
    .get_or_create(pcm, sample_rate, transcript, create: () -> NewVoiceData, name=None, processing="clean")
        -> (VoiceRecord, existed)   create() runs at most once per voice, across threads and processes.
    .pinned(voice_id)   context manager: no delete (or other clone) of that voice lands while it is held
    .resolve(id_or_name) -> VoiceRecord          names are unique case-insensitively
    .load_features(id_or_name, device=None) -> LoadedVoice(record, tensors, tier, load_s)
        tier: "device" | "memory" | "disk" | "reextracted"; tensors are shared with the tiers: read-only.
    .list_voices(query=None, limit=50, cursor=None) -> VoicePage(voices, next_cursor)
        broken voices are listed with `broken` set to the reason.
    .rename(id_or_name, new_name) -> VoiceRecord
    .delete(id_or_name) -> VoiceRecord | None   (None: the deleted voice's meta.json was unreadable)
        VoiceNotFound when there is no such voice (the delete_voice tool answers that with deleted=false)
    .export_voice(id_or_name, dest_path, protected=None) -> Path
        only a .zip path, outside the library and the `protected` folders, replacing only an older export
    .import_voice(archive_path, name=None) -> (VoiceRecord, existed)
        with `reextract`, the features are re-extracted from the archive's reference and kept; the archive's
        must match them within the rules' tolerances (else ArchiveError).
    .reference_audio_path(id_or_name) -> Path
    .reference_flac(id_or_name) -> bytes
    .stale_voices() -> list[VoiceRecord];  .refresh_stale(progress=None) -> int
        reextract(pcm: the kept samples (int16, int32 24-bit or float32), sample_rate, transcript, language)
            -> (tensors, timings)
    .is_stale(record) -> bool
    .stats() -> LibraryStats (session and lifetime StatsCounters, plus gauges)
    .flush(); .close()  (also a context manager; close runs at exit too)

Errors: VoiceLibraryError > VoiceNotFound, InvalidVoiceName, VoiceExists, BrokenVoice, StaleVoice,
ArchiveError. Messages name the problem and the fix. is_voice_id(text) tells an id from a name;
name_key(name) is what names are compared by (case-insensitive, NFKC).
"""

from glmtts_mcp.voices.errors import (
    ArchiveError,
    BrokenVoice,
    InvalidVoiceName,
    StaleVoice,
    VoiceExists,
    VoiceLibraryError,
    VoiceNotFound,
)
from glmtts_mcp.voices.identity import is_voice_id, name_key
from glmtts_mcp.voices.library import DEFAULT_MEMORY_BYTES, Progress, Reextract, VoiceLibrary
from glmtts_mcp.voices.records import (
    LibraryStats,
    LoadedVoice,
    NewVoiceData,
    StatsCounters,
    VoiceListing,
    VoicePage,
    VoiceRecord,
)
from glmtts_mcp.voices.rules import FeatureRules, TensorRule
from glmtts_mcp.voices.schema import FeatureSchema

__all__ = [
    "DEFAULT_MEMORY_BYTES",
    "ArchiveError",
    "BrokenVoice",
    "FeatureRules",
    "FeatureSchema",
    "InvalidVoiceName",
    "LibraryStats",
    "LoadedVoice",
    "NewVoiceData",
    "Progress",
    "Reextract",
    "StaleVoice",
    "StatsCounters",
    "TensorRule",
    "VoiceExists",
    "VoiceLibrary",
    "VoiceLibraryError",
    "VoiceListing",
    "VoiceNotFound",
    "VoicePage",
    "VoiceRecord",
    "is_voice_id",
    "name_key",
]
