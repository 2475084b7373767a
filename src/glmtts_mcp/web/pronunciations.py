"""The REST face of the pronunciation dictionaries: /api/pronunciations (global), /api/voices/{voice}/pronunciations
(a voice's own) and /api/pronunciations/preview (the text as the model would read it, without narrating)."""

from __future__ import annotations

from typing import Annotated, Literal

import anyio.to_thread
from fastapi import APIRouter
from pydantic import BaseModel, Field

from glmtts_mcp.app import pronunciations
from glmtts_mcp.app.core import App
from glmtts_mcp.app.narration import checked_text
from glmtts_mcp.app.schemas import PronunciationsResult

VoicePath = Annotated[str, Field(min_length=1, max_length=256, description="voice id or name")]
Mode = Literal["text", "phoneme"]


class EntryRequest(BaseModel):
    text: str = Field(min_length=1, max_length=64, description="the word or name as written")
    reading: str = Field(min_length=1, max_length=256, description="pinyin with tone numbers, or a respelling")


class DictionaryRequest(BaseModel):
    entries: dict[str, str] = Field(description="text -> reading: replaces the whole dictionary ({} empties it)")


class PreviewRequest(BaseModel):
    text: str = Field(min_length=1, description="the text to read")
    voice: str | None = Field(default=None, max_length=256, description="whose dictionary applies (and the global)")
    pronunciation: Mode | None = Field(default=None, description="text or phoneme; default from the server")
    pronunciations: dict[str, str] | None = Field(default=None, description="extra entries for this preview only")


class PreviewResult(BaseModel):
    pronunciation: Mode
    text_as_read: str = Field(description="what the model would read (normalised, entries and phonemes put in)")


def pronunciation_routes(app: App) -> APIRouter:
    """The dictionary routes, mounted under /api beside the other REST routes."""
    router = APIRouter(prefix="/api", tags=["pronunciations"])

    def add(voice: str | None, body: EntryRequest) -> PronunciationsResult:
        entry = pronunciations.add(app, voice, body.text, body.reading)
        return pronunciations.listing(app, voice, f"{entry.text} is read as {entry.replacement}")

    def remove(voice: str | None, text: str) -> PronunciationsResult:
        pronunciations.remove(app, voice, text)
        return pronunciations.listing(app, voice, f"removed {text.strip()}")

    def replace(voice: str | None, body: DictionaryRequest) -> PronunciationsResult:
        pronunciations.replace(app, voice, body.entries)
        return pronunciations.listing(app, voice)

    @router.get("/pronunciations", response_model=PronunciationsResult)
    async def list_global() -> PronunciationsResult:
        """The global dictionary (every narration uses it)."""
        return await anyio.to_thread.run_sync(lambda: pronunciations.listing(app, None))

    @router.post("/pronunciations", response_model=PronunciationsResult)
    async def add_global(body: EntryRequest) -> PronunciationsResult:
        """Add or replace one entry of the global dictionary."""
        return await anyio.to_thread.run_sync(lambda: add(None, body))

    @router.put("/pronunciations", response_model=PronunciationsResult)
    async def replace_global(body: DictionaryRequest) -> PronunciationsResult:
        """Replace the global dictionary whole (the `entries` of an exported file)."""
        return await anyio.to_thread.run_sync(lambda: replace(None, body))

    @router.delete("/pronunciations/{text}", response_model=PronunciationsResult)
    async def remove_global(text: str) -> PronunciationsResult:
        """Remove one entry of the global dictionary."""
        return await anyio.to_thread.run_sync(lambda: remove(None, text))

    @router.post("/pronunciations/preview", response_model=PreviewResult)
    async def preview(body: PreviewRequest) -> PreviewResult:
        """The text as the model would read it, with the dictionaries and mode that would apply (no model needed)."""
        text = checked_text(body.text, app.settings.max_text_chars)
        mode, as_read = await anyio.to_thread.run_sync(
            lambda: pronunciations.preview(app, text, body.voice, body.pronunciation, body.pronunciations)
        )
        return PreviewResult(pronunciation=mode, text_as_read=as_read)

    @router.get("/voices/{voice}/pronunciations", response_model=PronunciationsResult)
    async def list_voice(voice: VoicePath) -> PronunciationsResult:
        """A voice's own dictionary (exported with the voice)."""
        return await anyio.to_thread.run_sync(lambda: pronunciations.listing(app, voice))

    @router.post("/voices/{voice}/pronunciations", response_model=PronunciationsResult)
    async def add_voice(voice: VoicePath, body: EntryRequest) -> PronunciationsResult:
        """Add or replace one entry of a voice's dictionary."""
        return await anyio.to_thread.run_sync(lambda: add(voice, body))

    @router.put("/voices/{voice}/pronunciations", response_model=PronunciationsResult)
    async def replace_voice(voice: VoicePath, body: DictionaryRequest) -> PronunciationsResult:
        """Replace a voice's dictionary whole."""
        return await anyio.to_thread.run_sync(lambda: replace(voice, body))

    @router.delete("/voices/{voice}/pronunciations/{text}", response_model=PronunciationsResult)
    async def remove_voice(voice: VoicePath, text: str) -> PronunciationsResult:
        """Remove one entry of a voice's dictionary."""
        return await anyio.to_thread.run_sync(lambda: remove(voice, text))

    return router
