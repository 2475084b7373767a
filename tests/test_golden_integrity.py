"""The golden cases in tests/golden are upstream's outputs byte for byte: every listed file is present and
unchanged, and no case file is unlisted."""

from __future__ import annotations

import hashlib
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden"
UNLISTED = {"sha256sums.txt", "PROVENANCE.md"}


def test_every_golden_file_matches_its_recorded_digest() -> None:
    listed = {}
    for line in (GOLDEN / "sha256sums.txt").read_text(encoding="utf-8").splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name.removeprefix("./")] = digest
    present = {p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*") if p.is_file()} - UNLISTED
    assert present == set(listed), f"unlisted or missing golden files: {sorted(present ^ set(listed))}"
    changed = [
        name for name, digest in listed.items() if hashlib.sha256((GOLDEN / name).read_bytes()).hexdigest() != digest
    ]
    assert not changed, f"golden files differ from upstream's recorded outputs: {changed}"
    assert len(listed) > 30  # the 13 module cases, not an empty list
