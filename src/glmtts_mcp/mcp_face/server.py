"""Build the MCP server and run it over stdio, Streamable HTTP or SSE.

HTTP binds to loopback by default; who may talk to it is http_security.py (Host/Origin checks, the
bearer token, explained refusals), how long and how many connections is http_guard.py. Everything
HTTP is put together in `http_service`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal

import anyio
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.stdio import stdio_server
from mcp.server.subscriptions import InMemorySubscriptionBus, SubscriptionBus
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.subscriptions import ResourcesListChanged
from pydantic import ValidationError
from starlette.types import ASGIApp

from glmtts_mcp import __version__
from glmtts_mcp.app.core import App
from glmtts_mcp.asgi.http_guard import connection_cap, guarded_http_protocol
from glmtts_mcp.asgi.http_security import (
    MAX_REQUEST_BYTES,
    BearerTokenMiddleware,
    LowercaseHostNames,
    OversizeAsJsonRpc,
    refuse_unprotected_exposure,
    transport_security,
)
from glmtts_mcp.config import Settings
from glmtts_mcp.mcp_face.errors import describe_invalid_arguments
from glmtts_mcp.mcp_face.resources import register_resources
from glmtts_mcp.mcp_face.stats import register_stats_tool
from glmtts_mcp.mcp_face.stdin_lines import StdinLines
from glmtts_mcp.mcp_face.synthesis import register_synthesis_tool
from glmtts_mcp.mcp_face.voice_tools import register_voice_tools

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
# allow-lists, it returns the app to serve (web/ supplies one; mcp_face/ never imports it).
HttpFace = Callable[[ASGIApp, TransportSecuritySettings], ASGIApp]


class GlmttsServer(MCPServer):
    """MCPServer whose argument-validation failures read like every other tool error (problem and fix),
    not pydantic's dump with a documentation URL. One hook for every tool: the SDK validates arguments
    in `call_tool` and raises ToolError from the ValidationError."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc, UnexpectedToolError) or not isinstance(exc.__cause__, ValidationError):
                raise
            raise ToolError(describe_invalid_arguments(name, exc.__cause__)) from exc.__cause__


def build_server(app: App) -> MCPServer:
    """The MCPServer with every tool and resource, advertising resources/list_changed."""
    server = GlmttsServer(
        "glmtts-mcp",
        title="GLM-TTS voice cloning",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level=app.settings.log_level,
        subscriptions=_library_changes(app),
    )
    register_voice_tools(server, app)
    register_synthesis_tool(server, app)
    register_stats_tool(server, app)
    register_resources(server, app)
    _advertise_resource_list_changes(server)
    return server


def _library_changes(app: App) -> SubscriptionBus:
    """The server's `subscriptions/listen` bus, fed by the library changes of every face."""
    bus = InMemorySubscriptionBus()

    async def publish() -> None:
        await bus.publish(ResourcesListChanged())

    app.changes.subscribe(publish)
    return bus


def _advertise_resource_list_changes(server: MCPServer) -> None:
    """Every transport builds its initialize answer through `create_initialization_options()` with no
    arguments; default it to resources.listChanged=true, since clone/delete send that notification."""
    lowlevel = server._lowlevel_server  # the SDK exposes no other way to set NotificationOptions
    create = lowlevel.create_initialization_options

    def with_list_changed(notification_options: NotificationOptions | None = None, *args: Any, **kwargs: Any) -> Any:
        return create(notification_options or NotificationOptions(resources_changed=True), *args, **kwargs)

    lowlevel.create_initialization_options = with_list_changed  # type: ignore[method-assign]


def mcp_starlette_app(server: MCPServer, transport: Literal["http", "sse"], host: str, extra_hosts: Sequence[str]) -> Any:
    """The SDK's Starlette app for one HTTP transport, with Host/Origin allow-lists (routes can be added)."""
    security = transport_security(host, extra_hosts)
    if transport == "http":
        return server.streamable_http_app(transport_security=security, host=host, max_request_body_size=MAX_REQUEST_BYTES)
    return server.sse_app(transport_security=security, host=host, max_request_body_size=MAX_REQUEST_BYTES)


def http_service(
    server: MCPServer,
    settings: Settings,
    transport: Literal["http", "sse"],
    host: str,
    port: int,
    force_insecure: bool = False,
    extra_hosts: Sequence[str] = (),
    face: HttpFace | None = None,
) -> Any:
    """Everything HTTP in one place: the SDK's Starlette app for the transport, the middleware around it
    (token, host-name case, explained 413), another `face` beside it on the same port (the web pages and
    APIs) and uvicorn's config with the connection bounds. Refuses an exposed address without a strong
    token unless forced."""
    token = settings.token.get_secret_value() if settings.token else None
    refuse_unprotected_exposure(host, token, force_insecure)
    starlette_app = mcp_starlette_app(server, transport, host, extra_hosts)
    asgi: ASGIApp = OversizeAsJsonRpc(starlette_app)
    if token:
        asgi = BearerTokenMiddleware(asgi, token)
    if face is not None:
        asgi = face(asgi, transport_security(host, extra_hosts))
    return uvicorn_config(LowercaseHostNames(asgi), host, port, settings)


def uvicorn_config(asgi: ASGIApp, host: str, port: int, settings: Settings) -> Any:
    """uvicorn's config with the connection bounds: keep-alive and header timeouts, a connection cap, and
    logs through our stderr handler (access lines only at DEBUG)."""
    import uvicorn

    return uvicorn.Config(
        asgi,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,
        access_log=settings.log_level == "DEBUG",
        lifespan="on",
        timeout_keep_alive=settings.http_keep_alive_s,
        http=guarded_http_protocol(settings.http_header_timeout_s, connection_cap(settings.http_max_connections)),
    )


async def serve_http(config: Any) -> None:
    """Run uvicorn with `config` until cancelled."""
    import uvicorn

    await uvicorn.Server(config).serve()


async def serve_stdio(server: MCPServer) -> None:
    """MCP over stdin/stdout. Lines come from a daemon thread (StdinLines), so Ctrl-C stops a server
    that is waiting for input: the SDK's default reader blocks in a worker thread that cannot be
    abandoned, and two presses of Ctrl-C were ignored."""
    lowlevel = server._lowlevel_server  # run_stdio_async offers no way to pass our stdin
    async with stdio_server(stdin=StdinLines()) as (read_stream, write_stream):  # type: ignore[arg-type]
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


STDIO_TERMINAL_HINT = (
    "glmtts-mcp: serving MCP over stdio and waiting for an MCP host on stdin (this is the program a host "
    "starts, not an interactive prompt). To wire it into Claude Desktop or Claude Code, run "
    "`glmtts-mcp config` (in this checkout: `scripts/glmtts-mcp config`). Ctrl-C stops."
)


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
    app.start_preload()  # in the background: the transport starts now and answers while the model loads
    try:
        if transport == "stdio":
            if sys.stdin.isatty():
                print(STDIO_TERMINAL_HINT, file=sys.stderr, flush=True)
            anyio.run(serve_stdio, server)
        else:
            config = http_service(server, app.settings, transport, host, port, force_insecure, extra_hosts, face)
            path = "/mcp" if transport == "http" else "/sse"
            log.info("serving %s on http://%s:%d%s", transport, host, port, path)
            anyio.run(serve_http, config)
    finally:
        app.close()
