"""Upstream GLM-TTS's own modules, built on one of our checkpoints, for the benchmarks that compare with it.

Nothing of upstream is copied here: an extracted checkout (zai-org/GLM-TTS) is put on the import path and
its classes are constructed with the arguments upstream's loaders use. Where upstream cannot run as is on
a tiny checkpoint or on a CPU, the workaround is here, named and explained once (benchmarks/README.md):

- sizes: upstream hard-codes the real DiT (768/18/12) inside Flow and HiFT's 512 channels; the same
  constructor calls are made at the sizes read from flow.pt and hift.pt;
- `.cuda()`: upstream's speech tokenizer, load_wav and load_quantize_encoder move tensors and modules to
  "cuda" unconditionally; `cuda_calls_to(device)` sends those moves to the run's device instead;
- audio files: torchaudio 2.9+ loads and saves files through torchcodec; `soundfile_audio_io()` gives
  torchaudio.load/save the float32 channels-first behaviour they had (what upstream was written against).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from glmtts_mcp.engine.checkpoint.layout import FLOW_CONFIG, FLOW_WEIGHTS, HIFT_WEIGHTS, LLM_DIR, load_state_dict
from glmtts_mcp.engine.checkpoint.loader import flow_dims_from_state, hift_config_from_state
from glmtts_mcp.engine.models.flow import FLOW_KWARG_DEFAULTS, load_flow_config

UPSTREAM_PACKAGES = {"flow", "llm", "utils", "cosyvoice", "glmtts_inference", "tn"}


@contextlib.contextmanager
def on_path(upstream: Path) -> Iterator[None]:
    """Upstream's top-level packages (flow, llm, utils, cosyvoice) importable for the duration."""
    path = str(upstream.resolve())
    before = set(sys.modules)
    sys.path.insert(0, path)
    try:
        yield
    finally:
        sys.path.remove(path)
        for name in set(sys.modules) - before:  # upstream's `utils`, `flow`, ... must not linger
            if name.split(".")[0] in UPSTREAM_PACKAGES:
                del sys.modules[name]


def build_flow(checkpoint: Path, device: torch.device) -> torch.nn.Module:
    """Upstream Flow from the checkpoint's config.yaml kwargs, its hard-coded DiT rebuilt at flow.pt's size."""
    from flow.dit import DiT  # upstream
    from flow.flow import Flow as UpstreamFlow  # upstream

    config = load_flow_config(checkpoint / FLOW_CONFIG)
    state = load_state_dict(checkpoint / FLOW_WEIGHTS)
    dims = flow_dims_from_state(state, int(config["dim_head"]), checkpoint / FLOW_WEIGHTS)
    kwargs = {name: config[name] for name in FLOW_KWARG_DEFAULTS}
    kwargs.update(vocab_size=dims["vocab_size"], speech_token_dim=dims["speech_token_dim"])
    with torch.device("meta"):  # its hard-coded 768/18/12 DiT is replaced below: allocate nothing for it
        flow = UpstreamFlow(**kwargs)
    condition_dim = kwargs["mel_dim"] + (0 if kwargs["remove_spkr_concat_condition"] else kwargs["spk_embed_dim"])
    # Upstream hard-codes DiT 768/18/12 inside Flow.__init__; the same constructor call at the weights' size.
    flow.estimator = DiT(
        trans_dim=dims["trans_dim"],
        depth=dims["depth"],
        heads=dims["heads"],
        ff_mult=config["ff_mult"],
        text_emb_dim=dims["speech_token_dim"],
        conv_layers=config["conv_layers"],
        mel_dim=kwargs["mel_dim"],
        text_vocab_size=dims["vocab_size"],
        condition_dim=condition_dim,
        spkr_emb_adaLN=kwargs["spkr_emb_adaLN"],
        wav_lm_emb=kwargs["use_wavlm_emb"],
    )
    flow.load_state_dict(state, strict=True, assign=True)  # assign: also gives the meta-built layers their weights
    return flow.to(device).eval()


def build_hift(checkpoint: Path, device: torch.device) -> torch.nn.Module:
    """Upstream HiFTGenerator with HiFTInference's 24 kHz arguments, channels read from hift.pt (upstream: 512)."""
    from cosyvoice.hifigan_cosy2.f0_predictor import ConvRNNF0Predictor  # upstream
    from cosyvoice.hifigan_cosy2.generator import HiFTGenerator  # upstream

    state = load_state_dict(checkpoint / HIFT_WEIGHTS)
    cfg = hift_config_from_state(state, checkpoint / HIFT_WEIGHTS)
    hift = HiFTGenerator(**cfg["HiFTGenerator"], f0_predictor=ConvRNNF0Predictor(**cfg["ConvRNNF0Predictor"]))
    hift.load_state_dict(state, strict=True)  # torch's weight-norm hook converts the old weight_g/weight_v keys
    return hift.to(device).eval()


def build_llm(checkpoint: Path, special: dict[str, int], device: torch.device) -> torch.nn.Module:
    """Upstream GLMTTS (PRETRAIN) over the checkpoint's LlamaForCausalLM, as upstream's load_models builds it."""
    from llm.glmtts import GLMTTS  # upstream
    from transformers import LlamaForCausalLM

    llm_dir = checkpoint / LLM_DIR
    model = GLMTTS(
        llama_cfg_path=str(llm_dir / "config.json"),
        mode="PRETRAIN",
        lora_adapter_config=None,
        spk_prompt_dict_path=None,
    )
    model.llama = LlamaForCausalLM.from_pretrained(str(llm_dir), dtype=torch.float32).to(device)
    model.llama_embedding = model.llama.model.embed_tokens
    model.set_runtime_vars(special_token_ids=special)
    return model.eval()


def _is_cuda(device: object) -> bool:
    return (isinstance(device, str) and device.startswith("cuda")) or (
        isinstance(device, torch.device) and device.type == "cuda"
    )


@contextlib.contextmanager
def cuda_calls_to(device: torch.device) -> Iterator[None]:
    """`.cuda()` and `.to("cuda")` on tensors and modules, and torch.hann_window(device="cuda") (which
    transformers' WhisperFeatureExtractor calls with upstream's device='cuda'), go to `device` (nothing
    changes on a GPU)."""
    if device.type == "cuda":
        yield
        return
    saved = {(cls, name): getattr(cls, name) for cls in (torch.Tensor, torch.nn.Module) for name in ("to", "cuda")}

    def redirect(cls: type, name: str):
        original = saved[(cls, name)]
        if name == "cuda":
            return lambda self, *args, **kwargs: saved[(cls, "to")](self, device)

        def to(self, *args, **kwargs):
            args = tuple(device if _is_cuda(a) else a for a in args)
            if _is_cuda(kwargs.get("device")):
                kwargs["device"] = device
            return original(self, *args, **kwargs)

        return to

    hann_window = torch.hann_window

    def window(*args, **kwargs):
        if _is_cuda(kwargs.get("device")):
            kwargs["device"] = device
        return hann_window(*args, **kwargs)

    try:
        for cls, name in saved:
            setattr(cls, name, redirect(cls, name))
        torch.hann_window = window
        yield
    finally:
        for (cls, name), original in saved.items():
            setattr(cls, name, original)
        torch.hann_window = hann_window


def _load(path: str, *args: object, **kwargs: object) -> tuple[torch.Tensor, int]:
    """torchaudio.load's default result: float32 [channels, frames] in [-1, 1] and the rate."""
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(rate)


def _save(path: str, wav: torch.Tensor, rate: int, *args: object, **kwargs: object) -> None:
    sf.write(path, wav.detach().cpu().numpy().T, rate)


@contextlib.contextmanager
def soundfile_audio_io() -> Iterator[None]:
    """torchaudio.load/save through soundfile (torchaudio 2.9+ needs torchcodec for them)."""
    import torchaudio

    saved = torchaudio.load, torchaudio.save
    torchaudio.load, torchaudio.save = _load, _save
    try:
        yield
    finally:
        torchaudio.load, torchaudio.save = saved
