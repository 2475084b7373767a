"""A narration as an HTTP body: the first piece leaves as soon as the engine has it.

wav, pcm and ogg stream piece by piece. mp3 and flac are written to a private temporary file piece by
piece and sent when complete (a socket cannot take back the bytes libsndfile rewrites at the end), so
no format holds the whole narration in memory. The voice is resolved and the first piece made before the
response starts, so a bad request still gets its status code. A client that goes away stops the
narration at the engine's next decode step (the `Narration` block exits), at any point: while its
request waits for a slot or runs up to the first piece (`open_speech` watches the connection; nothing
else reads it then), or while the answer streams (Starlette's response watches it).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import anyio
import anyio.abc
import anyio.to_thread
from starlette.types import Receive

from glmtts_mcp.app.audio_out import STREAMED_FORMATS, AudioFileWriter, StreamEncoder
from glmtts_mcp.app.core import App
from glmtts_mcp.app.narration import (
    Audio,
    Done,
    Narration,
    NarrationEvent,
    NarrationRequest,
    VoiceReady,
)
from glmtts_mcp.web.errors import ClientGone

_READ_BLOCK = 64 * 1024


@dataclass
class OpenSpeech:
    """A narration whose voice is known and whose first piece of audio is made."""

    narration: Narration
    voice: VoiceReady
    first: Audio
    rest: AsyncIterator[NarrationEvent]
    done: Done | None = None

    @property
    def duration_s(self) -> float:
        return self.done.duration_s if self.done else 0.0


def reading_headers(app: App, request: NarrationRequest, speech: OpenSpeech) -> dict[str, str]:
    """How the text is read, for a speech response: the mode, and the text as the model reads it (every
    segment, UTF-8 percent-encoded as a header must be ASCII)."""
    return {
        "x-pronunciation": request.pronunciation or app.settings.pronunciation,
        "x-text-as-read": quote("".join(speech.first.as_read), safe=""),
    }


def disconnect_of(receive: Receive) -> Callable[[], Awaitable[None]]:
    """A wait that ends when the HTTP client closes its connection (the request body is already read, so
    the server's next message on `receive` is the disconnect)."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    return disconnected


async def open_speech(
    app: App, request: NarrationRequest, disconnected: Callable[[], Awaitable[None]] | None = None
) -> OpenSpeech:
    """Start the narration and run it up to its first piece of audio (errors surface here). With
    `disconnected`, a client that leaves meanwhile stops it at once (`ClientGone`), queued or running."""
    if disconnected is None:
        return await _open_speech(app, request)
    outcome: list[OpenSpeech | Exception] = []

    async def cancel_when_gone(scope: anyio.CancelScope) -> None:
        await disconnected()
        scope.cancel()

    async with anyio.create_task_group() as watching:
        watching.start_soon(cancel_when_gone, watching.cancel_scope)
        try:
            outcome.append(await _open_speech(app, request))
        except Exception as exc:  # raised after the watch ends (a task group would wrap it in a group)
            outcome.append(exc)
        watching.cancel_scope.cancel()
    if not outcome:
        raise ClientGone("the client closed its connection before the first byte; its narration was stopped")
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


async def _open_speech(app: App, request: NarrationRequest) -> OpenSpeech:
    narration = Narration(app, request)
    events = aiter(narration)
    voice: VoiceReady | None = None
    try:
        async for event in events:
            if isinstance(event, VoiceReady):
                voice = event
            elif isinstance(event, Audio):
                assert voice is not None
                return OpenSpeech(narration, voice, event, events)
        raise RuntimeError("the narration ended without audio")
    except BaseException:
        await narration.__aexit__(None, None, None)
        raise


async def encoded(speech: OpenSpeech, fmt: str) -> AsyncIterator[bytes]:
    """The narration's bytes in `fmt`; leaving early (a client gone) cancels the narration."""
    try:
        if fmt in STREAMED_FORMATS:
            async for piece in _streamed(speech, fmt):
                yield piece
        else:
            async for piece in _whole(speech, fmt):
                yield piece
    finally:
        await speech.narration.__aexit__(None, None, None)


async def audio_pieces(speech: OpenSpeech) -> AsyncIterator[Audio]:
    """The first piece, then the others as they are made; `speech.done` is set at the end."""
    yield speech.first
    async for event in speech.rest:
        if isinstance(event, Audio):
            yield event
        elif isinstance(event, Done):
            speech.done = event


async def _streamed(speech: OpenSpeech, fmt: str) -> AsyncIterator[bytes]:
    encoder = StreamEncoder(fmt, speech.first.sample_rate)
    head = encoder.start()
    if head:
        yield head
    async for piece in audio_pieces(speech):
        data = encoder.push(piece.pcm)
        if data:
            yield data
    tail = encoder.finish()
    if tail:
        yield tail


async def _whole(speech: OpenSpeech, fmt: str) -> AsyncIterator[bytes]:
    folder = Path(tempfile.mkdtemp(prefix="glmtts-speech-"))  # private (0700), always removed
    try:
        writer = AudioFileWriter(folder / f"speech.{fmt}", fmt, speech.first.sample_rate)
        try:
            async for piece in audio_pieces(speech):
                await anyio.to_thread.run_sync(writer.write, piece.pcm)
            path = await anyio.to_thread.run_sync(writer.commit)
        finally:
            writer.discard()
        with path.open("rb") as f:
            while block := await anyio.to_thread.run_sync(f.read, _READ_BLOCK):
                yield block
    finally:
        shutil.rmtree(folder, ignore_errors=True)
