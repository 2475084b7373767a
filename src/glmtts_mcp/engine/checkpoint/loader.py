"""Build every model of the pipeline from a checkpoint folder: the one place that imports the models.

`checkpoint.layout` says where the files are and reads them; the models know their own architecture;
this module joins the two (sizes read from the weights, the dtype and device of each module).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from glmtts_mcp.engine.checkpoint.layout import (
    CAMPPLUS,
    FLOW_CONFIG,
    FLOW_WEIGHTS,
    HIFT_WEIGHTS,
    LLM_DIR,
    SPEECH_TOKENIZER_DIR,
    TEXT_TOKENIZER_DIR,
    CheckpointError,
    load_state_dict,
    validate_checkpoint,
)
from glmtts_mcp.engine.checkpoint.manifest import MANIFEST, verify_checkpoint
from glmtts_mcp.engine.frontend.text_tokenizer import SpecialTokenIds, TextTokenizer
from glmtts_mcp.engine.models.cpu_linear import prepack_llm_linears
from glmtts_mcp.engine.models.flow import Flow, load_flow_config
from glmtts_mcp.engine.models.llm import GLMTTSLLM, load_llm
from glmtts_mcp.engine.models.speaker import SpeakerEncoder
from glmtts_mcp.engine.models.speech_tokenizer import SpeechTokenizer
from glmtts_mcp.engine.models.vocoder import HIFT_24K_CONFIG, HiFTGenerator, load_hift_state_dict
from glmtts_mcp.engine.types import EngineError

T = TypeVar("T")


def _block_count(state: dict[str, torch.Tensor], prefix: str, path: Path) -> int:
    indices = {int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix)}
    if not indices:
        raise CheckpointError(f"{path} has no {prefix}* tensors: it is not a GLM-TTS flow.pt")
    return max(indices) + 1


def flow_dims_from_state(state: dict[str, torch.Tensor], dim_head: int, path: Path) -> dict[str, int]:
    """DiT width/depth/heads and the token table size, read from flow.pt's shapes.

    Upstream hard-codes them (768/18/12, 100000 x 512) and config.yaml does not carry them, so the
    weights are the only place a smaller (tiny) model can state its size; for the real file the
    shapes give back exactly the hard-coded values.
    """
    try:
        table = state["estimator.text_emb_layer.text_embed.weight"]
        inner = state["estimator.transformer_blocks.0.attn.to_q.weight"].shape[0]
        return {
            "trans_dim": int(state["estimator.proj_out.weight"].shape[1]),
            "depth": _block_count(state, "estimator.transformer_blocks.", path),
            "heads": int(inner // dim_head),
            "vocab_size": int(table.shape[0] - 1),
            "speech_token_dim": int(table.shape[1]),
        }
    except KeyError as exc:
        raise CheckpointError(f"{path} lacks {exc}: it is not a GLM-TTS flow.pt; re-download it") from exc


def hift_config_from_state(state: dict[str, torch.Tensor], path: Path) -> dict:
    """The 24 kHz HiFT config with the channel widths read from hift.pt (upstream hard-codes 512)."""

    def out_channels(base: str) -> int:
        for suffix in (".weight", ".weight_v", ".parametrizations.weight.original1"):
            for prefix in ("", "generator."):
                if prefix + base + suffix in state:
                    return int(state[prefix + base + suffix].shape[0])
        raise CheckpointError(f"{path} lacks {base}.weight: it is not a GLM-TTS hift.pt; re-download it")

    cfg = json.loads(json.dumps(HIFT_24K_CONFIG))
    cfg["HiFTGenerator"]["base_channels"] = out_channels("conv_pre")
    cfg["ConvRNNF0Predictor"]["cond_channels"] = out_channels("f0_predictor.condnet.0")
    return cfg


@dataclass
class Models:
    """Every module of the pipeline, on one device (Whisper is separate and loads lazily)."""

    text_tokenizer: TextTokenizer
    special: SpecialTokenIds
    llm: GLMTTSLLM
    speech_tokenizer: SpeechTokenizer
    flow: Flow
    hift: HiFTGenerator
    speaker: SpeakerEncoder
    device: torch.device
    llm_dtype: torch.dtype
    flow_dtype: torch.dtype


def _named(path: Path, what: str, load: Callable[[], T]) -> T:
    """Run a loader; any error that is not already an EngineError is re-raised naming the file."""
    try:
        return load()
    except EngineError:
        raise
    except (KeyError, ValueError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"cannot load the {what} from {path}: {exc}") from exc


def load_models(
    directory: Path,
    device: str | torch.device = "cpu",
    llm_dtype: torch.dtype = torch.float32,
    flow_dtype: torch.dtype = torch.float32,
    batched_llm: bool = True,
) -> Models:
    """Validate the checkpoint (and its manifest's file sizes, if any), then load every module onto `device`.

    `batched_llm`: the LLM will decode several sequences per step, so on a CPU its linears are
    prepacked for oneDNN (cpu_linear.py); one sequence at a time runs faster on the dense weights.

    The LLM runs in `llm_dtype` (bf16 on GPU saves half its memory); flow and vocoder default to
    fp32 (vLLM-Omni found bf16 DiT audibly hissy, docs/checkpoint.md §5); the speech tokenizer always
    runs fp32 because its codebook argmin has near-ties.
    """
    directory = Path(directory)
    if (directory / MANIFEST).is_file():
        verify_checkpoint(directory, full=False)  # validates, then sizes only: a truncated download fails by name
    else:
        validate_checkpoint(directory)
    device = torch.device(device)

    tok_dir = directory / TEXT_TOKENIZER_DIR
    text_tokenizer = _named(tok_dir, "text tokenizer", lambda: TextTokenizer.from_dir(tok_dir))
    special = text_tokenizer.special_token_ids()

    llm_dir = directory / LLM_DIR

    def build_llm() -> GLMTTSLLM:
        model = load_llm(llm_dir, device=device, dtype=llm_dtype)
        if batched_llm:
            prepack_llm_linears(model)
        return GLMTTSLLM(model, special)

    llm = _named(llm_dir, "LLM", build_llm)

    flow_pt = directory / FLOW_WEIGHTS

    def build_flow() -> Flow:
        cfg = load_flow_config(directory / FLOW_CONFIG)
        state = load_state_dict(flow_pt)
        flow = Flow.from_config({**cfg, **flow_dims_from_state(state, int(cfg["dim_head"]), flow_pt)})
        flow.load_official_state_dict(state)
        return flow.to(device=device, dtype=flow_dtype).eval()

    flow = _named(flow_pt, "flow", build_flow)

    hift_pt = directory / HIFT_WEIGHTS

    def build_hift() -> HiFTGenerator:
        state = load_state_dict(hift_pt)
        hift = HiFTGenerator.from_config(hift_config_from_state(state, hift_pt))
        load_hift_state_dict(hift, state)
        return hift.to(device=device, dtype=torch.float32).eval()  # HiFT's iSTFT needs float32, whatever flow_dtype is

    hift = _named(hift_pt, "vocoder", build_hift)

    st_dir = directory / SPEECH_TOKENIZER_DIR
    speech_tokenizer = _named(st_dir, "speech tokenizer", lambda: SpeechTokenizer.from_dir(st_dir, device=device))
    speaker = SpeakerEncoder(directory / CAMPPLUS, device=str(device))
    return Models(text_tokenizer, special, llm, speech_tokenizer, flow, hift, speaker, device, llm_dtype, flow_dtype)
