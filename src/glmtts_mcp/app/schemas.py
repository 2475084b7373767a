"""Structured results of the tools: these models are the tools' output schemas; and the number types
every face's inputs use."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, RootModel

from glmtts_mcp.voices import LibraryStats, StatsCounters, VoiceListing

EXCERPT_CHARS = 80


def _not_a_boolean(value: object) -> object:
    """Python counts True as 1, and pydantic's lax mode takes it for a number: a client that sends
    `{"seed": true}` made a mistake, so it gets a field error, not the seed 1."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number: give a number")
    return value


WholeNumber = Annotated[int, BeforeValidator(_not_a_boolean)]
"""An integer input (a seed, a page size): never a JSON boolean."""
Number = Annotated[float, BeforeValidator(_not_a_boolean)]
"""A real-number input (a speed): never a JSON boolean."""


def _excerpt(text: str | None) -> str | None:
    if text is None or len(text) <= EXCERPT_CHARS:
        return text
    return text[: EXCERPT_CHARS - 1].rstrip() + "…"


class CloneVoiceResult(BaseModel):
    """A voice in the library, ready for `synthesize(voice=voice_id)`."""

    voice_id: str
    name: str
    existed: bool = Field(description="true when this exact clip and transcript were already in the library")
    transcript: str
    transcript_source: Literal["user", "whisper"]
    language: str | None = None
    duration_s: float = Field(description="length of the reference clip in seconds")
    timings: dict[str, float] = Field(description="seconds per stage (load, extraction stages, total)")
    warnings: list[str] = Field(default_factory=list)


class VoiceSummary(BaseModel):
    """One voice of a listing; `broken` says why a voice cannot be used."""

    voice_id: str
    name: str | None = None
    transcript_excerpt: str | None = None
    duration_s: float | None = None
    language: str | None = None
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    tags: list[str] = Field(default_factory=list)
    stale: bool = Field(description="stored with other model files or schema; re-extracted on next use")
    broken: str | None = None
    uri: str = Field(description="voice://{voice_id}: the voice's metadata as a resource")

    @classmethod
    def of(cls, listing: VoiceListing) -> VoiceSummary:
        """The summary of a library listing: what list_voices and `voices list --json` both show."""
        return cls(
            voice_id=listing.id,
            name=listing.name,
            transcript_excerpt=_excerpt(listing.transcript),
            duration_s=listing.duration_s,
            language=listing.language,
            created_at=listing.created_at,
            last_used_at=listing.last_used_at,
            tags=listing.tags,
            stale=listing.stale,
            broken=listing.broken,
            uri=f"voice://{listing.id}",
        )


class ListVoicesResult(BaseModel):
    voices: list[VoiceSummary]
    next_cursor: str | None = Field(default=None, description="pass as `cursor` for the next page")


class DeleteVoiceResult(BaseModel):
    """`deleted: false` is no failure: the voice was already gone (delete_voice is idempotent)."""

    voice_id: str | None = Field(description="the deleted voice's id; null when a name matched no voice")
    name: str | None
    deleted: bool = Field(description="true when this call deleted the voice; false when there was none to delete")
    message: str


class RenameVoiceResult(BaseModel):
    voice_id: str
    old_name: str
    name: str


class ExportVoiceResult(BaseModel):
    voice_id: str
    name: str
    path: str
    bytes: int


class ImportVoiceResult(BaseModel):
    voice_id: str
    name: str
    existed: bool = Field(description="true when the library already held this voice (nothing was written)")
    transcript: str
    duration_s: float


class SynthesizeResult(BaseModel):
    """Where the audio is and how it was made."""

    voice_id: str
    voice_name: str | None = None
    cache_hit: bool = Field(description="true when the voice's features came from the library (no extraction)")
    cache_tier: str = Field(description="device, memory, disk, reextracted, or cloned (new voice)")
    duration_s: float
    sample_rate: int
    format: str
    uri: str = Field(description="audio://{id}: the saved audio as a resource")
    path: str = Field(description="the saved audio file")
    bytes: int
    segments: int
    returned: list[str] = Field(description="the return-mode parts actually in this result")
    note: str | None = Field(default=None, description="why a requested part was replaced, if one was")
    timings: dict[str, float]
    warnings: list[str] = Field(default_factory=list)
    pronunciation: str = Field(default="text", description="how the text was read: text or phoneme")
    text_as_read: str | None = Field(
        default=None,
        description="the text as the model read it (normalised; dictionary readings and phoneme tokens put in)",
    )


class PronunciationEntry(BaseModel):
    """One dictionary entry and what the model is given for it."""

    text: str
    reading: str = Field(description="pinyin with tone numbers, or a plain-text respelling")
    kind: str = Field(description="pinyin (phoneme tokens, matched after normalisation) or respelling (before)")
    replacement: str = Field(description="what the model reads in its place")


class PronunciationsResult(BaseModel):
    """A pronunciation dictionary: the global one (voice null) or a voice's own."""

    voice_id: str | None = Field(default=None, description="the voice whose dictionary this is; null: the global one")
    entries: list[PronunciationEntry]
    message: str | None = None


class LiveSynthesizeResult(BaseModel):
    """synthesize with an MCP Apps host: the narration plays in the player while it is made."""

    narration_id: str = Field(description="the live narration the player follows (poll_narration)")
    text: str
    voice: str | None = Field(default=None, description="the voice asked for (id or name); null with a reference clip")
    seed: int
    temperature: float | None = Field(default=None, description="as asked; null: upstream's sampling")
    top_p: float | None = Field(default=None, description="as asked; null: upstream's sampling")
    pronunciation: str | None = Field(default=None, description="as asked; null: the server's default")
    pronunciations: dict[str, str] | None = Field(default=None, description="this call's own dictionary, as asked")
    format: str = Field(description="the format save_narration writes by default")
    state: str = Field(description="queued, generating, done, failed or cancelled")


class SynthesizeOutcome(RootModel[SynthesizeResult | LiveSynthesizeResult]):
    """What synthesize may return: the audio (every host), or a live narration (a host that renders the player)."""


class LiveSegment(BaseModel):
    index: int
    text: str
    start_sample: int = Field(description="where the segment's audio starts in the narration")


class NarrationPoll(BaseModel):
    """A piece of a live narration from `cursor` on, and where it stands (what poll_narration returns)."""

    narration_id: str
    state: str = Field(description="queued, generating, done, failed or cancelled")
    message: str = Field(description="what is happening now, or why it failed")
    voice_id: str | None = None
    voice_name: str | None = None
    sample_rate: int
    segment_count: int = Field(description="segments in the narration (0 until the first audio)")
    segments: list[LiveSegment] = Field(description="the segments whose audio has begun")
    segments_done: int = Field(default=0, description="segments whose audio is complete")
    start: int = Field(description="the sample the piece starts at")
    samples: int = Field(description="samples in the piece")
    pcm_s16le: str = Field(description="the piece: base64 of 16-bit little-endian mono PCM")
    next_cursor: int = Field(description="pass as `cursor` to get what follows")
    total_samples: int = Field(description="samples generated so far")
    done: bool = Field(description="true when nothing more will come (done, failed or cancelled)")
    speaking: str | None = Field(
        default=None, description="the narration whose player last started playing (the others pause)"
    )
    floor: int = Field(default=0, description="claims so far: a player yields only to a claim later than its own")
    warnings: list[str] = Field(default_factory=list)


class SavedNarration(BaseModel):
    """A live narration written to the output store."""

    uri: str = Field(description="audio://{id}: the saved audio as a resource")
    path: str
    format: str
    bytes: int
    duration_s: float


class SchedulerStats(BaseModel):
    """The LLM batch scheduler: sequences decoding and waiting, batch sizes seen, decoding speed."""

    max_batch: int = Field(description="most sequences decoded in one step (--max-batch)")
    slot_positions: int = Field(description="KV cache positions per sequence")
    kv_cache_bytes: int
    running: int = Field(description="sequences (text segments) decoding now")
    waiting: int = Field(description="sequences waiting for a free slot")
    steps: int = Field(description="batched decode steps run since the model loaded")
    tokens: int = Field(description="speech tokens drawn since the model loaded")
    tokens_per_s: float = Field(description="tokens drawn per second of LLM work (all sequences together)")
    batch_sizes: dict[int, int] = Field(description="batch size -> decode steps run at that size")
    cancelled: int = Field(description="sequences stopped because their narration was cancelled (a caller gone)")


class ReplicaStats(BaseModel):
    """One engine replica on Ray Serve, as it reports itself."""

    replica: str = Field(description="the replica's Ray actor name")
    node: str = Field(description="the Ray node it runs on (id prefix)")
    device: str
    load_s: float = Field(description="seconds its checkpoint took to load")
    active: int = Field(description="narrations and clones running on it now")
    queue_depth: int = Field(description="jobs waiting for their turn at its flow, vocoder or clone work")
    requests: int = Field(description="synthesis requests it received")
    voices_held: int = Field(description="voices whose features it keeps (--ray-voices-per-replica at most)")
    voice_hits: int = Field(description="requests served from features it already held")
    voice_loads: int = Field(description="voices it took in from features sent with a request")
    voice_misses: int = Field(description="requests it answered 'send the features' (the front resends them)")
    voices_extracted: int = Field(description="voices cloned on it (held from then on, never sent to it)")
    cancelled: int = Field(description="narrations it stopped because their caller went away")
    llm_running: int = Field(description="LLM sequences decoding on it now")
    llm_waiting: int = Field(description="LLM sequences waiting there for a free slot")
    llm_tokens: int = Field(description="speech tokens it drew since it loaded")


class RayPoolStats(BaseModel):
    """The engine replicas (`--engine ray`) and what this front sent them."""

    address: str
    replicas_wanted: str = Field(description="--ray-replicas: a count or an autoscaling range")
    replicas: list[ReplicaStats] = Field(description="the replicas that answered now")
    voice_sends: int = Field(description="features sent with a request for a voice no replica was known to hold")
    voice_resends: int = Field(description="features sent again because the chosen replica lacked them")
    retries: int = Field(description="requests started again on another replica after theirs died")


class EngineStats(BaseModel):
    """The model's state: loaded or not, where, how much memory, how many jobs wait."""

    backend: Literal["local", "ray"] = Field(description="where the model runs: this process or Ray replicas")
    ray: RayPoolStats | None = None
    model_loaded: bool
    state: Literal["unloaded", "loading", "loaded", "failed"]
    model_error: str | None = None
    checkpoint: str
    device: str | None = None
    memory: dict[str, Any] | None = None
    queue_depth: int | None = None
    scheduler: SchedulerStats | None = None
    active_jobs: int = Field(description="narrations and clones holding or waiting for an engine slot")
    max_queue: int | None = Field(default=None, description="most of them waiting beside those running (--max-queue)")
    refused_busy: int = Field(default=0, description="requests refused because the queue was full, since start")
    load_s: float | None = None
    loads: int
    unloads: int
    idle_unload_s: float


class CacheStatsResult(StatsCounters):
    """This process's library counters at top level, then gauges, the engine and the output store."""

    voice_count: int
    broken_voices: int
    stale_voices: int
    disk_bytes: int
    memory_bytes: int
    memory_capacity_bytes: int
    device_bytes: int
    device_capacity_bytes: int
    outputs_count: int
    outputs_bytes: int
    engine: EngineStats
    library: LibraryStats
