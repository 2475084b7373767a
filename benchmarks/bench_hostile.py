"""The hostile-client probes of issue 21 against the real server; prints one table per probe.

    python benchmarks/bench_hostile.py                       # tiny random checkpoint, CPU
    python benchmarks/bench_hostile.py --checkpoint DIR --device cuda

Starts `glmtts-mcp serve --transport http` (bench_web.served) with a token, clones one voice, then:

- abandoned: --abandoned POST /api/tts of a 40-sentence text, each socket closed right after its request
  (before the first byte); then one short request. Its wall time against the same request on an idle
  server, and the speech tokens the engine drew meanwhile for nobody.
- slow sockets: --flood sockets from 127.0.0.2 that dribble their headers (or sit idle after one
  request, keep-alive), reconnecting when closed, against the default --http-max-connections; meanwhile
  --calls plain requests from 127.0.0.1: how many are answered.
- concurrent streams: --streams POST /api/tts at once, with --max-queue given to the server: answered,
  refused with 503 + Retry-After, other.
- sign-in guesses: --guesses wrong tokens posted to /login in a row: answered 401, slowed (429), wall time.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from collections import Counter
from pathlib import Path

import httpx2

from bench_web import served_voice

TOKEN = "bench-hostile-token-0123456789-abcdefghij"
AUTH = {"authorization": f"Bearer {TOKEN}"}
LONG_TEXT = " ".join(f"This is sentence number {i} of a long story." for i in range(40))
SHORT_TEXT = "A short sentence."
FLOODER, CALLER = "127.0.0.2", "127.0.0.1"


def raw(url: str, source: str, request: bytes, read: bool = True, timeout: float = 30.0) -> bytes:
    """One request over a plain socket from `source`; the start of the answer (or b'' when closed)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect((host, int(port)))
        sock.sendall(request)
        if not read:
            return b""
        try:
            return sock.recv(4096)
        except OSError:
            return b""


def post(path: str, body: dict, host: str) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {TOKEN}\r\ncontent-length: {len(data)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + data


def tokens_drawn(client: httpx2.Client) -> int:
    scheduler = client.get("/api/cache/stats").json()["engine"].get("scheduler") or {}
    return int(scheduler.get("tokens", 0))


def wait_idle(client: httpx2.Client, within_s: float = 600.0) -> float:
    """Seconds until no request holds the engine."""
    start = time.perf_counter()
    while time.perf_counter() - start < within_s:
        engine = client.get("/api/cache/stats").json()["engine"]
        scheduler = engine.get("scheduler") or {}
        if engine["active_jobs"] == 0 and not scheduler.get("running") and not scheduler.get("waiting"):
            break
        time.sleep(0.1)
    return time.perf_counter() - start


def timed_tts(client: httpx2.Client, text: str) -> float:
    start = time.perf_counter()
    answer = client.post("/api/tts", json={"text": text, "voice": "bench"})
    if answer.status_code != 200:
        raise SystemExit(f"/api/tts: {answer.status_code} {answer.text}")
    return time.perf_counter() - start


def abandoned(url: str, client: httpx2.Client, count: int) -> None:
    host = url.removeprefix("http://")
    alone = statistics.median(timed_tts(client, SHORT_TEXT) for _ in range(3))
    wait_idle(client)
    before = tokens_drawn(client)
    for _ in range(count):
        raw(url, CALLER, post("/api/tts", {"text": LONG_TEXT, "voice": "bench"}, host), read=False)
    after = timed_tts(client, SHORT_TEXT)
    settle = wait_idle(client)
    print(f"\nabandoned requests: {count} POST /api/tts of {len(LONG_TEXT)} characters, sockets closed at once")
    print(f"{'probe':44}  {'value':>10}")
    print(f"{'next short request, idle server (s)':44}  {alone:10.2f}")
    print(f"{'next short request, after the abandoned (s)':44}  {after:10.2f}")
    print(f"{'engine busy after that request (s)':44}  {settle:10.2f}")
    print(f"{'speech tokens drawn meanwhile':44}  {tokens_drawn(client) - before:10d}")


def slow_sockets(url: str, flood: int, calls: int, kind: str) -> tuple[int, int]:
    """(answered 200, calls) while `flood` sockets of `kind` from FLOODER hold on."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stop = threading.Event()

    def opened() -> socket.socket | None:
        try:
            sock = socket.socket()
            sock.settimeout(10)
            sock.bind((FLOODER, 0))
            sock.connect((host, int(port)))
            if kind == "dribbling":
                sock.sendall(f"GET /api/voices HTTP/1.1\r\nhost: {host}:{port}\r\nx-slow: ".encode())
            else:
                sock.sendall(f"GET /api/voices HTTP/1.1\r\nhost: {host}:{port}\r\n{_auth_line()}\r\n".encode())
                sock.recv(65536)
            sock.setblocking(False)
            return sock
        except OSError:
            return None

    def hold() -> None:
        socks = [opened() for _ in range(flood)]
        while not stop.is_set():
            for i, sock in enumerate(socks):
                if sock is not None:
                    try:
                        if sock.recv(65536) != b"":
                            continue
                    except BlockingIOError:
                        if kind == "idle":
                            continue
                        try:
                            sock.send(b"x")
                            continue
                        except OSError:
                            pass
                    except OSError:
                        pass
                    sock.close()
                socks[i] = opened()
            time.sleep(0.05)
        for sock in socks:
            if sock is not None:
                sock.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    time.sleep(2.0)
    request = f"GET /api/voices HTTP/1.1\r\nhost: {host}:{port}\r\n{_auth_line()}connection: close\r\n\r\n".encode()
    answered = sum(raw(url, CALLER, request).startswith(b"HTTP/1.1 200") for _ in range(calls))
    stop.set()
    thread.join(timeout=30)
    return answered, calls


def _auth_line() -> str:
    return f"authorization: Bearer {TOKEN}\r\n"


def concurrent_streams(url: str, count: int) -> Counter[str]:
    host = url.removeprefix("http://")
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def one() -> None:
        request = post("/api/tts", {"text": SHORT_TEXT, "voice": "bench"}, host)
        head = raw(url, CALLER, request, timeout=600)
        if head.startswith(b"HTTP/1.1 200"):
            outcome = "200"
        elif head.startswith(b"HTTP/1.1 503") and b"retry-after" in head.lower():
            outcome = "503 + Retry-After"
        else:
            outcome = head[:12].decode(errors="replace") or "closed"
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def guesses(url: str, count: int) -> tuple[Counter[int], float]:
    statuses: Counter[int] = Counter()
    start = time.perf_counter()
    with httpx2.Client(base_url=url, headers={"origin": url}, timeout=60) as client:
        for i in range(count):
            statuses[client.post("/login", data={"token": f"guess-{i}"}).status_code] += 1
    return statuses, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="GLM-TTS checkpoint (default: a tiny random one)")
    parser.add_argument("--whisper-model", default="tiny-random")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--abandoned", type=int, default=20)
    parser.add_argument("--flood", type=int, default=150, help="sockets per slow-socket probe (cap: 100)")
    parser.add_argument("--calls", type=int, default=70)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--guesses", type=int, default=200)
    args = parser.parse_args(argv)

    settings = {"GLMTTS_MCP_TOKEN": TOKEN, "GLMTTS_MCP_MAX_QUEUE": str(args.max_queue)}
    with served_voice(args.checkpoint, args.whisper_model, args.device, settings, AUTH) as (url, client, checkpoint):
        print(f"checkpoint {checkpoint}, device {args.device}")
        abandoned(url, client, args.abandoned)

        print(f"\nslow sockets: {args.flood} sockets from {FLOODER} against a cap of 100, {args.calls} calls")
        print(f"{'flood':12}  {'answered':>8}  {'calls':>5}")
        for kind in ("dribbling", "idle"):
            answered, calls = slow_sockets(url, args.flood, args.calls, kind)
            print(f"{kind:12}  {answered:8d}  {calls:5d}")

        wait_idle(client)
        outcomes = concurrent_streams(url, args.streams)
        print(f"\nconcurrent streams: {args.streams} POST /api/tts at once, --max-queue {args.max_queue}")
        print(f"{'answer':20}  {'count':>5}")
        for outcome, count in sorted(outcomes.items()):
            print(f"{outcome:20}  {count:5d}")

        statuses, wall = guesses(url, args.guesses)
        print(f"\nsign-in guesses: {args.guesses} wrong tokens posted to /login in a row, {wall:.1f} s")
        print(f"{'status':8}  {'count':>5}")
        for status, count in sorted(statuses.items()):
            print(f"{status:<8}  {count:5d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
