"""The SDK's Streamable HTTP or SSE app inside the root app, as the SDK documents mounting it: the SDK's
own app object, its session manager run in the parent's lifespan.

It is routed at its own paths rather than mounted at `/`, so that every other path stays the root's
(a JSON 404 that points to /docs, not the SDK's plain-text one). Its own Host/Origin check is turned off:
the root's gate (checks.py) makes it, once, for every path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp

from glmtts_mcp.app.core import App

HttpTransport = Literal["http", "sse"]

STREAMABLE_HTTP_PATH = "/mcp"
SSE_PATH = "/sse"
MESSAGE_PATH = "/messages/"
MCP_PATHS = (STREAMABLE_HTTP_PATH, SSE_PATH, MESSAGE_PATH)
# The most an MCP request body may carry (both transports); the root's body cap answers past it.
MCP_BODY_BYTES = 4 * 1024 * 1024

_NO_SDK_HOST_CHECK = TransportSecuritySettings(enable_dns_rebinding_protection=False)


def is_mcp_path(path: str) -> bool:
    """The paths the MCP transports own (either transport's, whichever is served)."""
    return any(path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") for p in MCP_PATHS)


class McpMount:
    """The SDK app for `transport`, the root paths it serves, and the lifespan the root must run."""

    def __init__(self, server: MCPServer, transport: HttpTransport, app: App) -> None:
        self.server = server
        self.live = app.live
        self.transport = transport
        self.app: ASGIApp
        if transport == "http":
            self.app = server.streamable_http_app(
                streamable_http_path=STREAMABLE_HTTP_PATH,
                transport_security=_NO_SDK_HOST_CHECK,
                # Missing SDK hook: its body cap cannot be left out; at the root's limit it never answers
                # first, the root's cap (body_cap.py) does, with a JSON-RPC error that says what to do.
                max_request_body_size=MCP_BODY_BYTES,
            )
            self.paths: tuple[str, ...] = (STREAMABLE_HTTP_PATH,)
        else:
            self.app = server.sse_app(
                sse_path=SSE_PATH,
                message_path=MESSAGE_PATH,
                transport_security=_NO_SDK_HOST_CHECK,
                max_request_body_size=MCP_BODY_BYTES,
            )
            self.paths = (SSE_PATH, MESSAGE_PATH)

    @asynccontextmanager
    async def lifespan(self, _root: Any) -> AsyncIterator[None]:
        """Streamable HTTP's session manager runs while the root app does (SSE has none), and so do the
        live narrations the MCP Apps player follows."""
        async with self.live.serve():
            if self.transport == "http":
                async with self.server.session_manager.run():
                    yield
            else:
                yield
