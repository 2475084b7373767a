"""The page at `/`: static files shipped inside the package (no CDN, no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"


def mount_page(api: FastAPI) -> None:
    """`/` serves index.html; `/static/...` its script and style sheet."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"cache-control": "no-cache"})

    api.include_router(router)
    api.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
