"""`serve --transport http|sse` and `web`: the root app under uvicorn, bounded (http_guard.py), on an
address that exposure.py allows."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import anyio
import uvicorn

from glmtts_mcp.app.core import App
from glmtts_mcp.asgi.exposure import refuse_unprotected_exposure
from glmtts_mcp.asgi.http_guard import connection_cap, guarded_http_protocol
from glmtts_mcp.asgi.mcp_mount import SSE_PATH, STREAMABLE_HTTP_PATH, HttpTransport
from glmtts_mcp.asgi.names import ServerNames
from glmtts_mcp.asgi.root import root_app
from glmtts_mcp.config import Settings
from glmtts_mcp.mcp_face.server import build_server
from glmtts_mcp.web.security import WebAccess

log = logging.getLogger(__name__)


class HttpService:
    """MCP over one HTTP transport and the web faces, for `app`, on host:port. Refuses an exposed address
    without a strong token unless forced (HttpSecurityError)."""

    def __init__(
        self,
        app: App,
        transport: HttpTransport,
        host: str = "127.0.0.1",
        port: int = 8765,
        force_insecure: bool = False,
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        token = app.settings.token.get_secret_value() if app.settings.token else None
        refuse_unprotected_exposure(host, token, force_insecure)
        self.app = app
        self.transport = transport
        self.access = WebAccess(token)
        self.base_url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        root = root_app(app, build_server(app), transport, ServerNames.for_bind(host, port, allowed_hosts), self.access)
        self.config = uvicorn_config(root, host, port, app.settings)

    def entry_url(self) -> str:
        """The URL to open in a browser: the one-time sign-in link while unused (token set), else the page."""
        return self.base_url + self.access.entry_path()

    async def serve(self) -> None:
        """Serve until cancelled."""
        await uvicorn.Server(self.config).serve()

    def run(self) -> None:
        """Serve until the process is stopped; the model preloads in the background meanwhile."""
        self.app.start_preload()
        path = STREAMABLE_HTTP_PATH if self.transport == "http" else SSE_PATH
        log.info("serving %s on %s%s", self.transport, self.base_url, path)
        anyio.run(self.serve)


def uvicorn_config(root: Any, host: str, port: int, settings: Settings) -> uvicorn.Config:
    """uvicorn's config with the connection bounds: keep-alive and header timeouts, a connection cap, and
    logs through our stderr handler (access lines only at DEBUG)."""
    return uvicorn.Config(
        root,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,
        access_log=settings.log_level == "DEBUG",
        lifespan="on",
        timeout_keep_alive=settings.http_keep_alive_s,  # type: ignore[arg-type]  # uvicorn annotates int; call_later takes the float
        http=guarded_http_protocol(settings.http_header_timeout_s, connection_cap(settings.http_max_connections)),
    )
