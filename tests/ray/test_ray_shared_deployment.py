"""Several fronts on one Serve application: a second front joins the running replicas (and one with other
settings is refused), one front idling out leaves another's narration running, voices travel by their
stored digest, a cloned voice stays on its replica, a cancelled narration frees its batch slot, and
`glmtts-mcp ray delete` removes the replicas.

Front A is an App's engine in this process (`--engine ray`, one replica of half a CPU); the other fronts
are a second RayEngine built by the same loader, or a second server process connected to the same
cluster. The replica is deployed once for the module; the delete test comes last.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import ray
from mcp import Client
from ray import serve

from glmtts_mcp.app.core import App, default_loader
from glmtts_mcp.cli import main
from glmtts_mcp.engine.types import EngineError, SynthesisOptions, VoiceFeatures
from glmtts_mcp.engine_ray import client
from glmtts_mcp.engine_ray.client import RayEngine
from glmtts_mcp.engine_ray.deployment import APP_NAME
from glmtts_mcp.mcp_face.server import build_server

for helpers in ("mcp_face", "web"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / helpers))
from mcp_calls import structured  # noqa: E402 - importable once the loop above extends sys.path
from web_helpers import make_web_app  # noqa: E402 - importable once the loop above extends sys.path

from server_processes import server_env  # noqa: E402 - importable once the loop above extends sys.path

pytestmark = pytest.mark.anyio

TRANSCRIPT = "hi there"
LONG_TEXT = " ".join(
    f"The {nth} sentence of this narration is spoken at an even pace for the test."
    for nth in ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
)
DEADLINE_S = 120


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def app(
    ray_cluster: None,
    one_torch_thread: None,
    tiny_checkpoint: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[App]:
    """Front A: the replica is deployed by its first load."""
    app = make_web_app(
        tmp_path_factory.mktemp("shared"),
        tiny_checkpoint,
        engine="ray",
        ray_address="auto",
        ray_replicas="1",
        ray_cpus_per_replica=0.5,
        ray_voices_per_replica=4,
    )
    app.host.ensure_loaded()
    yield app
    app.close()


def _front_a(app: App) -> RayEngine:
    engine = app.host.ensure_loaded()
    assert isinstance(engine, RayEngine)
    return engine


def _second_front(app: App, **changes: Any) -> RayEngine:
    """Another front process's engine: the same loader on the same settings (or changed ones)."""
    engine = default_loader(app.settings.model_copy(update=changes))()
    assert isinstance(engine, RayEngine)
    return engine


@pytest.fixture(scope="module")
def voice(app: App, clip_writer: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> VoiceFeatures:
    """A voice cloned on the replica through front A (features with their digest)."""
    clip = clip_writer(tmp_path_factory.mktemp("clip") / "clip.wav", pitch=180.0)
    engine = _front_a(app)
    return engine.extract_voice(engine.prepare_reference(clip), TRANSCRIPT).features


def _replica(engine: RayEngine) -> dict[str, Any]:
    (replica,) = engine.pool_stats()["replicas"]
    return replica


def _speak(engine: RayEngine, text: str, features: VoiceFeatures, seed: int = 0) -> list[Any]:
    return list(engine.synthesize(text, features, SynthesisOptions(seed=seed)))


def test_a_second_front_joins_the_running_replica(app: App) -> None:
    before = _replica(_front_a(app))
    other = _second_front(app)
    try:
        joined = _replica(other)
        assert joined["replica"] == before["replica"] and joined["load_s"] == before["load_s"]  # not redeployed
        assert list(serve.status().applications) == [APP_NAME]
    finally:
        other.unload()
    assert _replica(_front_a(app))["replica"] == before["replica"]  # its unload left the replica serving


def test_a_front_with_other_settings_is_refused_naming_them(app: App) -> None:
    with pytest.raises(EngineError) as refused:
        _second_front(app, ray_voices_per_replica=5, max_batch=2)
    message = str(refused.value)
    assert "runs with other settings" in message
    assert "voices_per_replica: 4 there, 5 here" in message and "max_batch: " in message
    assert "glmtts-mcp ray delete --ray-address auto" in message
    assert _replica(_front_a(app))["active"] == 0  # nothing was redeployed under front A


# Another server process on the same cluster: joins the replica, idles out when told, then waits to exit.
OTHER_FRONT = """
import sys
from glmtts_mcp.app.core import build_app
from glmtts_mcp.config import load_settings

app = build_app(load_settings())
app.host.ensure_loaded()
print("joined", flush=True)
sys.stdin.readline()
app.host.unload(reason="idle")
print("unloaded", flush=True)
sys.stdin.readline()
app.library.close()
"""


def test_a_front_process_idling_out_leaves_the_others_narration_running(
    app: App, voice: VoiceFeatures, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    env = server_env(
        tmp_path,
        tiny_checkpoint,
        GLMTTS_MCP_ENGINE="ray",
        GLMTTS_MCP_RAY_ADDRESS="auto",
        GLMTTS_MCP_RAY_REPLICAS="1",
        GLMTTS_MCP_RAY_CPUS_PER_REPLICA="0.5",
        GLMTTS_MCP_RAY_VOICES_PER_REPLICA="4",
        GLMTTS_MCP_IDLE_UNLOAD_S="0",
        RAY_ADDRESS=ray.get_runtime_context().gcs_address,
    )
    first_chunk = threading.Event()
    chunks: list[Any] = []
    failures: list[BaseException] = []

    def narrate() -> None:
        try:
            for chunk in _front_a(app).synthesize(LONG_TEXT, voice, SynthesisOptions(seed=4)):
                chunks.append(chunk)
                first_chunk.set()
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)
            first_chunk.set()

    with (
        (tmp_path / "other-front.log").open("w") as log,
        subprocess.Popen(
            [sys.executable, "-c", OTHER_FRONT],
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        ) as other,
    ):
        assert other.stdin is not None and other.stdout is not None
        try:
            assert other.stdout.readline() == "joined\n", (tmp_path / "other-front.log").read_text()
            narration = threading.Thread(target=narrate)
            narration.start()
            assert first_chunk.wait(DEADLINE_S)
            other.stdin.write("\n")  # the other server idles out while this one narrates
            other.stdin.flush()
            assert other.stdout.readline() == "unloaded\n", (tmp_path / "other-front.log").read_text()
            narration.join(DEADLINE_S)
        finally:
            other.stdin.write("\n")
            other.stdin.flush()
            other.wait(DEADLINE_S)
    assert other.returncode == 0, (tmp_path / "other-front.log").read_text()
    assert not failures, failures
    assert [c.segment_index for c in chunks] == list(range(chunks[0].segment_count)) and len(chunks) == 4
    assert serve.status().applications[APP_NAME].status.value == "RUNNING"


def test_a_voice_with_its_stored_digest_is_not_hashed_and_travels_once(
    app: App, voice: VoiceFeatures, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[int] = []
    real_digest = client.features_digest
    monkeypatch.setattr(client, "features_digest", lambda tensors: hashed.append(1) or real_digest(tensors))
    engine = _front_a(app)
    stored = VoiceFeatures(tensors=dict(voice.tensors), digest="stored-digest-of-another-tier")
    before, sends = _replica(engine), engine.voice_sends
    _speak(engine, "First time under this key.", stored)
    _speak(engine, "Second time.", VoiceFeatures(tensors=dict(voice.tensors), digest=stored.digest))
    after = _replica(engine)
    assert hashed == []
    assert engine.voice_sends == sends + 1 and engine.voice_resends == 0  # sent with the first request only
    assert after["voice_loads"] == before["voice_loads"] + 1 and after["voice_hits"] == before["voice_hits"] + 1

    _speak(engine, "No digest given.", VoiceFeatures(tensors=dict(voice.tensors)))
    assert hashed == [1]  # hashed because no digest came with it, to the key the replica cloned it under
    last = _replica(engine)
    assert engine.voice_sends == sends + 1  # this front cloned it there: nothing sent
    assert last["voice_loads"] == after["voice_loads"] and last["voice_hits"] == after["voice_hits"] + 1


def test_a_cloned_voice_is_held_by_its_replica_under_the_librarys_digest(
    app: App, clip_writer: Callable[..., Path]
) -> None:
    """Clone through the MCP tool (extracted on the replica, stored by the library), then speak the stored
    voice with its recorded digest, as the application layer does: no features travel."""
    clip = clip_writer(app.settings.allowed_dirs[0] / "held.wav", pitch=260.0)
    engine = _front_a(app)
    before, sends = _replica(engine), engine.voice_sends

    async def clone() -> dict[str, Any]:
        async with Client(build_server(app)) as session:
            return await structured(
                session, "clone_voice", {"audio": str(clip), "name": "held", "transcript": TRANSCRIPT}
            )

    cloned = anyio.run(clone)
    loaded = app.library.load_features(cloned["voice_id"])
    stored = VoiceFeatures(tensors=loaded.tensors, digest=loaded.record.features_sha256)
    _speak(engine, "Spoken by the replica that cloned me.", stored)
    after = _replica(engine)
    assert after["voices_extracted"] == before["voices_extracted"] + 1
    assert engine.voice_sends == sends and engine.voice_resends == 0
    assert after["voice_loads"] == before["voice_loads"] and after["voice_misses"] == before["voice_misses"]
    assert after["voice_hits"] == before["voice_hits"] + 1


def _wait_for(engine: RayEngine, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll the replica's figures until `done` holds (no fixed sleeps: the figures say when)."""
    deadline = time.monotonic() + DEADLINE_S
    while not done(replica := _replica(engine)):
        assert time.monotonic() < deadline, replica
        time.sleep(0.05)
    return replica


def test_a_cancelled_narration_frees_its_batch_slot_on_the_replica(app: App, voice: VoiceFeatures) -> None:
    """Cancelling the stream sets the narration's cancel event on the replica, and its sequence leaves the
    batch mid-segment (fewer tokens than its first segment alone takes)."""
    engine = _front_a(app)
    first_segment = _speak(engine, LONG_TEXT, voice, seed=6)[0].text
    idle = _wait_for(engine, lambda r: r["active"] == 0)
    _speak(engine, first_segment, voice, seed=6)
    one_segment_tokens = _wait_for(engine, lambda r: r["active"] == 0)["llm_tokens"] - idle["llm_tokens"]

    handle = serve.get_app_handle(APP_NAME).options(stream=True, multiplexed_model_id=voice.digest)
    before = _wait_for(engine, lambda r: r["active"] == 0)
    response = handle.synthesize.remote(LONG_TEXT, dict(voice.tensors), SynthesisOptions(seed=6))
    _wait_for(engine, lambda r: r["llm_running"] == 1)  # its first segment is being decoded
    response.cancel()
    after = _wait_for(engine, lambda r: r["llm_running"] == 0 and r["llm_waiting"] == 0 and r["active"] == 0)
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["llm_tokens"] - before["llm_tokens"] < one_segment_tokens  # left mid-segment


def test_ray_delete_removes_the_replicas(app: App, no_user_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ray", "delete", "--ray-address", "auto"]) == 0
    assert "removed the engine replicas (glmtts-engine)" in capsys.readouterr().out
    assert APP_NAME not in serve.status().applications
    assert main(["ray", "delete", "--ray-address", "auto"]) == 0
    assert "nothing to remove" in capsys.readouterr().out
    assert main(["ray", "delete", "--ray-address", "local"]) == 1  # a cluster inside a server, gone with it
    assert "pass the cluster's address" in capsys.readouterr().err
