"""Clone-or-get: the shared step of `clone_voice` and one-shot `synthesize(reference_audio=...)`.

Runs in a worker thread with the engine loaded. The library decides by content id whether the
voice exists; only a new voice pays for feature extraction. The transcript's length only makes sense
against the decoded clip, so it is checked here, once, for every face that clones (MCP tools,
`glmtts-mcp say`); `checked_language` is for the faces that take a language.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import numpy as np
import torch

from glmtts_mcp.engine.frontend.text_normalize import Language
from glmtts_mcp.engine.types import ProgressCallback, ReferenceAudio
from glmtts_mcp.errors import Term, UserError
from glmtts_mcp.voices import (
    LoadedVoice,
    NewVoiceData,
    VoiceLibrary,
    VoiceRecord,
    name_key,
)

if TYPE_CHECKING:
    from glmtts_mcp.app.engine_host import EngineBackend

# The languages the text frontend normalises (upstream GLM-TTS routes text to its zh or en grammar).
LANGUAGES: tuple[str, ...] = get_args(Language)

# Transcript length bound (see transcript_limit).
TRANSCRIPT_CHARS_PER_S = 30.0
TRANSCRIPT_CHARS_SLACK = 60


@dataclass
class CloneOutcome:
    record: VoiceRecord
    existed: bool
    duration_s: float
    timings: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    loaded: LoadedVoice | None = None  # the features, when clone_or_get was asked to load them


def checked_language(language: str | None) -> str | None:
    """`language` case-normalised, or an error that names the input and lists what is accepted."""
    if language is None or not language.strip():
        return None
    code = language.strip().lower()
    if code not in LANGUAGES:
        raise UserError(
            f"{{argument}} {language!r} is not one the text frontend knows",
            f"pass one of {', '.join(LANGUAGES)} (or omit it and Whisper detects it)",
            argument=Term.LANGUAGE,
        )
    return code


def transcript_limit(duration_s: float) -> int:
    """The most characters a transcript of `duration_s` seconds of speech can plausibly have.

    Fast sustained speech is about 7-8 syllables per second: some 20 characters/s of English
    (spaces and punctuation included) and about 8 characters/s of Mandarin. 30 characters/s is half
    again over fast English and nearly four times fast Mandarin; the 60-character slack covers
    punctuation and very short clips. A longer transcript cannot be what the clip says: the model
    would read a prompt text far longer than its prompt speech, and the narration would come out cut.
    """
    return math.ceil(TRANSCRIPT_CHARS_PER_S * duration_s) + TRANSCRIPT_CHARS_SLACK


def check_transcript_fits(transcript: str | None, duration_s: float) -> None:
    """Refuse a transcript far longer than the clip could say."""
    if transcript is None:
        return
    length = len(" ".join(transcript.split()))  # runs of whitespace and line breaks count once
    limit = transcript_limit(duration_s)
    if length > limit:
        raise UserError(
            f"{{argument}} has {length} characters, but the clip has only {duration_s:.1f} s of speech (at most "
            f"{limit} characters fit, at {TRANSCRIPT_CHARS_PER_S:g} characters per second)",
            "pass only the words spoken in the clip as {transcript}, or omit it and Whisper transcribes the clip",
            argument=Term.TRANSCRIPT,
        )


def extract_new_voice(
    engine: EngineBackend,
    pcm: np.ndarray,
    sample_rate: int,
    transcript: str | None,
    language: str | None,
    progress: ProgressCallback | None,
    warnings: list[str] | None = None,
) -> NewVoiceData:
    """Features of a prepared reference clip, in the form the library stores.

    The extraction's warnings (the library does not keep them) go to `warnings` when given.
    """
    reference = ReferenceAudio(pcm=pcm, sample_rate=sample_rate, duration_s=len(pcm) / sample_rate)  # as kept
    extracted = engine.extract_voice(reference, transcript, language, progress)
    if warnings is not None:
        warnings.extend(extracted.warnings)
    return NewVoiceData(
        tensors=dict(extracted.features.tensors),
        transcript=extracted.transcript,
        transcript_source=extracted.transcript_source,
        language=extracted.language,
        duration_s=reference.duration_s,
        timings=extracted.timings,
    )


def _kept_name_warning(record: VoiceRecord, name: str) -> str:
    return (
        f"this clip is already in the library as voice {record.name!r} ({record.id}), which keeps its name: "
        f"{name!r} does not refer to it. To rename it, {{rename_voice}} with voice {json.dumps(record.id)} "
        f"and name {json.dumps(name, ensure_ascii=False)}"
    )


def clone_or_get(
    engine: EngineBackend,
    library: VoiceLibrary,
    source: Path | bytes,
    name: str | None,
    transcript: str | None,
    language: str | None,
    progress: ProgressCallback | None,
    *,
    load_on: str | torch.device | None = None,
) -> CloneOutcome:
    """Decode the clip, then return the stored voice for it or extract and store a new one.

    A clip that is already a voice keeps that voice's name; a different `name` only adds a warning
    (renaming silently would break the old name for whoever uses it). With `load_on`, the voice's
    features are loaded there too; the voice is pinned over both steps, so a concurrent delete lands
    after them, never in between.
    """
    start = time.perf_counter()
    if progress:
        progress(0, 3, "preparing reference audio")
    reference = engine.prepare_reference(source)
    check_transcript_fits(transcript, reference.duration_s)
    prepared = time.perf_counter()
    if progress:
        progress(1, 3, "looking up the voice library")
    warnings = list(reference.warnings)
    processing = engine.reference_processing
    vid = library.voice_id_for(reference.pcm, reference.sample_rate, transcript, processing)
    with library.pinned(vid):  # a delete racing this clone waits until the voice is stored and loaded
        record, existed = library.get_or_create(
            reference.pcm,
            reference.sample_rate,
            transcript,
            create=lambda: extract_new_voice(
                engine, reference.pcm, reference.sample_rate, transcript, language, progress, warnings
            ),
            name=name,
            processing=processing,
        )
        loaded = library.load_features(record.id, load_on) if load_on is not None else None
    if existed and name is not None and name_key(name) != name_key(record.name):
        warnings.append(_kept_name_warning(record, name))
    timings = {"prepare_reference": prepared - start}
    if not existed:
        timings.update(record.timings)
    timings["clone_total"] = time.perf_counter() - start
    if progress:
        progress(3, 3, "voice ready" if existed else "voice extracted and stored")
    return CloneOutcome(record, existed, reference.duration_s, timings, warnings, loaded)
