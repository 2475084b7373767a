"""How the LLM runs its forward passes: a growing KV cache (the reference) or a fixed-size one (fast).

`DynamicDecoder` is what upstream runs: transformers' DynamicCache grows by one entry per step.
`StaticDecoder` is the gpt-fast recipe: the cache is preallocated for the whole generation, so every
one-token step has the same shapes and tensor addresses, and `torch.compile(mode="reduce-overhead")`
can replay it as a CUDA graph. Its attention runs over the whole capacity with the unwritten tail
masked out; that changes the reduction length, so logits agree with the dynamic path to float
rounding (a few 1e-6 in fp32), not bit for bit.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import torch
from transformers import Cache, DynamicCache, LlamaForCausalLM, StaticCache

logger = logging.getLogger(__name__)

# transformers 5.x renamed the forward's `past_key_values` to `cache`; an unknown name would be
# swallowed by **kwargs and silently decode without the cache, so pick the one this version has.
_CACHE_KWARG = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"

CAPACITY_STEP = 1024  # static caches grow in these steps, so compiled graphs see few distinct shapes


def last_logits(model: LlamaForCausalLM, embeds: torch.Tensor, cache: Cache) -> torch.Tensor:
    """Logits [vocab] after `embeds` [1, n, hidden], appended to `cache`."""
    out = model(inputs_embeds=embeds, use_cache=True, logits_to_keep=1, **{_CACHE_KWARG: cache})
    return out.logits[0, -1]


class Decoder(Protocol):
    """A KV cache policy: `cache(capacity)` opens one generation's cache, `forward` feeds it."""

    def cache(self, capacity: int) -> AbstractContextManager[Cache]: ...

    def forward(self, embeds: torch.Tensor, cache: Cache) -> torch.Tensor: ...


class DynamicDecoder:
    """Upstream's decoding: a cache that grows by concatenation (shapes change every step)."""

    def __init__(self, model: LlamaForCausalLM) -> None:
        self.model = model

    @contextmanager
    def cache(self, capacity: int) -> Iterator[Cache]:
        yield DynamicCache(config=self.model.config)

    def forward(self, embeds: torch.Tensor, cache: Cache) -> torch.Tensor:
        return last_logits(self.model, embeds, cache)


class StaticDecoder:
    """Fixed-size caches reused across generations; the one-token step optionally compiled.

    The prefill (variable length) always runs eagerly. With `compile=True` the one-token step goes
    through `torch.compile(fullgraph=True)`, in mode "reduce-overhead" (CUDA graphs) on CUDA. Caches
    are kept in a pool and reused, because a CUDA graph is bound to its tensors' addresses; each
    generation takes one cache for itself, so concurrent generations never share state.
    """

    def __init__(self, model: LlamaForCausalLM, *, compile: bool = False, backend: str = "inductor") -> None:
        self.model = model
        self.compiled = compile
        self._free: list[tuple[int, StaticCache]] = []  # (capacity, cache) not in use
        self._lock = threading.Lock()
        on_cuda = next(model.parameters()).device.type == "cuda"
        mode = "reduce-overhead" if on_cuda and backend == "inductor" else None
        self._step = torch.compile(last_logits, fullgraph=True, backend=backend, mode=mode) if compile else None

    @contextmanager
    def cache(self, capacity: int) -> Iterator[Cache]:
        """An empty cache for at least `capacity` positions, returned to the pool afterwards."""
        with self._lock:
            fitting = [entry for entry in self._free if entry[0] >= capacity]
            entry = min(fitting, key=lambda e: e[0]) if fitting else None
            if entry is not None:
                self._free.remove(entry)
            elif self._free:
                self._free.pop(0)  # too small for this text: let a larger one replace it
        if entry is None:
            size = -(-capacity // CAPACITY_STEP) * CAPACITY_STEP
            logger.debug("allocating a static KV cache of %d positions", size)
            entry = (size, StaticCache(config=self.model.config, max_cache_len=size))
        else:
            entry[1].reset()
        try:
            yield entry[1]
        finally:
            with self._lock:
                self._free.append(entry)

    def forward(self, embeds: torch.Tensor, cache: Cache) -> torch.Tensor:
        if embeds.shape[1] != 1 or self._step is None:  # the prefill's length varies: eager
            return last_logits(self.model, embeds, cache)
        if embeds.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are consumed by now
        # a CUDA graph's output buffer is overwritten by its next replay: hand out a copy
        return self._step(self.model, embeds, cache).clone()
