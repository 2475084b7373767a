"""When the MCP Apps player has audio to play, against when synthesize's whole result arrives; print a table.

    python benchmarks/bench_player.py                          # tiny random checkpoint, CPU
    python benchmarks/bench_player.py --checkpoint DIR --device cuda --runs 5

Starts the real server (`glmtts-mcp serve --transport http`, as bench_web.py does), clones one voice, then
over MCP (Streamable HTTP, the SDK's client) times, for a text of several segments: synthesize for a host
without MCP Apps (the result arrives when the whole narration is made and saved), and for a host that
renders the player: synthesize's answer (at once), the first poll_narration that carries audio (when the
player starts playing), and the last (the whole narration). Median of --runs, after one warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import numpy as np
import soundfile as sf
from mcp import Client
from mcp.client.extension import advertise

from bench_web import TEXT, served

APPS = [advertise("io.modelcontextprotocol/ui", {"mimeTypes": ["text/html;profile=mcp-app"]})]


async def plain_run(url: str, text: str) -> float:
    """Seconds until synthesize's whole result arrives (a host without the player)."""
    async with Client(f"{url}/mcp") as client:
        start = time.perf_counter()
        result = await client.call_tool("synthesize", {"text": text, "voice": "bench"})
        if result.is_error:
            raise SystemExit(f"synthesize failed: {result.content}")
        return time.perf_counter() - start


async def player_run(url: str, text: str) -> tuple[float, float, float, int]:
    """(synthesize answered, first audio polled, last audio polled, pieces) for a host with the player."""
    async with Client(f"{url}/mcp", extensions=APPS) as client:
        start = time.perf_counter()
        started = await client.call_tool("synthesize", {"text": text, "voice": "bench"})
        answered = time.perf_counter() - start
        narration_id = (started.structured_content or {})["narration_id"]
        cursor, first, pieces = 0, 0.0, 0
        while True:
            poll = (
                await client.call_tool("poll_narration", {"narration_id": narration_id, "cursor": cursor, "wait_s": 10})
            ).structured_content or {}
            if poll["samples"]:
                pieces += 1
                first = first or time.perf_counter() - start
            cursor = poll["next_cursor"]
            if poll["done"]:
                if poll["state"] != "done":
                    raise SystemExit(f"the narration ended {poll['state']}: {poll['message']}")
                return answered, first, time.perf_counter() - start, pieces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="GLM-TTS checkpoint (default: a tiny random one)")
    parser.add_argument("--whisper-model", default="tiny-random")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--text", default=TEXT)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-player-") as tmp:
        work = Path(tmp)
        checkpoint = args.checkpoint
        if checkpoint is None:
            from glmtts_mcp.engine.checkpoint.tiny import make_tiny_checkpoint

            checkpoint = make_tiny_checkpoint(work / "GLM-TTS")
        rate = 16000
        t = np.arange(int(rate * 3.0)) / rate
        clip = work / "clip.wav"
        sf.write(clip, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), rate)
        with served(checkpoint, args.whisper_model, args.device, work) as url:

            async def measure() -> tuple[list[float], list[tuple[float, float, float, int]]]:
                async with Client(f"{url}/mcp") as client:
                    made = await client.call_tool(
                        "clone_voice", {"audio": str(clip), "name": "bench", "transcript": "hello there"}
                    )
                    if made.is_error:
                        raise SystemExit(f"clone failed: {made.content}")
                await plain_run(url, args.text)  # warm-up
                await player_run(url, args.text)
                plain = [await plain_run(url, args.text) for _ in range(args.runs)]
                player = [await player_run(url, args.text) for _ in range(args.runs)]
                return plain, player

            plain, player = anyio.run(measure)
        whole = statistics.median(plain)
        print(
            f"checkpoint {checkpoint}, device {args.device}, {len(args.text)} characters, "
            f"median of {args.runs} run(s) after a warm-up"
        )
        print(f"{'host':34}  {'moment':28}  {'seconds':>8}  {'of plain':>8}")
        rows = [
            ("without MCP Apps", "synthesize result", whole),
            ("with the player", "synthesize answered", statistics.median(r[0] for r in player)),
            ("with the player", "first audio to play", statistics.median(r[1] for r in player)),
            ("with the player", "whole narration polled", statistics.median(r[2] for r in player)),
        ]
        for host, moment, seconds in rows:
            print(f"{host:34}  {moment:28}  {seconds:8.3f}  {seconds / whole:8.0%}")
        print(f"\npieces per narration (poll results with audio): {player[0][3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
