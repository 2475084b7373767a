"""One engine replica: a Ray Serve deployment that loads the checkpoint once and runs the same `Engine`.

Voices arrive as features, never audio. A synthesis request names its voice by key (the multiplexed
model id, so Serve routes it preferably to a replica that holds the voice) and carries the features only
when the front believes no replica has them; a replica that lacks them answers NEED_FEATURES and the
front sends them again. Held voices are Serve's multiplexed "models": a bounded LRU per replica, whose ids
Serve's router reads. Synthesis streams: progress and each segment's audio leave as soon as they exist,
and a caller that cancels stops the replica's work at the next segment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from ray import serve

from glmtts_mcp.engine.types import AudioChunk, ExtractedVoice, ReferenceAudio, SynthesisOptions, VoiceFeatures

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

    def __init__(self, engine_options: dict[str, Any], voices_per_replica: int, threads: int) -> None:
        from glmtts_mcp.engine.frontend.text_normalize import TextFrontend
        from glmtts_mcp.engine.runtime.pipeline import Engine

        start = time.perf_counter()
        self._engine = Engine.load(**engine_options)
        TextFrontend.preload()
        self._load_s = time.perf_counter() - start
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="glmtts-replica")
        self._arriving: dict[str, dict[str, torch.Tensor]] = {}  # features sent with a request, until loaded
        self._active = 0
        self._requests = 0
        self._voice_loads = 0  # features received and kept
        self._voice_misses = 0  # requests answered NEED_FEATURES
        self._cancelled = 0  # narrations whose caller went away before their end

        async def load_voice(key: str) -> dict[str, torch.Tensor]:
            tensors = self._arriving.pop(key, None)
            if tensors is None:
                raise _VoiceNotHeld(key)
            self._voice_loads += 1
            device = self._engine.device
            return {name: t.to(device) for name, t in tensors.items()}

        # Wired at init so the LRU's size is a setting; Serve reports the held keys to its router.
        self._load_voice = load_voice  # Serve keeps its LRU on this function
        self._voice = serve.multiplexed(max_num_models_per_replica=voices_per_replica)(load_voice)

    async def extract(
        self, reference: ReferenceAudio, transcript: str | None, language: str | None
    ) -> ExtractedVoice:
        """Clone: the features of a prepared reference clip (the front stores them in its library)."""
        self._active += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._threads, self._engine.extract_voice, reference, transcript, language, None
            )
        finally:
            self._active -= 1

    async def synthesize(
        self, text: str, tensors: dict[str, torch.Tensor] | None, options: SynthesisOptions
    ) -> AsyncIterator[Progress | AudioChunk | str]:
        """Narrate in the voice keyed by this request's multiplexed model id, one chunk per segment."""
        key = serve.get_multiplexed_model_id()
        self._requests += 1
        if tensors is not None:
            self._arriving[key] = tensors
        try:
            held = await self._voice(key)
        except _VoiceNotHeld:
            self._voice_misses += 1
            yield NEED_FEATURES
            return
        finally:
            self._arriving.pop(key, None)
        self._active += 1
        loop = asyncio.get_running_loop()
        reports: list[Progress] = []
        chunks: Iterator[AudioChunk] | None = None
        step: asyncio.Future[AudioChunk | None] | None = None
        try:
            chunks = await loop.run_in_executor(
                self._threads,
                lambda: self._engine.synthesize(
                    text, VoiceFeatures(tensors=held), options, lambda d, t, m: reports.append(Progress(d, t, m))
                ),
            )
            while True:
                step = loop.run_in_executor(self._threads, next, chunks, None)
                chunk = await step
                step = None
                while reports:
                    yield reports.pop(0)
                if chunk is None:
                    return
                yield chunk
        except asyncio.CancelledError:
            self._cancelled += 1
            raise
        finally:
            self._active -= 1
            if chunks is not None:
                _close_when_idle(chunks, step)

    async def stats(self) -> dict[str, Any]:
        """This replica's figures for cache_stats (called on every replica by a broadcast)."""
        import ray

        engine = self._engine
        wrapper = getattr(self._load_voice, "__serve_multiplex_wrapper", None)
        held = len(wrapper.models) if wrapper is not None else 0
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
            "cancelled": self._cancelled,
        }

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.unload()


def _close_when_idle(chunks: Iterator[AudioChunk], step: Future | asyncio.Future | None) -> None:
    """Close the engine's generator (its queued LLM work is dropped), once no thread is inside it."""
    close = getattr(chunks, "close", None)
    if close is None:
        return
    if step is None or step.done():
        close()
    else:  # cancelled while a segment was being made: close after that segment
        step.add_done_callback(lambda _: close())
