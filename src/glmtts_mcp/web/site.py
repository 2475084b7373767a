"""The web faces' routes on the app they are served by: /api, /v1, /login, / and /static, and the
GLM-TTS-Enhanced contract's /health and /api/gpu (seed_api.py).

The app (asgi/root.py) owns the gate, the error handlers and the MCP transport; this module only adds
the routes and the access rules the sign-in reads (`app.state.access`).
"""

from __future__ import annotations

from fastapi import FastAPI

from glmtts_mcp.app.core import App
from glmtts_mcp.web.openai_speech import openai_routes
from glmtts_mcp.web.page import mount_page
from glmtts_mcp.web.pronunciations import pronunciation_routes
from glmtts_mcp.web.rest import rest_routes
from glmtts_mcp.web.scripts_api import script_routes
from glmtts_mcp.web.security import WebAccess, login_routes
from glmtts_mcp.web.seed_api import seed_routes
from glmtts_mcp.web.seed_tasks import TaskBoard


def include_web(api: FastAPI, app: App, access: WebAccess) -> None:
    """REST, the OpenAI-compatible endpoint, the sign-in and the page, all on the same `App`."""
    api.state.access = access
    tasks = TaskBoard()
    api.include_router(rest_routes(app, tasks))
    api.include_router(seed_routes(app, tasks))
    api.include_router(pronunciation_routes(app))
    api.include_router(script_routes(app))
    api.include_router(openai_routes(app))
    api.include_router(login_routes())
    mount_page(api)
