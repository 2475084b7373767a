"""Transcribe a reference clip with openai-whisper, on arrays only (never ffmpeg, never a download).

The model file is a local `{"dims", "model_state_dict"}` checkpoint: a path, a file under the
checkpoint's `whisper/` folder, or the standard whisper cache (`~/.cache/whisper/<size>.pt`, where
`glmtts-mcp download` puts it). `whisper.load_model` on a path reads it with `weights_only=True`.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import whisper

from glmtts_mcp.engine.checkpoint import WHISPER_DIR, CheckpointError

log = logging.getLogger(__name__)

WHISPER_SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None


def whisper_cache_dir() -> Path:
    """The directory openai-whisper downloads into (honours XDG_CACHE_HOME as whisper does)."""
    base = os.getenv("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    return Path(base) / "whisper"


def resolve_whisper_model(model: str | Path, checkpoint: Path | None = None) -> Path:
    """The local file for a whisper size name ("base") or path; a clear error when it is absent."""
    candidate = Path(model).expanduser()
    if candidate.suffix == ".pt" or os.sep in str(model):
        if candidate.is_file():
            return candidate
        raise CheckpointError(f"whisper model file {candidate} not found: run `glmtts-mcp download` or pass a path")
    places = ([Path(checkpoint) / WHISPER_DIR / f"{model}.pt"] if checkpoint is not None else []) + [
        whisper_cache_dir() / f"{model}.pt"
    ]
    for place in places:
        if place.is_file():
            return place
    looked = ", ".join(str(p) for p in places)
    raise CheckpointError(
        f"whisper model {model!r} not found (looked at {looked}): run `glmtts-mcp download` "
        "to fetch it, pass a transcript with the reference audio, or set the whisper model path"
    )


class Transcriber:
    """Loads the whisper model on first use (most clones come with a transcript or hit the cache)."""

    def __init__(self, model_path: Path, device: str = "cpu") -> None:
        self.model_path = Path(model_path)
        self.device = device
        self._model: whisper.Whisper | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> whisper.Whisper:
        with self._lock:
            if self._model is None:
                log.info("loading whisper model %s on %s", self.model_path, self.device)
                try:
                    self._model = whisper.load_model(str(self.model_path), device=self.device)
                except Exception as exc:  # torch.load/whisper raise many types for a bad file (pickle, zip, keys)
                    raise CheckpointError(
                        f"cannot load whisper model {self.model_path}: {exc}; re-download it with `glmtts-mcp download`"
                    ) from exc
                self._model.eval()
            return self._model

    def unload(self) -> None:
        with self._lock:
            self._model = None

    def transcribe(self, wav16k: np.ndarray, language: str | None = None) -> Transcript:
        """Text and detected (or given) language of float32 mono 16 kHz audio."""
        model = self._load()
        audio = np.ascontiguousarray(wav16k, dtype=np.float32).reshape(-1)
        # Whisper's temperature fallback samples from torch's global RNG: seed a private copy of it
        # so a clip always gets the same transcript (and the caller's RNG state is left alone).
        device = torch.device(self.device)
        cuda_devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices), torch.inference_mode():
            torch.manual_seed(0)
            result = whisper.transcribe(
                model,
                audio,
                language=language,
                fp16=self.device.startswith("cuda"),
                condition_on_previous_text=False,
                verbose=None,
            )
        text = " ".join(str(result.get("text", "")).split())
        return Transcript(text=text, language=result.get("language") or language)
