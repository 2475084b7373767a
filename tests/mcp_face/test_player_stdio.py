"""The player's calls over stdio, where the host proxies them: the real `glmtts-mcp` program, a client that
declares MCP Apps, both protocol eras."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.extension import advertise
from mcp_calls import structured

from glmtts_mcp.mcp_face.player import PLAYER_MIME, PLAYER_URI, UI_EXTENSION
from server_processes import SCRIPT, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_live_narration_over_stdio(tmp_path: Path, tiny_checkpoint: Path, clip: Path, mode: str) -> None:
    params = StdioServerParameters(command=str(SCRIPT), args=[], env=server_env(tmp_path, tiny_checkpoint))
    apps = [advertise(UI_EXTENSION, {"mimeTypes": [PLAYER_MIME]})]
    async with Client(params, mode=mode, extensions=apps) as client:
        assert (await client.read_resource(PLAYER_URI)).contents[0].mime_type == PLAYER_MIME
        await structured(client, "clone_voice", {"audio": str(clip), "name": "tone", "transcript": "hi"})
        live = await structured(client, "synthesize", {"text": "Hello there. How are you?", "voice": "tone"})
        cursor, audio, poll = 0, b"", {"done": False}
        while not poll["done"]:
            poll = await structured(
                client, "poll_narration", {"narration_id": live["narration_id"], "cursor": cursor, "wait_s": 5}
            )
            audio += base64.b64decode(poll["pcm_s16le"])
            cursor = poll["next_cursor"]
        assert poll["state"] == "done" and poll["voice_name"] == "tone" and len(audio) == 2 * poll["total_samples"] > 0
        saved = await structured(client, "save_narration", {"narration_id": live["narration_id"]})
        assert Path(saved["path"]).is_file() and saved["format"] == "ogg"
