"""Audio as it is made: a byte stream for sockets, and files written piece by piece.

wav (a header that declares an unknown length, as streaming servers write it), pcm (raw 16-bit) and
ogg (Ogg/Opus pages are written front to back) stream piece by piece. mp3 and flac cannot stream to a
socket: libsndfile goes back to their first bytes at the end (the MP3 info frame, FLAC's STREAMINFO
totals), and a stream cannot take back bytes it already sent; they are written to a file piece by piece
instead (`AudioFileWriter`), which any format allows, so a narration's memory does not grow with its length.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from glmtts_mcp.engine.runtime.output_encoding import (
    AUDIO_FORMATS,
    audio_format,
    output_sample_rate,
    write_pcm,
)

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
        b"RIFF"
        + struct.pack("<I", _UNKNOWN_LENGTH)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", _UNKNOWN_LENGTH)
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

    def write(self, data: bytes) -> int:  # type: ignore[override]  # soundfile writes bytes, not any buffer
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
class StreamEncoder:
    """Turns PCM pieces into the bytes of a format that streams (wav, pcm, ogg), as they come."""

    fmt: str
    sample_rate: int
    _sink: _AppendOnlySink | None = None
    _file: sf.SoundFile | None = None

    def __post_init__(self) -> None:
        if self.fmt not in STREAMED_FORMATS:
            raise ValueError(f"{self.fmt} does not stream; write it with AudioFileWriter")

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
        if self._file is None or self._sink is None:
            raise RuntimeError("start() first")
        write_pcm(self._file, np.asarray(pcm, dtype=np.float32), self.sample_rate)
        return self._sink.take()

    def finish(self) -> bytes:
        if self._file is not None and self._sink is not None:
            self._file.close()
            return self._sink.take()
        return b""


class AudioFileWriter:
    """A file of any format written piece by piece into a temporary file beside `target`, which only
    `commit` puts in place (so a crash or a cancelled narration never leaves half a file at `target`)."""

    def __init__(self, target: Path, fmt: str, sample_rate: int) -> None:
        info = audio_format(fmt)
        self.target = target
        self.fmt = info.name
        self.sample_rate = sample_rate
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=info.extension)
        os.close(fd)
        self._tmp = Path(tmp)
        try:
            rate = output_sample_rate(info.name, sample_rate)  # the rate libsndfile writes
            self._file = sf.SoundFile(tmp, "w", rate, 1, subtype=info.sf_subtype, format=info.sf_format)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise

    def write(self, pcm: np.ndarray) -> None:
        samples = np.asarray(pcm, dtype=np.float32)
        if not np.all(np.isfinite(samples)):
            raise ValueError("audio contains NaN or infinite samples")
        write_pcm(self._file, samples, self.sample_rate)

    def commit(self) -> Path:
        """Finish the file and move it to `target`; returns `target`."""
        self._file.close()
        os.replace(self._tmp, self.target)
        return self.target

    def discard(self) -> None:
        """Drop the partial file (idempotent; after `commit` it does nothing)."""
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)
