"""Build the MCP server (its tools and resources) and run it over stdio.

The HTTP transports are served by the one ASGI root app (asgi/), which takes this server from
`build_server`.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.stdio import stdio_server
from mcp.server.subscriptions import InMemorySubscriptionBus, SubscriptionBus
from mcp.shared.subscriptions import ResourcesListChanged
from mcp_types import ListToolsResult, PaginatedRequestParams
from pydantic import ValidationError

from glmtts_mcp import __version__
from glmtts_mcp.app.core import App
from glmtts_mcp.mcp_face.errors import describe_invalid_arguments
from glmtts_mcp.mcp_face.player import register_player, renders_apps, tools_for
from glmtts_mcp.mcp_face.pronunciation_tools import register_pronunciation_tools
from glmtts_mcp.mcp_face.resources import register_resources
from glmtts_mcp.mcp_face.scripts import register_script_tool
from glmtts_mcp.mcp_face.stats import register_stats_tool
from glmtts_mcp.mcp_face.stdin_lines import StdinLines
from glmtts_mcp.mcp_face.synthesis import register_synthesis_tool
from glmtts_mcp.mcp_face.voice_tools import register_voice_tools

INSTRUCTIONS = """\
Clone a voice from a short recording and narrate text in it, locally.
1. clone_voice(audio="/absolute/path/to/clip.wav") once per speaker; keep the returned voice_id (or give a name).
2. synthesize(text=..., voice=<id or name>) as often as you like: the voice is cached, so this is the fast path.
   synthesize(text=..., reference_audio=<path>) also works: the clip is cloned into the library on the way.
3. The result holds the audio inline when it fits the host's limit, plus the saved file path and an audio:// link.
4. narrate_script(script=...) narrates a dialogue or chapters in several library voices, with
   SRT/WebVTT subtitles and a timeline of exact line and segment times.
list_voices, delete_voice, rename_voice, export_voice, import_voice manage the library; cache_stats shows the
cache and model state. Input files must lie inside the allowed folders."""


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

    async def _handle_list_tools(
        self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        """The tools this client gets: a host that renders MCP Apps gets the player's app-only tools too.

        Missing SDK hook: `list_tools` sees no request context, so the client's capabilities are read in
        the SDK's private handler."""
        tools = await self.list_tools()
        return ListToolsResult(tools=tools_for(tools, renders_apps(ctx.session.client_capabilities)))


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
    register_script_tool(server, app)
    register_stats_tool(server, app)
    register_pronunciation_tools(server, app)
    register_resources(server, app)
    register_player(server, app)
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
    arguments; default it to resources.listChanged=true, since clone/delete send that notification.

    Missing SDK hook: MCPServer takes no NotificationOptions (nor exposes its lowlevel Server), and its
    stdio, SSE and Streamable HTTP runners call `create_initialization_options()` without arguments;
    hence the private `_lowlevel_server`."""
    lowlevel = server._lowlevel_server
    create = lowlevel.create_initialization_options

    def with_list_changed(notification_options: NotificationOptions | None = None, *args: Any, **kwargs: Any) -> Any:
        return create(notification_options or NotificationOptions(resources_changed=True), *args, **kwargs)

    lowlevel.create_initialization_options = with_list_changed  # type: ignore[method-assign]  # the SDK hook above


async def serve_stdio(server: MCPServer, app: App) -> None:
    """MCP over stdin/stdout. Lines come from a daemon thread (StdinLines), so Ctrl-C stops a server
    that is waiting for input: the SDK's default reader blocks in a worker thread that cannot be
    abandoned, and two presses of Ctrl-C were ignored.

    Missing SDK hook: `MCPServer.run_stdio_async` takes no stdin stream, so the lowlevel Server is run
    here through the private `_lowlevel_server`."""
    lowlevel = server._lowlevel_server
    async with app.live.serve(), stdio_server(stdin=StdinLines()) as (read_stream, write_stream):  # type: ignore[arg-type]  # reads lines only
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


STDIO_TERMINAL_HINT = (
    "glmtts-mcp: serving MCP over stdio and waiting for an MCP host on stdin (this is the program a host "
    "starts, not an interactive prompt). To wire it into Claude Desktop or Claude Code, run "
    "`glmtts-mcp config` (in this checkout: `scripts/glmtts-mcp config`). Ctrl-C stops."
)


def run_stdio(app: App) -> None:
    """Serve MCP over stdio until the client disconnects; the model preloads in the background meanwhile."""
    server = build_server(app)
    app.start_preload()
    if sys.stdin.isatty():
        print(STDIO_TERMINAL_HINT, file=sys.stderr, flush=True)
    anyio.run(serve_stdio, server, app)
