"""A writer killed between the two renames of a voice replacement: readers in processes that
were already running must still see the last complete voice, on lookup, listing and loading."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from voicelib_helpers import RATE, make_pcm, make_voice

from glmtts_mcp.voices import VoiceLibrary, VoiceRecord


def interrupt_replacement(root: Path, record: VoiceRecord) -> None:
    """Leave on disk what VoiceStore.commit_voice leaves when killed after moving the old folder aside
    and before renaming the staged successor into place."""
    folder = root / "voices" / record.id
    shutil.copytree(folder, root / "tmp" / f"new-{record.id}-{'1' * 32}")
    os.rename(folder, root / "tmp" / f"old-{record.id}-{'2' * 32}")


READERS: dict[str, Callable[[VoiceLibrary, VoiceRecord], object]] = {
    "resolve by name": lambda library, record: library.resolve(record.name.upper()).id,
    "resolve by id": lambda library, record: library.resolve(record.id).id,
    "list": lambda library, record: [v.id for v in library.list_voices().voices],
    "load from disk": lambda library, record: library.load_features(record.id).record.id,
    "clone again": lambda library, record: (
        library.get_or_create(make_pcm(3), RATE, "hello there", lambda: pytest.fail("re-extracted a stored voice"))[
            0
        ].id
    ),
}


@pytest.mark.parametrize("reader", READERS)
def test_readers_see_the_last_complete_voice(
    open_library: Callable[..., VoiceLibrary], tmp_path: Path, reader: str
) -> None:
    root = tmp_path / "lib"
    writer = open_library(root)
    record, _ = writer.get_or_create(make_pcm(3), RATE, "hello there", lambda: make_voice(3), name="alice")
    running = open_library(root, memory_bytes=0)  # another server, started before the crash: no recovery at open
    assert running.resolve("alice").id == record.id  # its index knows the voice
    interrupt_replacement(root, record)

    seen = READERS[reader](running, record)
    assert seen == record.id or seen == [record.id]
    loaded = running.load_features("alice")
    assert all(torch.equal(loaded.tensors[k], v) for k, v in make_voice(3).tensors.items())
    assert sorted(p.name for p in (root / "tmp").iterdir()) == []  # repaired under the write lock


def test_readers_wait_out_a_replacement_in_progress(open_library: Callable[..., VoiceLibrary], tmp_path: Path) -> None:
    """While a live writer has the old folder aside, a reader waits for the new one instead of missing the voice."""
    root = tmp_path / "lib"
    writer = open_library(root)
    record, _ = writer.get_or_create(make_pcm(4), RATE, "hello there", lambda: make_voice(4), name="bob")
    reader = open_library(root, memory_bytes=0)
    aside, staged = root / "tmp" / f"old-{record.id}-{'3' * 32}", root / "tmp" / f"new-{record.id}-{'4' * 32}"
    moved = threading.Event()

    def replace_slowly() -> None:
        with writer._store.write_lock():
            shutil.copytree(root / "voices" / record.id, staged)
            os.rename(root / "voices" / record.id, aside)
            moved.set()
            threading.Event().wait(0.3)
            os.rename(staged, root / "voices" / record.id)
            shutil.rmtree(aside)

    thread = threading.Thread(target=replace_slowly)
    thread.start()
    moved.wait(10)
    assert [v.name for v in reader.list_voices().voices] == ["bob"]
    assert reader.load_features("bob").record.id == record.id
    thread.join(10)
