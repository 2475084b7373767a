"""One error raised by the library, as each face shows it: the same problem, each face's words for the fix
(a tool to call, a method and path, a command), and each face's signal (a tool error, a 404 naming the
field, exit status 1)."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from mcp import Client
from web_helpers import LiveServer

from glmtts_mcp.cli import main
from glmtts_mcp.mcp_face.server import build_server

PROBLEM = "no voice 'nobody' in the library"


@pytest.mark.anyio
async def test_an_unknown_voice_over_mcp(server: LiveServer) -> None:
    async with Client(build_server(server.app)) as client:
        result = await client.call_tool("synthesize", {"text": "Hi.", "voice": "nobody"})
    text = " ".join(block.text for block in result.content if block.type == "text")
    assert result.is_error
    assert f"{PROBLEM}: call list_voices to see the stored voices, or call clone_voice first" in text, text


def test_an_unknown_voice_over_rest(server: LiveServer) -> None:
    answer = httpx2.post(f"{server.url}/api/tts", json={"text": "Hi.", "voice": "nobody"}, timeout=60)
    body = answer.json()
    assert answer.status_code == 404 and body["field"] == "voice", body
    assert body["error"] == f"{PROBLEM}: GET /api/voices to see the stored voices, or POST /api/voices first"


def test_an_unknown_voice_over_openai(server: LiveServer) -> None:
    answer = httpx2.post(
        f"{server.url}/v1/audio/speech", json={"model": "tts-1", "input": "Hi.", "voice": "nobody"}, timeout=60
    )
    error = answer.json()["error"]
    assert answer.status_code == 404 and error["param"] == "voice" and error["code"] == "voice_not_found"
    assert error["message"].startswith(f"{PROBLEM}: GET /api/voices"), error


def test_an_unknown_voice_at_the_shell(
    server: LiveServer, capsys: pytest.CaptureFixture[str], tmp_path: Path, no_user_env: None
) -> None:
    settings = server.app.settings
    status = main(
        [
            "say",
            "Hi.",
            "--voice",
            "nobody",
            "-o",
            str(tmp_path / "hi.wav"),
            "--checkpoint",
            str(settings.checkpoint),
            "--voices-dir",
            str(settings.voices_dir),
        ]
    )
    err = capsys.readouterr().err
    assert status == 1
    assert f"{PROBLEM}: run `glmtts-mcp voices list` to see the stored voices" in err, err
    assert "list_voices" not in err and "GET /api" not in err
