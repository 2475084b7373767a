"""Narrations written to files as they are made: the output store's audio://{id}, a path of the user's, or a
WAV stream into a pipe.

Each piece goes to disk before the next is made, so memory stays flat however long the narration is; a
file appears (atomically) only when the narration is complete, a stream's pieces as they come.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread

from glmtts_mcp.app.audio_out import AudioFileWriter, StreamEncoder
from glmtts_mcp.app.core import App
from glmtts_mcp.app.narration import (
    Audio,
    Done,
    Narration,
    NarrationRequest,
    VoiceReady,
    collect,
)
from glmtts_mcp.app.outputs import StoredOutput
from glmtts_mcp.engine.types import ProgressCallback, SynthesisOptions


async def narrate_to_file(
    app: App,
    request: NarrationRequest,
    open_writer: Callable[[int], AudioFileWriter],
    progress: ProgressCallback | None = None,
) -> tuple[VoiceReady, Done, AudioFileWriter]:
    """Run the narration into the writer `open_writer(sample_rate)` makes; the caller commits it."""
    writer: AudioFileWriter | None = None

    async def write(piece: Audio) -> None:
        nonlocal writer
        if writer is None:
            writer = await anyio.to_thread.run_sync(open_writer, piece.sample_rate)
        await anyio.to_thread.run_sync(writer.write, piece.pcm)

    try:
        async with Narration(app, request, progress) as narration:
            ready, done = await collect(narration, write)
        if writer is None:  # nothing to say after all: an empty file of the narration's rate
            writer = await anyio.to_thread.run_sync(open_writer, done.sample_rate or SynthesisOptions().sample_rate)
        return ready, done, writer
    except BaseException:
        if writer is not None:
            writer.discard()
        raise


async def narrate_to_stream(
    app: App, request: NarrationRequest, sink: BinaryIO, progress: ProgressCallback | None = None
) -> tuple[VoiceReady, Done]:
    """The narration as a WAV stream into `sink` (a pipe: a header of unknown length, then each piece as it
    comes, flushed), so a player reads it as it arrives."""
    encoder: StreamEncoder | None = None

    def send(data: bytes) -> None:
        sink.write(data)
        sink.flush()

    async def write(piece: Audio) -> None:
        nonlocal encoder
        if encoder is None:
            encoder = StreamEncoder("wav", piece.sample_rate)
            await anyio.to_thread.run_sync(send, encoder.start())
        await anyio.to_thread.run_sync(send, encoder.push(piece.pcm))

    async with Narration(app, request, progress) as narration:
        ready, done = await collect(narration, write)
    if encoder is None:  # nothing to say after all: an empty stream of the narration's rate
        await anyio.to_thread.run_sync(
            send, StreamEncoder("wav", done.sample_rate or SynthesisOptions().sample_rate).start()
        )
    return ready, done


async def narrate_to_store(
    app: App, request: NarrationRequest, fmt: str, progress: ProgressCallback | None = None
) -> tuple[VoiceReady, Done, StoredOutput]:
    """The narration as a new output in the store (audio://{id})."""
    ready, done, writer = await narrate_to_file(app, request, lambda rate: app.outputs.writer(fmt, rate), progress)
    return ready, done, await anyio.to_thread.run_sync(app.outputs.finish, writer)


async def narrate_to_path(
    app: App, request: NarrationRequest, target: Path, fmt: str, progress: ProgressCallback | None = None
) -> tuple[VoiceReady, Done, Path]:
    """The narration as the file `target` (replaced atomically when complete)."""
    ready, done, writer = await narrate_to_file(app, request, lambda rate: AudioFileWriter(target, fmt, rate), progress)
    try:
        return ready, done, await anyio.to_thread.run_sync(writer.commit)
    except BaseException:
        writer.discard()
        raise
