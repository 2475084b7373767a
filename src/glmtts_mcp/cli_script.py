"""`glmtts-mcp say --script FILE -o show.wav`: a multi-voice script into audio, subtitles and a timeline.

Beside each audio file go its subtitles (`show.srt`, `show.vtt`); beside `-o` the whole result as JSON
(`show.json`: lines, segments, chapters, loudness). Progress is the shell's bar, one step per line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import anyio

from glmtts_mcp.app.core import build_app
from glmtts_mcp.app.script_narration import ScriptNarration
from glmtts_mcp.app.script_parse import parse_script_text
from glmtts_mcp.app.script_results import script_result
from glmtts_mcp.app.script_saving import PathTarget
from glmtts_mcp.cli_progress import StepProgress
from glmtts_mcp.config import Settings
from glmtts_mcp.errors import Kind, Term, UserError, Words, render_text


def read_script(source: Path) -> str:
    """The script's text from a file, or stdin for '-'."""
    if str(source) == "-":
        return sys.stdin.read()
    try:
        return source.expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(
            f"{{argument}} {source} cannot be read: {exc}",
            "pass a UTF-8 text file",
            argument=Term.SCRIPT,
            kind=Kind.NOT_FOUND if isinstance(exc, FileNotFoundError) else Kind.INVALID,
        ) from exc


def say_script(args: argparse.Namespace, settings: Settings, fmt: str, words: Words) -> int:
    """Narrate `args.script` into `args.output` (or one file per chapter) with subtitles beside it."""
    script = parse_script_text(read_script(args.script), settings.max_text_chars, settings.max_script_chars)
    output = args.output.expanduser().resolve()
    target = PathTarget(output, fmt, args.split_chapters)
    app = build_app(settings)
    progress = StepProgress("loading model")
    narration = ScriptNarration(
        app,
        script,
        target,
        settings.script_loudness_lufs,
        split_chapters=args.split_chapters,
        seed=args.seed,
        progress=progress,
        words=args.words,
    )
    try:
        outcome = anyio.run(narration.run)
    finally:
        progress.close()
        app.close()
    result = script_result(
        outcome,
        fmt,
        settings.script_loudness_lufs,
        args.cues,
        lambda path: {"path": str(path), "bytes": path.stat().st_size},
    )
    result.warnings = [render_text(w, words) for w in result.warnings]
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for item in result.outputs:
        audio = Path(item.path or "")
        audio.with_suffix(".srt").write_text(item.srt, encoding="utf-8")
        audio.with_suffix(".vtt").write_text(item.vtt, encoding="utf-8")
        print(f"wrote {audio} ({item.duration_s:.1f} s) and its subtitles {audio.with_suffix('.srt').name}, .vtt")
    timeline = output.with_suffix(".json")
    timeline.write_text(json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {timeline} ({len(result.lines)} line(s) in {len(result.voices)} voice(s): the timeline)")
    return 0
