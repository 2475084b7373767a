"""Clone-or-get: the shared step of `clone_voice` and one-shot `synthesize(reference_audio=...)`.

Runs in a worker thread with the engine loaded. The library decides by content id whether the
voice exists; only a new voice pays for feature extraction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from glmtts_mcp.engine.types import ProgressCallback, ReferenceAudio
from glmtts_mcp.voices import NewVoiceData, VoiceLibrary, VoiceRecord

if TYPE_CHECKING:
    from glmtts_mcp.engine.runtime.pipeline import Engine


@dataclass
class CloneOutcome:
    record: VoiceRecord
    existed: bool
    duration_s: float
    timings: dict[str, float]
    warnings: list[str] = field(default_factory=list)


def extract_new_voice(
    engine: Engine,
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
    reference = ReferenceAudio(pcm=pcm, sample_rate=sample_rate, duration_s=len(pcm) / sample_rate)  # int16, as kept
    extracted = engine.extract_voice(reference, transcript, language, progress)
    if warnings is not None:
        warnings.extend(extracted.warnings)
    return NewVoiceData(
        tensors=extracted.features.tensors,
        transcript=extracted.transcript,
        transcript_source=extracted.transcript_source,
        language=extracted.language,
        duration_s=reference.duration_s,
        timings=extracted.timings,
    )


def clone_or_get(
    engine: Engine,
    library: VoiceLibrary,
    source: Path | bytes,
    name: str | None,
    transcript: str | None,
    language: str | None,
    progress: ProgressCallback | None,
) -> CloneOutcome:
    """Decode the clip, then return the stored voice for it or extract and store a new one."""
    start = time.perf_counter()
    if progress:
        progress(0, 3, "preparing reference audio")
    reference = engine.prepare_reference(source)
    prepared = time.perf_counter()
    if progress:
        progress(1, 3, "looking up the voice library")
    warnings = list(reference.warnings)
    record, existed = library.get_or_create(
        reference.pcm,
        reference.sample_rate,
        transcript,
        create=lambda: extract_new_voice(
            engine, reference.pcm, reference.sample_rate, transcript, language, progress, warnings
        ),
        name=name,
        processing=engine.reference_processing,
    )
    if existed and name is not None and name != record.name:
        record = library.rename(record.id, name)  # cloning a known clip under a new name renames it
    timings = {"prepare_reference": prepared - start}
    if not existed:
        timings.update(record.timings)
    timings["clone_total"] = time.perf_counter() - start
    if progress:
        progress(3, 3, "voice ready" if existed else "voice extracted and stored")
    return CloneOutcome(record, existed, reference.duration_s, timings, warnings)
