"""The synthesize tool: text + a library voice (or a reference clip, cloned on the way) -> audio.

The audio is always saved in the output store (audio://{id}); what goes back inline follows the
return mode and the host's result-size limit (see results.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import anyio.to_thread
import numpy as np
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from glmtts_mcp.config import parse_return_mode
from glmtts_mcp.engine.runtime.output_encoding import encode_audio
from glmtts_mcp.engine.types import ProgressCallback, SynthesisOptions, VoiceFeatures
from glmtts_mcp.app.core import App
from glmtts_mcp.app.cloning import clone_or_get
from glmtts_mcp.mcp_face.errors import user_errors
from glmtts_mcp.app.schemas import SynthesizeResult
from glmtts_mcp.app.outputs import AUDIO_MIME
from glmtts_mcp.app.paths import audio_source
from glmtts_mcp.mcp_face.progress import relay_for
from glmtts_mcp.mcp_face.results import render_audio
from glmtts_mcp.mcp_face.voice_tools import notify_voices_changed

if TYPE_CHECKING:
    from glmtts_mcp.engine.runtime.pipeline import Engine

log = logging.getLogger(__name__)

MAX_SEED = 2**63 - 1


@dataclass
class Narration:
    voice_id: str
    voice_name: str | None
    tier: str
    created: bool
    pcm: np.ndarray
    sample_rate: int
    segments: int
    data: bytes
    timings: dict[str, float]
    warnings: list[str]


def narrate(
    engine: Engine,
    app: App,
    text: str,
    voice: str | None,
    reference: Path | bytes | None,
    fmt: str,
    seed: int,
    progress: ProgressCallback,
    transcript: str | None = None,
) -> Narration:
    """The blocking part, in a worker thread: voice features, synthesis segment by segment, encoding.

    Shared with `glmtts-mcp say`, which passes a progress bar as `progress` (and may give the
    reference's transcript, so Whisper is not needed).
    """
    timings: dict[str, float] = {}
    warnings: list[str] = []
    created = False
    start = time.perf_counter()
    if reference is not None:  # cloned (again, if a delete lands meanwhile) and loaded in one step
        outcome = clone_or_get(engine, app.library, reference, None, transcript, None, progress, load_on=engine.device)
        assert outcome.loaded is not None
        loaded, created = outcome.loaded, not outcome.existed
        timings.update(outcome.timings)
        warnings += outcome.warnings
    else:
        assert voice is not None
        loaded = app.library.load_features(voice, engine.device)  # resolves the id or name itself
    timings["voice_features"] = loaded.load_s
    features = VoiceFeatures(tensors=loaded.tensors)
    synth_start = time.perf_counter()
    pieces: list[np.ndarray] = []
    sample_rate = SynthesisOptions().sample_rate
    segments = 0
    for chunk in engine.synthesize(text, features, SynthesisOptions(seed=seed), progress):
        pieces.append(np.asarray(chunk.pcm, dtype=np.float32))
        warnings += chunk.warnings
        sample_rate = chunk.sample_rate
        segments = chunk.segment_count  # the engine reports "segment i/n ready" itself
    pcm = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    timings["synthesize"] = time.perf_counter() - synth_start
    encode_start = time.perf_counter()
    data = encode_audio(pcm, sample_rate, fmt)
    timings["encode"] = time.perf_counter() - encode_start
    timings["engine_total"] = time.perf_counter() - start
    return Narration(
        voice_id=loaded.record.id,
        voice_name=loaded.record.name,
        tier="cloned" if created else loaded.tier,
        created=created,
        pcm=pcm,
        sample_rate=sample_rate,
        segments=segments,
        data=data,
        timings=timings,
        warnings=warnings,
    )


def checked_text(text: str, max_chars: int) -> str:
    """The text to speak, stripped; refused when empty or over `max_chars`. Every face calls this before
    any work (the model may not be loaded yet), and the engine does not check it again."""
    text = text.strip()
    if not text:
        raise ToolError("text is empty: pass the words to speak")
    if len(text) > max_chars:
        raise ToolError(
            f"text has {len(text)} characters; the limit is {max_chars} "
            "(split it into several calls, or raise --max-text-chars)"
        )
    return text


def register_synthesis_tool(server: MCPServer, app: App) -> None:
    """Add `synthesize` to `server`."""
    settings = app.settings

    @server.tool(
        title="Narrate text in a cloned voice",
        annotations=ToolAnnotations(
            title="Narrate text in a cloned voice",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=False,
        ),
    )
    async def synthesize(
        text: Annotated[str, Field(description="the text to speak", min_length=1)],
        ctx: Context,
        voice: Annotated[str | None, Field(description="voice id or name from the library (fast path)")] = None,
        reference_audio: Annotated[
            str | None,
            Field(description="instead of `voice`: a reference recording (path or file:// URI), cloned into the library"),
        ] = None,
        format: Annotated[
            str | None, Field(description=f"audio format: {', '.join(AUDIO_MIME)} (ogg is Ogg/Opus); default from config")
        ] = None,
        return_mode: Annotated[
            str | None,
            Field(description="audio, resource, link, path or a '+' combination such as 'audio+path'; default from config"),
        ] = None,
        seed: Annotated[int | None, Field(description="random seed: the same seed gives the same audio", ge=0, le=MAX_SEED)] = None,
    ) -> Annotated[CallToolResult, SynthesizeResult]:
        """Speak `text` in a cloned voice and return the audio (inline when it fits, else a link and a file path).

        Pass `voice` (from clone_voice or list_voices) or `reference_audio` (cloned automatically, its id is returned).
        Long texts are split into segments; progress is reported per segment.
        """
        with user_errors():
            text = checked_text(text, settings.max_text_chars)
            if (voice is None) == (reference_audio is None):
                raise ToolError(
                    "pass exactly one of `voice` (an id or name from list_voices) or `reference_audio` (a file path)"
                )
            fmt = (format or settings.format).strip().lower()
            if fmt not in AUDIO_MIME:
                raise ToolError(f"unknown format {fmt!r}: use one of {', '.join(AUDIO_MIME)}")
            try:
                mode = "+".join(parse_return_mode(return_mode or settings.return_mode))
            except ValueError as exc:  # a user's value: say which argument
                raise ToolError(f"return_mode: {exc}") from exc
            reference = None
            if reference_audio is not None:
                reference = audio_source(
                    reference_audio, settings.allowed_dirs, settings.max_inline_audio_bytes, argument="reference_audio"
                )
            else:
                await anyio.to_thread.run_sync(app.library.resolve, voice)  # unknown voices fail before loading
            relay = relay_for(ctx)
            start = time.perf_counter()
            async with relay.running():
                await relay.report(0, None, "starting" if app.host.model_loaded else "loading the model")
                narration = await app.host.run(
                    lambda engine: narrate(engine, app, text, voice, reference, fmt, seed or 0, relay)
                )
            if narration.created:
                await notify_voices_changed(ctx)
            stored = await anyio.to_thread.run_sync(app.outputs.save, narration.data, fmt)
            duration_s = len(narration.pcm) / narration.sample_rate
            timings = dict(narration.timings)
            timings["total"] = time.perf_counter() - start
            summary = (
                f"Narrated {len(text)} characters in voice {narration.voice_name or narration.voice_id} "
                f"({duration_s:.1f} s of {fmt}, {narration.segments} segment(s), voice from {narration.tier})."
            )
            rendered = render_audio(stored, narration.data, mode, settings.max_result_bytes, summary)
            result = SynthesizeResult(
                voice_id=narration.voice_id,
                voice_name=narration.voice_name,
                cache_hit=not narration.created,
                cache_tier=narration.tier,
                duration_s=round(duration_s, 3),
                sample_rate=narration.sample_rate,
                format=fmt,
                uri=stored.uri,
                path=str(stored.path),
                bytes=len(narration.data),
                segments=narration.segments,
                returned=rendered.parts,
                note=rendered.note,
                timings=timings,
                warnings=narration.warnings,
            )
            return CallToolResult(content=rendered.blocks, structured_content=result.model_dump(mode="json"))
