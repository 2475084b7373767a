"""The one ASGI root app: MCP's HTTP transport and the web faces on one port, behind one gate.

FastAPI, because it sits on the Starlette the MCP SDK already runs, validates requests with the pydantic
models the tools already use, and writes the OpenAPI schema behind `/docs` (Swagger UI's files from the
`fastapi-offline` package: many machines are offline). Middleware, outermost first: Host, Origin, token
or session, body cap (checks.py, body_cap.py); the error handlers are registered once, here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from mcp.server.mcpserver import MCPServer

from glmtts_mcp import __version__
from glmtts_mcp.app.core import App
from glmtts_mcp.asgi.body_cap import BodyCap
from glmtts_mcp.asgi.checks import HostCheck, OriginCheck, TokenCheck
from glmtts_mcp.asgi.mcp_mount import HttpTransport, McpMount
from glmtts_mcp.asgi.names import ServerNames
from glmtts_mcp.web import include_web
from glmtts_mcp.web.errors import FolderNames, install_error_handlers
from glmtts_mcp.web.security import WebAccess


def root_app(app: App, server: MCPServer, transport: HttpTransport, names: ServerNames, access: WebAccess) -> FastAPI:
    """/mcp (or /sse and /messages/), /api, /v1, /, /login, /docs and /openapi.json."""
    mcp = McpMount(server, transport, app)
    root = FastAPIOffline(
        title="glmtts-mcp",
        version=__version__,
        description="Voice cloning and narration with GLM-TTS: the voice library over REST, an OpenAI-compatible "
        "speech endpoint, and the page at /. Errors are JSON with the problem and the fix.",
        static_url="/docs-assets",
        redoc_url=None,
        lifespan=mcp.lifespan,
    )
    settings = app.settings
    folders = {
        "the voice library": settings.voices_dir,
        "the output folder": settings.output_dir,
        "the checkpoint": settings.checkpoint,
        "a temporary folder": Path(tempfile.gettempdir()),
    }
    install_error_handlers(root, FolderNames(folders))
    include_web(root, app, access)
    for path in mcp.paths:
        root.add_route(path, mcp.app, include_in_schema=False)  # type: ignore[arg-type]  # an ASGI app, served as is
    # add_middleware wraps what is there: added innermost first.
    root.add_middleware(BodyCap, max_upload_bytes=app.settings.max_upload_bytes)
    root.add_middleware(TokenCheck, access=access)
    root.add_middleware(OriginCheck, names=names)
    root.add_middleware(HostCheck, names=names)
    return root
