"""A narration as the faces consume it: one event stream, one engine lease, cancellation that frees the slot,
and a file written as it is made."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
import soundfile as sf

from glmtts_mcp.app.core import App
from glmtts_mcp.app.narration import Audio, Done, Narration, NarrationRequest, VoiceReady
from glmtts_mcp.app.saving import narrate_to_path
from glmtts_mcp.engine.runtime.scheduler import SchedulerStats
from glmtts_mcp.errors import UserError
from polling import until

pytestmark = pytest.mark.anyio

AppFactory = Callable[..., App]

SENTENCE = "Hello there, this is one sentence of a longer story that goes on for a while. "


async def _voice(app: App, clip: Path) -> str:
    """Clone the clip and return the voice id (a short narration on the way)."""
    async with Narration(app, NarrationRequest(text="Hi.", reference=clip, transcript="hi")) as narration:
        async for event in narration:
            if isinstance(event, VoiceReady):
                voice = event.voice_id
    return voice


async def test_events_come_in_order_and_add_up(make_app: AppFactory, clip: Path) -> None:
    app = make_app()
    request = NarrationRequest(text=SENTENCE * 3, reference=clip, transcript="hi", seed=3)
    kinds, samples, done = [], 0, None
    async with Narration(app, request) as narration:
        async for event in narration:
            kinds.append(type(event).__name__)
            if isinstance(event, Audio):
                assert event.start_sample == samples
                samples += len(event.pcm)
            if isinstance(event, Done):
                done = event
    assert kinds.index("VoiceReady") < kinds.index("Audio") and kinds[-1] == "Done"
    assert done is not None and done.samples == samples > 0 and done.segments == kinds.count("Audio")


async def test_stream_mode_audio_events_are_chunks_of_their_segments(make_app: AppFactory, clip: Path) -> None:
    """In stream mode a segment arrives as several Audio events (same segment_index, contiguous start
    samples) and progress names each chunk; the sum is the narration, as in offline mode."""
    app = make_app(stream_first_block=10, stream_first_look_ahead=5)
    reports: list[str] = []
    request = NarrationRequest(text=SENTENCE, reference=clip, transcript="hi", seed=3, stream=True)
    pieces: list[Audio] = []
    async with Narration(app, request, progress=lambda done, total, message: reports.append(message)) as narration:
        async for event in narration:
            if isinstance(event, Audio):
                assert event.start_sample == sum(len(p.pcm) for p in pieces)
                pieces.append(event)
            if isinstance(event, Done):
                assert event.samples == sum(len(p.pcm) for p in pieces) > 0
    assert len([p for p in pieces if p.segment_index == 0 and len(p.pcm)]) >= 2
    assert any(message.endswith("chunk 1") for message in reports)


async def test_a_narration_read_slowly_outlives_the_idle_unload(make_app: AppFactory, clip: Path) -> None:
    """Between two pieces nothing runs in the engine; the narration's lease still keeps the model loaded."""
    app = make_app(idle_unload_s=0.3)
    voice = await _voice(app, clip)
    await until(lambda: app.host.unloads >= 1, 60)  # the idle timer fires after 0.3 s, on a loaded machine later
    assert app.host.unloads == 1  # the timer works: idle, the model went
    segments = 0
    async with Narration(app, NarrationRequest(text=SENTENCE * 3, voice=voice)) as narration:
        async for event in narration:
            if isinstance(event, Audio):
                await anyio.sleep(1.0)  # a slow reader: three times the idle limit between pieces
            if isinstance(event, Done):
                segments = event.segments
    assert segments >= 2 and app.host.unloads == 1  # loaded once for the narration, never cut
    await until(lambda: app.host.unloads >= 2, 60)
    assert app.host.unloads == 2  # and unloaded once it was over


async def test_cancel_frees_the_batch_slot_and_ends_the_stream(make_app: AppFactory, clip: Path) -> None:
    app = make_app(max_batch=2)
    voice = await _voice(app, clip)
    events = []
    async with Narration(app, NarrationRequest(text=SENTENCE * 6, voice=voice)) as narration:
        async for event in narration:
            events.append(event)
            if isinstance(event, Audio):
                narration.cancel()  # the next segment is decoding (or queued) now
    assert not any(isinstance(e, Done) for e in events)
    stats = await _settled_stats(app)
    assert stats.cancelled >= 1 and stats.running == stats.waiting == 0


async def test_leaving_the_stream_early_cancels_the_narration(make_app: AppFactory, clip: Path) -> None:
    """A consumer that stops reading (a client gone) stops the engine's work as `cancel()` does."""
    app = make_app(max_batch=2)
    voice = await _voice(app, clip)
    async with Narration(app, NarrationRequest(text=SENTENCE * 6, voice=voice)) as narration:
        async for event in narration:
            if isinstance(event, Audio):
                break
    stats = await _settled_stats(app)
    assert stats.cancelled >= 1 and stats.running == stats.waiting == 0


async def _settled_stats(app: App) -> SchedulerStats:
    """The scheduler's statistics once nothing is running in it (a cancelled sequence leaves at its next
    decode step, within moments on the tiny model)."""
    engine = app.host.ensure_loaded()
    deadline = time.monotonic() + 10
    while True:
        stats = engine.scheduler_stats()
        if stats.running == stats.waiting == 0 or time.monotonic() > deadline:
            return stats
        await anyio.sleep(0.05)


async def test_a_request_names_exactly_one_voice() -> None:
    for voice, reference in ((None, None), ("a", b"RIFF")):
        with pytest.raises(UserError) as caught:
            NarrationRequest(text="Hi.", voice=voice, reference=reference)
        assert "`voice`" in str(caught.value) and "`reference`" in str(caught.value)


async def test_a_narration_written_to_a_file_does_not_grow_in_memory(
    make_app: AppFactory, clip: Path, tmp_path: Path
) -> None:
    """Python's peak allocations (numpy's audio included) for ten times the text stay about the same: every
    piece goes to the file before the next is made."""
    app = make_app()
    voice = await _voice(app, clip)
    peaks, seconds = [], []
    for repeat in (2, 20):
        target = tmp_path / f"narration-{repeat}.wav"
        tracemalloc.start()
        try:
            _, done, _ = await narrate_to_path(
                app, NarrationRequest(text=SENTENCE * repeat, voice=voice), target, "wav"
            )
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        seconds.append(done.duration_s)
        assert sf.info(str(target)).frames == done.samples
    assert seconds[1] > 5 * seconds[0]  # the long one really is long
    long_audio_bytes = seconds[1] * 24000 * 4  # the long narration as float32 samples
    assert peaks[1] < peaks[0] + long_audio_bytes / 4, (peaks, seconds)  # far from holding the audio
