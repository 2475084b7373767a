"""Narration as a byte stream: the first segment's audio leaves as soon as the engine has it.

wav (a header that declares an unknown length, as streaming servers write it), pcm (raw 16-bit) and
ogg (Ogg/Opus pages are written front to back) stream segment by segment. mp3 and flac are sent
once the whole narration is encoded: libsndfile goes back to their first bytes at the end (the
MP3 info frame, FLAC's STREAMINFO totals), and a stream cannot take back bytes it already sent.

Engine work runs through the same `EngineHost` and job queue as the MCP tools, one segment per
worker-thread hop, so the event loop keeps serving while a narration streams.
"""

from __future__ import annotations

import io
import logging
import struct
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from glmtts_mcp.engine.runtime.output_encoding import AUDIO_FORMATS, encode_audio
from glmtts_mcp.engine.types import AudioChunk, SynthesisOptions, VoiceFeatures
from glmtts_mcp.app.core import App

if TYPE_CHECKING:
    from glmtts_mcp.engine.runtime.pipeline import Engine

log = logging.getLogger(__name__)

STREAMED_FORMATS = ("wav", "pcm", "ogg")
WHOLE_FORMATS = ("mp3", "flac")
STREAM_FORMATS = STREAMED_FORMATS + WHOLE_FORMATS
MEDIA_TYPES = {"pcm": "audio/L16", **{name: f.mime_type for name, f in AUDIO_FORMATS.items()}}
_UNKNOWN_LENGTH = 0xFFFFFFFF


def _pcm16(pcm: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as little-endian 16-bit integers."""
    return (np.clip(np.asarray(pcm, dtype=np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def wav_stream_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header whose RIFF and data sizes say 'unknown' (0xFFFFFFFF): players read to the end."""
    return (
        b"RIFF" + struct.pack("<I", _UNKNOWN_LENGTH) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data" + struct.pack("<I", _UNKNOWN_LENGTH)
    )


class _AppendOnlySink(io.RawIOBase):
    """A file for libsndfile whose new bytes are taken away as they are written (Ogg never seeks back)."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._position = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._pending.extend(data)
        self._position += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        return b""

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self._position + offset  # the end is the position
        if target != self._position:
            raise OSError("this stream only appends")
        return self._position

    def take(self) -> bytes:
        data, self._pending = bytes(self._pending), bytearray()
        return data


@dataclass
class AudioEncoder:
    """Turns PCM segments into the bytes of one format, streaming where the format allows."""

    fmt: str
    sample_rate: int
    _held: list[np.ndarray] = field(default_factory=list)
    _sink: _AppendOnlySink | None = None
    _file: sf.SoundFile | None = None

    @property
    def streams(self) -> bool:
        return self.fmt in STREAMED_FORMATS

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.fmt]

    def start(self) -> bytes:
        if self.fmt == "wav":
            return wav_stream_header(self.sample_rate)
        if self.fmt == "ogg":
            self._sink = _AppendOnlySink()
            self._file = sf.SoundFile(self._sink, "w", self.sample_rate, 1, format="OGG", subtype="OPUS")
        return b""

    def push(self, pcm: np.ndarray) -> bytes:
        if self.fmt in ("wav", "pcm"):
            return _pcm16(pcm)
        if self._file is not None and self._sink is not None:
            self._file.write(np.clip(np.asarray(pcm, dtype=np.float32), -1.0, 1.0))
            return self._sink.take()
        self._held.append(np.asarray(pcm, dtype=np.float32))
        return b""

    def finish(self) -> bytes:
        if self._file is not None and self._sink is not None:
            self._file.close()
            return self._sink.take()
        if self.fmt in WHOLE_FORMATS:
            pcm = np.concatenate(self._held) if self._held else np.zeros(0, dtype=np.float32)
            return encode_audio(pcm, self.sample_rate, self.fmt)
        return b""


@dataclass
class Narration:
    """An open narration: the voice it speaks in, its first segment (already made) and the rest to come."""

    voice_id: str
    voice_name: str | None
    tier: str
    sample_rate: int
    segments: int
    first: AudioChunk
    rest: Iterator[AudioChunk]
    started: float
    samples: int = 0  # made so far

    @property
    def duration_s(self) -> float:
        return self.samples / self.sample_rate


async def open_narration(app: App, text: str, voice: str, seed: int) -> Narration:
    """Resolve the voice and synthesize the first segment (errors surface here, before any byte is sent)."""
    started = time.perf_counter()

    def first_segment(engine: Engine) -> Narration:
        loaded = app.library.load_features(voice, engine.device)  # resolves the id or name itself
        chunks = engine.synthesize(text, VoiceFeatures(tensors=loaded.tensors), SynthesisOptions(seed=seed))
        first = next(chunks)
        return Narration(
            voice_id=loaded.record.id,
            voice_name=loaded.record.name,
            tier=loaded.tier,
            sample_rate=first.sample_rate,
            segments=first.segment_count,
            first=first,
            rest=chunks,
            started=started,
        )

    return await app.host.run(first_segment)


async def encoded_chunks(app: App, narration: Narration, encoder: AudioEncoder) -> AsyncIterator[bytes]:
    """The encoded audio, one piece per segment (mp3/flac: one piece at the end).

    The engine's generator is closed when the client goes away, which ends its turn in the engine's job queue.
    """
    try:
        narration.samples = len(narration.first.pcm)
        head = encoder.start() + encoder.push(narration.first.pcm)
        if head:
            yield head
        while True:
            piece = await app.host.run(lambda _engine: _next_piece(narration, encoder))
            if piece is None:
                break
            if piece:
                yield piece
        tail = encoder.finish()
        if tail:
            yield tail
        log.info(
            "streamed %d segment(s) in %s for voice %s in %.2f s",
            narration.segments, encoder.fmt, narration.voice_id, time.perf_counter() - narration.started,
        )
    finally:
        narration.rest.close()  # type: ignore[attr-defined]


def _next_piece(narration: Narration, encoder: AudioEncoder) -> bytes | None:
    """The next segment, encoded (in the worker thread); None when the narration is over."""
    chunk = next(narration.rest, None)
    if chunk is None:
        return None
    narration.samples += len(chunk.pcm)
    return encoder.push(chunk.pcm)
