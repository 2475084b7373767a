"""The DiT velocity estimator of GLM-TTS's flow-matching decoder (upstream flow/dit.py, flow/modules.py).

Module and attribute names follow upstream's so that the official `estimator.*` state-dict keys load
unchanged. Offline, attention sees every frame (upstream's `is_causal=False`, what its inference script
uses); chunked streaming passes `block_causal_mask` (upstream's `is_causal=True` with a `block_pattern`).
Batch rows have equal length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

TEXT_POS_MAX = 4096  # upstream precomputes the text position table for 4096 frames and clamps beyond
TIME_FREQ_DIM = 256  # width of the sinusoidal timestep features fed to the time MLP
TIME_SCALE = 1000.0  # upstream multiplies t in [0, 1] by 1000 before the sinusoid
SPEAKER_DIM = 192  # CAMPPlus embedding width, hard-coded upstream
# Upstream's DiT.token_size_to_mel_size turns a block of tokens into mel frames at 12.5 tokens/s and
# 22050/256 frames/s, whatever the flow's own rates (the real flow runs at 25 tokens/s, 50 frames/s).
MASK_TOKEN_RATE = 12.5
MASK_FRAME_RATE = 22050 / 256


def rope_inv_freq(dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotary frequencies of x_transformers' RotaryEmbedding (what the checkpoint stores as inv_freq)."""
    return 1.0 / (theta ** (torch.arange(0, dim, 2).float() / dim))


def text_position_table(positions: torch.Tensor, dim: int, theta: float = 10000.0) -> torch.Tensor:
    """cat(cos, sin) position features that upstream ADDS to the token embeddings (not a rotation)."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, device=positions.device)[: dim // 2].float() / dim))
    angles = positions.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def rotate_interleaved(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...): x_transformers' pairwise rotate_half."""
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


class RotaryEmbedding(nn.Module):
    """Holds the checkpoint's `inv_freq` and turns sequence positions into interleaved angles."""

    inv_freq: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("inv_freq", rope_inv_freq(dim))

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> RotaryEmbedding:
        # Follow device moves but keep the frequencies in float32: in bf16 they would be off by
        # ~0.4 %, which turns late positions' angles wrong by whole radians.
        inv_freq = self.inv_freq
        super()._apply(fn, recurse)
        self.inv_freq = inv_freq.to(device=self.inv_freq.device)
        return self

    def angles(self, seq_len: int) -> torch.Tensor:
        """(seq_len, dim) float32 angles, each frequency repeated for its pair: f0 f0 f1 f1 ..."""
        positions = torch.arange(seq_len, device=self.inv_freq.device, dtype=torch.float32)
        freqs = positions[:, None] * self.inv_freq.float()[None, :]
        return freqs.repeat_interleave(2, dim=-1)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate the first angles.shape[-1] channels of x (B, T, C); the rest pass unchanged.

    Upstream applies this to the flat (B, T, heads*dim_head) projection before the head split, so
    only head 0 is rotated. The rotation runs in float32 (as x_transformers does) and casts back.
    """
    rot_dim = angles.shape[-1]
    head, rest = x[..., :rot_dim].float(), x[..., rot_dim:]
    rotated = head * angles.cos() + rotate_interleaved(head) * angles.sin()
    return torch.cat([rotated.to(x.dtype), rest], dim=-1)


class GRN(nn.Module):
    """ConvNeXt-V2 global response normalisation; the L2 norm runs over the time axis."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=1, keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    """Depthwise conv k7, LayerNorm, pointwise MLP with exact GELU and GRN, residual."""

    def __init__(self, dim: int, intermediate_dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.grn = GRN(intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x.transpose(1, 2)).transpose(1, 2)
        h = F.gelu(self.pwconv1(self.norm(h)))
        return x + self.pwconv2(self.grn(h))


class TextEmbedding(nn.Module):
    """Speech tokens at 25 Hz -> features at mel rate (nearest-neighbour on the ids, then ConvNeXt)."""

    def __init__(self, vocab_size: int, dim: int, conv_layers: int) -> None:
        super().__init__()
        self.text_embed = nn.Embedding(vocab_size + 1, dim)  # row vocab_size is upstream's filler id
        self.text_blocks = nn.Sequential(*[ConvNeXtV2Block(dim, dim * 2) for _ in range(conv_layers)])

    def forward(self, tokens: torch.Tensor, seq_len: int) -> torch.Tensor:
        # Ids go through float32 as upstream's F.interpolate does (exact below 2**24), so the
        # frame -> token index is floor(i * n_tokens / seq_len) computed in float32, like torch's.
        ids = F.interpolate(tokens[:, None].float(), size=seq_len, mode="nearest")[:, 0].long()
        hidden = self.text_embed(ids)
        if len(self.text_blocks) == 0:  # upstream adds no positions without the ConvNeXt stack
            return hidden
        positions = torch.arange(seq_len, device=tokens.device).clamp(max=TEXT_POS_MAX - 1)
        hidden = hidden + text_position_table(positions, hidden.shape[-1]).to(hidden.dtype)
        return self.text_blocks(hidden)


class ConvPositionEmbedding(nn.Module):
    """Two grouped convolutions (k31, 16 groups) with Mish; added residually to the input projection."""

    def __init__(self, dim: int, kernel_size: int = 31, groups: int = 16) -> None:
        super().__init__()
        self.conv1d = nn.Sequential(
            nn.Conv1d(dim, dim, kernel_size, groups=groups, padding=kernel_size // 2),
            nn.Mish(),
            nn.Conv1d(dim, dim, kernel_size, groups=groups, padding=kernel_size // 2),
            nn.Mish(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1d(x.transpose(1, 2)).transpose(1, 2)


class EmbeddingConcater(nn.Module):
    """Project cat(noisy mel, condition, token features) to the model width, plus conv positions."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)
        self.conv_pos_embed = ConvPositionEmbedding(out_dim)

    def forward(self, x: torch.Tensor, condition: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = self.proj(torch.cat([x, condition, text], dim=-1))
        return self.conv_pos_embed(h) + h


def timestep_features(t: torch.Tensor, dim: int = TIME_FREQ_DIM) -> torch.Tensor:
    """Sinusoid of 1000*t: cat(sin, cos) over dim/2 log-spaced frequencies, in float32 or wider."""
    half = dim // 2
    step = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, device=t.device).float() * -step)
    angles = TIME_SCALE * t.to(torch.promote_types(t.dtype, torch.float32))[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of t through Linear-SiLU-Linear."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.time_mlp = nn.Sequential(nn.Linear(TIME_FREQ_DIM, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        weight = cast(nn.Linear, self.time_mlp[0]).weight
        return self.time_mlp(timestep_features(t).to(weight.dtype))


class AdaLayerNormZero(nn.Module):
    """Block modulation; the linear's output splits as shift, scale, gate (attention) then the MLP's."""

    def __init__(self, dim: int, cond_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(cond_dim, dim * 6)

    def forward(self, cond: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(m[:, None, :] for m in self.linear(F.silu(cond)).chunk(6, dim=-1))


class AdaLayerNormZeroFinal(nn.Module):
    """Final modulation; NOTE the split order is (scale, shift), the reverse of the blocks'."""

    def __init__(self, dim: int, cond_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(cond_dim, dim * 2)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(cond)).chunk(2, dim=-1)
        return layer_norm(x) * (1 + scale[:, None, :]) + shift[:, None, :]


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm without affine parameters, eps 1e-6 (every norm inside the DiT blocks)."""
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


class Attention(nn.Module):
    """Self-attention with RoPE on the flat q/k (head 0 only, as upstream) and full visibility."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])  # upstream's index 1 is a parameterless dropout

    def forward(self, x: torch.Tensor, rope_angles: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q = apply_rope(self.to_q(x), rope_angles)
        k = apply_rope(self.to_k(x), rope_angles)
        v = self.to_v(x)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out[0](out.transpose(1, 2).flatten(-2))


class FeedForward(nn.Module):
    """Linear, tanh-approximated GELU, Linear; laid out so the keys read ff.0.0 and ff.2 as upstream's."""

    def __init__(self, dim: int, mult: int) -> None:
        super().__init__()
        inner = dim * mult
        # Index 1 is upstream's dropout layer (inactive at inference, no parameters).
        self.ff = nn.Sequential(
            nn.Sequential(nn.Linear(dim, inner), nn.GELU(approximate="tanh")), nn.Identity(), nn.Linear(inner, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)


class DiTBlock(nn.Module):
    """AdaLN-Zero transformer block: gated attention and gated MLP, both modulated by the condition."""

    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: int, cond_dim: int) -> None:
        super().__init__()
        self.attn_norm = AdaLayerNormZero(dim, cond_dim)
        self.attn = Attention(dim, heads, dim_head)
        self.ff = FeedForward(dim, ff_mult)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor, rope_angles: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.attn_norm(cond)
        x = x + gate_msa * self.attn(layer_norm(x) * (1 + scale_msa) + shift_msa, rope_angles, mask)
        return x + gate_mlp * self.ff(layer_norm(x) * (1 + scale_mlp) + shift_mlp)


class DiT(nn.Module):
    """Predicts the flow velocity of the noisy mel given condition mel, token features, t and speaker.

    With `speaker_adaln` the modulation input is cat(time embedding, L2-normalised speaker
    embedding), time first, for every block and for the final norm.
    """

    def __init__(
        self,
        *,
        trans_dim: int,
        depth: int,
        heads: int,
        dim_head: int,
        ff_mult: int,
        mel_dim: int,
        text_vocab_size: int,
        text_emb_dim: int,
        conv_layers: int,
        condition_dim: int,
        speaker_adaln: bool,
    ) -> None:
        super().__init__()
        cond_dim = trans_dim + (SPEAKER_DIM if speaker_adaln else 0)
        self.speaker_adaln = speaker_adaln
        self.time_embed = TimestepEmbedding(trans_dim)
        self.text_emb_layer = TextEmbedding(text_vocab_size, text_emb_dim, conv_layers)
        self.emb_concator = EmbeddingConcater(mel_dim + condition_dim + text_emb_dim, trans_dim)
        self.rotary_embed = RotaryEmbedding(dim_head)
        self.transformer_blocks = nn.ModuleList(
            [DiTBlock(trans_dim, heads, dim_head, ff_mult, cond_dim) for _ in range(depth)]
        )
        self.norm_out = AdaLayerNormZeroFinal(trans_dim, cond_dim)
        self.proj_out = nn.Linear(trans_dim, mel_dim)

    def forward(
        self,
        x: torch.Tensor,
        condition: torch.Tensor,
        text_features: torch.Tensor,
        t: torch.Tensor,
        speaker: torch.Tensor | None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x, condition: (B, T, *); text_features: TextEmbedding output (B, T, E); t: (1,) float32.

        speaker: (B, 192) L2-normalised embedding, used only with speaker_adaln. mask: (T, T) bool,
        True where a frame may attend (`block_causal_mask`); None: every frame sees every frame.
        """
        cond = self.time_embed(t).expand(x.shape[0], -1)
        if self.speaker_adaln:
            if speaker is None:
                raise ValueError("this DiT conditions its norms on the speaker: pass the speaker embedding")
            cond = torch.cat([cond, speaker], dim=-1)
        h = self.emb_concator(x, condition, text_features)
        rope_angles = self.rotary_embed.angles(x.shape[1])
        for block in self.transformer_blocks:
            h = block(h, cond, rope_angles, mask)
        return self.proj_out(self.norm_out(h, cond))


def block_mel_frames(tokens: int) -> int:
    """Mel frames of a block of `tokens` in upstream's mask (DiT.token_size_to_mel_size): 25 -> 172."""
    return int(tokens / MASK_TOKEN_RATE * MASK_FRAME_RATE)


def block_causal_mask(block_pattern: Sequence[int], length: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, length) bool attention mask of upstream's streaming flow (utils/block_mask_util.create).

    `block_pattern` is in tokens (upstream: the prompt's, then the chunk sizes; the last size repeats).
    A frame sees every earlier block and its own; a frame with fewer than half its block ahead of it
    (two thirds for blocks over 172 frames) also sees that many frames into the next block.
    """
    sizes = [block_mel_frames(n) for n in block_pattern]
    if not sizes or sizes[-1] <= 0:
        raise ValueError(f"block_pattern {list(block_pattern)} must end with a block of at least one mel frame")
    while sum(sizes) < length:
        sizes.append(sizes[-1])
    size = torch.tensor(sizes)
    end = torch.cumsum(size, 0)
    frame = torch.arange(length)
    block = torch.searchsorted(end, frame, right=True)  # the first block ending after the frame
    size_of, end_of = size[block], end[block]
    ahead = end_of - 1 - frame  # frames after this one in its block
    wanted = torch.where(size_of <= 172, size_of // 2, (size_of.double() / 1.5).floor().long())
    visible = end_of + (wanted - ahead).clamp(min=0)
    return (torch.arange(length)[None, :] < visible[:, None]).to(device)
