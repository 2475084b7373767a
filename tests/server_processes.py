"""Test helpers: the real `glmtts-mcp` program in a subprocess (started, waited for until its port answers,
always stopped), an ASGI app under uvicorn in a thread, and free ports for servers the tests start."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

SCRIPT = Path(sys.executable).parent / "glmtts-mcp"
START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 15


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def uvicorn_in_thread(config: uvicorn.Config) -> Iterator[None]:
    """`config`'s server running in a thread of this process until the block ends."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the in-process server did not start"
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def server_env(base: Path, checkpoint: Path, **extra: str) -> dict[str, str]:
    """This process's environment without the developer's GLMTTS_MCP_* settings, confined to `base`, with
    the tiny checkpoint's random Whisper; `extra` adds or replaces variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLMTTS_MCP_")}
    env.update(
        GLMTTS_MCP_CHECKPOINT=str(checkpoint),
        GLMTTS_MCP_VOICES_DIR=str(base / "voices"),
        GLMTTS_MCP_OUTPUT_DIR=str(base / "outputs"),
        GLMTTS_MCP_ALLOWED_DIRS=str(base),
        GLMTTS_MCP_WHISPER_MODEL="tiny-random",
        GLMTTS_MCP_LOG_LEVEL="WARNING",
        XDG_CONFIG_HOME=str(base / "xdg-config"),
    )
    env.update(extra)
    return env


@contextmanager
def running_server(
    args: list[str], env: dict[str, str], port: int, *, log: Path | None = None, max_fds: int | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Run `glmtts-mcp ARGS --port PORT` until its port accepts connections; yield the process (stdout as
    text, readable); terminate it afterwards (kill if it does not stop). Its stderr goes to `log` (a temp
    file by default, so a chatty server never blocks on a full pipe) and is shown if it exits early.
    `max_fds`: the server's open-file limit (`ulimit -n`)."""
    limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (max_fds, max_fds))) if max_fds else None
    with tempfile.TemporaryDirectory() as scratch:
        log_path = log or Path(scratch) / "server.log"
        with log_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [str(SCRIPT), *args, "--port", str(port)],
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=stderr,
                preexec_fn=limit,
            )
            try:
                _wait_for_port(proc, port, log_path)
                yield proc
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=STOP_TIMEOUT_S)
                if proc.stdout is not None:
                    proc.stdout.close()


def _wait_for_port(proc: subprocess.Popen[str], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("server did not start in time")
