"""The front's engine when the model runs as Ray Serve replicas: the same surface the faces use of `Engine`.

The faces, the voice library and the output store stay here; the checkpoint is loaded by each replica.
Cloning runs on a replica and its features come back to be stored as today. Synthesis sends the text
and the voice's key (a digest of its features: the same key for the same tensors, whatever the id or the
library tier they came from), the features only when no replica is known to have them, and once more
when the chosen replica answers that it lacks them (counted as a resend). Segments stream back as they
are made; closing the iterator cancels the replica's work. A replica that dies mid-narration is
replaced by a retry on another one: every segment re-seeds, so the retry makes the same audio, and the
segments already delivered are skipped.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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
    ProgressCallback,
    ReferenceAudio,
    SynthesisOptions,
    VoiceFeatures,
)
from glmtts_mcp.engine_ray.replica import NEED_FEATURES, EngineReplica, Progress

log = logging.getLogger(__name__)

APP_NAME = "glmtts-engine"
MAX_RETRIES = 2  # a narration survives this many replica deaths
_SENT_KEYS = 100_000  # voice keys remembered as already sent (an LRU: a forgotten key only costs one send)
_STATS_TIMEOUT_S = 5.0
_REPLICA_LOST = (RayActorError, ReplicaUnavailableError)


@dataclass(frozen=True)
class RayPlacement:
    """Where and how many replicas run: the `--ray-*` settings, checked at start."""

    address: str
    replicas: tuple[int, int]  # (min, max); equal for a fixed count
    gpus_per_replica: float
    cpus_per_replica: float
    voices_per_replica: int
    slots_per_replica: int  # requests a replica takes at once (its engine's batch and job slots)


def voice_key(tensors: Mapping[str, torch.Tensor]) -> str:
    """The features' identity: a digest of every tensor's name, dtype, shape and bytes (~160 KB: microseconds)."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy().tobytes())
    return "voice-" + digest.hexdigest()


class RayEngine:
    """The engine as a pool of Ray Serve replicas, seen from the front process."""

    def __init__(self, handle: Any, placement: RayPlacement, reference_processing: ReferenceProcessing,
                 started_ray: bool) -> None:
        self._handle = handle
        self.placement = placement
        self.reference_processing = reference_processing
        self._started_ray = started_ray
        self._lock = threading.Lock()
        self._sent: OrderedDict[str, None] = OrderedDict()
        self._in_flight = 0
        self.voice_sends = 0  # features sent with a request for a voice no replica was known to hold
        self.voice_resends = 0  # features sent again because the chosen replica lacked them
        self.retries = 0  # requests started again after their replica died

    @classmethod
    def start(cls, engine_options: dict[str, Any], placement: RayPlacement) -> RayEngine:
        """Join (or start) the cluster and deploy the replicas; returns once every replica has loaded."""
        started = False
        if not ray.is_initialized():
            extra: dict[str, Any] = {"include_dashboard": False} if placement.address == "local" else {}
            try:
                ray.init(address=placement.address, log_to_driver=False, logging_level=logging.WARNING, **extra)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise EngineError(
                    f"no Ray cluster could be reached at --ray-address {placement.address} ({_first_line(exc)}): "
                    "start one (`ray start --head`), pass --ray-address local to start one inside this process, "
                    "or --ray-address ray://HEAD:10001 for a remote cluster"
                ) from exc
            started = True
        try:
            _check_resources(placement)
            low, high = placement.replicas
            scaling: dict[str, Any] = (
                {"num_replicas": low}
                if low == high
                else {"autoscaling_config": {"min_replicas": low, "max_replicas": high,
                                             "target_ongoing_requests": placement.slots_per_replica}}
            )
            # mypy ignores class decorators: @serve.deployment made EngineReplica a Deployment
            deployment = EngineReplica.options(  # type: ignore[attr-defined]
                ray_actor_options={"num_cpus": placement.cpus_per_replica, "num_gpus": placement.gpus_per_replica},
                max_ongoing_requests=placement.slots_per_replica,
                **scaling,
            )
            serve.start(proxy_location="Disabled")  # handles only: no HTTP proxy on the cluster
            app = deployment.bind(
                {**engine_options, "checkpoint": str(engine_options["checkpoint"])},
                placement.voices_per_replica,
                placement.slots_per_replica + 2,
            )
            try:
                handle = serve.run(app, name=APP_NAME, route_prefix=None)
            except RuntimeError as exc:  # Serve gave up on the replicas' constructor
                raise EngineError(
                    f"the engine replicas failed to start on Ray: {_first_line(exc)}. Every node needs glmtts-mcp "
                    "with the [ray] extra and the checkpoint at the --checkpoint path (docs/scale-out.md); the "
                    "replicas' own logs are in the cluster's session folder (/tmp/ray/session_latest/logs)"
                ) from exc
        except BaseException:
            if started:
                ray.shutdown()
            raise
        log.info("engine replicas ready on Ray (%s): %s", placement.address, _replicas_text(placement.replicas))
        return cls(handle, placement, engine_options.get("reference_processing", "clean"), started)

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
        return {"device": "ray", "gpus_per_replica": self.placement.gpus_per_replica,
                "cpus_per_replica": self.placement.cpus_per_replica}

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
        """Clone on a replica (retried once on another if it dies); the features come back here."""
        if progress:
            progress(0, 5, "extracting the voice on an engine replica")
        for attempt in range(MAX_RETRIES + 1):
            try:
                with self._counted(), _engine_errors():
                    extracted = self._handle.extract.remote(ref, transcript, language).result()
                break
            except _ReplicaLost as lost:
                self._note_retry(attempt, lost, "clone")
        if progress:
            progress(5, 5, "voice features ready")
        return extracted

    def synthesize(
        self,
        text: str,
        features: VoiceFeatures,
        options: SynthesisOptions = SynthesisOptions(),
        progress: ProgressCallback | None = None,
    ) -> Iterator[AudioChunk]:
        """Narrate on a replica, one chunk per segment as each is ready (the same chunks as a local engine)."""
        return self._narration(text, features.tensors, voice_key(features.tensors), options, progress)

    def unload(self) -> None:
        """Remove the replicas (their GPUs are free again); a cluster this process started is stopped."""
        try:
            serve.delete(APP_NAME)
        finally:
            if self._started_ray:
                serve.shutdown()
                ray.shutdown()

    # --- figures -------------------------------------------------------------------------------

    def pool_stats(self) -> dict[str, Any]:
        """The replicas' own figures (a broadcast to each) and this front's send, resend and retry counts."""
        replicas = [
            r for r in self._handle.broadcast("stats").results(timeout_s=_STATS_TIMEOUT_S, return_exceptions=True)
            if isinstance(r, dict)
        ]
        return {
            "address": self.placement.address,
            "replicas_wanted": _replicas_text(self.placement.replicas),
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
    ) -> Iterator[AudioChunk]:
        delivered = 0
        reported = -1.0
        with self._counted():
            for attempt in range(MAX_RETRIES + 1):
                try:
                    for event in self._attempt(text, tensors, key, options):
                        if isinstance(event, Progress):
                            if progress and event.done > reported:  # a retry does not report the same step twice
                                reported = event.done
                                progress(event.done, event.total, event.message)
                        elif event.segment_index >= delivered:  # a retry skips the segments already delivered
                            delivered += 1
                            yield event
                    return
                except _ReplicaLost as lost:
                    self._note_retry(attempt, lost, f"narration (after {delivered} segment(s))")

    def _attempt(
        self, text: str, tensors: Mapping[str, torch.Tensor], key: str, options: SynthesisOptions
    ) -> Iterator[Progress | AudioChunk]:
        """One request to a replica chosen by the voice's key; the features go along when needed."""
        handle = self._handle.options(stream=True, multiplexed_model_id=key)
        send = not self._known(key)
        if send:
            self.voice_sends += 1
        for _ in range(2):
            response = handle.synthesize.remote(text, dict(tensors) if send else None, options)  # a plain dict pickles
            finished = False
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
            finally:
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
            raise _ReplicaLost(_first_line(exc)) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _replicas_text(replicas: tuple[int, int]) -> str:
    low, high = replicas
    return str(low) if low == high else f"{low}-{high}"


def _check_resources(placement: RayPlacement) -> None:
    """Refuse at start a cluster that cannot hold the minimum replicas (Serve would wait for them forever)."""
    total = ray.cluster_resources()
    low = placement.replicas[0]
    for resource, per_replica, flag in (
        ("CPU", placement.cpus_per_replica, "--ray-cpus-per-replica"),
        ("GPU", placement.gpus_per_replica, "--ray-gpus-per-replica"),
    ):
        have = float(total.get(resource, 0.0))
        if per_replica > 0 and low * per_replica > have + 1e-9:
            raise EngineError(
                f"the Ray cluster has {have:g} {resource}(s) but {low} replica(s) x {per_replica:g} ({flag}) need "
                f"{low * per_replica:g}: lower --ray-replicas or {flag}, or add nodes to the cluster"
            )
