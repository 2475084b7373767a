"""`glmtts-mcp say --script FILE`: audio, SRT, WebVTT and the JSON timeline beside -o; refusals before any work."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import soundfile as sf
import srt
import webvtt

from glmtts_mcp.cli import main


@pytest.fixture
def voices_env(no_user_env: None, tiny_checkpoint: Path, tmp_path: Path) -> list[str]:
    return [
        "--checkpoint",
        str(tiny_checkpoint),
        "--whisper-model",
        "tiny-random",
        "--voices-dir",
        str(tmp_path / "voices"),
        "--output-dir",
        str(tmp_path / "outputs"),
    ]


def test_say_script_writes_audio_subtitles_and_timeline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, clip_writer: Callable[..., Path], voices_env: list[str]
) -> None:
    clip = clip_writer(tmp_path / "clip.wav")
    assert main(["say", "Hi.", "--reference", str(clip), "-o", str(tmp_path / "c.wav"), *voices_env]) == 0
    voice_id = json.loads(_out(capsys, ["voices", "list", "--json", *voices_env]))[0]["voice_id"]
    assert main(["voices", "rename", voice_id, "Narrator", *voices_env]) == 0
    script = tmp_path / "story.txt"
    script.write_text("# One\nNarrator: Once upon a time.\n[pause 300ms]\nNarrator: The end.\n", encoding="utf-8")
    capsys.readouterr()

    out = tmp_path / "story.ogg"
    assert main(["say", "--script", str(script), "-o", str(out), *voices_env]) == 0
    printed = capsys.readouterr()
    assert "line 2/2 (Narrator)" in printed.err  # the progress, one step per line
    timeline = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert [line["text"] for line in timeline["lines"]] == ["Once upon a time.", "The end."]
    assert sf.info(out).frames > 0
    srt_cues = list(srt.parse(out.with_suffix(".srt").read_text(encoding="utf-8")))
    vtt_cues = list(webvtt.from_buffer(io.StringIO(out.with_suffix(".vtt").read_text(encoding="utf-8"))))
    assert [round(c.start.total_seconds() * 1000) for c in srt_cues] == [e["start_ms"] for e in timeline["timeline"]]
    assert [c.voice for c in vtt_cues] == ["Narrator"] * len(timeline["timeline"])


def test_say_script_refuses_an_unknown_voice_with_the_flag(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, voices_env: list[str]
) -> None:
    script = tmp_path / "s.txt"
    script.write_text("Nobody: Hello.\n", encoding="utf-8")
    assert main(["say", "--script", str(script), "-o", str(tmp_path / "s.wav"), *voices_env]) == 1
    err = capsys.readouterr().err
    assert "--script names voices the library does not have: 'Nobody' (line 1)" in err
    assert "glmtts-mcp voices list" in err and not (tmp_path / "s.wav").exists()
    assert main(["say", "Hi.", "--script", str(script), "-o", str(tmp_path / "s.wav"), *voices_env]) == 1
    assert "exactly one" in capsys.readouterr().err


def _out(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out
