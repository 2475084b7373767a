"""The web faces' routes on the app they are served by: /api, /v1, /login, / and /static.

The app (asgi/root.py) owns the gate, the error handlers and the MCP transport; this module only adds
the routes and the access rules the sign-in reads (`app.state.access`).
"""

from __future__ import annotations

from fastapi import FastAPI

from glmtts_mcp.app.core import App
from glmtts_mcp.web.openai_speech import openai_routes
from glmtts_mcp.web.page import mount_page
from glmtts_mcp.web.rest import rest_routes
from glmtts_mcp.web.scripts_api import script_routes
from glmtts_mcp.web.security import WebAccess, login_routes


def include_web(api: FastAPI, app: App, access: WebAccess) -> None:
    """REST, the OpenAI-compatible endpoint, the sign-in and the page, all on the same `App`."""
    api.state.access = access
    api.include_router(rest_routes(app))
    api.include_router(script_routes(app))
    api.include_router(openai_routes(app))
    api.include_router(login_routes())
    mount_page(api)
