"""The gate every request passes, MCP or web: Host (DNS rebinding), Origin (cross-site), then the token
or session. One pure ASGI middleware per check; a refusal has the body shape of the path it guards."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from glmtts_mcp.asgi.mcp_mount import is_mcp_path
from glmtts_mcp.asgi.names import ServerNames
from glmtts_mcp.web.errors import error_body
from glmtts_mcp.web.security import LOGIN_PATH, WebAccess

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def refusal(path: str, status: int, message: str) -> Response:
    return JSONResponse(error_body(path, status, message), status_code=status)


class _Check:
    """ASGI middleware that answers `refuse(...)` instead of calling the app when it is not None."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def refuse(self, scope: Scope, headers: Headers) -> Response | None:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = self.refuse(scope, Headers(scope=scope))
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


class HostCheck(_Check):
    """DNS-rebinding protection: the Host header must be a name this server answers to."""

    def __init__(self, app: ASGIApp, names: ServerNames) -> None:
        super().__init__(app)
        self.names = names

    def refuse(self, scope: Scope, headers: Headers) -> Response | None:
        host = headers.get("host", "")
        if self.names.host_allowed(host):
            return None
        return refusal(
            scope["path"],
            421,
            f"Host {host!r} is not a name this server answers to (DNS-rebinding protection): "
            "use http://127.0.0.1:PORT/, or start the server with --allowed-host NAME for the name clients use",
        )


class OriginCheck(_Check):
    """Cross-site protection: a browser page on another origin may not use the MCP endpoints (the MCP spec
    asks servers to check Origin on every request there) nor change state anywhere; reading a web path is
    harmless, since no CORS header lets that page see the answer."""

    def __init__(self, app: ASGIApp, names: ServerNames) -> None:
        super().__init__(app)
        self.names = names

    def refuse(self, scope: Scope, headers: Headers) -> Response | None:
        method, path = scope["method"], scope["path"]
        if method not in STATE_CHANGING and not is_mcp_path(path):
            return None
        origin = headers.get("origin")
        if headers.get("sec-fetch-site") != "cross-site" and (
            origin is None or self.names.origin_allowed(origin, scope["scheme"], headers.get("host", ""))
        ):
            return None
        return refusal(
            path,
            403,
            f"{method} from origin {origin!r} refused: a page on another site may not use this server "
            "(CSRF protection); use the page this server serves, or start the server with "
            "--allowed-host scheme://name:port for that origin",
        )


class TokenCheck(_Check):
    """With a token set, every path but the sign-in asks for `Authorization: Bearer <token>` or the session
    cookie (WebAccess.allows, the one check); a browser asking for a page is sent to sign in."""

    def __init__(self, app: ASGIApp, access: WebAccess) -> None:
        super().__init__(app)
        self.access = access

    def refuse(self, scope: Scope, headers: Headers) -> Response | None:
        path = scope["path"]
        if path == LOGIN_PATH or self.access.allows(headers):
            return None
        if scope["method"] == "GET" and "text/html" in headers.get("accept", ""):
            return RedirectResponse(LOGIN_PATH, status_code=303)
        response = refusal(
            path,
            401,
            "unauthorized: send 'Authorization: Bearer <GLMTTS_MCP_TOKEN>', or sign in at /login "
            "(the one-time link the server printed at start, or the token) for a browser session",
        )
        response.headers["www-authenticate"] = 'Bearer realm="glmtts-mcp"'
        return response
