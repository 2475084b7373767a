"""The front's engine when the model runs as Ray Serve replicas: the same surface the faces use of `Engine`.

The faces, the voice library and the output store stay here; the checkpoint is loaded by each replica.
Several fronts share one Serve application (deployment.py): a front joins it by name, and its unload
lets go of its handle only. Cloning runs on a replica, which keeps the voice; its features come back to
be stored as today. Synthesis sends the text and the voice's key (the library's digest of its features,
hashed here only when the voice comes without one), the features only when no replica is known to have
them, and once more when the chosen replica answers that it lacks them (counted as a resend). Chunks
(a segment each, or in stream mode several per segment) stream back as they are made; closing the
iterator cancels the replica's work. A replica that dies mid-narration is replaced by a retry on another
one: every segment re-seeds, so the retry makes the same chunks, and those already delivered are skipped.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import ray
import torch
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import ReplicaUnavailableError

from glmtts_mcp.engine.frontend.reference_clip import ReferenceProcessing, load_reference
from glmtts_mcp.engine.runtime.pipeline import MODEL_SAMPLE_RATE
from glmtts_mcp.engine.types import (
    AudioChunk,
    EngineError,
    ExtractedVoice,
    NarrationCancelled,
    ProgressCallback,
    ReferenceAudio,
    SynthesisOptions,
    VoiceFeatures,
)
from glmtts_mcp.engine_ray.deployment import RayPlacement, connect, find_or_deploy, first_line, replicas_text
from glmtts_mcp.engine_ray.digest import features_digest
from glmtts_mcp.engine_ray.replica import NEED_FEATURES, Progress

log = logging.getLogger(__name__)

MAX_RETRIES = 2  # a narration survives this many replica deaths
_SENT_KEYS = 100_000  # voice keys remembered as already sent (an LRU: a forgotten key only costs one send)
_STATS_TIMEOUT_S = 5.0
_REPLICA_LOST = (RayActorError, ReplicaUnavailableError)


class RayEngine:
    """The engine as a pool of Ray Serve replicas, seen from the front process."""

    def __init__(
        self, handle: Any, placement: RayPlacement, reference_processing: ReferenceProcessing, connected: bool
    ) -> None:
        self._handle = handle
        self.placement = placement
        self.reference_processing = reference_processing
        self._connected = connected  # this engine's start connected the process to Ray (it disconnects at unload)
        self._lock = threading.Lock()
        self._sent: OrderedDict[str, None] = OrderedDict()
        self._in_flight = 0
        self.voice_sends = 0  # features sent with a request for a voice no replica was known to hold
        self.voice_resends = 0  # features sent again because the chosen replica lacked them
        self.retries = 0  # requests started again after their replica died

    @classmethod
    def start(cls, engine_options: dict[str, Any], placement: RayPlacement) -> RayEngine:
        """Join (or start) the cluster, then join the replicas running there or deploy them; returns once
        a replica answers."""
        connected = connect(placement.address)
        try:
            handle = find_or_deploy(engine_options, placement)
        except BaseException:
            if connected:
                ray.shutdown()
            raise
        log.info("engine replicas ready on Ray (%s): %s", placement.address, replicas_text(placement.replicas))
        return cls(handle, placement, engine_options.get("reference_processing", "clean"), connected)

    # --- the Engine surface the faces use ------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Where the front loads voice features: the CPU, since they travel to the replicas."""
        return torch.device("cpu")

    @property
    def queue_depth(self) -> int:
        """Requests this front has in flight on the replicas."""
        return self._in_flight

    def scheduler_stats(self) -> None:
        """Each replica has its own scheduler; their figures are in `pool_stats`."""
        return

    def memory_info(self) -> dict[str, object]:
        return {
            "device": "ray",
            "gpus_per_replica": self.placement.gpus_per_replica,
            "cpus_per_replica": self.placement.cpus_per_replica,
        }

    def prepare_reference(self, source: str | Path | bytes) -> ReferenceAudio:
        """Decode and prepare the clip here (no model runs; the library hashes it before any extraction)."""
        return load_reference(source, processing=self.reference_processing, target_sr=MODEL_SAMPLE_RATE)

    def extract_voice(
        self,
        ref: ReferenceAudio,
        transcript: str | None = None,
        language: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> ExtractedVoice:
        """Clone on a replica (retried once on another if it dies); the features come back here with their
        digest, and the replica keeps them, so this front sends them to no replica."""
        if progress:
            progress(0, 5, "extracting the voice on an engine replica")
        for attempt in range(MAX_RETRIES + 1):
            try:
                with self._counted(), _engine_errors():
                    extracted = self._live_handle().extract.remote(ref, transcript, language).result()
                break
            except _ReplicaLost as lost:
                self._note_retry(attempt, lost, "clone")
        if extracted.features.digest is not None:
            self._remember(extracted.features.digest)
        if progress:
            progress(5, 5, "voice features ready")
        return extracted

    def synthesize(
        self,
        text: str,
        features: VoiceFeatures,
        options: SynthesisOptions = SynthesisOptions(),
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Generator[AudioChunk, None, None]:
        """Narrate on a replica, one chunk per segment as each is ready (the same chunks as a local engine).

        The voice's key is its stored digest; only a voice without one is hashed. Setting `cancel` cancels
        the replica's request at once (its sequences leave the batch there) and ends the narration with
        NarrationCancelled."""
        key = features.digest if features.digest is not None else features_digest(features.tensors)
        return self._narration(text, features.tensors, key, options, progress, cancel or threading.Event())

    def unload(self) -> None:
        """Let go of this front's handle, and of its connection to Ray if its start made it; the replicas keep
        serving the other fronts (`glmtts-mcp ray delete` removes them). Only a cluster inside this process
        (`--ray-address local`), which no other front can reach, is stopped with its replicas."""
        self._handle = None
        with self._lock:
            self._sent.clear()
        if not self._connected:
            return
        try:
            if self.placement.address == "local":
                serve.shutdown()
        finally:
            ray.shutdown()

    # --- figures -------------------------------------------------------------------------------

    def pool_stats(self) -> dict[str, Any]:
        """The replicas' own figures (a broadcast to each) and this front's send, resend and retry counts."""
        answers = self._live_handle().broadcast("stats").results(timeout_s=_STATS_TIMEOUT_S, return_exceptions=True)
        replicas = [r for r in answers if isinstance(r, dict)]
        return {
            "address": self.placement.address,
            "replicas_wanted": replicas_text(self.placement.replicas),
            "replicas": sorted(replicas, key=lambda r: r["replica"]),
            "voice_sends": self.voice_sends,
            "voice_resends": self.voice_resends,
            "retries": self.retries,
        }

    # --- streaming -----------------------------------------------------------------------------

    def _narration(
        self,
        text: str,
        tensors: Mapping[str, torch.Tensor],
        key: str,
        options: SynthesisOptions,
        progress: ProgressCallback | None,
        cancel: threading.Event,
    ) -> Generator[AudioChunk, None, None]:
        delivered = 0  # chunks: one per segment, several per segment in stream mode
        reported = -1.0
        with self._counted():
            for attempt in range(MAX_RETRIES + 1):
                received = 0
                try:
                    for event in self._attempt(text, tensors, key, options, cancel):
                        if isinstance(event, Progress):
                            if progress and event.done > reported:  # a retry does not report the same step twice
                                reported = event.done
                                progress(event.done, event.total, event.message)
                            continue
                        received += 1
                        if received > delivered:  # a retry makes the same chunks again: skip those delivered
                            delivered += 1
                            yield event
                    return
                except _ReplicaLost as lost:
                    self._note_retry(attempt, lost, f"narration (after {delivered} chunk(s))")

    def _attempt(
        self,
        text: str,
        tensors: Mapping[str, torch.Tensor],
        key: str,
        options: SynthesisOptions,
        cancel: threading.Event,
    ) -> Iterator[Progress | AudioChunk]:
        """One request to a replica chosen by the voice's key; the features go along when needed."""
        handle = self._live_handle().options(stream=True, multiplexed_model_id=key)
        send = not self._known(key)
        if send:
            self.voice_sends += 1
        for _ in range(2):
            if cancel.is_set():
                raise NarrationCancelled("the narration was cancelled")
            response = handle.synthesize.remote(text, dict(tensors) if send else None, options)  # a plain dict pickles
            finished = False
            watch = _CancelWatch(cancel, response)
            try:
                with _engine_errors():
                    for event in response:
                        if event == NEED_FEATURES:
                            break
                        yield event
                    else:
                        finished = True
                        self._remember(key)
                        return
            except Exception:
                if cancel.is_set():  # the response failed because this narration cancelled it
                    raise NarrationCancelled("the narration was cancelled") from None
                raise
            finally:
                watch.stop()
                if not finished:
                    response.cancel()  # the caller went away, or the replica asked for the features
            self.voice_resends += 1
            send = True
        raise EngineError("an engine replica refused this voice's features twice: send the request again")

    # --- bookkeeping ---------------------------------------------------------------------------

    def _known(self, key: str) -> bool:
        with self._lock:
            if key in self._sent:
                self._sent.move_to_end(key)
                return True
            return False

    def _remember(self, key: str) -> None:
        with self._lock:
            self._sent[key] = None
            self._sent.move_to_end(key)
            while len(self._sent) > _SENT_KEYS:
                self._sent.popitem(last=False)

    def _note_retry(self, attempt: int, lost: _ReplicaLost, what: str) -> None:
        """Count a retry after a replica died, or give up with the reason and what to do."""
        if attempt >= MAX_RETRIES:
            raise EngineError(
                f"the engine replica running this {what} stopped ({lost}), {MAX_RETRIES} times in a row: send the "
                "request again; cache_stats lists the replicas Ray runs now"
            ) from lost
        self.retries += 1
        log.warning("engine replica lost during a %s (%s); retrying on another replica", what, lost)

    def _live_handle(self) -> Any:
        handle = self._handle
        if handle is None:
            raise EngineError("this engine was unloaded: the next call loads a fresh one")
        return handle

    def _counted(self) -> _InFlight:
        return _InFlight(self)


class _ReplicaLost(Exception):
    """The replica serving a request died or became unreachable (the request may be retried)."""


class _InFlight:
    def __init__(self, engine: RayEngine) -> None:
        self._engine = engine

    def __enter__(self) -> None:
        with self._engine._lock:
            self._engine._in_flight += 1

    def __exit__(self, *exc: object) -> None:
        with self._engine._lock:
            self._engine._in_flight -= 1


class _engine_errors:
    """A replica's EngineError reaches the caller as itself; a lost replica becomes _ReplicaLost."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, RayTaskError) and isinstance(exc.cause, EngineError):
            raise exc.cause from None
        if isinstance(exc, _REPLICA_LOST):
            raise _ReplicaLost(first_line(exc)) from exc


class _CancelWatch:
    """Cancels a replica's response as soon as the narration's cancel event is set, while the caller's
    thread waits for the response's next segment (a threading.Event has no callbacks: a short poll)."""

    _POLL_S = 0.02

    def __init__(self, cancel: threading.Event, response: Any) -> None:
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(cancel, response), daemon=True)
        self._thread.start()

    def _watch(self, cancel: threading.Event, response: Any) -> None:
        while not self._stopped.is_set():
            if cancel.wait(self._POLL_S):
                response.cancel()
                return

    def stop(self) -> None:
        self._stopped.set()
