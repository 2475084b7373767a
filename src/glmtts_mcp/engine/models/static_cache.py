"""The LLM's KV cache and its forward pass: fixed-size slots that many sequences decode in together.

A static cache (the gpt-fast recipe) is preallocated once, so every one-token step has the same shapes
and tensor addresses and the batch scheduler can replay its step as a CUDA graph. `SlotKVCache` holds
one slot (a batch row of the cache) per sequence, each with its own length; `slot_forward` runs the
Llama layers over any run of slots at each row's own positions. This is the only cached decoding path:
serving, the parity runners and the tests all go through the scheduler that drives it.
"""

from __future__ import annotations

from typing import cast

import torch
from transformers import LlamaForCausalLM, PretrainedConfig


class SlotKVCache:
    """Static KV buffers with one slot per sequence, for decoding many sequences in one forward pass.

    Every layer holds keys and values of shape [slots, kv_heads, positions, head_dim]. Each row has
    its own length, so a step writes each row at its own position and masks the keys past it. The
    buffers start zeroed (a masked key is multiplied by a zero weight; garbage could be NaN).
    """

    def __init__(self, model: LlamaForCausalLM, slots: int, positions: int) -> None:
        config = model.config
        weight = next(model.parameters())
        kv_heads = cast(int, config.num_key_value_heads)  # LlamaConfig fills a None from num_attention_heads
        shape = (slots, kv_heads, positions, _head_dim(config))
        self.slots, self.positions = slots, positions
        self.keys = [
            torch.zeros(shape, dtype=weight.dtype, device=weight.device) for _ in range(config.num_hidden_layers)
        ]
        self.values = [torch.zeros_like(k) for k in self.keys]

    @staticmethod
    def bytes_needed(config: PretrainedConfig, slots: int, positions: int, dtype: torch.dtype) -> int:
        """Bytes of the buffers for `slots` sequences of `positions` each."""
        per_position = 2 * config.num_hidden_layers * config.num_key_value_heads * _head_dim(config)
        return per_position * slots * positions * torch.empty((), dtype=dtype).element_size()

    def move_slot(self, source: int, target: int, length: int) -> None:
        """Copy the first `length` positions of slot `source` into slot `target` (keeps the live rows packed)."""
        for keys, values in zip(self.keys, self.values, strict=True):
            keys[target, :, :length] = keys[source, :, :length]
            values[target, :, :length] = values[source, :, :length]


def _head_dim(config: PretrainedConfig) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def slot_forward(
    model: LlamaForCausalLM,
    embeds: torch.Tensor,
    cache: SlotKVCache,
    first_slot: int,
    positions: torch.Tensor,
    keys_len: int | None = None,
) -> torch.Tensor:
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
        keys = cache.keys[index][first_slot : first_slot + n, :, :keys_len]
        values = cache.values[index][first_slot : first_slot + n, :, :keys_len]
        out = torch.nn.functional.scaled_dot_product_attention(
            q, keys, values, attn_mask=mask, scale=attention.scaling, enable_gqa=True
        )
        hidden = hidden + attention.o_proj(out.transpose(1, 2).reshape(n, t, -1))
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    return model.lm_head(body.norm(hidden[:, -1]))
