"""What a checkpoint can use of a voice's features, read from its config files, and how closely two
extractions of one clip agree: the facts the voice library checks stored and imported features against.

Ids outside the vocabularies would index past an embedding table (an IndexError mid-narration); a mel
or an embedding of another width cannot enter the flow; a clip of d seconds gives about
`speech_tokens_per_s * d` speech tokens and `mel_frames_per_s * d` mel frames. Reading the configs
loads no weights (and imports no LLM code), so the server knows these before the model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from glmtts_mcp.engine.checkpoint.layout import (
    FLOW_CONFIG,
    LLM_CONFIG,
    SPEECH_TOKENIZER_DIR,
    CheckpointError,
    read_json,
)
from glmtts_mcp.engine.models.dit import SPEAKER_DIM
from glmtts_mcp.engine.models.flow import load_flow_config

# How far two extractions of the same clip by this engine may differ (on another device, or another
# torch build): floats within the module parity tolerances of docs/parity.md (the prompt mel as the
# `mel24k` case, the embedding as CAMPPlus's fbank case), speech tokens equal but for the codebook's
# near-ties (docs/checkpoint.md). Features of another recording differ far more: their tokens agree at
# chance level (one in the codebook's size) and their mels and embeddings by whole units.
PROMPT_MEL_TOLERANCE = 8e-4
SPEAKER_EMBEDDING_TOLERANCE = 2e-3
SPEECH_TOKEN_AGREEMENT = 0.9


@dataclass(frozen=True)
class FeatureLimits:
    """The facts of one checkpoint that a voice's features must fit."""

    text_vocab: int  # prompt_text_ids lie in [0, text_vocab): rows of the LLM's embedding table
    speech_vocab: int  # prompt_speech_ids lie in [0, speech_vocab): the speech tokenizer's codebook
    speech_tokens_per_s: float  # the speech tokenizer's rate (the flow's input_frame_rate)
    mel_bins: int  # prompt_mel's width (the flow's mel_dim)
    mel_frames_per_s: float  # the prompt mel's frame rate (the flow's mel_framerate)
    embedding_size: int  # speaker_embedding's length (CAMPPlus's output)


def feature_limits(directory: Path) -> FeatureLimits:
    """The limits of the checkpoint in `directory`; CheckpointError (an EngineError) when a config is missing.

    The speech vocabulary is the tokenizer's codebook, capped by the flow's token table (upstream's
    config.yaml may set vocab_size; the LLM's audio tokens cover the codebook by construction). The
    embedding size is CAMPPlus's, which upstream hard-codes.
    """
    directory = Path(directory)
    llm = read_json(directory / LLM_CONFIG)
    tokenizer = read_json(directory / SPEECH_TOKENIZER_DIR / "config.json")
    flow = load_flow_config(directory / FLOW_CONFIG)
    try:
        text_vocab, codebook = int(llm["vocab_size"]), int(tokenizer["quantize_vocab_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{directory}: the LLM or speech tokenizer config.json lacks a vocabulary size ({exc}); re-download it"
        ) from exc
    return FeatureLimits(
        text_vocab=text_vocab,
        speech_vocab=min(codebook, int(flow["vocab_size"])),
        speech_tokens_per_s=float(flow["input_frame_rate"]),
        mel_bins=int(flow["mel_dim"]),
        mel_frames_per_s=float(flow["mel_framerate"]),
        embedding_size=SPEAKER_DIM,
    )
