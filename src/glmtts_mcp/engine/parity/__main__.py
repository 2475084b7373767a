"""`python -m glmtts_mcp.engine.parity DIR`: one row per case, non-zero exit on any failure."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from glmtts_mcp.engine.parity import find_cases, load_runners, run_case


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glmtts_mcp.engine.parity")
    parser.add_argument("dir", type=Path, help="folder holding case folders (the format of tests/golden)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cases = find_cases(args.dir)
    if not cases:
        print(f"no case.json under {args.dir}", file=sys.stderr)
        return 2
    runners = load_runners()
    failed = 0
    print(f"{'kind':<22} {'folder':<26} {'max_abs':>10} {'max_rel':>10}  {'tolerance':<34} result")
    for folder in cases:
        r = run_case(folder, runners)
        failed += not r.passed
        print(
            f"{r.kind:<22} {r.folder:<26} {r.max_abs:>10.3g} {r.max_rel:>10.3g}  {r.tolerance:<34} "
            f"{'pass' if r.passed else 'FAIL'}{'  ' + r.detail if r.detail else ''}",
            flush=True,
        )
    print(f"{len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
