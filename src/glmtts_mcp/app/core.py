"""The process-wide state behind every face: settings, engine host, voice library, output store, change feed.

Built once per process, outside any MCP lifespan: SSE enters the lifespan once per connection,
and the model must load once.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from glmtts_mcp.app.cloning import extract_new_voice
from glmtts_mcp.app.engine_host import EngineBackend, EngineHost, EngineLoader
from glmtts_mcp.app.outputs import OutputStore
from glmtts_mcp.config import Settings, replica_range
from glmtts_mcp.engine.checkpoint.layout import fingerprint
from glmtts_mcp.engine.feature_limits import (
    PROMPT_MEL_TOLERANCE,
    SPEAKER_EMBEDDING_TOLERANCE,
    SPEECH_TOKEN_AGREEMENT,
    FeatureLimits,
    feature_limits,
)
from glmtts_mcp.engine.types import FEATURE_SCHEMA, FEATURE_SCHEMA_VERSION, EngineError
from glmtts_mcp.voices import FeatureRules, FeatureSchema, TensorRule, VoiceLibrary

if TYPE_CHECKING:
    from glmtts_mcp.app.live_narrations import LiveNarrations
    from glmtts_mcp.engine.runtime.pipeline import Engine

log = logging.getLogger(__name__)


class ChangeFeed:
    """Tells every face that the voice library changed, whichever face changed it (an MCP client listening
    for resource-list changes hears of a voice cloned through the page)."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[], Awaitable[None]]] = []

    def subscribe(self, listener: Callable[[], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    async def publish(self) -> None:
        for listener in list(self._listeners):
            try:
                await listener()
            except Exception:  # a listener that fails must not fail the change that was made
                log.exception("a library-change listener failed")


@dataclass
class App:
    settings: Settings
    host: EngineHost
    library: VoiceLibrary
    outputs: OutputStore
    changes: ChangeFeed = field(default_factory=lambda: ChangeFeed())

    @functools.cached_property
    def live(self) -> LiveNarrations:
        """The narrations players follow while they are made (run while a server serves them)."""
        from glmtts_mcp.app.live_narrations import LiveNarrations  # it builds on this module

        return LiveNarrations(self)

    def start_preload(self) -> threading.Thread | None:
        """With `preload = start`, begin loading the model in the background (the server calls this as
        it starts serving, so a host's `initialize` never waits for the weights)."""
        return self.host.load_in_background() if self.settings.preload == "start" else None

    def close(self) -> None:
        """Unload the model and release the library (end of process)."""
        self.host.unload(reason="shutting down")
        self.library.close()


def export_protected_folders(settings: Settings) -> dict[str, Path]:
    """Folders an export must never write into besides the library's own (which the library adds)."""
    return {"the output folder": settings.output_dir, "the checkpoint folder": settings.checkpoint}


def _switch(value: str) -> bool | None:
    """'auto' leaves the choice to the engine (on for CUDA); 'on'/'off' force it."""
    return None if value == "auto" else value == "on"


def engine_options(settings: Settings) -> dict[str, Any]:
    """Engine.load's arguments from the settings: the local engine and every Ray replica load with these."""
    return {
        "checkpoint": settings.checkpoint,
        "device": settings.device,
        "dtype": settings.dtype,
        "whisper_model": settings.whisper_model,
        "concurrency": settings.concurrency,
        "compile_llm": _switch(settings.compile_llm),
        "overlap": _switch(settings.overlap),
        "max_batch": settings.max_batch,
        "reference_processing": settings.reference_processing,
        "text_chunk_chars": settings.text_chunk_chars,
        "stream_first_block": settings.stream_first_block,
        "stream_first_look_ahead": settings.stream_first_look_ahead,
        "stream_first_chunk_priority": settings.stream_first_chunk_priority == "on",
    }


def engine_slots(settings: Settings) -> int:
    """Engine calls one process (or one replica) drives at once: each batched LLM sequence or each
    non-batched job needs a thread to drive it."""
    return max(settings.concurrency, settings.max_batch)


def default_loader(settings: Settings) -> EngineLoader:
    """The configured engine: Engine.load in this process, or replicas on Ray Serve (`--engine ray`)."""
    if settings.engine == "ray":
        return _ray_loader(settings)

    def load() -> Engine:
        from glmtts_mcp.engine.frontend.text_normalize import TextFrontend
        from glmtts_mcp.engine.runtime.pipeline import (
            Engine as EngineClass,  # heavy import: only when wanted
        )

        engine = EngineClass.load(**engine_options(settings))
        TextFrontend.preload()  # the grammars and word lists too: the first request pays for no loading
        if settings.pronunciation == "phoneme":
            from glmtts_mcp.engine.frontend import g2p

            g2p.preload()  # jieba's dictionary (about 1 s) before the first phoneme-in request, not during it
        return engine

    return load


def _ray_loader(settings: Settings) -> EngineLoader:
    def load() -> EngineBackend:
        from glmtts_mcp.engine_ray.client import (  # imports ray: only with --engine ray
            RayEngine,
            RayPlacement,
        )

        placement = RayPlacement(
            address=settings.ray_address,
            replicas=replica_range(settings.ray_replicas),
            gpus_per_replica=settings.ray_gpus_per_replica,
            cpus_per_replica=settings.ray_cpus_per_replica,
            voices_per_replica=settings.ray_voices_per_replica,
            slots_per_replica=engine_slots(settings),
        )
        return RayEngine.start(engine_options(settings), placement)

    return load


def feature_rules(limits: FeatureLimits) -> FeatureRules:
    """The checkpoint's facts as the library's per-tensor rules (the library knows tensors, not models).

    Text ids follow from the transcript alone (meta.json, part of the id), not from the audio, so they are
    range-checked but not compared with a re-extraction.
    """
    return FeatureRules(
        {
            "prompt_text_ids": TensorRule(values=(0, limits.text_vocab)),
            "prompt_speech_ids": TensorRule(
                values=(0, limits.speech_vocab),
                per_second=limits.speech_tokens_per_s,
                min_agreement=SPEECH_TOKEN_AGREEMENT,
            ),
            "prompt_mel": TensorRule(
                trailing=(limits.mel_bins,), per_second=limits.mel_frames_per_s, max_abs_diff=PROMPT_MEL_TOLERANCE
            ),
            "speaker_embedding": TensorRule(
                trailing=(limits.embedding_size,), max_abs_diff=SPEAKER_EMBEDDING_TOLERANCE
            ),
        }
    )


def checkpoint_rules(checkpoint: Path) -> FeatureRules | None:
    """The rules of the configured checkpoint; None (features checked against the schema only) while it is
    missing or unreadable: then no model can use any voice either, and loading it names the problem."""
    try:
        return feature_rules(feature_limits(checkpoint))
    except EngineError as exc:
        log.warning("voice features are checked against the feature schema only until the checkpoint loads: %s", exc)
        return None


def build_app(settings: Settings, loader: EngineLoader | None = None) -> App:
    """Wire the pieces; nothing heavy happens here (the model loads on first use or in `start_preload`)."""
    job_slots = engine_slots(settings) * (replica_range(settings.ray_replicas)[1] if settings.engine == "ray" else 1)
    host = EngineHost(
        loader or default_loader(settings),
        settings.checkpoint,
        settings.idle_unload_s,
        job_slots,
        settings.engine,
        max_queue=settings.max_queue,
    )

    def reextract(
        pcm: np.ndarray, sample_rate: int, transcript: str, language: str | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Re-extract a stale voice's features from its kept reference audio (loads the model if needed)."""
        voice = extract_new_voice(host.ensure_loaded(), pcm, sample_rate, transcript, language, None)
        return voice.tensors, voice.timings

    library = VoiceLibrary(
        settings.voices_dir,
        schema=FeatureSchema(version=FEATURE_SCHEMA_VERSION, tensors=FEATURE_SCHEMA),
        fingerprint=fingerprint(settings.checkpoint),
        memory_bytes=settings.memory_cache_bytes,
        device_bytes=settings.device_cache_bytes,
        reextract=reextract,
        rules=checkpoint_rules(settings.checkpoint),
    )
    outputs = OutputStore(
        settings.output_dir, settings.output_keep_count, settings.output_keep_bytes, settings.output_keep_age_s
    )
    outputs.prune()
    return App(settings=settings, host=host, library=library, outputs=outputs)
