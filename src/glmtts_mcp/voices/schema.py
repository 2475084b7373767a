"""The feature schema as plain data, and checks of tensors and safetensors headers against it.

The library knows tensors, not models: the engine hands over its schema (name -> dtype, ndim) and
a version number, and everything stored or imported is checked against it.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

# torch dtype name -> safetensors header code.
_SAFETENSORS_CODES: dict[str, str] = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}
# safetensors header code -> numpy dtype, for reading single tensors straight from a file.
_NUMPY_DTYPES: dict[str, str] = {
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "F32": "<f4",
    "F64": "<f8",
}
MAX_HEADER_BYTES = 1 << 20
MAX_READ_BYTES = 16 << 20  # of one tensor read on its own (ids: a 30 s clip has a few KB)


@dataclass(frozen=True)
class FeatureSchema:
    """What a voice's features must look like: `tensors` maps name -> (dtype name, ndim)."""

    version: int
    tensors: Mapping[str, tuple[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.version, int) or self.version < 0:
            raise ValueError(f"feature schema version must be a non-negative int, got {self.version!r}")
        if not self.tensors:
            raise ValueError("feature schema lists no tensors")
        for name, (dtype, ndim) in self.tensors.items():
            if dtype not in _SAFETENSORS_CODES:
                raise ValueError(f"feature schema: tensor {name!r} has unsupported dtype {dtype!r}")
            if not isinstance(ndim, int) or ndim < 0:
                raise ValueError(f"feature schema: tensor {name!r} has invalid ndim {ndim!r}")

    def problem_with(self, tensors: Mapping[str, torch.Tensor]) -> str | None:
        """Why `tensors` break the schema, or None when they fit."""
        missing = sorted(set(self.tensors) - set(tensors))
        extra = sorted(set(tensors) - set(self.tensors))
        if missing or extra:
            return f"tensor names differ from the schema (missing {missing}, unexpected {extra})"
        for name, (dtype, ndim) in self.tensors.items():
            tensor = tensors[name]
            if not isinstance(tensor, torch.Tensor):
                return f"{name} is a {type(tensor).__name__}, not a tensor"
            got = str(tensor.dtype).removeprefix("torch.")
            if got != dtype or tensor.dim() != ndim:
                return f"{name} is {got} with {tensor.dim()} dims; the schema needs {dtype} with {ndim}"
            if tensor.numel() == 0:
                return f"{name} is empty"
            if tensor.is_floating_point() and not _all_finite(tensor):
                return f"{name} holds NaN or infinite values"
        return None

    def header_problem(self, header: Mapping[str, Any]) -> str | None:
        """Like `problem_with`, from a safetensors header alone (cheap: no tensor data read)."""
        entries = {k: v for k, v in header.items() if k != "__metadata__"}
        missing = sorted(set(self.tensors) - set(entries))
        extra = sorted(set(entries) - set(self.tensors))
        if missing or extra:
            return f"tensor names differ from the schema (missing {missing}, unexpected {extra})"
        for name, (dtype, ndim) in self.tensors.items():
            entry = entries[name]
            if not isinstance(entry, dict) or not isinstance(entry.get("shape"), list):
                return f"{name} has a malformed header entry"
            if entry.get("dtype") != _SAFETENSORS_CODES[dtype] or len(entry["shape"]) != ndim:
                return (
                    f"{name} is {entry.get('dtype')} with {len(entry['shape'])} dims; "
                    f"the schema needs {_SAFETENSORS_CODES[dtype]} with {ndim}"
                )
        return None


def _all_finite(tensor: torch.Tensor) -> bool:
    if tensor.device.type == "cpu" and tensor.dtype != torch.bfloat16:
        return bool(np.isfinite(tensor.detach().numpy()).all())  # single-threaded: no pool wake-ups
    return bool(torch.isfinite(tensor).all())


def parse_safetensors_header(data: bytes) -> tuple[dict[str, Any], str | None]:
    """The header of a safetensors file (its first bytes suffice) and a problem, if any."""
    if len(data) < 8:
        return {}, "features file is shorter than a safetensors header"
    (length,) = struct.unpack("<Q", data[:8])
    if length > MAX_HEADER_BYTES or 8 + length > len(data):
        return {}, "features file has a truncated or oversized safetensors header"
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}, "features file has an unreadable safetensors header"
    if not isinstance(header, dict):
        return {}, "features file has a malformed safetensors header"
    return header, None


def tensors_nbytes(tensors: Mapping[str, torch.Tensor]) -> int:
    """Bytes held by the tensors' elements (what the memory tiers budget)."""
    return sum(t.numel() * t.element_size() for t in tensors.values())


def read_safetensors_header(path: str | os.PathLike[str]) -> tuple[dict[str, Any], str | None]:
    """Read just the header of a safetensors file (no symlinks followed) and check its size adds up."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        return {}, f"features file cannot be opened ({exc.strerror})"
    try:
        size = os.fstat(fd).st_size
        head = os.read(fd, 8)
        if len(head) == 8:
            (length,) = struct.unpack("<Q", head)
            head += os.read(fd, min(length, MAX_HEADER_BYTES + 1))
    finally:
        os.close(fd)
    header, problem = parse_safetensors_header(head)
    if problem:
        return header, problem
    ends = [
        entry["data_offsets"][1]
        for key, entry in header.items()
        if key != "__metadata__"
        if isinstance(entry, dict) and isinstance(entry.get("data_offsets"), list)
    ]
    expected = len(head) + (max(ends) if ends else 0)
    if expected != size:
        return header, f"features file is {size} bytes but its header describes {expected} (truncated or padded)"
    return header, None


def header_shapes(header: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor a (schema-checked) safetensors header describes."""
    return {
        name: tuple(int(n) for n in entry["shape"])
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict) and isinstance(entry.get("shape"), list)
    }


def _read_at(fd: int, count: int, offset: int) -> bytes:
    """Up to `count` bytes at `offset` (os.pread is not on every platform)."""
    os.lseek(fd, offset, os.SEEK_SET)
    chunks: list[bytes] = []
    while count > 0 and (chunk := os.read(fd, min(count, 1 << 20))):
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def read_safetensors_arrays(
    path: str | os.PathLike[str], header: Mapping[str, Any], names: list[str]
) -> tuple[dict[str, np.ndarray], str | None]:
    """Just the named tensors of a safetensors file whose `header` was checked (a few KB of ids, not the
    whole file), and a problem, if any. No symlinks followed."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        return {}, f"features file cannot be opened ({exc.strerror})"
    arrays: dict[str, np.ndarray] = {}
    try:
        (length,) = struct.unpack("<Q", _read_at(fd, 8, 0))
        for name in names:
            entry = header.get(name)
            if not isinstance(entry, dict) or entry.get("dtype") not in _NUMPY_DTYPES:
                return arrays, f"{name} has a malformed header entry"
            start, end = (int(n) for n in entry["data_offsets"])
            if not 0 <= end - start <= MAX_READ_BYTES:
                return arrays, f"{name} claims {end - start} bytes of data (at most {MAX_READ_BYTES} are read)"
            dtype = np.dtype(_NUMPY_DTYPES[entry["dtype"]])
            data = _read_at(fd, end - start, 8 + length + start) if end > start else b""
            if len(data) != end - start or len(data) % dtype.itemsize:
                return arrays, f"{name}'s data is truncated"
            arrays[name] = np.frombuffer(data, dtype=dtype)
    except (OSError, ValueError, TypeError, struct.error) as exc:
        return arrays, f"features file cannot be read ({exc})"
    finally:
        os.close(fd)
    return arrays, None
