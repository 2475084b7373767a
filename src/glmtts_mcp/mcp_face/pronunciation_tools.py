"""Pronunciation dictionary tools: add_pronunciation, remove_pronunciation, list_pronunciations.

They need no model; each entry is checked (docs/pronunciation.md) before anything is written.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from glmtts_mcp.app import pronunciations
from glmtts_mcp.app.core import App
from glmtts_mcp.app.schemas import PronunciationsResult
from glmtts_mcp.mcp_face.errors import user_errors

ScopeArg = Annotated[
    str | None,
    Field(description="a voice id or name: that voice's own dictionary; omitted: the global one", max_length=256),
]
TextArg = Annotated[str, Field(description="the word or name as written, e.g. 重庆", min_length=1, max_length=64)]


def _annotations(title: str, read_only: bool, destructive: bool = False) -> ToolAnnotations:
    return ToolAnnotations(
        title=title,
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=True,
        open_world_hint=False,
    )


def register_pronunciation_tools(server: MCPServer, app: App) -> None:
    """Add the dictionary tools to `server`."""

    @server.tool(title="Add a pronunciation", annotations=_annotations("Add a pronunciation", read_only=False))
    async def add_pronunciation(
        text: TextArg,
        reading: Annotated[
            str,
            Field(
                description='pinyin with tone numbers ("chong2 qing4"; tone 5 = neutral) or a plain-text respelling',
                min_length=1,
                max_length=256,
            ),
        ],
        voice: ScopeArg = None,
    ) -> PronunciationsResult:
        """Teach the server how to read a word: for every narration (global) or for one voice (kept in the voice,
        exported with it). Pinyin is given to the model as phoneme tokens; a respelling replaces the text."""
        with user_errors():

            def run() -> PronunciationsResult:
                entry = pronunciations.add(app, voice, text, reading)
                return pronunciations.listing(app, voice, f"{entry.text} is read as {entry.replacement}")

            return await anyio.to_thread.run_sync(run)

    @server.tool(
        title="Remove a pronunciation",
        annotations=_annotations("Remove a pronunciation", read_only=False, destructive=True),
    )
    async def remove_pronunciation(text: TextArg, voice: ScopeArg = None) -> PronunciationsResult:
        """Remove one entry from the global dictionary or a voice's own."""
        with user_errors():

            def run() -> PronunciationsResult:
                pronunciations.remove(app, voice, text)
                return pronunciations.listing(app, voice, f"removed {text.strip()}")

            return await anyio.to_thread.run_sync(run)

    @server.tool(title="List pronunciations", annotations=_annotations("List pronunciations", read_only=True))
    async def list_pronunciations(voice: ScopeArg = None) -> PronunciationsResult:
        """The entries of the global dictionary, or of a voice's own (a narration uses both, the voice's winning)."""
        with user_errors():
            return await anyio.to_thread.run_sync(pronunciations.listing, app, voice)
