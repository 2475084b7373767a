"""The script's two forms read into the same chapters of speech and silence, refusals pointing at the line;
a line brought to the loudness target (real speech from espeak-ng), short lines, silence and peaks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from glmtts_mcp.app.loudness import PEAK_CEILING, integrated_loudness, level_line
from glmtts_mcp.app.script_parse import (
    LINE_GAP_MS,
    PARAGRAPH_MS,
    ScriptItem,
    Silence,
    Speech,
    parse_script_items,
    parse_script_text,
)
from glmtts_mcp.errors import UserError


def _shape(parts: list[Speech | Silence]) -> list[object]:
    return [(p.voice, p.text) if isinstance(p, Speech) else p.ms for p in parts]


def test_text_form_lines_pauses_paragraphs_and_chapters() -> None:
    script = parse_script_text(
        "Intro: Welcome.\n\n# One\nAlice: Hi. [pause 1.5s] Bye.\nand more\n\nBob: Yes.\n[pause 250ms]\n# Two\nBob: Done.",
        1000,
        10000,
    )
    assert [c.title for c in script.chapters] == [None, "One", "Two"]
    assert _shape(script.chapters[0].parts) == [("Intro", "Welcome.")]  # no gap owed across a heading
    assert _shape(script.chapters[1].parts) == [
        ("Alice", "Hi."),
        1500,
        ("Alice", "Bye."),
        LINE_GAP_MS,
        ("Alice", "and more"),
        PARAGRAPH_MS,
        ("Bob", "Yes."),
        250,
    ]
    assert [line.where for line in script.lines] == ["line 1", "line 4", "line 4", "line 5", "line 7", "line 10"]


def test_items_form_reads_the_same() -> None:
    items = [
        ScriptItem(chapter="One"),
        ScriptItem(voice="Alice", text="Hi.", pause_after_ms=0, seed=5),
        ScriptItem(voice="Bob", text="Yes."),
        ScriptItem(pause_ms=900),
        ScriptItem(voice="Bob", text="No."),
    ]
    script = parse_script_items(items, 1000, 10000)
    assert _shape(script.chapters[0].parts) == [("Alice", "Hi."), ("Bob", "Yes."), 900, ("Bob", "No.")]
    assert script.lines[0].seed == 5 and script.lines[1].seed is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("Hello there.", "line 1 of `script`: it names no speaker"),
        ("Alice: a [pause soon] b", "line 1 of `script`: '[pause soon]' is not a pause"),
        ("Alice: a [pause 61s]", "a pause of 61000 ms is too long"),
        ("Alice: " + "x" * 30, "line 1 of `script` has 30 characters; the limit per line is 20"),
        ("# Only a heading", "`script` has no line to speak"),
    ],
)
def test_text_form_refusals_point_at_the_line(text: str, says: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_script_text(text, 20, 10000)
    assert says in str(caught.value)


def test_a_script_over_the_limit_is_refused() -> None:
    with pytest.raises(UserError, match="the limit is 10"):
        parse_script_text("Alice: Hello there.", 1000, 10)


@pytest.mark.parametrize(
    "item", [ScriptItem(voice="A"), ScriptItem(voice="A", text="x", pause_ms=3), ScriptItem(seed=1, chapter="c")]
)
def test_an_item_is_exactly_one_thing(item: ScriptItem) -> None:
    with pytest.raises(UserError, match="item 1 of `script`"):
        parse_script_items([item], 1000, 10000)


@pytest.fixture(scope="module")
def speech(
    tmp_path_factory: pytest.TempPathFactory, espeak_writer: Callable[[Path, str], bool]
) -> tuple[np.ndarray, int]:
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    if not espeak_writer(path, "The quick brown fox jumps over the lazy dog, and then it rests."):
        pytest.skip("espeak-ng is not installed")
    pcm, rate = sf.read(path, dtype="float32")
    return pcm * 0.05, rate  # a quiet speaker


def test_speech_is_brought_to_the_target(speech: tuple[np.ndarray, int]) -> None:
    pcm, rate = speech
    leveled = level_line(pcm, rate, -24.0)
    assert leveled.measured_lufs is not None and leveled.measured_lufs < -30
    assert abs(pyloudnorm.Meter(rate).integrated_loudness(leveled.pcm.astype(np.float64)) - -24.0) < 0.1
    assert not leveled.peak_limited and leveled.lufs == pytest.approx(-24.0)


def test_a_line_shorter_than_one_block_is_measured_on_itself_repeated(speech: tuple[np.ndarray, int]) -> None:
    pcm, rate = speech
    word = pcm[int(0.3 * rate) : int(0.55 * rate)]  # 250 ms: pyloudnorm alone refuses it
    with pytest.raises(ValueError, match="block size"):
        pyloudnorm.Meter(rate).integrated_loudness(word.astype(np.float64))
    leveled = level_line(word, rate, -20.0)
    assert leveled.measured_lufs is not None
    assert integrated_loudness(leveled.pcm, rate) == pytest.approx(-20.0, abs=0.05)


def test_silence_is_left_alone_and_a_peak_never_clips(speech: tuple[np.ndarray, int]) -> None:
    pcm, rate = speech
    silent = level_line(np.zeros(rate, dtype=np.float32), rate, -16.0)
    assert silent.measured_lufs is None and silent.gain_db == 0.0 and not silent.pcm.any()
    spiky = pcm.copy()
    spiky[rate // 2] = 0.9  # one sample far above the speech: the full gain would clip it
    loud = level_line(spiky, rate, -10.0)
    assert loud.peak_limited and float(np.max(np.abs(loud.pcm))) == pytest.approx(PEAK_CEILING, abs=1e-6)
    assert loud.lufs is not None and loud.lufs < -10.0
