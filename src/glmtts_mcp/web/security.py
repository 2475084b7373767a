"""The web faces' gate: Host check, bearer token or session cookie, cross-site refusal, body cap.

The MCP endpoint keeps its own checks (mcp_face/server.py); every other path passes through `WebGuard`:
- Host must be one of the names the server answers to (DNS-rebinding protection), as for /mcp;
- with a token set, a request carries `Authorization: Bearer <token>` or the session cookie that a
  login sets (HttpOnly, SameSite=Strict). The login is the one-time URL printed at start
  (`/login?code=...`, as Jupyter does) or the token typed into the sign-in form;
- POST, PUT, PATCH and DELETE from a foreign Origin are refused (CSRF); GET never changes state;
- request bodies are capped at `max_upload_bytes` (plus room for the multipart framing).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import secrets
import threading
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glmtts_mcp.web.errors import error_body

SESSION_COOKIE = "glmtts_mcp_session"
LOGIN_PATH = "/login"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MULTIPART_ROOM = 64 * 1024  # form fields and boundaries around an upload


class WebAccess:
    """Who may use the web faces when a token is set: the token itself, or a session made from it."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self._code: str | None = secrets.token_urlsafe(24) if token else None
        self._lock = threading.Lock()

    @property
    def required(self) -> bool:
        return self.token is not None

    @property
    def session_value(self) -> str:
        """Derived from the token (it survives restarts, changes with the token, and never reveals it)."""
        assert self.token is not None
        return hmac.new(self.token.encode(), b"glmtts-mcp web session", hashlib.sha256).hexdigest()

    def entry_path(self) -> str:
        """The path to open first: the one-time login while it is unused, else the page."""
        with self._lock:
            return f"{LOGIN_PATH}?code={self._code}" if self._code else "/"

    def redeem(self, code: str) -> bool:
        """True once for the one-time code; it is spent by the first successful use."""
        with self._lock:
            if self._code is None or not hmac.compare_digest(code.encode(), self._code.encode()):
                return False
            self._code = None
            return True

    def token_matches(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def allows(self, headers: Headers) -> bool:
        """Bearer token in the Authorization header, or the session cookie."""
        if not self.required:
            return True
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and self.token_matches(auth[7:].strip()):
            return True
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE and hmac.compare_digest(value.encode(), self.session_value.encode()):
                return True
        return False

    def start_session(self, response: Response) -> Response:
        response.set_cookie(SESSION_COOKIE, self.session_value, httponly=True, samesite="strict", path="/")
        return response


def _matches(value: str, patterns: list[str]) -> bool:
    """Exact match, or a 'name:*' pattern matching any port."""
    return value in patterns or any(p.endswith(":*") and value.startswith(p[:-1]) for p in patterns)


class WebGuard:
    """ASGI middleware in front of every web path (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, access: WebAccess, security: TransportSecuritySettings, max_upload_bytes: int
    ) -> None:
        self.app = app
        self.access = access
        self.security = security
        self.max_body = max_upload_bytes + MULTIPART_ROOM
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path, method = scope["path"], scope["method"]
        refusal = self._refusal(headers, path, method)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await self._too_large(path)(scope, receive, send)
            return
        await self._capped(scope, receive, send, path)

    def _refusal(self, headers: Headers, path: str, method: str) -> Response | None:
        host = headers.get("host", "")
        if self.security.enable_dns_rebinding_protection and not _matches(host, self.security.allowed_hosts):
            return _error(
                path, 421, f"Host {host!r} is not a name this server answers to (DNS-rebinding protection): use "
                "http://127.0.0.1:PORT/, or start the server with --allowed-host NAME for the name clients use",
            )
        if method in STATE_CHANGING and not self._same_site(headers, host):
            return _error(
                path, 403, f"{method} from origin {headers.get('origin')!r} refused: a page on another site may not "
                "change this server's state (CSRF protection); use the page this server serves",
            )
        if path == LOGIN_PATH or self.access.allows(headers):
            return None
        if method == "GET" and "text/html" in headers.get("accept", ""):
            return RedirectResponse(LOGIN_PATH, status_code=303)
        response = _error(
            path, 401, "unauthorized: send 'Authorization: Bearer <GLMTTS_MCP_TOKEN>', or sign in at /login "
            "(the one-time link the server printed at start, or the token) for a browser session",
        )
        response.headers["www-authenticate"] = 'Bearer realm="glmtts-mcp"'
        return response

    def _same_site(self, headers: Headers, host: str) -> bool:
        """No Origin (a non-browser client), an allowed origin, or this server's own origin."""
        if headers.get("sec-fetch-site") == "cross-site":
            return False
        origin = headers.get("origin")
        if origin is None:
            return True
        if self.security.enable_dns_rebinding_protection and _matches(origin, self.security.allowed_origins):
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and bool(host) and parts.netloc == host

    def _too_large(self, path: str) -> Response:
        return _error(
            path, 413, f"the request body is larger than the {self.max_upload_bytes}-byte upload limit: send a "
            "shorter clip (5-15 s of speech is enough), or raise --max-upload-bytes",
        )

    async def _capped(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """Run the app; once the body passes the cap, answer 413 and tell the app the client left."""
        received = 0
        refused = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body and not started:
                    refused = True
                    await self._too_large(path)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out already: the app's own answer is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not refused:
                raise


def _error(path: str, status: int, message: str) -> Response:
    return Response(json.dumps(error_body(path, status, message)), status_code=status, media_type="application/json")


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · glmtts-mcp</title>
<style>body{{font:16px system-ui,sans-serif;margin:2rem auto;max-width:32rem;padding:0 1rem}}
input,button{{font:inherit;padding:.4rem;margin:.3rem 0}}input{{width:100%;box-sizing:border-box}}
.error{{color:#a00}}</style></head>
<body><main class="login"><h1>glmtts-mcp</h1>
<p>This server asks for its token. Open the one-time link it printed at start, or type the token
(<code>GLMTTS_MCP_TOKEN</code>) here.</p>
{message}
<form method="post" action="/login"><label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button></form></main></body></html>"""


def login_page(message: str | None = None, status: int = 200) -> HTMLResponse:
    shown = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return HTMLResponse(_LOGIN_PAGE.format(message=shown), status_code=status)


def login_routes(access: WebAccess) -> APIRouter:
    """GET /login?code=... (the one-time link) and POST /login (the token typed in): both set the cookie."""
    router = APIRouter(include_in_schema=False)

    @router.get(LOGIN_PATH)
    async def login_link(request: Request, code: str | None = None) -> Response:
        if not access.required or access.allows(request.headers):
            return RedirectResponse("/", status_code=303)
        if code is None:
            return login_page()
        if not access.redeem(code):
            return login_page("That sign-in link was already used or is wrong: type the token instead.", 401)
        return access.start_session(RedirectResponse("/", status_code=303))

    @router.post(LOGIN_PATH)
    async def login_token(token: str = Form("")) -> Response:
        if not access.required:
            return RedirectResponse("/", status_code=303)
        if not access.token_matches(token.strip()):
            return login_page("That is not this server's token.", 401)
        return access.start_session(RedirectResponse("/", status_code=303))

    return router
