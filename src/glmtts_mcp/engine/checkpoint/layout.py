"""The official GLM-TTS checkpoint layout: find it, validate it up front, read its files without pickles.

Layout (docs/checkpoint.md §1): the Hugging Face repo zai-org/GLM-TTS plus `frontend/campplus.onnx`
(which HF does not ship). Every weight file is read with `torch.load(weights_only=True)` or
safetensors; a `.safetensors` twin of a `.pt` file (written by `download.convert_to_safetensors`)
is preferred when present.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
from platformdirs import user_data_dir
from safetensors import SafetensorError
from safetensors.torch import load_file

from glmtts_mcp.engine.types import EngineError

if TYPE_CHECKING:
    from glmtts_mcp.engine.models.flow import Flow
    from glmtts_mcp.engine.models.llm import GLMTTSLLM
    from glmtts_mcp.engine.models.speaker import SpeakerEncoder
    from glmtts_mcp.engine.models.speech_tokenizer import SpeechTokenizer
    from glmtts_mcp.engine.frontend.text_tokenizer import SpecialTokenIds, TextTokenizer
    from glmtts_mcp.engine.models.vocoder import HiFTGenerator

T = TypeVar("T")

HOW_TO_GET = "run `glmtts-mcp download` or pass --checkpoint"

LLM_DIR = "llm"
LLM_CONFIG = "llm/config.json"
LLM_INDEX = "llm/model.safetensors.index.json"
LLM_SINGLE = "llm/model.safetensors"
FLOW_CONFIG = "flow/config.yaml"
FLOW_WEIGHTS = "flow/flow.pt"
HIFT_WEIGHTS = "hift/hift.pt"
SPEECH_TOKENIZER_DIR = "speech_tokenizer"
TEXT_TOKENIZER_DIR = "vq32k-phoneme-tokenizer"
CAMPPLUS = "frontend/campplus.onnx"
WHISPER_DIR = "whisper"

# Files whose content decides the stored voice features (text ids, speech ids, speaker embedding).
FEATURE_FILES: tuple[str, ...] = (
    "speech_tokenizer/config.json",
    "speech_tokenizer/preprocessor_config.json",
    "speech_tokenizer/model.safetensors",
    "vq32k-phoneme-tokenizer/tokenizer.model",
    "vq32k-phoneme-tokenizer/tokenizer_config.json",
    CAMPPLUS,
)

# Every file the engine reads, except the LLM weights whose names come from the shard index.
REQUIRED_FILES: tuple[str, ...] = (LLM_CONFIG, FLOW_CONFIG, FLOW_WEIGHTS, HIFT_WEIGHTS, *FEATURE_FILES)


class CheckpointError(EngineError):
    """A checkpoint that is missing, incomplete or unreadable; the message names the file and the fix."""


def default_checkpoint_dir() -> Path:
    """Where `glmtts-mcp download` puts the checkpoint when no directory is given."""
    return Path(user_data_dir("glmtts-mcp")) / "checkpoints" / "GLM-TTS"


def find_checkpoint(explicit: Path | None = None) -> Path:
    """The checkpoint directory to use: the explicit one if given, else the default download location."""
    directory = Path(explicit).expanduser() if explicit is not None else default_checkpoint_dir()
    if not directory.is_dir():
        raise CheckpointError(f"no GLM-TTS checkpoint at {directory}: {HOW_TO_GET}")
    return directory


def twin(path: Path) -> Path:
    """The `.safetensors` twin of a `.pt` file."""
    return path.with_suffix(".safetensors")


def _present(directory: Path, rel: str) -> bool:
    path = directory / rel
    return path.is_file() or (path.suffix == ".pt" and twin(path).is_file())


def llm_weight_files(directory: Path) -> list[str]:
    """Relative paths of the LLM weight files: the shards named by the index, or the single file."""
    index = directory / LLM_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"corrupt {index}: {exc}; {HOW_TO_GET}") from exc
        return [f"{LLM_DIR}/{name}" for name in sorted(set(weight_map.values()))]
    return [LLM_SINGLE]


def validate_checkpoint(directory: Path) -> None:
    """Check every required file at once, so one error lists everything that is missing."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"no GLM-TTS checkpoint at {directory}: {HOW_TO_GET}")
    missing = [rel for rel in REQUIRED_FILES if not _present(directory, rel)]
    if not (directory / LLM_INDEX).is_file() and not (directory / LLM_SINGLE).is_file():
        missing.append(LLM_INDEX)  # the official layout: sharded weights named by this index
    else:
        missing += [rel for rel in llm_weight_files(directory) if not (directory / rel).is_file()]
    if missing:
        names = ", ".join(missing)
        raise CheckpointError(f"checkpoint missing {names} under {directory}: {HOW_TO_GET}")


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.pt` (weights_only, `{"model": ...}` unwrapped) or `.safetensors` file, on CPU.

    A `.safetensors` twin of a `.pt` file is read instead when it exists.
    """
    path = Path(path)
    if path.suffix == ".pt" and twin(path).is_file():
        path = twin(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint missing {path}: {HOW_TO_GET}")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path} (corrupt or truncated?): {exc}; re-download it") from exc
    except Exception as exc:  # weights_only refuses anything but tensors and containers
        raise CheckpointError(
            f"{path} holds something other than tensors and was not loaded: {exc}; re-download it"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors: re-download it")
    return dict(state)


def read_json(path: Path) -> dict:
    """A JSON config file, or a CheckpointError naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint missing {path}: {HOW_TO_GET}") from exc
    except ValueError as exc:
        raise CheckpointError(f"corrupt JSON in {path}: {exc}; re-download it") from exc


def _sampled_digest(path: Path, edge: int = 1 << 20) -> str:
    """sha256 of size + first and last MiB: cheap on multi-GB weights, catches replaced files."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(edge))
        if size > edge:
            f.seek(max(edge, size - edge))
            h.update(f.read(edge))
    return h.hexdigest()


def fingerprint(directory: Path) -> str:
    """A stable id of the files that decide voice features (tokenizers, speech tokenizer, CAMPPlus).

    Independent of paths and mtimes, so moving or copying a checkpoint keeps stored voices valid;
    a different tokenizer or speaker encoder gives another fingerprint and marks voices stale.
    """
    directory = Path(directory)
    h = hashlib.sha256()
    for rel in FEATURE_FILES:
        path = directory / rel
        h.update(rel.encode())
        h.update(_sampled_digest(path).encode() if path.is_file() else b"-")
    return h.hexdigest()[:16]


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
    from glmtts_mcp.engine.models.vocoder import HIFT_24K_CONFIG

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
) -> Models:
    """Validate the checkpoint (and its manifest's file sizes, if any), then load every module onto `device`.

    The LLM runs in `llm_dtype` (bf16 on GPU saves half its memory); flow and vocoder default to
    fp32 (vLLM-Omni found bf16 DiT audibly hissy, docs/checkpoint.md §5); the speech tokenizer always
    runs fp32 because its codebook argmin has near-ties.
    """
    from glmtts_mcp.engine.models.flow import Flow, load_flow_config
    from glmtts_mcp.engine.models.llm import GLMTTSLLM, load_llm
    from glmtts_mcp.engine.models.speaker import SpeakerEncoder
    from glmtts_mcp.engine.models.speech_tokenizer import SpeechTokenizer
    from glmtts_mcp.engine.frontend.text_tokenizer import TextTokenizer
    from glmtts_mcp.engine.models.vocoder import HiFTGenerator, load_hift_state_dict

    from glmtts_mcp.engine.checkpoint.download import MANIFEST, verify_checkpoint

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
    llm = _named(llm_dir, "LLM", lambda: GLMTTSLLM(load_llm(llm_dir, device=device, dtype=llm_dtype), special))

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
