"""`--engine ray` on a local two-replica cluster, through the MCP tools: the same audio as the local engine,
voices that stay on the replica holding them, and a replica killed in the middle of a narration.

The replicas are deployed once for the module (loading two tiny checkpoints takes most of its time); the
tests run in file order and the kill comes last.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest
import ray
from mcp import Client

from glmtts_mcp.app.core import App
from glmtts_mcp.engine.types import SynthesisOptions, VoiceFeatures
from glmtts_mcp.mcp_face.server import build_server

for helpers in ("mcp_face", "web"):  # the MCP tests' call helpers, the web tests' live server
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / helpers))
from mcp_calls import error_text, structured  # noqa: E402 - importable once the loop above extends sys.path
from web_helpers import live_server, make_web_app  # noqa: E402 - importable once the loop above extends sys.path

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # slow: a local two-replica Ray cluster

TRANSCRIPT = "hi there"
# Four segments (the text frontend joins sentences up to its length limit): long enough to kill its replica
# in the middle of the narration.
LONG_TEXT = " ".join(
    f"The {nth} sentence of this narration is spoken at an even pace for the test."
    for nth in ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {"root": tmp_path_factory.mktemp("ray-engine")}


def _app(tiny_checkpoint: Path, root: Path, name: str, clip_writer: Callable[..., Path], **overrides: Any) -> App:
    """An app confined to root/name, with the reference clip in it (the same clip for every app)."""
    app = make_web_app(root / name, tiny_checkpoint, **overrides)
    clip_writer(root / name / "clip.wav")
    return app


def _clip(app: App) -> Path:
    return app.settings.allowed_dirs[0] / "clip.wav"


@pytest.fixture(scope="module")
def ray_app(
    ray_cluster: None,
    one_torch_thread: None,
    tiny_checkpoint: Path,
    folders: dict[str, Path],
    clip_writer: Callable[..., Path],
) -> Iterator[App]:
    """The front process of `--engine ray`: two replicas of half a CPU each on the module's cluster."""
    app = _app(
        tiny_checkpoint,
        folders["root"],
        "ray",
        clip_writer,
        engine="ray",
        ray_address="auto",
        ray_replicas="2",
        ray_cpus_per_replica=0.5,
        ray_voices_per_replica=4,
    )
    app.host.ensure_loaded()  # deploy now: every test of the module shares these replicas
    yield app
    app.close()


@pytest.fixture(scope="module")
def local_app(
    one_torch_thread: None, tiny_checkpoint: Path, folders: dict[str, Path], clip_writer: Callable[..., Path]
) -> Iterator[App]:
    """The same settings with the engine in this process (one torch thread, as each replica has)."""
    app = _app(tiny_checkpoint, folders["root"], "local", clip_writer)
    yield app
    app.close()


async def _clone_and_speak(app: App, text: str, seed: int) -> tuple[dict[str, Any], bytes]:
    async with Client(build_server(app)) as client:
        voice = await structured(
            client, "clone_voice", {"audio": str(_clip(app)), "name": "tone", "transcript": TRANSCRIPT}
        )
        spoken = await structured(
            client,
            "synthesize",
            {"text": text, "voice": voice["voice_id"], "format": "wav", "return_mode": "path", "seed": seed},
        )
    return spoken, Path(spoken["path"]).read_bytes()


async def _pool(app: App) -> dict[str, Any]:
    """The replicas' figures (blocking calls to Ray: in a worker thread, as cache_stats makes them)."""
    return (await anyio.to_thread.run_sync(app.host.describe))["ray"]


async def test_clone_and_synthesize_match_the_local_engine(ray_app: App, local_app: App) -> None:
    text = "Hello there. Two replicas speak exactly as the local engine does."
    remote, remote_wav = await _clone_and_speak(ray_app, text, seed=11)
    local, local_wav = await _clone_and_speak(local_app, text, seed=11)
    assert remote["voice_id"] == local["voice_id"] and remote["segments"] == local["segments"]
    assert remote_wav == local_wav  # sample for sample: the replica runs the same Engine on the same features

    async with Client(build_server(ray_app)) as client:
        stats = await structured(client, "cache_stats")
    engine = stats["engine"]
    assert engine["backend"] == "ray" and engine["model_loaded"] is True
    replicas = engine["ray"]["replicas"]
    assert len(replicas) == 2 and {r["device"] for r in replicas} == {"cpu"}
    assert engine["ray"]["voice_sends"] == 0  # the replica that cloned the voice holds it: the front sent nothing
    # unless Serve's router had not yet heard that it holds it (the replica reports within about 0.1 s): then the
    # other replica asked for the features, once (and the resend may reach either replica)
    assert sum(r["voice_loads"] for r in replicas) <= engine["ray"]["voice_resends"] <= 1


async def test_repeated_requests_reuse_the_held_voice(ray_app: App) -> None:
    """Multiplexing by the voice's key: every request goes to the replica that holds the voice."""
    before = await _pool(ray_app)
    async with Client(build_server(ray_app)) as client:
        for seed in range(4):
            await structured(
                client,
                "synthesize",
                {"text": "Again and again.", "voice": "tone", "format": "wav", "return_mode": "path", "seed": seed},
            )
    after = await _pool(ray_app)
    assert after["voice_sends"] == before["voice_sends"] and after["voice_resends"] == before["voice_resends"]
    hits = sum(r["voice_hits"] for r in after["replicas"]) - sum(r["voice_hits"] for r in before["replicas"])
    assert hits == 4
    loads = sum(r["voice_loads"] for r in before["replicas"])
    held = [0, 1] if loads == 0 else [1, 1]  # [1, 1]: an early request reached the other one, which took it in
    assert sorted(r["voices_held"] for r in after["replicas"]) == held


def test_rest_streams_from_a_replica_and_a_client_that_leaves_cancels_it(ray_app: App) -> None:
    """POST /api/tts streams the replica's segments; closing the connection stops the replica's narration."""
    with live_server(ray_app) as live, httpx2.Client(base_url=live.url, timeout=60) as client:
        whole = client.post("/api/tts", json={"text": "Hello there.", "voice": "tone", "format": "wav", "seed": 2})
        assert whole.status_code == 200 and whole.content[:4] == b"RIFF" and len(whole.content) > 1000
        symbols = client.post("/api/tts", json={"text": "...", "voice": "tone"})  # the replica's own sentence
        assert symbols.status_code == 400 and "nothing to speak" in symbols.json()["error"], symbols.text
        engine = client.get("/api/cache/stats").json()["engine"]  # what the page's status shows
        assert engine["backend"] == "ray" and len(engine["ray"]["replicas"]) == 2
        before = sum(r["cancelled"] for r in ray_app.host.describe()["ray"]["replicas"])
        with client.stream("POST", "/api/tts", json={"text": LONG_TEXT, "voice": "tone", "format": "pcm"}) as stream:
            assert stream.status_code == 200 and stream.headers["x-segments"] == "4"
            first = next(stream.iter_bytes())
            assert first  # the first segment arrived while the others were still being made
        deadline = time.monotonic() + 30
        while True:
            replicas = ray_app.host.describe()["ray"]["replicas"]
            if sum(r["cancelled"] for r in replicas) > before and not any(r["active"] for r in replicas):
                break
            assert time.monotonic() < deadline, replicas
            time.sleep(0.2)


def test_a_replica_streams_chunks_inside_a_segment(ray_app: App) -> None:
    """Stream mode on a replica: one segment's audio comes back in several chunks, first block first."""
    engine = ray_app.host.ensure_loaded()
    voice = ray_app.library.load_features("tone")
    text = "The quick brown fox jumps over the lazy dog, and then it runs far away into the dark forest."
    chunks = list(
        engine.synthesize(text, VoiceFeatures(tensors=dict(voice.tensors)), SynthesisOptions(seed=1, stream=True))
    )
    audible = [c for c in chunks if len(c.pcm)]
    assert {c.segment_index for c in chunks} == {0} and len(audible) >= 2
    # the first chunk is the first block's settled audio: 25 tokens less the 12 held back, at 24 kHz
    assert len(audible[0].pcm) < 13 * 24000 // 25 * audible[0].sample_rate // 24000


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_page_speaks_through_replicas_and_lists_them(ray_app: App, tmp_path: Path) -> None:
    """The page in headless Chromium on `--engine ray`: its status lists the replicas, and speaking plays audio."""
    from playwright.sync_api import sync_playwright

    with live_server(ray_app) as live, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(120_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(live.url + "/")
            page.wait_for_selector("#stats dt")
            voice_id = httpx2.get(f"{live.url}/api/voices", timeout=30).json()["voices"][0]["voice_id"]
            page.select_option("#speak-voice", voice_id)
            page.fill("#speak-text", "Hello there. How are you today?")
            page.click("#speak-button")
            page.wait_for_function(
                "() => { const a = document.getElementById('speech-audio');"
                " return a.src.startsWith('blob:') && a.readyState >= 1 && a.duration > 0 && isFinite(a.duration); }"
            )
            page.reload()  # the status as it stands after the narration
            page.wait_for_selector("#stats dt")
            status = page.text_content("#stats")
            assert "loaded on Ray replicas" in status and "2 replica(s) of 2" in status, status
            assert status.count("Replica ") == 2, status
            page.screenshot(path=str(tmp_path / "ray-page.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()


async def test_a_cluster_too_small_is_refused_at_load(
    ray_app: App, tiny_checkpoint: Path, folders: dict[str, Path], clip_writer: Callable[..., Path]
) -> None:
    """Serve would wait forever for replicas the cluster cannot place: the load says so, naming the flags."""
    app = _app(
        tiny_checkpoint, folders["root"], "too-big", clip_writer, engine="ray", ray_replicas="3", ray_cpus_per_replica=1
    )
    try:
        async with Client(build_server(app)) as client:
            failed = await client.call_tool("clone_voice", {"audio": str(_clip(app)), "transcript": TRANSCRIPT})
            message = error_text(failed)
            assert "the Ray cluster has 2 CPU(s) but 3 replica(s) x 1 (--ray-cpus-per-replica) need 3" in message
            assert "lower --ray-replicas or --ray-cpus-per-replica" in message
            assert (await structured(client, "list_voices"))["voices"] == []  # the library tools still answer
    finally:
        app.close()


async def test_a_replica_killed_mid_narration_is_retried(ray_app: App, local_app: App) -> None:
    """The narration goes on on the other replica with the same audio; list_voices answers all along."""
    async with Client(build_server(local_app)) as client:
        expected = await structured(
            client,
            "synthesize",
            {"text": LONG_TEXT, "voice": "tone", "format": "wav", "return_mode": "path", "seed": 5},
        )
    assert expected["segments"] >= 3
    before = await _pool(ray_app)
    killed: list[str] = []
    listings: list[int] = []

    async def kill_after_first_segment(value: float, total: float | None, message: str | None) -> None:
        if killed or not message or "segment 1/" not in message:
            return
        busy = [r for r in (await _pool(ray_app))["replicas"] if r["active"]]
        assert len(busy) == 1, busy
        await anyio.to_thread.run_sync(
            lambda: ray.kill(ray.get_actor(busy[0]["replica"], namespace="serve"), no_restart=False)
        )
        killed.append(busy[0]["replica"])

    async with Client(build_server(ray_app)) as client:
        done = anyio.Event()

        async def keep_listing() -> None:
            while not done.is_set():
                with anyio.fail_after(10):  # the front never stops answering
                    listed = await structured(client, "list_voices")
                listings.append(len(listed["voices"]))
                await anyio.sleep(0.2)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(keep_listing)
            result = await client.call_tool(
                "synthesize",
                {"text": LONG_TEXT, "voice": "tone", "format": "wav", "return_mode": "path", "seed": 5},
                progress_callback=kill_after_first_segment,
            )
            done.set()
        assert not result.is_error, error_text(result)
        spoken = result.structured_content
        assert spoken is not None
        assert killed, "the narration ended before its replica could be killed"
        assert Path(spoken["path"]).read_bytes() == Path(expected["path"]).read_bytes()
        assert listings and set(listings) == {1}
        after = await _pool(ray_app)
        assert after["retries"] == before["retries"] + 1
        assert after["voice_resends"] == before["voice_resends"] + 1  # the surviving replica asked for the voice

        again = await client.call_tool(
            "synthesize", {"text": "Still here.", "voice": "tone", "format": "wav", "return_mode": "path", "seed": 1}
        )
        assert not again.is_error, error_text(again)

    deadline = time.monotonic() + 120  # Ray Serve replaces the killed replica; cache_stats lists it again
    while len(replicas := (await _pool(ray_app))["replicas"]) < 2 or killed[0] in {r["replica"] for r in replicas}:
        assert time.monotonic() < deadline, replicas
        await anyio.sleep(1)
