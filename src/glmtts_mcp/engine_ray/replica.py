"""One engine replica: a Ray Serve deployment that loads the checkpoint once and runs the same `Engine`.

Voices arrive as features, never audio. A synthesis request names its voice by key (the multiplexed
model id, so Serve routes it preferably to a replica that holds the voice) and carries the features only
when the front believes no replica has them; a replica that lacks them answers NEED_FEATURES and the
front sends them again. Held voices are Serve's multiplexed "models": a bounded LRU per replica, whose ids
Serve's router reads; a voice cloned here is held at once under its digest (digest.py). Synthesis
streams: progress and each segment's audio leave as soon as they exist, and a caller that cancels sets
the narration's cancel event, so its LLM sequences leave the batch at the next decode step.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from ray import serve

from glmtts_mcp.engine.types import AudioChunk, ExtractedVoice, ReferenceAudio, SynthesisOptions, VoiceFeatures
from glmtts_mcp.engine_ray.digest import features_digest

log = logging.getLogger(__name__)

NEED_FEATURES = "need-features"  # the replica holds no features under the request's key: send them
DEPLOYMENT_NAME = "GlmttsEngine"


@dataclass(frozen=True)
class Progress:
    """An engine progress report, relayed to the front in stream order."""

    done: float
    total: float
    message: str


class _VoiceNotHeld(Exception):
    """Raised by the multiplexed loader when a request brings no features for a key it does not hold."""


@serve.deployment(name=DEPLOYMENT_NAME)
class EngineReplica:
    """The Engine of one replica, its held voices and its counters."""

    def __init__(self, settings: dict[str, Any]) -> None:
        """`settings`: deployment.deployment_settings, kept to answer the fronts that join this application."""
        from glmtts_mcp.engine.frontend.text_normalize import TextFrontend
        from glmtts_mcp.engine.runtime.pipeline import Engine

        start = time.perf_counter()
        self._settings = settings
        self._engine = Engine.load(**settings["engine"])
        TextFrontend.preload()
        self._load_s = time.perf_counter() - start
        self._threads = ThreadPoolExecutor(settings["slots_per_replica"] + 2, thread_name_prefix="glmtts-replica")
        self._arriving: dict[str, dict[str, torch.Tensor]] = {}  # features sent with a request, until loaded
        self._active = 0
        self._requests = 0
        self._voice_loads = 0  # features received with a request and kept
        self._voice_misses = 0  # requests answered NEED_FEATURES
        self._voices_extracted = 0  # voices cloned here, held from then on
        self._cancelled = 0  # narrations whose caller went away before their end

        async def load_voice(key: str) -> dict[str, torch.Tensor]:
            tensors = self._arriving.pop(key, None)
            if tensors is None:
                raise _VoiceNotHeld(key)
            device = self._engine.device
            return {name: t.to(device) for name, t in tensors.items()}

        # Wired at init so the LRU's size is a setting; Serve reports the held keys to its router.
        self._load_voice = load_voice  # Serve keeps its LRU on this function
        self._voice = serve.multiplexed(max_num_models_per_replica=settings["voices_per_replica"])(load_voice)

    async def settings(self) -> dict[str, Any]:
        """What this application was deployed with (a front that joins it compares its own)."""
        return self._settings

    async def extract(self, reference: ReferenceAudio, transcript: str | None, language: str | None) -> ExtractedVoice:
        """Clone: the features of a prepared reference clip, held here under their digest (set on the result)."""
        loop = asyncio.get_running_loop()
        self._active += 1
        try:
            extracted = await loop.run_in_executor(
                self._threads, self._engine.extract_voice, reference, transcript, language, None
            )
        finally:
            self._active -= 1
        tensors = dict(extracted.features.tensors)
        digest = await loop.run_in_executor(self._threads, features_digest, tensors)
        await self._hold(digest, tensors)
        self._voices_extracted += 1
        extracted.features = VoiceFeatures(tensors=tensors, digest=digest)
        return extracted

    async def synthesize(
        self, text: str, tensors: dict[str, torch.Tensor] | None, options: SynthesisOptions
    ) -> AsyncIterator[Progress | AudioChunk | str]:
        """Narrate in the voice keyed by this request's multiplexed model id, one chunk per segment."""
        key = serve.get_multiplexed_model_id()
        self._requests += 1
        try:
            held, taken = await self._hold(key, tensors)
        except _VoiceNotHeld:
            self._voice_misses += 1
            yield NEED_FEATURES
            return
        self._voice_loads += taken
        self._active += 1
        loop = asyncio.get_running_loop()
        reports: list[Progress] = []
        cancel = threading.Event()
        chunks: Iterator[AudioChunk] | None = None
        step: Future[AudioChunk | None] | None = None
        finished = False
        try:
            chunks = await loop.run_in_executor(self._threads, self._start, text, held, options, reports, cancel)
            while True:
                step = self._threads.submit(next, chunks, None)
                chunk = await asyncio.wrap_future(step)  # a cancelled wait leaves `step` running to its end
                step = None
                while reports:
                    yield reports.pop(0)
                if chunk is None:
                    finished = True
                    return
                yield chunk
        except asyncio.CancelledError:
            self._cancelled += 1
            raise
        finally:
            self._active -= 1
            if not finished:
                cancel.set()  # the caller cancelled or left: the narration's sequences leave the batch
            if chunks is not None:
                _close_when_idle(chunks, step)

    def _start(
        self,
        text: str,
        held: dict[str, torch.Tensor],
        options: SynthesisOptions,
        reports: list[Progress],
        cancel: threading.Event,
    ) -> Iterator[AudioChunk]:
        """The engine's narration; setting `cancel` stops it at the next decode step."""
        return self._engine.synthesize(
            text, VoiceFeatures(tensors=held), options, lambda d, t, m: reports.append(Progress(d, t, m)), cancel
        )

    async def _hold(self, key: str, tensors: dict[str, torch.Tensor] | None) -> tuple[dict[str, torch.Tensor], bool]:
        """The voice held under `key`, taking `tensors` in when it is not; whether they were taken in."""
        if tensors is not None:
            self._arriving[key] = tensors
        try:
            held = await self._voice(key)
            return held, tensors is not None and key not in self._arriving
        finally:
            self._arriving.pop(key, None)

    async def stats(self) -> dict[str, Any]:
        """This replica's figures for cache_stats (called on every replica by a broadcast)."""
        import ray

        engine = self._engine
        wrapper = getattr(self._load_voice, "__serve_multiplex_wrapper", None)
        held = len(wrapper.models) if wrapper is not None else 0
        scheduler = engine.scheduler_stats()
        return {
            "replica": ray.get_runtime_context().get_actor_name() or "?",
            "node": ray.get_runtime_context().get_node_id()[:12],
            "device": str(engine.device),
            "load_s": round(self._load_s, 3),
            "active": self._active,
            "queue_depth": engine.queue_depth,
            "requests": self._requests,
            "voices_held": held,
            "voice_hits": self._requests - self._voice_loads - self._voice_misses,
            "voice_loads": self._voice_loads,
            "voice_misses": self._voice_misses,
            "voices_extracted": self._voices_extracted,
            "cancelled": self._cancelled,
            "llm_running": scheduler.running if scheduler else 0,
            "llm_waiting": scheduler.waiting if scheduler else 0,
            "llm_tokens": scheduler.tokens if scheduler else 0,
        }

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.unload()


def _close_when_idle(chunks: Iterator[AudioChunk], step: Future | None) -> None:
    """Close the engine's generator (its queued LLM work is dropped), once no thread is inside it."""
    close = getattr(chunks, "close", None)
    if close is None:
        return
    if step is None or step.done():
        close()
    else:  # cancelled while a segment was being made: close once that step has returned or raised
        step.add_done_callback(lambda _: close())
