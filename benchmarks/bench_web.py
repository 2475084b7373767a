"""Time to first byte against time to the whole body for the streamed web endpoints; print a table.

    python benchmarks/bench_web.py                          # tiny random checkpoint, CPU
    python benchmarks/bench_web.py --checkpoint DIR --device cuda --runs 5

Starts the real server (`glmtts-mcp serve --transport http` on a free loopback port), clones one
voice over REST, then times POST /api/tts and POST /v1/audio/speech for a text of several segments:
the first byte leaves when the first segment is synthesized, the body ends with the last. mp3 is
sent whole (its header needs the length), so its first byte comes with the whole body: the contrast
row. Median of --runs requests each, after one warm-up.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import numpy as np
import soundfile as sf

TEXT = "One. Two. Three. Four. " * 12  # three segments


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(
    checkpoint: Path, whisper: str, device: str, workdir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """The real server in a subprocess (more GLMTTS_MCP_* settings in `extra_env`); its base URL while the
    block runs."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLMTTS_MCP_")}
    env.update(
        GLMTTS_MCP_CHECKPOINT=str(checkpoint),
        GLMTTS_MCP_WHISPER_MODEL=whisper,
        GLMTTS_MCP_DEVICE=device,
        GLMTTS_MCP_VOICES_DIR=str(workdir / "voices"),
        GLMTTS_MCP_OUTPUT_DIR=str(workdir / "outputs"),
        GLMTTS_MCP_ALLOWED_DIRS=str(workdir),
        GLMTTS_MCP_LOG_LEVEL="WARNING",
        GLMTTS_MCP_PRELOAD="start",
        XDG_CONFIG_HOME=str(workdir / "xdg"),
    )
    env.update(extra_env or {})
    script = Path(sys.executable).parent / "glmtts-mcp"
    proc = subprocess.Popen(
        [str(script), "serve", "--transport", "http", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start within 300 s") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def served_voice(
    checkpoint: Path | None,
    whisper: str,
    device: str,
    extra_env: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[tuple[str, httpx2.Client, Path]]:
    """In a temporary folder: the checkpoint (a tiny random one unless given), the real server (`served`),
    and a voice named `bench` cloned over REST from a 3 s tone; (base URL, client, checkpoint)."""
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        work = Path(tmp)
        if checkpoint is None:
            from glmtts_mcp.engine.checkpoint.tiny import make_tiny_checkpoint

            checkpoint = make_tiny_checkpoint(work / "GLM-TTS")
        rate = 16000
        t = np.arange(int(rate * 3.0)) / rate
        clip = work / "clip.wav"
        sf.write(
            clip, (0.3 * np.sin(2 * np.pi * 200 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32), rate
        )
        with (
            served(checkpoint, whisper, device, work, extra_env) as url,
            httpx2.Client(base_url=url, headers=headers, timeout=600) as client,
        ):
            made = client.post(
                "/api/voices",
                files={"audio": ("clip.wav", clip.read_bytes())},
                data={"transcript": "hello there, this is the reference", "name": "bench"},
            )
            if made.status_code not in (200, 201):
                raise SystemExit(f"clone failed: {made.text}")
            yield url, client, checkpoint


def timed(client: httpx2.Client, path: str, body: dict) -> tuple[float, float, int, int]:
    """(seconds to the first body byte, seconds to the last, bytes, segments) of one streamed request."""
    start = time.perf_counter()
    first = None
    size = 0
    with client.stream("POST", path, json=body) as response:
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {response.read().decode()}")
        for piece in response.iter_raw():
            if piece and first is None:
                first = time.perf_counter() - start
            size += len(piece)
        segments = int(response.headers.get("x-segments", "0"))
    return first or 0.0, time.perf_counter() - start, size, segments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="GLM-TTS checkpoint (default: a tiny random one)")
    parser.add_argument("--whisper-model", default="tiny-random")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--text", default=TEXT)
    args = parser.parse_args(argv)

    with served_voice(args.checkpoint, args.whisper_model, args.device) as (_url, client, checkpoint):
        cases = [
            ("POST /api/tts (wav, streamed)", "/api/tts", {"text": args.text, "voice": "bench", "format": "wav"}),
            (
                "POST /v1/audio/speech (wav, streamed)",
                "/v1/audio/speech",
                {"model": "tts-1", "voice": "bench", "input": args.text, "response_format": "wav"},
            ),
            (
                "POST /v1/audio/speech (pcm, sse events)",
                "/v1/audio/speech",
                {
                    "model": "tts-1",
                    "voice": "bench",
                    "input": args.text,
                    "response_format": "pcm",
                    "stream_format": "sse",
                },
            ),
            (
                "POST /v1/audio/speech (mp3, sent whole)",
                "/v1/audio/speech",
                {"model": "tts-1", "voice": "bench", "input": args.text, "response_format": "mp3"},
            ),
        ]
        print(
            f"checkpoint {checkpoint}, device {args.device}, {len(args.text)} characters, "
            f"median of {args.runs} run(s) after a warm-up"
        )
        print(f"{'endpoint':44}  {'first byte':>10}  {'whole body':>10}  {'first/whole':>11}  segments")
        for name, path, body in cases:
            timed(client, path, body)
            runs = [timed(client, path, body) for _ in range(args.runs)]
            first = statistics.median(r[0] for r in runs)
            whole = statistics.median(r[1] for r in runs)
            print(f"{name:44}  {first:9.3f}s  {whole:9.3f}s  {first / whole:11.0%}  {runs[0][3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
