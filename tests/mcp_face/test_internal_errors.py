"""User mistakes keep their problem-and-fix message; anything else is logged with
its traceback and reported as an internal error (never an internal message dressed as advice)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client

from glmtts_mcp.app.core import App
from glmtts_mcp.cli import main
from glmtts_mcp.mcp_face.server import build_server

pytestmark = pytest.mark.anyio


def _text(result: types.CallToolResult) -> str:
    return " ".join(b.text for b in result.content if isinstance(b, types.TextContent))


@pytest.mark.parametrize("internal", [ValueError("shape (3,) != (4,)"), OSError(5, "Input/output error")])
async def test_an_internal_failure_is_logged_and_called_internal(
    library_app: App,
    add_voice: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    internal: Exception,
) -> None:
    add_voice(library_app, 1, name="carol")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise internal

    monkeypatch.setattr(library_app.library, "rename", broken)
    async with Client(build_server(library_app)) as client:
        with caplog.at_level(logging.ERROR, logger="glmtts_mcp.errors"):
            result = await client.call_tool("rename_voice", {"voice": "carol", "name": "dora"})
        assert result.is_error
        assert f"internal error ({type(internal).__name__}" in _text(result)
        logged = [r for r in caplog.records if r.name == "glmtts_mcp.errors"]
        assert logged and logged[0].exc_info is not None and logged[0].exc_info[1] is internal
        # a user mistake in the same session keeps its own message, and nothing is logged as internal
        caplog.clear()
        mistake = await client.call_tool("synthesize", {"text": "hi", "voice": "nobody"})
        assert mistake.is_error and "internal error" not in _text(mistake) and "list_voices" in _text(mistake)
        bad_mode = await client.call_tool("synthesize", {"text": "hi", "voice": "carol", "return_mode": "telepathy"})
        assert "return_mode: invalid return mode" in _text(bad_mode) and "internal error" not in _text(bad_mode)
        assert not [r for r in caplog.records if r.name == "glmtts_mcp.errors"]


def test_the_cli_reports_internal_failures_the_same_way(
    no_user_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from glmtts_mcp.voices import VoiceLibrary

    def broken(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("index out of step")

    monkeypatch.setattr(VoiceLibrary, "list_voices", broken)
    code = main(
        [
            "voices",
            "list",
            "--voices-dir",
            str(tmp_path / "v"),
            "--output-dir",
            str(tmp_path / "o"),
            "--checkpoint",
            str(tmp_path / "ck"),
            "--allowed-dir",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "glmtts-mcp: internal error (ValueError: index out of step)" in err
    assert "Traceback" in err  # the log (stderr) carries the traceback


def test_a_full_output_folder_names_the_folder_and_the_fix(library_app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    import numpy as np

    from glmtts_mcp.errors import Kind, UserError

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("glmtts_mcp.app.audio_out.os.replace", full)
    writer = library_app.outputs.writer("wav", 24000)
    writer.write(np.zeros(100, dtype=np.float32))
    with pytest.raises(UserError, match=r"could not be saved in the output folder .*No space left.*--output-dir") as e:
        library_app.outputs.finish(writer)
    assert e.value.kind is Kind.ENVIRONMENT
    assert not [p for p in library_app.outputs.root.iterdir() if p.name.startswith(".tmp-")]
