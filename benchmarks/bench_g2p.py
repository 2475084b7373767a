"""What phoneme-in and pronunciation dictionaries cost on the text path (CPU, no model).

Run: .venv/bin/python benchmarks/bench_g2p.py [--repeats N] [--entries N]
Rows: the one-off cost of jieba's in-memory prefix dictionary (first use in a process), then per text the
median time of the plain text path, of phoneme-in, and of the text path with a dictionary of N entries.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from glmtts_mcp.engine.frontend import g2p
from glmtts_mcp.engine.frontend.text_normalize import TextFrontend
from glmtts_mcp.engine.types import Pronunciation

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "text_phoneme" / "cases.json"


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--entries", type=int, default=2000, help="entries of the dictionary row")
    args = parser.parse_args()
    texts = [case["input"] for case in json.loads(GOLDEN.read_text(encoding="utf-8"))["cases"]]
    text = "".join(texts)
    frontend = TextFrontend()
    frontend.synthesis_segments(text)  # grammars loaded before timing

    start = time.perf_counter()
    g2p.preload()
    first_use_s = time.perf_counter() - start

    readings = tuple((f"词{i}", g2p.reading_tokens("ci2")) for i in range(args.entries))
    modes = {
        "text": Pronunciation(),
        "phoneme": Pronunciation(mode="phoneme"),
        f"text + {args.entries} entries": Pronunciation(readings=readings),
        f"phoneme + {args.entries} entries": Pronunciation(mode="phoneme", readings=readings),
    }
    print(f"jieba prefix dictionary, first use   {first_use_s:.2f} s")
    print()
    print(f"{len(text)} characters ({len(texts)} golden sentences), median of {args.repeats}")
    print(f"{'path':<34}{'ms':>10}")
    for name, wording in modes.items():
        ms = median_ms(lambda wording=wording: frontend.synthesis_segments(text, pronunciation=wording), args.repeats)
        print(f"{name:<34}{ms:>10.2f}")


if __name__ == "__main__":
    main()
