"""Hostile voice archives as issue 21 found them accepted: each edit comes with every sha256, size and the
manifest made to match again, so only the checks of what the features and meta.json hold can refuse it."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

Files = dict[str, bytes]


def members(archive: bytes) -> Files:
    """The members of an archive, by name."""
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        return {name: opened.read(name) for name in opened.namelist()}


def forge(files: Files, *, features: bytes | None = None, **meta_changes: object) -> bytes:
    """An archive of `files` with other features and meta.json values, its hashes and manifest consistent."""
    files = dict(files)
    if features is not None:
        files["features.safetensors"] = features
    meta = json.loads(files["meta.json"])
    meta.update(meta_changes)
    meta["features_sha256"] = hashlib.sha256(files["features.safetensors"]).hexdigest()
    meta["features_bytes"] = len(files["features.safetensors"])
    files["meta.json"] = json.dumps(meta).encode()
    manifest = json.loads(files["manifest.json"])
    manifest["files"] = {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, data in files.items()
        if name != "manifest.json"
    }
    files["manifest.json"] = json.dumps(manifest).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def edited_features(features: bytes, edit: Callable[[dict[str, torch.Tensor]], None]) -> bytes:
    """`features` (safetensors bytes) after `edit` changed the tensors in place."""
    tensors = {name: tensor.clone() for name, tensor in load_tensors(features).items()}
    edit(tensors)
    return save_tensors(tensors)


def _set(name: str, value: torch.Tensor) -> Callable[[dict[str, torch.Tensor]], None]:
    def edit(tensors: dict[str, torch.Tensor]) -> None:
        tensors[name] = value

    return edit


def _poke(name: str, value: int) -> Callable[[dict[str, torch.Tensor]], None]:
    def edit(tensors: dict[str, torch.Tensor]) -> None:
        tensors[name][0] = value

    return edit


# name -> (edit of the tensors, what the refusal must say)
FEATURE_EDITS: dict[str, tuple[Callable[[dict[str, torch.Tensor]], None], str]] = {
    "speech ids of 10^12": (_poke("prompt_speech_ids", 10**12), "prompt_speech_ids holds ids from"),
    "negative text ids": (_poke("prompt_text_ids", -5), "prompt_text_ids holds ids from -5"),
    "100000x80 mel": (_set("prompt_mel", torch.zeros(100_000, 80)), "prompt_mel has 100000 frames"),
    "150x7 mel": (_set("prompt_mel", torch.zeros(150, 7)), "prompt_mel has shape [150, 7]"),
    "3-element speaker embedding": (_set("speaker_embedding", torch.zeros(3)), "speaker_embedding has shape [3]"),
}

# name -> (meta.json changes, what the refusal must say)
META_EDITS: dict[str, tuple[dict[str, object], str]] = {
    "duration_s of -1e308": ({"duration_s": -1e308}, "duration_s"),
    "created_at 9999-12-31": ({"created_at": "9999-12-31T00:00:00Z"}, "created_at"),
}

SWAPPED_NEEDLE = "not extracted from its own reference audio"


def hostile_archives(files: Files, other_voice: Files) -> dict[str, tuple[bytes, str]]:
    """Every hostile archive of the issue, made from one voice's archive members (and another voice's)."""
    cases = {
        name: (forge(files, features=edited_features(files["features.safetensors"], edit)), needle)
        for name, (edit, needle) in FEATURE_EDITS.items()
    }
    cases |= {name: (forge(files, **changes), needle) for name, (changes, needle) in META_EDITS.items()}
    cases["another voice's features"] = (forge(files, features=other_voice["features.safetensors"]), SWAPPED_NEEDLE)
    return cases
