"""A byte-bounded LRU: the memory and device tiers of loaded features, and the shared value they hold.

Eviction only drops a copy: the voice stays on disk and the next load reads it again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from types import MappingProxyType
from typing import Generic, TypeVar

import torch

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedTensors:
    """Named tensors handed to every caller as they are, without a copy per hit.

    Nobody may write into them. `intact` tells whether anyone did: every in-place torch op (through
    the tensor or any view of it) bumps the tensor's version counter, so a tier checks the counters
    on each hit and drops an entry a caller wrote into instead of serving it again. The mapping
    itself is read-only. (Writes through `.numpy()` or a raw pointer bypass the counter.)
    """

    __slots__ = ("_versions", "tensors")

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.tensors: Mapping[str, torch.Tensor] = MappingProxyType(dict(tensors))
        self._versions = {name: t._version for name, t in self.tensors.items()}

    def intact(self) -> bool:
        """Whether no tensor was written into since this entry was made."""
        return all(t._version == self._versions[name] for name, t in self.tensors.items())


class ByteLRU(Generic[K, V]):
    """Least-recently-used entries go first once the byte total passes `capacity_bytes`."""

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"cache capacity must be >= 0 bytes, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value, now most recently used; None on a miss."""
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                return None
            self._entries.move_to_end(key)
            return item[0]

    def put(self, key: K, value: V, nbytes: int) -> int:
        """Insert (or refresh) an entry; returns how many entries were evicted to make room.

        An entry larger than the whole capacity is not kept (0 capacity turns the tier off).
        """
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if nbytes > self.capacity_bytes:
                return 0
            evicted = 0
            while self._entries and self._bytes + nbytes > self.capacity_bytes:
                _, (_, size) = self._entries.popitem(last=False)
                self._bytes -= size
                evicted += 1
            self._entries[key] = (value, nbytes)
            self._bytes += nbytes
            return evicted

    def discard_where(self, predicate: Callable[[K], bool]) -> int:
        """Drop every entry whose key matches (a deleted or changed voice); returns the count."""
        with self._lock:
            doomed = [key for key in self._entries if predicate(key)]
            for key in doomed:
                self._bytes -= self._entries.pop(key)[1]
            return len(doomed)

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes currently held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)
