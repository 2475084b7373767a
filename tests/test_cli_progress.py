"""`glmtts-mcp say` shows a bar in a terminal and writes plain lines into a log or a pipe."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from glmtts_mcp.cli_progress import StepProgress

SCRIPT = Path(sys.executable).parent / "glmtts-mcp"


@pytest.mark.slow
def test_say_with_stderr_piped_writes_one_readable_line_per_step(
    tiny_checkpoint: Path, tmp_path: Path, clip_writer: Callable[..., Path]
) -> None:
    clip = clip_writer(tmp_path / "clip.wav")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLMTTS_MCP_")}
    env.update(
        GLMTTS_MCP_CHECKPOINT=str(tiny_checkpoint),
        GLMTTS_MCP_VOICES_DIR=str(tmp_path / "voices"),
        GLMTTS_MCP_OUTPUT_DIR=str(tmp_path / "outputs"),
        GLMTTS_MCP_LOG_LEVEL="WARNING",
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
    )
    done = subprocess.run(
        [
            str(SCRIPT),
            "say",
            "One. Two.",
            "--reference",
            str(clip),
            "--transcript",
            "Hello there.",
            "-o",
            str(tmp_path / "out.wav"),
        ],
        capture_output=True,
        timeout=600,
        env=env,  # bytes: text mode would turn a redraw's \r into \n
    )
    err = done.stderr.decode()
    assert done.returncode == 0, err[-3000:]
    assert "\r" not in err and "\x1b[" not in err, repr(err[-2000:])  # no redraw, from us or a library
    lines = err.split("\n")
    assert lines[0] == "glmtts-mcp: loading model" and lines[-1] == "", err
    for step in ("preparing reference audio", "voice extracted and stored", "segment 1/1 ready"):
        assert f"glmtts-mcp: {step}" in lines, err
    assert all(line.startswith("glmtts-mcp: ") for line in lines[:-1]), err  # nothing else: no library's bar
    assert len(lines) == len(set(lines))  # each step once, however often it was reported
    assert done.stdout.startswith(b"wrote ")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_terminal_the_bar_redraws_in_place() -> None:
    stream = _Terminal()
    progress = StepProgress("loading model", stream)
    progress(1, 2, "segment 1/2 ready")
    progress(2, 2, "segment 2/2 ready")
    progress.close()
    assert "\r" in stream.getvalue() and "segment 2/2 ready" in stream.getvalue()
    assert "glmtts-mcp: " not in stream.getvalue()
