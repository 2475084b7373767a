"""A voice's key on the replicas: the sha256 the voice library records as `features_sha256`.

The library hashes the safetensors file it writes from the CPU tensors; hashing the same serialization
here gives a voice extracted on a replica the key the library will hand back with it, so the replica
that made it holds it under that key. A voice that comes with its stored digest is never hashed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch
from safetensors.torch import save


def features_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 of the tensors as a safetensors file (about 160 KB: well under a millisecond)."""
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    return hashlib.sha256(save(cpu)).hexdigest()
