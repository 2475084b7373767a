"""Live narrations (what the MCP Apps player reads) within their bounds: count, memory, errors, and a
player's floor; the real narration service on the tiny checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import numpy as np
import pytest

from glmtts_mcp.app.core import App
from glmtts_mcp.app.live_narrations import BYTES_PER_SAMPLE, LiveLimits, LiveNarration
from glmtts_mcp.app.narration import NarrationRequest
from glmtts_mcp.errors import UserError

pytestmark = pytest.mark.anyio
AppFactory = Callable[..., App]


async def finished(live: LiveNarration) -> LiveNarration:
    with anyio.fail_after(120):
        await live.wait_past(2**62, 120)
    return live


async def test_a_live_narration_holds_its_audio_and_segments(make_app: AppFactory, clip: Path) -> None:
    app = make_app()
    async with app.live.serve():
        live = app.live.start(NarrationRequest(text="Hello there. How are you?", reference=clip, transcript="hi"))
        assert live.state == "queued" and app.live.get(live.id) is live
        await finished(live)
        assert live.state == "done" and live.failure is None and live.voice_id and live.sample_rate == 24000
        assert live.segments[0].start_sample == 0 and live.segment_count == len(live.segments)
        start, pcm = live.read(10, 100)
        assert start == 10 and len(pcm) == 100 * BYTES_PER_SAMPLE
        assert live.read(live.samples + 5, 100) == (live.samples, b"")  # past the end: nothing, clamped
        assert np.abs(live.pcm_float()).max() <= 1.0
        saved = await app.live.save(live, "flac")
        assert saved.path.is_file() and saved.uri.startswith("audio://")
    assert not app.live.running


async def test_the_count_bound_evicts_finished_narrations_first(make_app: AppFactory, clip: Path) -> None:
    app = make_app()
    app.live.limits = LiveLimits(max_narrations=1)
    async with app.live.serve():
        first = app.live.start(NarrationRequest(text="Hi.", reference=clip, transcript="hi"))
        with pytest.raises(UserError, match="1 narrations are playing or being made already"):
            app.live.start(NarrationRequest(text="Hi.", reference=clip, transcript="hi"))
        await finished(first)
        second = app.live.start(NarrationRequest(text="Hi.", reference=clip, transcript="hi"))
        assert app.live.get(first.id) is None and app.live.get(second.id) is second
        await finished(second)


async def test_the_memory_bound_fails_the_growing_narration_with_a_sentence(make_app: AppFactory, clip: Path) -> None:
    app = make_app()
    app.live.limits = LiveLimits(max_bytes=1000)
    async with app.live.serve():
        live = await finished(app.live.start(NarrationRequest(text="Hello there.", reference=clip, transcript="hi")))
        assert live.state == "failed" and live.failure is not None
        assert "hold more than 0 MiB of audio" in str(live.failure) and "shorter `text`" in str(live.failure)
        with pytest.raises(UserError, match="the narration is failed, not done"):
            await app.live.save(live, "wav")


async def test_an_unknown_voice_fails_with_the_library_sentence(make_app: AppFactory) -> None:
    app = make_app()
    async with app.live.serve():
        live = await finished(app.live.start(NarrationRequest(text="Hi.", voice="nobody")))
        assert live.state == "failed" and live.failure is not None and "nobody" in str(live.failure)


async def test_the_floor_goes_to_the_last_claim(make_app: AppFactory, clip: Path) -> None:
    app = make_app()
    async with app.live.serve():
        one = app.live.start(NarrationRequest(text="Hi.", reference=clip, transcript="hi"))
        two = app.live.start(NarrationRequest(text="Hi.", reference=clip, transcript="hi"))
        assert app.live.speaking is None and app.live.floor == 0
        app.live.claim(one.id)
        app.live.claim(two.id)
        assert app.live.speaking == two.id and app.live.floor == 2
        await finished(one)
        await finished(two)


def test_starting_needs_a_serving_process(make_app: AppFactory) -> None:
    app = make_app()
    with pytest.raises(RuntimeError, match="not being served"):
        app.live.start(NarrationRequest(text="Hi.", voice="anyone"))


async def test_segments_done_counts_complete_segments_in_stream_mode(make_app: AppFactory, clip: Path) -> None:
    """In stream mode a segment arrives in several pieces: the player's "generating segment k" follows
    the segments whose audio is complete, not those whose audio has begun."""
    app = make_app(stream_first_block=10, stream_first_look_ahead=5)
    text = "The quick brown fox jumps over the lazy dog, and then it runs far away. Then it sleeps until dawn."
    seen: list[tuple[int, int]] = []  # (segments begun, segments done) at each change
    async with app.live.serve():
        live = app.live.start(NarrationRequest(text=text, reference=clip, transcript="hi", stream=True))
        with anyio.fail_after(120):
            while not live.finished:
                await live.wait_past(live.samples, 120)
                seen.append((len(live.segments), live.segments_done))
    assert live.state == "done" and live.segments_done == live.segment_count >= 1
    assert any(begun > done for begun, done in seen)  # a segment was arriving while not yet complete
    assert all(done <= live.segment_count for _, done in seen)
