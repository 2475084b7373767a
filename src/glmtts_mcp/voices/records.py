"""Plain data the library returns (pydantic where it crosses the MCP boundary)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Literal

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, computed_field, field_validator

from glmtts_mcp.voices.identity import ID_LENGTH, tags_problem

META_FORMAT: Final = "glmtts-mcp-voice"
META_VERSION = 1
Tier = Literal["device", "memory", "disk", "reextracted"]

# Bounds of meta.json's values, checked wherever one is read (a voice folder, an archive). No reference the
# engine reads is longer than 600 s (longer files are refused before decoding); a transcript of that much
# speech at 30 characters a second has 18,060 (app.cloning.transcript_limit); sample rates below 1 kHz hold
# no speech band, and FLAC cannot store more than 655,350 Hz. Times lie between this project's first
# voice library and now, give or take CLOCK_SKEW: a clock set to local time but read as UTC is up to 14 h off,
# and a voice must not turn broken when such a clock is corrected; no clock gives a date a day ahead.
MAX_DURATION_S = 600.0
MAX_TRANSCRIPT_CHARS = 20_000
SAMPLE_RATE_RANGE = (1_000, 655_350)
EARLIEST_TIME = datetime(2024, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(days=1)
MAX_TIMING_S = 86_400.0


def _plausible_time(value: datetime) -> datetime:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    latest = datetime.now(UTC) + CLOCK_SKEW
    if not EARLIEST_TIME <= aware <= latest:
        raise ValueError(
            f"{value.isoformat()} is not between {EARLIEST_TIME.date()} and now (a day of clock skew allowed)"
        )
    return value


Time = Annotated[datetime, AfterValidator(_plausible_time)]


def meta_problem(exc: ValidationError) -> str:
    """What is wrong with a meta.json that failed validation: its first error and where."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(document)"
    return f"meta.json is invalid at {where}: {first['msg']}"


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class VoiceRecord(BaseModel):
    """Everything known about one stored voice; this is also the content of its meta.json."""

    model_config = ConfigDict(extra="ignore")

    format: Literal["glmtts-mcp-voice"] = META_FORMAT
    meta_version: int = META_VERSION
    id: str = Field(pattern=rf"^[0-9a-f]{{{ID_LENGTH}}}$")
    name: str = Field(max_length=256)  # the naming rules themselves: identity.name_problem, where names are used
    transcript: str = Field(
        max_length=MAX_TRANSCRIPT_CHARS, description="the text spoken in the reference audio, as used for the features"
    )
    transcript_input: str | None = Field(
        max_length=MAX_TRANSCRIPT_CHARS,
        description="the transcript given when cloning (None: Whisper was asked); part of the id",
    )
    transcript_source: Literal["user", "whisper"]
    language: str | None = Field(default=None, max_length=16)
    created_at: Time
    last_used_at: Time | None = None
    duration_s: float = Field(gt=0, le=MAX_DURATION_S, allow_inf_nan=False)
    sample_rate: int = Field(ge=SAMPLE_RATE_RANGE[0], le=SAMPLE_RATE_RANGE[1])
    reference_sha256: Sha256 = Field(description="sha256 of the reference file (reference.flac or .wav)")
    reference_bytes: int = Field(ge=0)
    features_sha256: Sha256 = Field(description="sha256 of features.safetensors")
    features_bytes: int = Field(ge=0)
    schema_version: int = Field(ge=0)
    fingerprint: str = Field(max_length=128, description="engine/model fingerprint the features were extracted with")
    reference_processing: Literal["clean", "upstream"] = Field(
        default="clean", description="how the kept reference samples were prepared from the clip; part of the id"
    )
    tags: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict, max_length=32, description="extraction seconds per stage")

    @field_validator("tags")
    @classmethod
    def _usable_tags(cls, tags: list[str]) -> list[str]:
        if problem := tags_problem(tags):
            raise ValueError(problem)
        return tags

    @field_validator("timings")
    @classmethod
    def _plausible_timings(cls, timings: dict[str, float]) -> dict[str, float]:
        for stage, seconds in timings.items():
            if len(stage) > 64 or not 0 <= seconds <= MAX_TIMING_S:  # NaN fails the comparison too
                raise ValueError(f"timing {stage[:64]!r} = {seconds!r} is not 0-{MAX_TIMING_S:g} seconds")
        return timings

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
    broken: str | None = Field(
        default=None, description="why the voice cannot be used and how to fix that; None when healthy"
    )


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
