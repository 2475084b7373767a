"""`glmtts-mcp serve --engine ray --ray-address local` over stdio: the server starts its own one-machine
cluster with an autoscaling range of replicas, every tool answers as with the local engine, stdout carries
only the protocol, and the cluster is gone when the server exits."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mcp_face"))  # the transport tests' exercise
from test_transports import _exercise

from server_processes import SCRIPT, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # slow: the server starts its own Ray cluster


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _ray_processes() -> set[str]:
    listing = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listing.splitlines() if "ray/core/src" in line or "raylet" in line}


async def test_stdio_server_on_its_own_ray_cluster(tmp_path: Path, tiny_checkpoint: Path, clip_writer: Any) -> None:
    clip_writer(tmp_path / "clip.wav")
    before = _ray_processes()
    env = server_env(
        tmp_path,
        tiny_checkpoint,
        GLMTTS_MCP_ENGINE="ray",
        GLMTTS_MCP_RAY_ADDRESS="local",
        GLMTTS_MCP_RAY_CPUS_PER_REPLICA="0.5",
        GLMTTS_MCP_RAY_REPLICAS="1-2",
    )  # autoscaling
    async with Client(StdioServerParameters(command=str(SCRIPT), args=[], env=env)) as client:
        await _exercise(client, tmp_path / "clip.wav")  # a stray line on stdout would break the session
        stats = (await client.call_tool("cache_stats", {})).structured_content
        pool = stats["engine"]["ray"]
        assert stats["engine"]["backend"] == "ray" and pool["replicas_wanted"] == "1-2" and len(pool["replicas"]) >= 1
    deadline = time.monotonic() + 60  # the server stopped the cluster it started (its processes exit shortly after)
    while not _ray_processes() <= before:
        assert time.monotonic() < deadline, _ray_processes() - before
        await anyio.sleep(0.5)
