"""How the LLM runs its forward passes: a growing KV cache (the reference), a fixed-size one (fast),
or fixed-size slots that many sequences decode in together (`SlotKVCache`, `slot_forward`: batching).

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


class SlotKVCache:
    """Static KV buffers with one slot per sequence, for decoding many sequences in one forward pass.

    Every layer holds keys and values of shape [slots, kv_heads, positions, head_dim]. Each row has
    its own length, so a step writes each row at its own position and masks the keys past it. The
    buffers start zeroed (a masked key is multiplied by a zero weight; garbage could be NaN).
    """

    def __init__(self, model: LlamaForCausalLM, slots: int, positions: int) -> None:
        config = model.config
        weight = next(model.parameters())
        shape = (slots, config.num_key_value_heads, positions, _head_dim(config))
        self.slots, self.positions = slots, positions
        self.keys = [torch.zeros(shape, dtype=weight.dtype, device=weight.device)
                     for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros_like(k) for k in self.keys]

    @staticmethod
    def bytes_needed(config: object, slots: int, positions: int, dtype: torch.dtype) -> int:
        """Bytes of the buffers for `slots` sequences of `positions` each."""
        per_position = 2 * config.num_hidden_layers * config.num_key_value_heads * _head_dim(config)  # type: ignore[attr-defined]
        return per_position * slots * positions * torch.empty((), dtype=dtype).element_size()

    def move_slot(self, source: int, target: int, length: int) -> None:
        """Copy the first `length` positions of slot `source` into slot `target` (keeps the live rows packed)."""
        for keys, values in zip(self.keys, self.values, strict=True):
            keys[target, :, :length] = keys[source, :, :length]
            values[target, :, :length] = values[source, :, :length]


def _head_dim(config: object) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads  # type: ignore[attr-defined]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def slot_forward(model: LlamaForCausalLM, embeds: torch.Tensor, cache: SlotKVCache, first_slot: int,
                 positions: torch.Tensor, keys_len: int | None = None) -> torch.Tensor:
    """Logits [n, vocab] after the last of `embeds` [n, t, hidden] for cache rows first_slot..first_slot+n-1.

    `positions` [n, t] are each row's own positions (a prefill chunk, or one decode step per row);
    the keys are written there and every query sees the keys at or before its position. Attention
    runs over the first `keys_len` positions (default: the largest position + 1). The Llama layer
    math of transformers (RMSNorm, RoPE, grouped-query SDPA, SwiGLU MLP) on the model's own modules.
    """
    n, t, _ = embeds.shape
    keys_len = int(positions.max()) + 1 if keys_len is None else keys_len
    rows = torch.arange(first_slot, first_slot + n, device=embeds.device)[:, None]
    visible = torch.arange(keys_len, device=embeds.device) <= positions[..., None]  # [n, t, keys]
    mask = visible[:, None]  # [n, 1, t, keys]
    body = model.model
    cos, sin = body.rotary_emb(embeds, position_ids=positions)
    cos, sin = cos[:, None], sin[:, None]
    hidden = embeds
    for index, layer in enumerate(body.layers[: model.config.num_hidden_layers]):
        attention = layer.self_attn
        x = layer.input_layernorm(hidden)
        shape = (n, t, -1, attention.head_dim)
        q = attention.q_proj(x).view(shape).transpose(1, 2)
        k = attention.k_proj(x).view(shape).transpose(1, 2)
        v = attention.v_proj(x).view(shape).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        cache.keys[index][rows, :, positions] = k.transpose(1, 2)  # [n, t, kv_heads, head_dim] at each row's positions
        cache.values[index][rows, :, positions] = v.transpose(1, 2)
        keys = cache.keys[index][first_slot:first_slot + n, :, :keys_len]
        values = cache.values[index][first_slot:first_slot + n, :, :keys_len]
        out = torch.nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=mask,
                                                               scale=attention.scaling, enable_gqa=True)
        hidden = hidden + attention.o_proj(out.transpose(1, 2).reshape(n, t, -1))
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    return model.lm_head(body.norm(hidden[:, -1]))
