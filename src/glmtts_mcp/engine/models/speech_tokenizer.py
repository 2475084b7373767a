"""Speech tokenizer: 16 kHz audio -> discrete speech tokens (25 Hz with the official checkpoint).

Clean-room counterpart of upstream's `SpeechTokenizer.extract_speech_token` (cosyvoice/cli/frontend.py)
over `WhisperVQEncoder` (utils/whisper_models/modeling_whisper.py) as `yaml_util.load_speech_tokenizer`
builds it. The loader ignores part of config.json on purpose, as upstream does: it always builds the
encoder-only model (`quantize_position` layers, no final layer_norm), so the last built layer is the
quantization layer. The computation:

    log-mel -> conv1 -> GELU -> conv2 (stride 2) -> GELU -> + embed_positions
    -> pre-LN encoder layers under a block-causal attention mask (and the key-padding mask)
    -> average (or max) pooling after layer `pooling_position` (later layers run at the pooled rate)
    -> nearest codebook entry after layer `quantize_position` = the token id

Audio is cut into 30 s segments; segments of one call are padded to a common length (as upstream's
batch) and the tokens of real (unpadded) positions are concatenated.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import WhisperFeatureExtractor

from glmtts_mcp.engine.frontend.whisper_features import WhisperLogMel, feature_extractor
from glmtts_mcp.engine.types import EngineError

logger = logging.getLogger(__name__)

# Upstream cuts audio into 30 s segments of 16 kHz samples before feature extraction.
SAMPLE_RATE = 16000
SEGMENT_SAMPLES = 30 * SAMPLE_RATE
# Upstream feeds at most this many segments to the extractor at once; each group is padded to its longest.
SEGMENTS_PER_BATCH = 128

_CHECKPOINT_PREFIX = "model.encoder."
# Training-only buffers present when quantize_ema_decay is set; never read at inference.
_EMA_KEYS = ("ema_count", "ema_weight")
_CONV1_STRIDE, _CONV2_STRIDE, _CONV_KERNEL = 1, 2, 3

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
}


@dataclass(frozen=True)
class WhisperVQConfig:
    """The config.json values that shape the encoder-only WhisperVQ model, as upstream's loader builds it."""

    num_mel_bins: int
    d_model: int
    encoder_attention_heads: int
    encoder_ffn_dim: int
    max_source_positions: int
    activation_function: str
    num_layers: int  # = quantize_position: upstream forces quantize_encoder_only
    pooling_kernel_size: int | None
    pooling_type: str
    pooling_position: int | None
    quantize_vocab_size: int
    quantize_causal_block_size: int | None
    causal_attention: bool  # encoder_causal_attention or quantize_causal_encoder
    causal_convolution: bool

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> WhisperVQConfig:
        """Read config.json (WhisperConfig defaults where a key is absent) and check it can tokenize."""
        vocab = config.get("quantize_vocab_size")
        if vocab is None:
            raise ValueError("speech tokenizer config.json has no quantize_vocab_size: it is not a WhisperVQ tokenizer")
        num_layers = int(config.get("quantize_position", 16))
        kernel = config.get("pooling_kernel_size")
        position = config.get("pooling_position", 0)
        if kernel is not None and not (position and 1 <= int(position) <= num_layers):
            raise ValueError(
                f"speech tokenizer config.json: pooling_position {position} must lie in 1..quantize_position "
                f"({num_layers}) when pooling_kernel_size is set"
            )
        pooling_type = str(config.get("pooling_type", "max"))
        if kernel is not None and pooling_type not in ("avg", "max"):
            raise ValueError(f"speech tokenizer config.json: pooling_type {pooling_type!r} is not 'avg' or 'max'")
        activation = str(config.get("activation_function", "gelu"))
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"speech tokenizer config.json: activation_function {activation!r} is not one of {sorted(_ACTIVATIONS)}"
            )
        block = config.get("quantize_causal_block_size")
        cfg = cls(
            num_mel_bins=int(config.get("num_mel_bins", 80)),
            d_model=int(config.get("d_model", 384)),
            encoder_attention_heads=int(config.get("encoder_attention_heads", 6)),
            encoder_ffn_dim=int(config.get("encoder_ffn_dim", 1536)),
            max_source_positions=int(config.get("max_source_positions", 1500)),
            activation_function=activation,
            num_layers=num_layers,
            pooling_kernel_size=None if kernel is None else int(kernel),
            pooling_type=pooling_type,
            pooling_position=None if kernel is None else int(position),
            quantize_vocab_size=int(vocab),
            quantize_causal_block_size=None if block is None else int(block),
            causal_attention=bool(config.get("encoder_causal_attention", False))
            or bool(config.get("quantize_causal_encoder", False)),
            causal_convolution=bool(config.get("encoder_causal_convolution", False)),
        )
        if cfg.d_model % cfg.encoder_attention_heads != 0:
            raise ValueError(
                f"speech tokenizer config.json: d_model {cfg.d_model} is not divisible by "
                f"encoder_attention_heads {cfg.encoder_attention_heads}"
            )
        if (
            cfg.quantize_causal_block_size is not None
            and cfg.pooling_kernel_size is not None
            and cfg.pooling_position is not None
            and cfg.pooling_position < cfg.num_layers
            and cfg.quantize_causal_block_size < cfg.pooling_kernel_size
        ):
            raise ValueError(
                "speech tokenizer config.json: quantize_causal_block_size must be at least pooling_kernel_size "
                "when layers run after pooling"
            )
        return cfg

    @property
    def pool(self) -> int:
        """Time reduction of the pooling layer (1 without pooling)."""
        return self.pooling_kernel_size or 1

    @property
    def frames_per_token(self) -> int:
        """Feature frames per token: conv strides x pooling (times the hop it is upstream's pad multiple)."""
        return _CONV1_STRIDE * _CONV2_STRIDE * self.pool


class _SelfAttention(nn.Module):
    """Whisper self-attention: k_proj has no bias; scaled dot product with a boolean mask."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)), attn_mask=allowed
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width))


class _EncoderLayer(nn.Module):
    """Pre-LN transformer layer: x + attn(LN(x)), then x + fc2(act(fc1(LN(x))))."""

    def __init__(self, config: WhisperVQConfig) -> None:
        super().__init__()
        self.self_attn = _SelfAttention(config.d_model, config.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.fc1 = nn.Linear(config.d_model, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, config.d_model)
        self.final_layer_norm = nn.LayerNorm(config.d_model)
        self.activation = _ACTIVATIONS[config.activation_function]()

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x), allowed)
        return x + self.fc2(self.activation(self.fc1(self.final_layer_norm(x))))


@dataclass
class EncoderOutput:
    """Token ids with the intermediates the parity runner compares."""

    pre_vq_hidden: torch.Tensor  # [B, N, d_model], model dtype
    distances: torch.Tensor  # [B*N, vocab] float32 squared distances to the codebook
    token_ids: torch.Tensor  # [B, N] int64, padded positions included
    token_mask: torch.Tensor  # [B, N] bool, True where the token covers real audio


class WhisperVQEncoder(nn.Module):
    """Encoder-only WhisperVQ: convs, positions, `num_layers` layers with pooling, codebook argmin.

    Parameter names are the checkpoint's `model.encoder.*` names without that prefix. The codebook
    stays float32 whatever the model dtype, since token ids come from fp32 distances.
    """

    def __init__(self, config: WhisperVQConfig) -> None:
        super().__init__()
        self.config = config
        self.conv1 = nn.Conv1d(config.num_mel_bins, config.d_model, _CONV_KERNEL, stride=_CONV1_STRIDE)
        self.conv2 = nn.Conv1d(config.d_model, config.d_model, _CONV_KERNEL, stride=_CONV2_STRIDE)
        self.embed_positions = nn.Embedding(config.max_source_positions, config.d_model)
        self.layers = nn.ModuleList(_EncoderLayer(config) for _ in range(config.num_layers))
        self.codebook = nn.Embedding(config.quantize_vocab_size, config.d_model)
        # Causal convs pad (kernel-1) on the left only; plain convs pad 1 on each side.
        self._conv_pad = (_CONV_KERNEL - 1, 0) if config.causal_convolution else (1, 1)

    def _allowed(self, frame_mask: torch.Tensor, block_size: int | None) -> torch.Tensor:
        """Boolean attention mask [B, 1, T, T]: who each query frame may attend to.

        Block-causal when a block size is set (every earlier frame plus the query's whole block),
        combined with the key-padding mask; padding only without a block size. Layers marked causal
        use plain causal attention and, as upstream's SDPA path, no padding mask.
        """
        length = frame_mask.shape[1]
        positions = torch.arange(length, device=frame_mask.device)
        if self.config.causal_attention:
            causal = positions[None, :] <= positions[:, None]
            return causal[None, None].expand(frame_mask.shape[0], 1, length, length)
        keys = frame_mask[:, None, None, :]
        if block_size is None:
            return keys.expand(-1, 1, length, -1)
        blocks = positions // block_size
        visible = (positions[None, :] <= positions[:, None]) | (blocks[None, :] == blocks[:, None])
        return visible[None, None] & keys

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        """Right-pad time with zeros to a multiple of the kernel, then average (or max) pool."""
        kernel = self.config.pool
        x = x.transpose(1, 2)
        if x.shape[-1] % kernel:
            x = F.pad(x, (0, kernel - x.shape[-1] % kernel))
        pooled = F.avg_pool1d(x, kernel) if self.config.pooling_type == "avg" else F.max_pool1d(x, kernel)
        return pooled.transpose(1, 2)

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor) -> EncoderOutput:
        """features [B, num_mel_bins, T] (T a multiple of 2·pool), frame_mask [B, T] bool."""
        dtype = self.conv1.weight.dtype
        x = F.gelu(self.conv1(F.pad(features.to(dtype), self._conv_pad)))
        x = F.gelu(self.conv2(F.pad(x, self._conv_pad))).transpose(1, 2)
        mask = frame_mask[:, :: _CONV1_STRIDE * _CONV2_STRIDE]
        if x.shape[1] > self.config.max_source_positions:
            raise EngineError(
                f"speech tokenizer input has {x.shape[1]} frames, more than max_source_positions "
                f"{self.config.max_source_positions}: pass segments of at most 30 s"
            )
        x = x + self.embed_positions.weight[: x.shape[1]]
        block = self.config.quantize_causal_block_size
        allowed = self._allowed(mask, block)
        for index, layer in enumerate(self.layers, start=1):
            x = layer(x, allowed)
            if index == self.config.pooling_position:
                x = self._pool(x)
                mask = mask[:, :: self.config.pool]
                block = None if block is None else block // self.config.pool
                allowed = self._allowed(mask, block)
        distances, token_ids = nearest_code(x, self.codebook.weight)
        return EncoderOutput(pre_vq_hidden=x, distances=distances, token_ids=token_ids, token_mask=mask)


def nearest_code(hidden: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances [B*N, V], ids [B, N]): argmin of ‖x‖² + ‖c‖² − 2x·c in float32, first index on ties.

    Same formula and operation order as upstream's `vector_quantize`, because token ids near a
    decision boundary depend on it.
    """
    flat = hidden.reshape(-1, hidden.shape[-1]).to(torch.float32)
    codes = codebook.to(torch.float32)
    base = torch.sum(codes**2, dim=1) + torch.sum(flat**2, dim=1, keepdim=True)
    distances = torch.addmm(base, flat, codes.t(), beta=1.0, alpha=-2.0)
    ids = torch.min(distances, dim=1).indices
    return distances, ids.reshape(hidden.shape[0], hidden.shape[1])


def expected_encoder_keys(config: WhisperVQConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor the encoder-only model needs (prefix stripped) with its shape.

    `embed_positions2` is included because upstream's strict load requires it; it is added to the
    hidden states after quantization, which the forced encoder-only model never uses further.
    """
    d, ffn = config.d_model, config.encoder_ffn_dim
    shapes: dict[str, tuple[int, ...]] = {
        "conv1.weight": (d, config.num_mel_bins, _CONV_KERNEL),
        "conv1.bias": (d,),
        "conv2.weight": (d, d, _CONV_KERNEL),
        "conv2.bias": (d,),
        "embed_positions.weight": (config.max_source_positions, d),
        "embed_positions2.weight": (math.ceil(config.max_source_positions / config.pool), d),
        "codebook.weight": (config.quantize_vocab_size, d),
    }
    per_layer = {
        "self_attn.q_proj.weight": (d, d),
        "self_attn.q_proj.bias": (d,),
        "self_attn.k_proj.weight": (d, d),
        "self_attn.v_proj.weight": (d, d),
        "self_attn.v_proj.bias": (d,),
        "self_attn.out_proj.weight": (d, d),
        "self_attn.out_proj.bias": (d,),
        "self_attn_layer_norm.weight": (d,),
        "self_attn_layer_norm.bias": (d,),
        "fc1.weight": (ffn, d),
        "fc1.bias": (ffn,),
        "fc2.weight": (d, ffn),
        "fc2.bias": (d,),
        "final_layer_norm.weight": (d,),
        "final_layer_norm.bias": (d,),
    }
    for layer in range(config.num_layers):
        shapes.update({f"layers.{layer}.{name}": shape for name, shape in per_layer.items()})
    return shapes


def select_checkpoint_keys(keys: Sequence[str], config: WhisperVQConfig) -> dict[str, str]:
    """{model key: checkpoint key} for the tensors upstream's loader keeps, checked strictly.

    Kept: `model.encoder.*` minus `layer_norm*` and `layers.N` for N >= quantize_position; every
    other key (model.decoder.*, ...) is ignored. The EMA training buffers are accepted and never read.
    Raises ValueError naming missing or unexpected encoder tensors.
    """
    selected: dict[str, str] = {}
    for key in keys:
        if not key.startswith(_CHECKPOINT_PREFIX):
            continue
        name = key[len(_CHECKPOINT_PREFIX) :]
        if name.startswith("layer_norm") or name in _EMA_KEYS:
            continue
        if name.startswith("layers.") and int(name.split(".")[1]) >= config.num_layers:
            continue
        selected[name] = key
    expected = expected_encoder_keys(config)
    missing = sorted(set(expected) - set(selected))
    unexpected = sorted(set(selected) - set(expected))
    if missing or unexpected:
        raise ValueError(
            "speech tokenizer weights do not match config.json: "
            f"missing {[_CHECKPOINT_PREFIX + k for k in missing][:8]}, "
            f"unexpected {[_CHECKPOINT_PREFIX + k for k in unexpected][:8]}; "
            "use the model.safetensors that ships with this config.json"
        )
    return selected


def _parse_configs(
    config: Mapping[str, Any], preprocessor: Mapping[str, Any]
) -> tuple[WhisperVQConfig, WhisperFeatureExtractor]:
    """Both configs, checked to belong together and to take 16 kHz audio."""
    vq_config = WhisperVQConfig.from_dict(config)
    feature_config = feature_extractor(preprocessor)
    if feature_config.sampling_rate != SAMPLE_RATE:
        raise ValueError(
            f"preprocessor_config.json sampling_rate is {feature_config.sampling_rate}; "
            f"the speech tokenizer takes {SAMPLE_RATE} Hz audio"
        )
    if feature_config.feature_size != vq_config.num_mel_bins:
        raise ValueError(
            f"preprocessor_config.json feature_size {feature_config.feature_size} != config.json "
            f"num_mel_bins {vq_config.num_mel_bins}: the two files belong to different checkpoints"
        )
    return vq_config, feature_config


class SpeechTokenizer:
    """The log-mel frontend plus the WhisperVQ encoder, on one device and dtype."""

    def __init__(self, encoder: WhisperVQEncoder, features: WhisperLogMel) -> None:
        self.encoder = encoder.eval()
        self.features = features
        self.pad_to_multiple_of = encoder.config.frames_per_token * features.extractor.hop_length

    @property
    def device(self) -> torch.device:
        return self.encoder.conv1.weight.device

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        preprocessor: Mapping[str, Any],
        state_dict: Mapping[str, torch.Tensor],
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> SpeechTokenizer:
        """Build from config.json and preprocessor_config.json mappings and checkpoint-named tensors."""
        vq_config, feature_config = _parse_configs(config, preprocessor)
        selected = select_checkpoint_keys(list(state_dict), vq_config)
        return cls._build(vq_config, feature_config, {k: state_dict[v] for k, v in selected.items()}, device, dtype)

    @classmethod
    def from_dir(
        cls, path: Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> SpeechTokenizer:
        """Load the official `speech_tokenizer/` folder: config.json, preprocessor_config.json, model*.safetensors.

        Only the kept tensors are read from disk (the official file also holds the EMA buffers and
        decoder tensors).
        """
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        for name in ("config.json", "preprocessor_config.json"):
            if not (path / name).is_file():
                raise EngineError(
                    f"speech tokenizer file {path / name} is missing: download the complete speech_tokenizer/ "
                    "folder of the GLM-TTS checkpoint"
                )
        weight_files = sorted(path.glob("model*.safetensors"))
        if not weight_files:
            raise EngineError(
                f"speech tokenizer weights {path / 'model.safetensors'} are missing: download the complete "
                "speech_tokenizer/ folder of the GLM-TTS checkpoint"
            )
        try:
            vq_config, feature_config = _parse_configs(
                json.loads((path / "config.json").read_text(encoding="utf-8")),
                json.loads((path / "preprocessor_config.json").read_text(encoding="utf-8")),
            )
            handles = [safe_open(str(f), framework="pt", device="cpu") for f in weight_files]
            location = {key: handle for handle in handles for key in handle.keys()}  # noqa: SIM118 - safe_open is not iterable
            selected = select_checkpoint_keys(list(location), vq_config)
            tensors = {name: location[key].get_tensor(key) for name, key in selected.items()}
            tokenizer = cls._build(vq_config, feature_config, tensors, device, dtype)
        except SafetensorError as exc:
            raise EngineError(
                f"speech tokenizer weights in {path} cannot be read ({exc}): download the speech_tokenizer/ folder again"
            ) from exc
        except ValueError as exc:  # bad JSON or config values, weights that do not fit the config
            raise EngineError(f"speech tokenizer in {path}: {exc}") from exc
        logger.info("speech tokenizer: %d tensors from %s", len(tensors), ", ".join(f.name for f in weight_files))
        return tokenizer

    @classmethod
    def _build(
        cls,
        vq_config: WhisperVQConfig,
        feature_config: WhisperFeatureExtractor,
        tensors: Mapping[str, torch.Tensor],
        device: str | torch.device,
        dtype: torch.dtype,
    ) -> SpeechTokenizer:
        """Check shapes, then load on the target device; the codebook is kept in float32."""
        state: dict[str, torch.Tensor] = {}
        for name, shape in expected_encoder_keys(vq_config).items():
            if tuple(tensors[name].shape) != shape:
                raise ValueError(
                    f"tensor {_CHECKPOINT_PREFIX}{name} has shape {tuple(tensors[name].shape)}, "
                    f"config.json implies {shape}: use the model.safetensors that ships with this config.json"
                )
            if name != "embed_positions2.weight":
                target = torch.float32 if name == "codebook.weight" else dtype
                state[name] = tensors[name].to(device=device, dtype=target)
        with torch.device("meta"):
            encoder = WhisperVQEncoder(vq_config)
        encoder.load_state_dict(state, strict=True, assign=True)
        return cls(encoder, WhisperLogMel(feature_config))

    @torch.inference_mode()
    def encode(self, segments: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, EncoderOutput]:
        """(features, frame mask, encoder output) of 1-D 16 kHz segments batched as upstream pads them."""
        features, frame_mask = self.features(segments, self.pad_to_multiple_of, self.device)
        return features, frame_mask, self.encoder(features, frame_mask)

    @torch.inference_mode()
    def tokenize(self, wav16k: torch.Tensor) -> torch.Tensor:
        """Speech token ids [N] (int64, on CPU) of a 16 kHz waveform [1, T] (channel 0 is used).

        Long audio is cut into 30 s segments; each group of up to 128 segments is padded to its
        longest member, as upstream batches them, and run one segment at a time to bound memory.
        """
        if wav16k.dim() != 2 or wav16k.shape[0] < 1:
            raise ValueError(f"tokenize expects a 16 kHz waveform of shape [1, T], got {tuple(wav16k.shape)}")
        audio = wav16k[0]
        segments = [audio[start : start + SEGMENT_SAMPLES] for start in range(0, audio.shape[0], SEGMENT_SAMPLES)]
        tokens: list[torch.Tensor] = []
        for first in range(0, len(segments), SEGMENTS_PER_BATCH):
            group = segments[first : first + SEGMENTS_PER_BATCH]
            features, frame_mask = self.features(group, self.pad_to_multiple_of, self.device)
            for row in range(features.shape[0]):
                out = self.encoder(features[row : row + 1], frame_mask[row : row + 1])
                tokens.append(out.token_ids[0][out.token_mask[0]].cpu())
        return torch.cat(tokens) if tokens else torch.zeros(0, dtype=torch.long)
