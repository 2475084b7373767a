"""The engine's small public surface: what goes in and what comes out.

The voice library stores `VoiceFeatures.tensors` as named tensors and knows nothing of models;
the MCP tools pass these objects between the library and the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from glmtts_mcp.errors import Kind, Term, UserError

# Bump when the meaning or layout of any feature tensor changes: voices stored under another
# version are stale and get re-extracted from their kept reference audio.
FEATURE_SCHEMA_VERSION = 1

# name -> (dtype, ndim). Shapes: prompt_text_ids [N], prompt_speech_ids [M] (raw codebook ids),
# prompt_mel [T, 80] (24 kHz log-mel, 50 frames/s), speaker_embedding [192] (CAMPPlus output).
FEATURE_SCHEMA: dict[str, tuple[str, int]] = {
    "prompt_text_ids": ("int64", 1),
    "prompt_speech_ids": ("int64", 1),
    "prompt_mel": ("float32", 2),
    "speaker_embedding": ("float32", 1),
}

ProgressCallback = Callable[[float, float, str], None]
"""progress(done, total, message): called from the engine's worker thread."""


class EngineError(UserError):
    """A problem the user can fix; the message names the problem and the fix."""


class NarrationCancelled(Exception):
    """A narration stopped because its caller cancelled it (or stopped reading) before its end.

    Not an EngineError: nobody is listening for the rest of the audio, and the user did nothing wrong,
    so there is no problem or fix to report; a face that cancelled simply ends the request.
    """


class AudioInputError(EngineError):
    """Reference audio that cannot be used (corrupt, silent, too short or too long)."""

    concerns = Term.REFERENCE


class NotAudioError(AudioInputError):
    """Bytes that no audio decoder reads."""

    kind = Kind.UNSUPPORTED_MEDIA


@dataclass(frozen=True)
class ReferenceAudio:
    """A reference clip as features are taken from it (reference_clip.load_reference prepares it)."""

    # [N], or [N, channels] under `upstream`: exactly the samples the library keeps. int16 (`clean`, and
    # 16-bit `upstream` sources), int32 holding 24-bit values or float32 (`upstream`): see kept_samples
    pcm: np.ndarray
    sample_rate: int
    duration_s: float
    warnings: list[str] = field(default_factory=list)


@dataclass
class VoiceFeatures:
    """Everything synthesis needs from a reference voice, as named tensors (see FEATURE_SCHEMA).

    Synthesis only reads them: the library hands the same tensors to every request."""

    tensors: Mapping[str, torch.Tensor]
    # the library's `features_sha256` of this voice: engine replicas key the voice by it instead of hashing
    digest: str | None = None


@dataclass
class ExtractedVoice:
    """The result of cloning: features plus the facts the library records in meta.json."""

    features: VoiceFeatures
    transcript: str
    transcript_source: Literal["user", "whisper"]
    language: str | None
    timings: dict[str, float]  # seconds per stage: whisper, speech_tokenizer, campplus, mel, text
    warnings: list[str] = field(default_factory=list)  # e.g. a Whisper transcript that hit its length cap


PronunciationMode = Literal["text", "phoneme"]
PRONUNCIATION_MODES: tuple[PronunciationMode, ...] = ("text", "phoneme")


@dataclass(frozen=True)
class Pronunciation:
    """How the text is read: upstream's plain text path or its phoneme-in path (`TextFrontEnd(use_phoneme=True)`),
    with the user's dictionary entries, already checked (the library's pronunciation dictionaries)."""

    mode: PronunciationMode = "text"
    respellings: tuple[tuple[str, str], ...] = ()  # text -> text, substituted before normalisation
    readings: tuple[tuple[str, str], ...] = ()  # text -> phoneme tokens, substituted in the normalised text


@dataclass(frozen=True)
class SynthesisOptions:
    """Per-call synthesis settings; bounds are checked by the pipeline."""

    seed: int = 0
    temperature: float = 1.0
    top_p: float = 0.8
    top_k: int = 25
    sample_rate: int = 24000
    pronunciation: Pronunciation = Pronunciation()
    # chunks inside a segment as the LLM generates (upstream's token2wav_stream); False: one chunk per
    # segment, exactly upstream's offline token2wav
    stream: bool = False


@dataclass
class AudioChunk:
    """One piece of a synthesis stream; the full audio is the concatenation of all chunks."""

    pcm: np.ndarray  # float32 mono
    sample_rate: int
    segment_index: int
    segment_count: int
    text: str
    warnings: list[str] = field(default_factory=list)  # what changed this segment's audio (cut, dropped, silent)
    as_read: tuple[str, ...] = ()  # the first chunk only: every segment as the model reads it (text_as_read)
