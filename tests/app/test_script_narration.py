"""A multi-voice script narrated into one file: names resolved before any work, exact timing, subtitles that
parse with the libraries that wrote them, one loudness per line, cancellation."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import srt
import webvtt

from glmtts_mcp.app.core import App
from glmtts_mcp.app.narration import Narration, NarrationRequest, VoiceReady
from glmtts_mcp.app.script_narration import ScriptNarration
from glmtts_mcp.app.script_parse import ScriptItem, parse_script_items, parse_script_text
from glmtts_mcp.app.script_results import script_result
from glmtts_mcp.app.script_saving import PathTarget
from glmtts_mcp.engine.types import NarrationCancelled
from glmtts_mcp.errors import Kind, UserError

pytestmark = pytest.mark.anyio

AppFactory = Callable[..., App]

SCRIPT = """\
# Chapter One
Alice: Hello there, and welcome to the show.
Bob: Thank you. It is good to be here.
[pause 800ms]
Carol: Shall we begin?

Alice: Yes. [pause 400ms] Let us start.
"""


async def _clone(app: App, clip: Path, name: str) -> str:
    async with Narration(app, NarrationRequest(text="Hi.", reference=clip, transcript="hi")) as narration:
        async for event in narration:
            if isinstance(event, VoiceReady):
                voice = event.voice_id
    await anyio.to_thread.run_sync(app.library.rename, voice, name)
    return voice


async def _three_voices(app: App, tmp_path: Path, clip_writer: Callable[..., Path]) -> None:
    for name, pitch in (("Alice", 220.0), ("Bob", 140.0), ("Carol", 300.0)):
        await _clone(app, clip_writer(tmp_path / f"{name}.wav", pitch=pitch), name)


async def test_three_voices_one_file_with_exact_cues_and_one_loudness(
    make_app: AppFactory, tmp_path: Path, clip_writer: Callable[..., Path]
) -> None:
    app = make_app()
    await _three_voices(app, tmp_path, clip_writer)
    script = parse_script_text(SCRIPT, 1000, 10000)
    reports: list[tuple[float, float, str]] = []
    target = tmp_path / "show.wav"
    narration = ScriptNarration(
        app, script, PathTarget(target, "wav", split=False), -20.0, progress=lambda *r: reports.append(r)
    )
    before = _side_by_side_steps(app)
    outcome = await narration.run()
    result = script_result(outcome, "wav", -20.0, "segment", lambda path: {"path": str(path), "bytes": 0})
    assert _side_by_side_steps(app) > before  # the next line decoded beside the one before it

    assert [o.file for o in outcome.outputs] == [target]
    audio, rate = sf.read(target, dtype="float32")
    assert rate == outcome.sample_rate and len(audio) == outcome.outputs[0].samples
    assert [line.voice for line in result.lines] == ["Alice", "Bob", "Carol", "Alice", "Alice"]
    assert len({line.voice_id for line in result.lines}) == 3
    assert [c.title for c in result.chapters] == ["Chapter One"]

    # the pauses are where the script put them (less the 20 ms fades that overlap them)
    lines = result.lines
    fade = round(0.020 * rate)
    assert lines[1].start_sample - lines[0].end_sample == round(0.3 * rate) - 2 * fade
    assert lines[2].start_sample - lines[1].end_sample == round(0.8 * rate) - 2 * fade
    assert lines[3].start_sample - lines[2].end_sample == round(0.7 * rate) - 2 * fade
    assert lines[4].start_sample - lines[3].end_sample == round(0.4 * rate) - 2 * fade

    # subtitles parse with the libraries that wrote them; each cue is its segment's sample offsets in ms
    output = result.outputs[0]
    srt_cues = list(srt.parse(output.srt))
    vtt_cues = list(webvtt.from_buffer(io.StringIO(output.vtt)))
    assert len(srt_cues) == len(vtt_cues) == len(result.timeline) >= len(lines)
    for entry, s, v in zip(result.timeline, srt_cues, vtt_cues, strict=True):
        start_ms = round(entry.start_sample * 1000 / rate)
        end_ms = round(entry.end_sample * 1000 / rate)
        assert (entry.start_ms, entry.end_ms) == (start_ms, end_ms)
        assert round(s.start.total_seconds() * 1000) == start_ms and round(s.end.total_seconds() * 1000) == end_ms
        assert v.start == _vtt(start_ms) and v.end == _vtt(end_ms)
        assert s.content == f"{entry.voice}: {entry.text}" and v.voice == entry.voice and v.text == entry.text
    for line in lines:  # a line's segments tile it
        segments = [e for e in result.timeline if e.line == line.line]
        assert segments[0].start_sample == line.start_sample and segments[-1].end_sample == line.end_sample

    # every line within 1 LU of the target, measured on the file
    meter = pyloudnorm.Meter(rate)
    for line in lines:
        piece = audio[line.start_sample : line.end_sample].astype(np.float64)
        if len(piece) < meter.block_size * rate:
            piece = np.resize(piece, int(meter.block_size * rate) + 1)
        assert abs(meter.integrated_loudness(piece) - -20.0) <= 1.0, line

    # progress per line and per segment, never going back
    assert any(message == "line 1/5 (Alice)" for _, _, message in reports)
    assert any("segment 1/" in message for _, _, message in reports)
    assert [done for done, _, _ in reports] == sorted(done for done, _, _ in reports)


def _side_by_side_steps(app: App) -> int:
    """Decode steps the LLM ran with more than one sequence in its batch."""
    return sum(steps for size, steps in app.host.ensure_loaded().scheduler_stats().batch_sizes.items() if size > 1)


def _vtt(ms: int) -> str:
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


async def test_an_unknown_voice_is_refused_before_any_synthesis(
    make_app: AppFactory, tmp_path: Path, clip_writer: Callable[..., Path]
) -> None:
    app = make_app()
    await _clone(app, clip_writer(tmp_path / "a.wav"), "Alice")
    script = parse_script_text("Alice: Hi.\nDana: Hello.\nAlice: Bye.\nEve: Later.\n", 1000, 10000)
    engine = app.host.ensure_loaded()
    before = engine.scheduler_stats().tokens
    with pytest.raises(UserError) as caught:
        await ScriptNarration(app, script, PathTarget(tmp_path / "x.wav", "wav", False), -16.0).run()
    message = str(caught.value)
    assert caught.value.kind is Kind.NOT_FOUND
    assert "'Dana' (line 2)" in message and "'Eve' (line 4)" in message and "the library has Alice" in message
    assert engine.scheduler_stats().tokens == before  # nothing was synthesized
    assert not list(tmp_path.glob("*x*.wav")) and not list(tmp_path.glob(".tmp-*"))


async def test_cancelling_stops_the_script_and_leaves_no_file(
    make_app: AppFactory, tmp_path: Path, clip_writer: Callable[..., Path]
) -> None:
    app = make_app(max_batch=2)
    await _clone(app, clip_writer(tmp_path / "a.wav"), "Alice")
    text = "\n".join(f"Alice: Line {n} of a script that would go on for a long while." for n in range(30))
    lines_started: list[str] = []
    narration: ScriptNarration[Path]

    def progress(done: float, total: float, message: str) -> None:
        if message.endswith("(Alice)"):
            lines_started.append(message)
        if len(lines_started) == 2:
            narration.cancel()

    narration = ScriptNarration(
        app,
        parse_script_text(text, 1000, 10000),
        PathTarget(tmp_path / "long.wav", "wav", False),
        -16.0,
        progress=progress,
    )
    with pytest.raises(NarrationCancelled):
        await narration.run()
    assert len(lines_started) == 2  # it stopped in line 2 of 30
    assert not list(tmp_path.glob("long*")) and not list(tmp_path.glob(".tmp-*"))
    engine = app.host.ensure_loaded()
    deadline = time.monotonic() + 10
    while engine.scheduler_stats().running and time.monotonic() < deadline:  # noqa: ASYNC110  # polls the engine's own counter
        await anyio.sleep(0.05)
    assert engine.scheduler_stats().running == 0


async def test_word_times_come_from_whisper_or_a_note_says_why_not(
    make_app: AppFactory, tmp_path: Path, clip_writer: Callable[..., Path]
) -> None:
    app = make_app()
    await _clone(app, clip_writer(tmp_path / "a.wav"), "Alice")
    script = parse_script_text("Alice: Hello there, how are you today?", 1000, 10000)
    outcome = await ScriptNarration(app, script, PathTarget(tmp_path / "w.wav", "wav", False), -20.0, words=True).run()
    (line,) = outcome.lines
    assert [w.word for w in line.words] == ["hello", "there,", "how", "are", "you", "today?"]  # as it was spoken
    assert all(line.start <= w.start <= w.end <= line.end for w in line.words)
    assert [w.start for w in line.words] == sorted(w.start for w in line.words)
    assert not outcome.warnings

    without = make_app(whisper_model="base", voices_dir=tmp_path / "voices")  # not in the tiny checkpoint
    outcome = await ScriptNarration(
        without, script, PathTarget(tmp_path / "n.wav", "wav", False), -20.0, words=True
    ).run()
    assert outcome.lines[0].words == ()
    assert any("line 1: no word timing:" in w and "whisper" in w.lower() for w in outcome.warnings), outcome.warnings


async def test_an_item_reads_its_line_in_the_pronunciation_it_names(
    make_app: AppFactory, tmp_path: Path, clip_writer: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pronunciation` on a structured item reaches that line's narration (and only that line's)."""
    app = make_app()
    await _clone(app, clip_writer(tmp_path / "a.wav"), "Alice")
    asked: list[str | None] = []

    class Recording(Narration):
        def __init__(self, app: App, request: NarrationRequest) -> None:
            asked.append(request.pronunciation)
            super().__init__(app, request)

    monkeypatch.setattr("glmtts_mcp.app.script_narration.Narration", Recording)
    items = [
        ScriptItem(voice="Alice", text="你好。", pronunciation="phoneme"),
        ScriptItem(voice="Alice", text="Hello."),
    ]
    script = parse_script_items(items, 1000, 10000)
    assert [line.pronunciation for line in script.lines] == ["phoneme", None]
    await ScriptNarration(app, script, PathTarget(tmp_path / "x.wav", "wav", False), 0.0).run()
    assert asked == ["phoneme", None]
