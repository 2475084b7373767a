"""The official GLM-TTS checkpoint layout: where its files are, whether they are all there, how to read them.

Layout (docs/checkpoint.md §1): the Hugging Face repo zai-org/GLM-TTS plus `frontend/campplus.onnx`
(which HF does not ship), and Whisper's weights in the whisper cache. Every weight file is read with
`torch.load(weights_only=True)` or safetensors; a `.safetensors` twin of a `.pt` file (written by
`download.convert_to_safetensors`) is preferred when present.

This module knows files, never models: the models import its errors and paths, and only
`checkpoint.loader` builds models from it, so nothing here can import in a circle.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from platformdirs import user_data_dir
from safetensors import SafetensorError
from safetensors.torch import load_file

from glmtts_mcp.engine.types import EngineError

HOW_TO_GET = "run `glmtts-mcp download` or pass --checkpoint"

HF_REPO = "zai-org/GLM-TTS"  # the Hugging Face model repo this layout is a copy of

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
    state: object
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


# Whisper's weights live outside the GLM-TTS folder: a path, the checkpoint's `whisper/` folder, or
# the standard whisper cache (`~/.cache/whisper/<size>.pt`, where `glmtts-mcp download` puts them).
def whisper_cache_dir() -> Path:
    """The directory openai-whisper downloads into (honours XDG_CACHE_HOME as whisper does)."""
    base = os.getenv("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    return Path(base) / "whisper"


def names_whisper_file(model: str | Path) -> bool:
    """Whether a whisper setting names a model file (a path) rather than a size such as "base"."""
    text = str(model)
    return text.endswith(".pt") or os.sep in text


def _whisper_places(model: str | Path, checkpoint: Path | None) -> list[Path]:
    """Where a whisper size name's file may lie: the checkpoint's whisper folder, then Whisper's cache."""
    return ([Path(checkpoint) / WHISPER_DIR / f"{model}.pt"] if checkpoint is not None else []) + [
        whisper_cache_dir() / f"{model}.pt"
    ]


def whisper_model_problem(model: str, checkpoint: Path | None) -> str | None:
    """Why a whisper setting names no model, or None: a file path is accepted (its file is looked for when
    Whisper is first needed), as is an openai-whisper size name or a name whose file is already in place."""
    import whisper  # lazy: pulls in torch

    names = whisper.available_models()
    if names_whisper_file(model) or model in names or any(p.is_file() for p in _whisper_places(model, checkpoint)):
        return None
    return f"unknown whisper model {model!r}: use one of {', '.join(names)}, or the path of a Whisper .pt file"


def resolve_whisper_model(model: str | Path, checkpoint: Path | None = None) -> Path:
    """The local file for a whisper size name ("base") or path; a clear error when it is absent."""
    candidate = Path(model).expanduser()
    if names_whisper_file(model):
        if candidate.is_file():
            return candidate
        raise CheckpointError(f"whisper model file {candidate} not found: run `glmtts-mcp download` or pass a path")
    places = _whisper_places(model, checkpoint)
    for place in places:
        if place.is_file():
            return place
    looked = ", ".join(str(p) for p in places)
    raise CheckpointError(
        f"whisper model {model!r} not found (looked at {looked}): run `glmtts-mcp download` "
        "to fetch it, pass a transcript with the reference audio, or set the whisper model path"
    )
