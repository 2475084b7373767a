"""`make_tiny_checkpoint`: a complete random-weight checkpoint in the official layout, file for file.

Tests, CI and benchmarks run the real loaders and the real pipeline on it; only dimensions shrink.
What mirrors the real files (docs/checkpoint.md §1-§2):

- llm/: config.json with the real fields (tie_word_embeddings true, bos/eos 1/2), two safetensors
  shards with one layer split across them, model.safetensors.index.json, and no lm_head.
- flow/config.yaml: the real six kwargs under `flow: !new:flow.flow.Flow`, nothing else. The real
  DiT size and speech-token table are constructor defaults / hard-coded upstream, so the tiny sizes
  are not written to the YAML: `checkpoint.load_models` reads the DiT width, depth, heads and the
  token table size from flow.pt's tensor shapes (which equal the hard-coded values for the real file).
- flow/flow.pt, hift/hift.pt: plain state dicts saved with torch.save; HiFT keeps old-style
  weight_g/weight_v keys; its channel widths are likewise read from the tensor shapes at load.
- speech_tokenizer/: config.json as the real one has it (quantize_encoder_only false,
  encoder_layers > quantize_position, quantize_ema_decay set), preprocessor_config.json, and a
  model.safetensors that also carries what the loader must drop (ema_count/ema_weight, layers past
  quantize_position, layer_norm, decoder keys).
- vq32k-phoneme-tokenizer/: a tiktoken rank file (256 bytes in GPT-2 order + merges learned from a
  short English/Chinese text), tokenizer_config.json with the GLM-4 specials in order, phoneme-like
  added tokens and all 32768 `<|audio_k|>` tokens.
- frontend/campplus.onnx: a small CAMPPlus-shaped graph, fbank [1, T, 80] -> embedding [1, 192]
  (exported with the `onnx` package: the `[tiny]` extra, which serving never needs).
- whisper/tiny-random.pt: a tiny openai-whisper model ({"dims", "model_state_dict"}).

`size="real"` writes the real dimensions (≈9 GB; for GPU benchmarks).
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import math
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Literal

import regex  # tiktoken's own dependency; \p{L} classes of the GLM-4 pre-tokenizer
import torch
from safetensors.torch import save_file
from torch import nn

from glmtts_mcp.engine.checkpoint import layout as ck
from glmtts_mcp.engine.frontend.text_tokenizer import GLM4_PAT_STR
from glmtts_mcp.engine.models.flow import Flow, FlowConfig
from glmtts_mcp.engine.models.speech_tokenizer import WhisperVQConfig, expected_encoder_keys
from glmtts_mcp.engine.models.vocoder import HIFT_24K_CONFIG, HiFTGenerator

Size = Literal["tiny", "real"]

AUDIO_TOKENS = 32768

# GLM-4 / GLM-4-Voice added specials, in id order from <|endoftext|> (docs/checkpoint.md §2.5).
GLM_SPECIALS = (
    "<|endoftext|>",
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "<sop>",
    "<eop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
    "<|begin_of_audio|>",
    "<|end_of_audio|>",
    "<|begin_of_transcription|>",
    "<|end_of_transcription|>",
    "<|code_prefix|>",
    "<|code_middle|>",
    "<|code_suffix|>",
)
_PINYIN_INITIALS = (
    "B",
    "C",
    "CH",
    "D",
    "F",
    "G",
    "H",
    "J",
    "K",
    "L",
    "M",
    "N",
    "P",
    "Q",
    "R",
    "S",
    "SH",
    "T",
    "X",
    "Z",
    "ZH",
)
_PINYIN_FINALS = (
    "A",
    "AI",
    "AN",
    "ANG",
    "AO",
    "E",
    "EI",
    "EN",
    "ENG",
    "ER",
    "I",
    "IA",
    "IAN",
    "IANG",
    "IAO",
    "IE",
    "IN",
    "ING",
    "IONG",
    "IU",
    "O",
    "ONG",
    "OU",
    "U",
    "UA",
    "UAI",
    "UAN",
    "UANG",
    "UI",
    "UN",
    "UO",
    "V",
    "VE",
)

# BPE training text for the tiny rank file: mixed English and Chinese, digits and punctuation.
_BPE_TEXT = """
The quick brown fox jumps over the lazy dog. She reads the morning news aloud, slowly and clearly,
so that everyone in the room can follow the story. In 2024 the library opened 3 new reading rooms,
and the children there listen to stories every Saturday at 10:30. Would you like to hear another one?
It's a long way to the station, but we'll walk there together; they've already left, haven't they?
Speech synthesis turns written text into spoken words; a cloned voice keeps the speaker's timbre.
今天天气很好，我们一起去公园散步吧。这本书讲述了一个关于勇气和友谊的故事。
语音合成技术可以把文字变成声音，让机器像人一样说话。请在下午三点之前把报告发给我，谢谢！
他说：“明天见。”我们的会议将在二零二四年五月举行，欢迎大家参加。
"""


@dataclasses.dataclass(frozen=True)
class Dims:
    """Every dimension that differs between the tiny and the real checkpoint."""

    llm: dict
    flow: dict
    hift_channels: int
    speech: dict
    campplus_hidden: int
    whisper: dict
    bpe_merges: int


TINY = Dims(
    llm={
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
    },
    flow={"speech_token_dim": 32, "vocab_size": AUDIO_TOKENS, "trans_dim": 64, "depth": 2, "heads": 2},
    hift_channels=32,
    speech={
        "d_model": 32,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "encoder_layers": 4,
        "quantize_position": 3,
        "pooling_position": 3,
        "decoder_layers": 1,
    },
    campplus_hidden=32,
    whisper={
        "n_mels": 80,
        "n_audio_ctx": 1500,
        "n_audio_state": 32,
        "n_audio_head": 2,
        "n_audio_layer": 1,
        "n_vocab": 51865,
        "n_text_ctx": 24,
        "n_text_state": 32,
        "n_text_head": 2,
        "n_text_layer": 1,
    },
    bpe_merges=300,
)
REAL = Dims(
    llm={
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 4,
        "head_dim": 128,
        "vocab_size": 98304,
    },
    flow={"speech_token_dim": 512, "vocab_size": 100000, "trans_dim": 768, "depth": 18, "heads": 12},
    hift_channels=512,
    speech={
        "d_model": 1280,
        "encoder_attention_heads": 20,
        "encoder_ffn_dim": 5120,
        "encoder_layers": 32,
        "quantize_position": 16,
        "pooling_position": 16,
        "decoder_layers": 1,
    },
    campplus_hidden=512,
    whisper={
        "n_mels": 80,
        "n_audio_ctx": 1500,
        "n_audio_state": 512,
        "n_audio_head": 8,
        "n_audio_layer": 6,
        "n_vocab": 51865,
        "n_text_ctx": 448,
        "n_text_state": 512,
        "n_text_head": 8,
        "n_text_layer": 6,
    },
    bpe_merges=300,
)

TINY_WHISPER = "tiny-random"


def _gpt2_byte_order() -> list[int]:
    """Single bytes in GPT-2's order (printable first), as the GLM-4 rank file lists them."""
    first = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    return first + [b for b in range(256) if b not in first]


def learn_bpe_ranks(text: str, merges: int) -> dict[bytes, int]:
    """Byte-level BPE ranks: 256 single bytes, then up to `merges` pair merges learned from `text`."""
    ranks = {bytes([b]): i for i, b in enumerate(_gpt2_byte_order())}
    words = Counter(tuple(bytes([b]) for b in w.encode()) for w in regex.findall(GLM4_PAT_STR, text))
    for _ in range(merges):
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for word, count in words.items():
            for a, b in itertools.pairwise(word):
                pairs[(a, b)] += count
        if not pairs:
            break
        (a, b), count = max(pairs.items(), key=lambda kv: (kv[1], -ranks[kv[0][0]], -ranks[kv[0][1]]))
        merged = a + b
        if merged in ranks:
            break
        ranks[merged] = len(ranks)
        new_words: Counter[tuple[bytes, ...]] = Counter()
        for word, n in words.items():
            out: list[bytes] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += n
        words = new_words
    return ranks


def phoneme_tokens() -> list[str]:
    """Phoneme-like added tokens: pinyin initials, then finals with tones 1-5 (as upstream's G2P set)."""
    return [f"<|{p}|>" for p in _PINYIN_INITIALS] + [f"<|{f}{t}|>" for f in _PINYIN_FINALS for t in range(1, 6)]


def _added_entry(content: str, special: bool) -> dict:
    return {
        "content": content,
        "lstrip": False,
        "normalized": not special,
        "rstrip": False,
        "single_word": False,
        "special": special,
    }


def write_text_tokenizer(folder: Path, merges: int) -> dict[str, int]:
    """tokenizer.model + tokenizer_config.json; returns the special ids (pad, eoa, boa, ats, ate)."""
    folder.mkdir(parents=True, exist_ok=True)
    ranks = learn_bpe_ranks(_BPE_TEXT, merges)
    lines = [f"{base64.b64encode(tok).decode()} {rank}" for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1])]
    (folder / "tokenizer.model").write_text("\n".join(lines) + "\n")
    added: dict[str, dict] = {}
    next_id = len(ranks)
    for token in GLM_SPECIALS:
        added[str(next_id)] = _added_entry(token, True)
        next_id += 1
    for token in phoneme_tokens():
        added[str(next_id)] = _added_entry(token, False)
        next_id += 1
    ats = next_id
    for k in range(AUDIO_TOKENS):
        added[str(next_id)] = _added_entry(f"<|audio_{k}|>", False)
        next_id += 1
    config = {
        "added_tokens_decoder": added,
        "additional_special_tokens": list(GLM_SPECIALS[:14]),
        "auto_map": {"AutoTokenizer": ["tokenization_chatglm.ChatGLM4Tokenizer", None]},
        "clean_up_tokenization_spaces": False,
        "do_lower_case": False,
        "eos_token": "<|endoftext|>",
        "model_input_names": ["input_ids", "attention_mask", "position_ids"],
        "model_max_length": 128000,
        "pad_token": "<|endoftext|>",
        "padding_side": "left",
        "remove_space": False,
        "tokenizer_class": "ChatGLM4Tokenizer",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False))
    pad = len(ranks)
    return {"pad": pad, "eoa": pad + 7, "boa": pad + 14, "ats": ats, "ate": ats + AUDIO_TOKENS - 1}


def write_llm(folder: Path, dims: dict, vocab_size: int, eoa: int) -> None:
    """config.json + two shards (one layer split across them) + index, no lm_head (tied embeddings)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "head_dim": dims["head_dim"],
        "hidden_act": "silu",
        "hidden_size": dims["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": dims["intermediate_size"],
        "max_position_embeddings": 8192,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": dims["num_attention_heads"],
        "num_hidden_layers": dims["num_hidden_layers"],
        "num_key_value_heads": dims["num_key_value_heads"],
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": "4.47.1",
        "use_cache": True,
        "vocab_size": vocab_size,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    model = LlamaForCausalLM(LlamaConfig(**config))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    # A random LLM almost never samples eoa, so every segment would run to max_ratio x its text.
    # Scale the eoa row (the tied output projection) so eoa lands in the top-k about a quarter of
    # the steps: speech ends a few steps past min_len, as with a trained model, and the stop path runs.
    embed = state["model.embed_tokens.weight"]
    row = embed[eoa]
    embed[eoa] = row / row.norm() * 10 * config["initializer_range"] * math.sqrt(dims["hidden_size"])
    del model
    # Split like the real index: shard 1 = embeddings + the first layers + half of the split layer.
    split = max(0, dims["num_hidden_layers"] * 3 // 4 - 1)

    def shard_of(key: str) -> int:
        if key.startswith("model.layers."):
            layer = int(key.split(".")[2])
            if layer == split:
                return 1 if ("self_attn" in key or "gate_proj" in key or "up_proj" in key) else 2
            return 1 if layer < split else 2
        return 1 if key == "model.embed_tokens.weight" else 2

    names = {1: "model-00001-of-00002.safetensors", 2: "model-00002-of-00002.safetensors"}
    weight_map = {key: names[shard_of(key)] for key in state}
    for name in names.values():
        save_file(
            {k: v for k, v in state.items() if weight_map[k] == name}, str(folder / name), metadata={"format": "pt"}
        )
    total = sum(v.numel() * v.element_size() for v in state.values())
    index_doc = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index_doc, indent=2) + "\n")


# ckpt/flow/config.yaml of the official checkpoint, verbatim (docs/checkpoint.md §2.2).
FLOW_YAML = """flow: !new:flow.flow.Flow
    spkr_emb_adaLN: True
    speech_token_cfg: False
    remove_spkr_concat_condition: True
    mel_dim: 80
    mel_framerate: 50
    input_frame_rate: 25"""


def write_flow(folder: Path, dims: dict) -> None:
    """The real config.yaml and a flow.pt state dict (`estimator.*`) with the given DiT size."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(FLOW_YAML)
    config = FlowConfig.from_flat(
        {
            "spkr_emb_adaLN": True,
            "speech_token_cfg": False,
            "remove_spkr_concat_condition": True,
            "mel_dim": 80,
            "mel_framerate": 50,
            "input_frame_rate": 25,
            **dims,
        }
    )
    flow = Flow(config)
    torch.save({k: v.detach().clone() for k, v in flow.state_dict().items()}, folder / "flow.pt")


# HiFT modules that upstream wraps in weight_norm (their weights are stored as g and v).
_WEIGHT_NORMED = re.compile(
    r"^(conv_pre|conv_post|ups\.\d+|(source_)?resblocks\.\d+\.convs[12]\.\d+"
    r"|f0_predictor\.condnet\.\d+)\.weight$"
)


def write_hift(folder: Path, channels: int) -> None:
    """hift.pt: a plain state dict with old-style weight_g/weight_v keys, base and F0 channels = `channels`."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(json.dumps(HIFT_24K_CONFIG))
    cfg["HiFTGenerator"]["base_channels"] = channels
    cfg["ConvRNNF0Predictor"]["cond_channels"] = channels
    model = HiFTGenerator.from_config(cfg)
    state: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach().clone()
        if _WEIGHT_NORMED.match(key):
            base = key[: -len(".weight")]
            state[f"{base}.weight_g"] = value.norm(p=2, dim=tuple(range(1, value.dim())), keepdim=True)
            state[f"{base}.weight_v"] = value
        else:
            state[key] = value
    torch.save(state, folder / "hift.pt")


PREPROCESSOR_CONFIG = {
    "chunk_length": 30,
    "feature_extractor_type": "WhisperFeatureExtractor",
    "feature_size": 128,
    "hop_length": 160,
    "n_fft": 400,
    "n_samples": 480000,
    "nb_max_frames": 3000,
    "padding_side": "right",
    "padding_value": 0.0,
    "processor_class": "WhisperProcessor",
    "return_attention_mask": False,
    "sampling_rate": 16000,
}


def write_speech_tokenizer(folder: Path, dims: dict, generator: torch.Generator) -> None:
    """config.json as the real one (plus tiny sizes), preprocessor_config.json, model.safetensors with extras."""
    folder.mkdir(parents=True, exist_ok=True)
    d, heads, ffn = dims["d_model"], dims["encoder_attention_heads"], dims["encoder_ffn_dim"]
    config = {
        "_name_or_path": "whisper-large-v3",
        "activation_dropout": 0.0,
        "activation_function": "gelu",
        "apply_spec_augment": False,
        "architectures": ["WhisperVQForConditionalGeneration"],
        "attention_dropout": 0.0,
        "begin_suppress_tokens": [220, 50257],
        "bos_token_id": 50257,
        "classifier_proj_size": 256,
        "d_model": d,
        "decoder_attention_heads": heads,
        "decoder_ffn_dim": ffn,
        "decoder_layerdrop": 0.0,
        "decoder_layers": dims["decoder_layers"],
        "decoder_start_token_id": 50258,
        "dropout": 0.0,
        "encoder_attention_heads": heads,
        "encoder_causal_attention": False,
        "encoder_causal_convolution": False,
        "encoder_ffn_dim": ffn,
        "encoder_layerdrop": 0.0,
        "encoder_layers": dims["encoder_layers"],
        "eos_token_id": 50257,
        "init_std": 0.02,
        "is_encoder_decoder": True,
        "mask_feature_length": 10,
        "mask_feature_min_masks": 0,
        "mask_feature_prob": 0.0,
        "mask_time_length": 10,
        "mask_time_min_masks": 2,
        "mask_time_prob": 0.05,
        "max_length": 448,
        "max_source_positions": 1500,
        "max_target_positions": 448,
        "median_filter_width": 7,
        "model_type": "whisper",
        "num_hidden_layers": dims["encoder_layers"],
        "num_mel_bins": 128,
        "pad_token_id": 50256,
        "pitch_control": "fcpe_f0",
        "pitch_loss_scale": 2.0,
        "pitch_upsample_scale": 2,
        "pooling_kernel_size": 2,
        "pooling_position": dims["pooling_position"],
        "pooling_type": "avg",
        "quantize_causal_block_size": 200,
        "quantize_causal_encoder": False,
        "quantize_commit_coefficient": 0.25,
        "quantize_ema_decay": 0.99,
        "quantize_encoder_only": False,
        "quantize_hidden_dim": None,
        "quantize_loss_scale": 10.0,
        "quantize_position": dims["quantize_position"],
        "quantize_restart_interval": 100,
        "quantize_vocab_size": AUDIO_TOKENS,
        "scale_embedding": False,
        "skip_language_detection": True,
        "torch_dtype": "float32",
        "transformers_version": "4.44.1",
        "use_cache": True,
        "use_weighted_layer_sum": False,
        "vocab_size": 51866,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2) + "\n")
    vq = WhisperVQConfig.from_dict(config)
    tensors: dict[str, torch.Tensor] = {}
    for name, shape in expected_encoder_keys(vq).items():
        fan_in = shape[1] * (shape[2] if len(shape) > 2 else 1) if len(shape) > 1 else 0
        if name.endswith("layer_norm.weight"):
            value = torch.ones(shape)
        elif len(shape) == 1:
            value = torch.zeros(shape)
        elif "embed_positions" in name or name == "codebook.weight":
            value = torch.randn(shape, generator=generator)
        else:
            value = torch.randn(shape, generator=generator) / math.sqrt(fan_in)
        tensors[f"model.encoder.{name}"] = value
    # What the real file also carries and upstream's loader drops or never reads.
    codebook = tensors["model.encoder.codebook.weight"]
    tensors["model.encoder.ema_count"] = torch.ones(AUDIO_TOKENS)
    tensors["model.encoder.ema_weight"] = codebook + 0.01 * torch.randn(codebook.shape, generator=generator)
    extra_layer = vq.num_layers
    for name, value in list(tensors.items()):
        if name.startswith("model.encoder.layers.0."):
            tensors[name.replace("layers.0.", f"layers.{extra_layer}.")] = value.clone()
    tensors["model.encoder.layer_norm.weight"] = torch.ones(d)
    tensors["model.encoder.layer_norm.bias"] = torch.zeros(d)
    tensors["model.decoder.layer_norm.weight"] = torch.ones(d)
    tensors["model.decoder.layer_norm.bias"] = torch.zeros(d)
    tensors["model.decoder.layers.0.self_attn.q_proj.weight"] = torch.randn(d, d, generator=generator)
    tensors["model.decoder.layers.0.fc1.weight"] = torch.randn(ffn, d, generator=generator)
    save_file(
        {k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"), metadata={"format": "pt"}
    )


class _TinyCampPlus(nn.Module):
    """CAMPPlus's interface at toy size: conv over time, statistics pooling, a 192-d projection."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(80, hidden, 3, padding=1)
        self.proj = nn.Linear(2 * hidden, 192)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(fbank.transpose(1, 2)))
        stats = torch.cat([h.mean(dim=2), h.std(dim=2)], dim=1)
        return self.proj(stats)


def _require_onnx() -> None:
    """Fail before writing anything when the exporter's package is absent (it is an extra, not a dependency)."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
    except ImportError as exc:
        raise ck.CheckpointError(
            "checkpoint make-tiny needs the onnx package to write frontend/campplus.onnx: "
            "install it with `pip install 'glmtts-mcp[tiny]'`"
        ) from exc


def write_campplus(path: Path, hidden: int) -> None:
    """A CAMPPlus-shaped ONNX graph: input [1, T, 80] fbank (dynamic T), output [1, 192]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model = _TinyCampPlus(hidden).eval()
    example = torch.randn(1, 200, 80)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {1: "frames"}},
            opset_version=17,
            dynamo=False,
        )


def write_whisper(path: Path, dims: dict) -> None:
    """An openai-whisper checkpoint {"dims", "model_state_dict"} that loads with weights_only=True."""
    import whisper
    from whisper.model import ModelDimensions

    path.parent.mkdir(parents=True, exist_ok=True)
    model = whisper.Whisper(ModelDimensions(**dims))
    with torch.no_grad():  # whisper allocates the decoder's positions with torch.empty (training sets them)
        model.decoder.positional_embedding.normal_(0.0, 0.02)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"dims": dict(dims), "model_state_dict": state}, path)


def make_tiny_checkpoint(directory: Path, *, size: Size = "tiny", seed: int = 0) -> Path:
    """Write a complete random-weight checkpoint (official layout) into `directory`; returns it.

    Deterministic for a given seed. `size="real"` uses the real model dimensions (~9 GB).
    """
    if size not in ("tiny", "real"):
        raise ValueError(f"size must be 'tiny' or 'real', not {size!r}")
    _require_onnx()
    dims = TINY if size == "tiny" else REAL
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        special = write_text_tokenizer(directory / ck.TEXT_TOKENIZER_DIR, dims.bpe_merges)
        vocab = dims.llm.get("vocab_size") or (special["ate"] + 1 + 20 + 7) // 8 * 8  # + padding rows, as real
        if vocab <= special["ate"]:
            raise ValueError(f"LLM vocabulary {vocab} does not cover the audio tokens (up to {special['ate']})")
        write_llm(directory / ck.LLM_DIR, dims.llm, vocab, special["eoa"])
        write_flow(directory / "flow", dims.flow)
        write_hift(directory / "hift", dims.hift_channels)
        write_speech_tokenizer(directory / ck.SPEECH_TOKENIZER_DIR, dims.speech, generator)
        write_campplus(directory / ck.CAMPPLUS, dims.campplus_hidden)
        write_whisper(directory / ck.WHISPER_DIR / f"{TINY_WHISPER}.pt", dims.whisper)
    ck.validate_checkpoint(directory)
    return directory
