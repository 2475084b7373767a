"""One web app for the REST API, the OpenAI-compatible endpoint, the page and /docs, beside MCP.

`web_face(app)` returns the `HttpFace` hook that `mcp_face.server.http_service` calls with the MCP app
(bearer token already checked) and the Host/Origin allow-lists. The hook answers a `FaceRouter`: the
lifespan and the MCP paths (`/mcp`, `/sse`, `/messages`) go to the MCP app unchanged; every other
request goes through `WebGuard` (Host/Origin, token or session cookie, cross-site refusal, body cap) to
the FastAPI app built here. The same `WebFace` gives the CLI the first URL to open (the one-time
sign-in link while a token is set and the link unused). FastAPI because it sits on the Starlette app
`mcp` already runs, validates requests with the pydantic models the tools already use, and writes the
OpenAPI schema behind `/docs` (Swagger UI served from the `fastapi-offline` package's files, so /docs
works offline).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from glmtts_mcp import __version__
from glmtts_mcp.app.core import App
from glmtts_mcp.web.errors import install_error_handlers
from glmtts_mcp.web.openai_speech import openai_routes
from glmtts_mcp.web.page import mount_page
from glmtts_mcp.web.rest import rest_routes
from glmtts_mcp.web.security import WebAccess, WebGuard, login_routes

# The MCP transports' own paths (Streamable HTTP, SSE and its message endpoint) keep their handlers.
MCP_PATHS = ("/mcp", "/sse", "/messages")


def build_web_api(app: App, access: WebAccess) -> FastAPI:
    """The FastAPI app: /api, /v1, /, /login, /docs (offline Swagger UI) and /openapi.json."""
    api = FastAPIOffline(
        title="glmtts-mcp",
        version=__version__,
        description="Voice cloning and narration with GLM-TTS: the voice library over REST, an OpenAI-compatible "
        "speech endpoint, and the page at /. Errors are JSON with the problem and the fix.",
        static_url="/docs-assets",
        redoc_url=None,
    )
    install_error_handlers(api)
    api.include_router(rest_routes(app))
    api.include_router(openai_routes(app))
    api.include_router(login_routes(access))
    mount_page(api)
    return api


class FaceRouter:
    """Sends MCP paths and the lifespan to the MCP app, everything else to the guarded web app."""

    def __init__(self, mcp_app: ASGIApp, web_app: ASGIApp) -> None:
        self.mcp_app = mcp_app
        self.web_app = web_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "lifespan" or any(path == p or path.startswith(p + "/") for p in MCP_PATHS):
            await self.mcp_app(scope, receive, send)
        else:
            await self.web_app(scope, receive, send)


class WebFace:
    """The hook for `http_app`: knows the access rules, so the CLI can print the first URL to open."""

    def __init__(self, app: App) -> None:
        self.app = app
        token = app.settings.token.get_secret_value() if app.settings.token else None
        self.access = WebAccess(token)

    def __call__(self, mcp_app: ASGIApp, security: TransportSecuritySettings) -> ASGIApp:
        api = build_web_api(self.app, self.access)
        guarded = WebGuard(api, self.access, security, self.app.settings.max_upload_bytes)
        return FaceRouter(mcp_app, guarded)

    def entry_url(self, base_url: str) -> str:
        """The URL to open in a browser: the one-time sign-in link while unused (token set), else the page."""
        return base_url.rstrip("/") + self.access.entry_path()


def web_face(app: App) -> WebFace:
    return WebFace(app)
