"""Plain data the library returns (pydantic where it crosses the MCP boundary)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, computed_field

META_FORMAT: Final = "glmtts-mcp-voice"
META_VERSION = 1
Tier = Literal["device", "memory", "disk", "reextracted"]


class VoiceRecord(BaseModel):
    """Everything known about one stored voice; this is also the content of its meta.json."""

    model_config = ConfigDict(extra="ignore")

    format: Literal["glmtts-mcp-voice"] = META_FORMAT
    meta_version: int = META_VERSION
    id: str
    name: str
    transcript: str = Field(description="the text spoken in the reference audio, as used for the features")
    transcript_input: str | None = Field(
        description="the transcript given when cloning (None: Whisper was asked); part of the id"
    )
    transcript_source: Literal["user", "whisper"]
    language: str | None = None
    created_at: datetime
    last_used_at: datetime | None = None
    duration_s: float
    sample_rate: int
    reference_sha256: str = Field(description="sha256 of the reference file (reference.flac or .wav)")
    reference_bytes: int
    features_sha256: str = Field(description="sha256 of features.safetensors")
    features_bytes: int
    schema_version: int
    fingerprint: str = Field(description="engine/model fingerprint the features were extracted with")
    reference_processing: Literal["clean", "upstream"] = Field(
        default="clean", description="how the kept reference samples were prepared from the clip; part of the id"
    )
    tags: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict, description="extraction seconds per stage")

    @computed_field  # type: ignore[prop-decorator]  # mypy refuses decorators over @property; pydantic's advice
    @property
    def extraction_s(self) -> float:
        """Seconds of prompt processing that every reuse of this voice saves."""
        return float(sum(self.timings.values()))


class VoiceListing(BaseModel):
    """One line of a voice listing; broken voices appear with the reason and what could be read."""

    id: str
    name: str | None = None
    transcript: str | None = None
    language: str | None = None
    duration_s: float | None = None
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    tags: list[str] = Field(default_factory=list)
    stale: bool = False
    broken: str | None = Field(default=None, description="why the voice cannot be used; None when healthy")


class VoicePage(BaseModel):
    """A page of voices; pass `next_cursor` back to get the next page (None: no more)."""

    voices: list[VoiceListing]
    next_cursor: str | None = None


class StatsCounters(BaseModel):
    """Counters of library use; the names say what they count."""

    memory_hits: int = 0
    memory_misses: int = 0
    device_hits: int = 0
    device_misses: int = 0
    disk_hits: int = 0
    misses: int = Field(default=0, description="lookups of voices that do not exist")
    broken_loads: int = 0
    memory_evictions: int = 0
    device_evictions: int = 0
    clones_created: int = 0
    clones_existing: int = Field(default=0, description="clones answered by an already stored voice")
    reextractions: int = 0
    imports: int = 0
    exports: int = 0
    renames: int = 0
    deletes: int = 0
    memory_load_s_total: float = 0.0
    device_load_s_total: float = 0.0
    disk_load_s_total: float = 0.0
    extraction_s_spent: float = Field(default=0.0, description="prompt processing done for new and re-extracted voices")
    extraction_s_saved: float = Field(default=0.0, description="sum of recorded extraction time over every reuse")

    @computed_field  # type: ignore[prop-decorator]  # mypy refuses decorators over @property; pydantic's advice
    @property
    def memory_load_ms_mean(self) -> float | None:
        """Mean time of a memory-tier hit."""
        return 1000 * self.memory_load_s_total / self.memory_hits if self.memory_hits else None

    @computed_field  # type: ignore[prop-decorator]  # mypy refuses decorators over @property; pydantic's advice
    @property
    def device_load_ms_mean(self) -> float | None:
        """Mean time of a device-tier hit."""
        return 1000 * self.device_load_s_total / self.device_hits if self.device_hits else None

    @computed_field  # type: ignore[prop-decorator]  # mypy refuses decorators over @property; pydantic's advice
    @property
    def disk_load_ms_mean(self) -> float | None:
        """Mean time of a load from disk."""
        return 1000 * self.disk_load_s_total / self.disk_hits if self.disk_hits else None


class LibraryStats(BaseModel):
    """Counters since this process started and over the library's whole life, plus gauges."""

    root: str
    session_started_at: datetime
    session: StatsCounters
    lifetime: StatsCounters
    lifetime_since: datetime | None = None
    voice_count: int
    broken_voices: int
    stale_voices: int
    disk_bytes: int = Field(description="bytes of all voice folders")
    features_disk_bytes: int
    memory_bytes: int
    memory_capacity_bytes: int
    memory_voices: int
    device_bytes: int
    device_capacity_bytes: int
    device_voices: int


@dataclass
class NewVoiceData:
    """What the engine's clone step hands the library for a new voice."""

    tensors: dict[str, torch.Tensor]
    transcript: str
    transcript_source: Literal["user", "whisper"]
    language: str | None
    duration_s: float
    timings: dict[str, float] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


@dataclass
class LoadedVoice:
    """Features ready for synthesis; the tensors are shared with the library's tiers: read-only."""

    record: VoiceRecord
    tensors: Mapping[str, torch.Tensor]
    tier: Tier
    load_s: float
