"""`manifest.json`: every checkpoint file's size and sha256, so a damaged file is named before a model reads it.

`glmtts-mcp download` writes it; loading checks the sizes (cheap), `verify_checkpoint(full=True)` the hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from glmtts_mcp.engine.checkpoint import layout as ck
from glmtts_mcp.engine.checkpoint.layout import CheckpointError

MANIFEST = "manifest.json"


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def _checkpoint_files(directory: Path) -> list[str]:
    """Every weight and config file of a complete checkpoint, as relative paths (twins included)."""
    rels: list[str] = []
    for rel in (*ck.REQUIRED_FILES, *ck.llm_weight_files(directory)):
        path = directory / rel
        if path.is_file():
            rels.append(rel)
        if path.suffix == ".pt" and ck.twin(path).is_file():
            rels.append(str(Path(rel).with_suffix(".safetensors")))
    if (directory / ck.LLM_INDEX).is_file():
        rels.append(ck.LLM_INDEX)
    return sorted(set(rels))


def write_manifest(directory: Path, *, revision: str | None = None) -> Path:
    """Hash every file of the checkpoint into manifest.json (after a download or conversion)."""
    directory = Path(directory)
    ck.validate_checkpoint(directory)
    files = {}
    for rel in _checkpoint_files(directory):
        path = directory / rel
        files[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    manifest = {"source": ck.HF_REPO, "revision": revision, "files": files}
    target = directory / MANIFEST
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, target)
    return target


def verify_checkpoint(directory: Path, *, full: bool = True) -> None:
    """Compare every file with manifest.json: sizes always, sha256 when `full`. Raises naming each bad file."""
    directory = Path(directory)
    ck.validate_checkpoint(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(
            f"no {MANIFEST} under {directory}, so its files cannot be verified: "
            "run `glmtts-mcp download` (it records hashes) or skip verification"
        )
    recorded = ck.read_json(manifest_path).get("files", {})
    problems: list[str] = []
    for rel, facts in sorted(recorded.items()):
        path = directory / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif path.stat().st_size != facts["size"]:
            problems.append(f"{rel} has {path.stat().st_size} bytes, expected {facts['size']}")
        elif full and sha256_file(path) != facts["sha256"]:
            problems.append(f"{rel} has the wrong sha256 (corrupted)")
    if problems:
        raise CheckpointError(
            f"checkpoint under {directory} failed verification: {'; '.join(problems)}. "
            "Run `glmtts-mcp download` again to repair it"
        )
