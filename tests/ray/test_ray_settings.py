"""`--engine ray` when the cluster is not there: the load fails with the flag to change, and the library
tools keep answering (no cluster is started by this module)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import ray
from mcp import Client

from glmtts_mcp.mcp_face.server import build_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mcp_face"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))
from mcp_calls import error_text, structured
from web_helpers import make_web_app

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_no_cluster_at_auto_names_the_address_flag(
    tmp_path: Path, tiny_checkpoint: Path, clip_writer: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "no-cluster-here"))  # no running cluster can be found there
    assert not ray.is_initialized()
    app = make_web_app(tmp_path / "front", tiny_checkpoint, engine="ray", ray_address="auto")
    clip = clip_writer(tmp_path / "front" / "clip.wav")
    try:
        async with Client(build_server(app)) as client:
            message = error_text(await client.call_tool("clone_voice", {"audio": str(clip), "transcript": "hi"}))
            assert "no Ray cluster could be reached at --ray-address auto" in message, message
            assert "pass --ray-address local" in message
            assert (await structured(client, "list_voices"))["voices"] == []
            stats = await structured(client, "cache_stats")
            assert stats["engine"]["backend"] == "ray" and stats["engine"]["state"] == "failed"
    finally:
        app.close()
    assert not ray.is_initialized()
