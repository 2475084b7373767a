"""The one Serve application of the engine replicas on a cluster: found by name, deployed once, deleted on command.

Every front process (several may serve the same voices folder) uses the same application. A front that
finds it deployed with its own settings joins it; with other settings it is refused, naming each
difference, since redeploying would restart the replicas under the other fronts' narrations and joining
would give this front other audio or capacity than it was started with. A front never deletes the
application: `glmtts-mcp ray delete` does (`delete_deployment`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve
from ray.serve.schema import ApplicationStatus

from glmtts_mcp.engine.types import EngineError
from glmtts_mcp.engine_ray.replica import EngineReplica

log = logging.getLogger(__name__)

APP_NAME = "glmtts-engine"
DELETE_COMMAND = "glmtts-mcp ray delete"
JOIN_TIMEOUT_S = 600.0  # a front joining an application still deploying waits this long for a replica


@dataclass(frozen=True)
class RayPlacement:
    """Where and how many replicas run: the `--ray-*` settings, checked at start."""

    address: str
    replicas: tuple[int, int]  # (min, max); equal for a fixed count
    gpus_per_replica: float
    cpus_per_replica: float
    voices_per_replica: int
    slots_per_replica: int  # requests a replica takes at once (its engine's batch and job slots)


def replicas_text(replicas: tuple[int, int]) -> str:
    low, high = replicas
    return str(low) if low == high else f"{low}-{high}"


def deployment_settings(engine_options: dict[str, Any], placement: RayPlacement) -> dict[str, Any]:
    """What the application is deployed with, as plain values: the replicas keep it, joining fronts compare it."""
    return {
        "engine": {**engine_options, "checkpoint": str(engine_options["checkpoint"])},
        "replicas": replicas_text(placement.replicas),
        "gpus_per_replica": placement.gpus_per_replica,
        "cpus_per_replica": placement.cpus_per_replica,
        "voices_per_replica": placement.voices_per_replica,
        "slots_per_replica": placement.slots_per_replica,
    }


def connect(address: str) -> bool:
    """Connect this process to the cluster at `address` (`local`: a new one inside it) unless it already is;
    True when this call connected it."""
    if ray.is_initialized():
        return False
    extra: dict[str, Any] = {"include_dashboard": False} if address == "local" else {}
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, **extra)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EngineError(
            f"no Ray cluster could be reached at --ray-address {address} ({first_line(exc)}): "
            "start one (`ray start --head`), pass --ray-address local to start one inside this process, "
            "or --ray-address ray://HEAD:10001 for a remote cluster"
        ) from exc
    return True


def find_or_deploy(engine_options: dict[str, Any], placement: RayPlacement) -> Any:
    """The application's handle: the running one when its settings match this front's, else a new deployment."""
    check_resources(placement)
    settings = deployment_settings(engine_options, placement)
    running = serve.status().applications.get(APP_NAME)
    if running is None or running.status == ApplicationStatus.DEPLOY_FAILED:
        return _deploy(settings, placement)
    handle = serve.get_app_handle(APP_NAME)
    try:
        theirs = handle.settings.remote().result(timeout_s=JOIN_TIMEOUT_S)
    except TimeoutError as exc:
        raise EngineError(
            f"the Serve application {APP_NAME!r} on the cluster at --ray-address {placement.address} has had no "
            f"replica ready for {JOIN_TIMEOUT_S:.0f} s (its status: {running.status.value}): check the replicas' "
            f"logs (/tmp/ray/session_latest/logs), or remove it with `{DELETE_COMMAND}` and start again"
        ) from exc
    differences = settings_differences(theirs, settings)
    if differences:
        raise EngineError(
            f"the Serve application {APP_NAME!r} on the cluster at --ray-address {placement.address} runs with other "
            f"settings than this server's ({'; '.join(differences)}): start this server with the application's "
            f"settings, or remove the application with `{DELETE_COMMAND} --ray-address {placement.address}` (it "
            "stops every server's narrations on it) and start again"
        )
    log.info("joined the engine replicas already running on Ray (%s)", placement.address)
    return handle


def settings_differences(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """Each setting that differs, as 'name: X there, Y here' (engine options flattened to their own names)."""

    def flat(settings: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in settings.items() if k != "engine"}, **settings.get("engine", {})}

    there, here = flat(theirs), flat(ours)
    return [
        f"{name}: {there.get(name)!r} there, {here.get(name)!r} here"
        for name in sorted(there.keys() | here.keys())
        if there.get(name) != here.get(name)
    ]


def delete_deployment(address: str) -> bool:
    """Remove the application and its replicas from the cluster at `address`; False when there was none."""
    if address == "local":
        raise EngineError(
            "--ray-address local names a cluster inside a server's own process, which stops with it: pass the "
            "cluster's address (auto, or ray://HEAD:10001)"
        )
    connected = connect(address)
    try:
        if APP_NAME not in serve.status().applications:
            return False
        serve.delete(APP_NAME)
        return True
    finally:
        if connected:
            ray.shutdown()


def _deploy(settings: dict[str, Any], placement: RayPlacement) -> Any:
    """Deploy the replicas; returns once every one has loaded."""
    low, high = placement.replicas
    scaling: dict[str, Any] = (
        {"num_replicas": low}
        if low == high
        else {
            "autoscaling_config": {
                "min_replicas": low,
                "max_replicas": high,
                "target_ongoing_requests": placement.slots_per_replica,
            }
        }
    )
    deployment = EngineReplica.options(  # type: ignore[attr-defined]  # @serve.deployment made it a Deployment
        ray_actor_options={"num_cpus": placement.cpus_per_replica, "num_gpus": placement.gpus_per_replica},
        max_ongoing_requests=placement.slots_per_replica,
        **scaling,
    )
    serve.start(proxy_location="Disabled")  # handles only: no HTTP proxy on the cluster
    try:
        return serve.run(deployment.bind(settings), name=APP_NAME, route_prefix=None)
    except RuntimeError as exc:  # Serve gave up on the replicas' constructor
        raise EngineError(
            f"the engine replicas failed to start on Ray: {first_line(exc)}. Every node needs glmtts-mcp "
            "with the [ray] extra and the checkpoint at the --checkpoint path (docs/scale-out.md); the "
            "replicas' own logs are in the cluster's session folder (/tmp/ray/session_latest/logs)"
        ) from exc


def check_resources(placement: RayPlacement) -> None:
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


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
