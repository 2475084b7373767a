"""Build the MCP server and run it over stdio, Streamable HTTP or SSE.

HTTP binds to loopback by default with Host/Origin validation (DNS-rebinding protection). A bearer
token (GLMTTS_MCP_TOKEN) is checked on every request when set, and is required before binding any
non-loopback address unless the caller forces it.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

import anyio
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from glmtts_mcp import __version__
from glmtts_mcp.tools.app import App
from glmtts_mcp.tools.resources import register_resources
from glmtts_mcp.tools.stats import register_stats_tool
from glmtts_mcp.tools.synthesis import register_synthesis_tool
from glmtts_mcp.tools.voice_tools import register_voice_tools

log = logging.getLogger(__name__)

Transport = Literal["stdio", "http", "sse"]

INSTRUCTIONS = """\
Clone a voice from a short recording and narrate text in it, locally.
1. clone_voice(audio="/absolute/path/to/clip.wav") once per speaker; keep the returned voice_id (or give a name).
2. synthesize(text=..., voice=<id or name>) as often as you like: the voice is cached, so this is the fast path.
   synthesize(text=..., reference_audio=<path>) also works: the clip is cloned into the library on the way.
3. The result holds the audio inline when it fits the host's limit, plus the saved file path and an audio:// link.
list_voices, delete_voice, rename_voice, export_voice, import_voice manage the library; cache_stats shows the
cache and model state. Input files must lie inside the allowed folders."""


# Another face served on the same port: given the MCP app (token already checked) and the Host/Origin
# allow-lists, it returns the app to serve (web/ supplies one; tools/ never imports it).
HttpFace = Callable[[ASGIApp, TransportSecuritySettings], ASGIApp]


class HttpSecurityError(Exception):
    """An HTTP setup that would expose the server without protection; the message says how to fix it."""


def build_server(app: App) -> MCPServer:
    """The MCPServer with every tool and resource, advertising resources/list_changed."""
    server = MCPServer(
        "glmtts-mcp",
        title="GLM-TTS voice cloning",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level=app.settings.log_level,
    )
    register_voice_tools(server, app)
    register_synthesis_tool(server, app)
    register_stats_tool(server, app)
    register_resources(server, app)
    _advertise_resource_list_changes(server)
    return server


def _advertise_resource_list_changes(server: MCPServer) -> None:
    """Every transport builds its initialize answer through `create_initialization_options()` with no
    arguments; default it to resources.listChanged=true, since clone/delete send that notification."""
    lowlevel = server._lowlevel_server  # the SDK exposes no other way to set NotificationOptions
    create = lowlevel.create_initialization_options

    def with_list_changed(notification_options: NotificationOptions | None = None, *args: Any, **kwargs: Any) -> Any:
        return create(notification_options or NotificationOptions(resources_changed=True), *args, **kwargs)

    lowlevel.create_initialization_options = with_list_changed  # type: ignore[method-assign]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def transport_security(host: str, extra_hosts: Sequence[str]) -> TransportSecuritySettings:
    """Host/Origin allow-lists: loopback names always, plus the bind address and any extra names."""
    names = ["127.0.0.1", "localhost", "[::1]"]
    if not is_loopback(host) and host not in ("0.0.0.0", "::"):
        names.append(f"[{host}]" if ":" in host else host)
    names += list(extra_hosts)
    wildcard_bind = host in ("0.0.0.0", "::")
    if wildcard_bind and not extra_hosts:
        log.warning(
            "bound to %s without --allowed-host: Host/Origin checks are off; the bearer token protects the server",
            host,
        )
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{n}:*" for n in names] + names,
        allowed_origins=[f"{scheme}://{n}{port}" for n in names for scheme in ("http", "https") for port in (":*", "")],
    )


class BearerTokenMiddleware:
    """Refuse HTTP requests without `Authorization: Bearer <token>` (constant-time comparison)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        body = b'{"error": "unauthorized: send Authorization: Bearer <GLMTTS_MCP_TOKEN>"}'
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer realm="glmtts-mcp"'),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def http_app(
    server: MCPServer,
    transport: Literal["http", "sse"],
    host: str,
    token: str | None,
    force_insecure: bool = False,
    extra_hosts: Sequence[str] = (),
    face: HttpFace | None = None,
) -> ASGIApp:
    """The ASGI app for an HTTP transport, with Host/Origin checks and the bearer token when set;
    `face` adds another face (the web pages and APIs) beside the MCP endpoint."""
    if not is_loopback(host) and not token and not force_insecure:
        raise HttpSecurityError(
            f"refusing to serve on {host} (not loopback) without a token: set GLMTTS_MCP_TOKEN to a secret that "
            "clients send as 'Authorization: Bearer <token>', bind 127.0.0.1, or pass --force-insecure"
        )
    security = transport_security(host, extra_hosts)
    if transport == "http":
        app: ASGIApp = server.streamable_http_app(transport_security=security, host=host)
    else:
        app = server.sse_app(transport_security=security, host=host)
    guarded = BearerTokenMiddleware(app, token) if token else app
    return face(guarded, security) if face else guarded


async def serve_http(app: ASGIApp, host: str, port: int, log_level: str) -> None:
    """Run an ASGI app with uvicorn until cancelled."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level.lower(), lifespan="on")
    await uvicorn.Server(config).serve()


def run(
    app: App,
    transport: Transport = "stdio",
    host: str = "127.0.0.1",
    port: int = 8765,
    force_insecure: bool = False,
    extra_hosts: Sequence[str] = (),
    face: HttpFace | None = None,
) -> None:
    """Serve until the client disconnects (stdio) or the process is stopped (HTTP/SSE)."""
    server = build_server(app)
    token = app.settings.token.get_secret_value() if app.settings.token else None
    try:
        if transport == "stdio":
            anyio.run(server.run_stdio_async)
        else:
            asgi = http_app(server, transport, host, token, force_insecure, extra_hosts, face)
            path = "/mcp" if transport == "http" else "/sse"
            log.info("serving %s on http://%s:%d%s", transport, host, port, path)
            anyio.run(serve_http, asgi, host, port, app.settings.log_level)
    finally:
        app.close()
