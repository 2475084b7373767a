"""Where a script's audio files go: the output store (audio://{id}), or a path of the user's (`-o`), one
file for the script or one per chapter (`book.mp3` becomes `book-01.mp3`, `book-02.mp3`, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from glmtts_mcp.app.audio_out import AudioFileWriter
from glmtts_mcp.app.outputs import OutputStore, StoredOutput


@dataclass(frozen=True)
class StoreTarget:
    """Each output a new audio://{id} in the store."""

    outputs: OutputStore
    fmt: str

    def open(self, index: int, sample_rate: int) -> AudioFileWriter:
        return self.outputs.writer(self.fmt, sample_rate)

    def finish(self, writer: AudioFileWriter) -> StoredOutput:
        return self.outputs.finish(writer)


@dataclass(frozen=True)
class PathTarget:
    """The file `target`, or with `split` one file per chapter named after it."""

    target: Path
    fmt: str
    split: bool

    def path_for(self, index: int) -> Path:
        if not self.split:
            return self.target
        return self.target.with_name(f"{self.target.stem}-{index + 1:02d}{self.target.suffix}")

    def open(self, index: int, sample_rate: int) -> AudioFileWriter:
        return AudioFileWriter(self.path_for(index), self.fmt, sample_rate)

    def finish(self, writer: AudioFileWriter) -> Path:
        return writer.commit()
