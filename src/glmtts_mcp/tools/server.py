"""Build the MCP server and run it over stdio, Streamable HTTP or SSE.

HTTP binds to loopback by default with Host/Origin validation (DNS-rebinding protection). A bearer
token (GLMTTS_MCP_TOKEN) is checked on every request when set, and a strong one is required before
binding any non-loopback address unless the caller forces it. Connections are bounded (see
http_guard.py) so silent clients cannot exhaust the process's file descriptors.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
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
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glmtts_mcp import __version__
from glmtts_mcp.config import Settings
from glmtts_mcp.tools.app import App
from glmtts_mcp.tools.errors import describe_invalid_arguments
from glmtts_mcp.tools.http_guard import connection_cap, guarded_http_protocol
from glmtts_mcp.tools.stdin_lines import StdinLines
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


# How to make a token nobody guesses; bound in the error that asks for one.
TOKEN_MIN_CHARS = 32
TOKEN_MIN_DISTINCT = 10
MAKE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
# The SDK's cap on HTTP request bodies (both transports), named in the 413 answer.
MAX_REQUEST_BYTES = 4 * 1024 * 1024


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
    """127.0.0.0/8, ::1 and localhost (any letter case)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def transport_security(host: str, extra_hosts: Sequence[str]) -> TransportSecuritySettings:
    """Host/Origin allow-lists: loopback names always, plus the bind address and any extra names.

    Names are kept in lower case: LowercaseHostNames lowers the request's headers to match (RFC 9110)."""
    names = ["127.0.0.1", "localhost", "[::1]"]
    if not is_loopback(host) and host not in ("0.0.0.0", "::"):
        names.append(f"[{host}]" if ":" in host else host)
    names += list(extra_hosts)
    names = list(dict.fromkeys(n.lower() for n in names))
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


class LowercaseHostNames:
    """Lower-case the Host and Origin headers before the SDK compares them with its allow-lists: host names
    and URI schemes are case-insensitive (RFC 9110 §4.2.3, RFC 6454), so `LOCALHOST:8765` is localhost."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = [(k, v.lower() if k in (b"host", b"origin") else v) for k, v in scope.get("headers") or []]
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


class BearerTokenMiddleware:
    """Refuse HTTP requests without `Authorization: Bearer <token>` (scheme in any case, constant-time
    comparison of the token)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, credentials = given.strip().partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.expected):
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


class OversizeAsJsonRpc:
    """Turn the SDK's bare 413 ("Request body too large") into a JSON-RPC error that says what to do: MCP
    clients show a JSON-RPC error body's message, and only a generic failure for a text body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replaced = False

        async def send_explained(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 413:
                replaced = True
                body = json.dumps(
                    {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": OVERSIZE_MESSAGE}}
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                    }
                )
                await send({"type": "http.response.body", "body": body})
            elif not replaced:
                await send(message)

        await self.app(scope, receive, send_explained)


OVERSIZE_MESSAGE = (
    f"the request is larger than the {MAX_REQUEST_BYTES // 1024 // 1024} MiB an HTTP request may carry: "
    "split long text into several synthesize calls, and pass large audio as a file path inside the allowed "
    "folders instead of base64"
)


def check_token_strength(token: str) -> None:
    """A token that guards a non-loopback address must be long and varied enough that nobody guesses it."""
    if len(token) < TOKEN_MIN_CHARS or len(set(token)) < TOKEN_MIN_DISTINCT or any(c.isspace() for c in token):
        raise HttpSecurityError(
            f"GLMTTS_MCP_TOKEN is too easy to guess for a non-loopback address: use at least {TOKEN_MIN_CHARS} "
            f"characters, {TOKEN_MIN_DISTINCT} of them different, no spaces; make one with {MAKE_TOKEN}"
        )


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
    if not is_loopback(host) and not force_insecure:
        if not token:
            raise HttpSecurityError(
                f"refusing to serve on {host} (not loopback) without a token: set GLMTTS_MCP_TOKEN to a secret "
                f"that clients send as 'Authorization: Bearer <token>' (make one with {MAKE_TOKEN}), "
                "bind 127.0.0.1, or pass --force-insecure"
            )
        check_token_strength(token)
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
