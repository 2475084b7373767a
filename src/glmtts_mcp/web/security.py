"""Who may use the server when a token is set, and the sign-in that gives a browser a session.

A request carries `Authorization: Bearer <token>` or the session cookie a sign-in sets (HttpOnly,
SameSite=Strict). The sign-in is the one-time URL printed at start (`/login?code=...`, as Jupyter does)
or the token typed into the form. `WebAccess.allows` is the one token check: the root app's gate
(asgi/checks.py) applies it to every path, /mcp included. Wrong sign-ins are counted and slowed per
client address (`LoginThrottle`): a guesser gets a few tries, then waits twice as long after each.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import Headers

log = logging.getLogger(__name__)

SESSION_COOKIE = "glmtts_mcp_session"
LOGIN_PATH = "/login"


class LoginThrottle:
    """Wrong sign-ins per client address: `free_tries` answered at once, then each further one makes the
    address wait `first_wait_s`, doubled per failure up to `max_wait_s`, before it may try again. A right
    sign-in forgets the address. At most `max_addresses` are remembered (the longest quiet dropped first),
    so a flood of addresses costs bounded memory."""

    def __init__(
        self,
        free_tries: int = 5,
        first_wait_s: float = 1.0,
        max_wait_s: float = 60.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_tries, self.first_wait_s, self.max_wait_s = free_tries, first_wait_s, max_wait_s
        self.max_addresses = max_addresses
        self.clock = clock
        self.failed_total = 0  # wrong sign-ins since start, every address
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # address -> (failures, next try)
        self._lock = threading.Lock()

    def wait_s(self, address: str) -> float:
        """Seconds `address` must still wait before its next try (0: it may try now)."""
        with self._lock:
            _, next_try = self._failures.get(address, (0, 0.0))
            return max(0.0, next_try - self.clock())

    def failed(self, address: str) -> float:
        """Count a wrong sign-in; the seconds the address must now wait."""
        with self._lock:
            failures = self._failures.pop(address, (0, 0.0))[0] + 1
            self.failed_total += 1
            over = failures - self.free_tries
            wait = min(self.max_wait_s, self.first_wait_s * 2 ** (over - 1)) if over > 0 else 0.0
            self._failures[address] = (failures, self.clock() + wait)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
        if over > 0:
            log.warning("%d wrong sign-ins from %s: it waits %.0f s before its next try", failures, address, wait)
        return wait

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)


class WebAccess:
    """Who may use the server (every path, /mcp included) with a token set: the token, or a session from it."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self._code: str | None = secrets.token_urlsafe(24) if token else None
        self._lock = threading.Lock()
        self.throttle = LoginThrottle()

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
        """Bearer token in the Authorization header (the scheme in any case, RFC 9110 §11.1), or the
        session cookie; both compared in constant time."""
        if not self.required:
            return True
        scheme, _, credentials = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() == "bearer" and self.token_matches(credentials.strip()):
            return True
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE and hmac.compare_digest(value.encode(), self.session_value.encode()):
                return True
        return False

    def start_session(self, response: Response) -> Response:
        response.set_cookie(SESSION_COOKIE, self.session_value, httponly=True, samesite="strict", path="/")
        return response


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


def _too_soon(wait_s: float) -> HTMLResponse:
    """The answer to a sign-in from an address that must wait after its wrong tries."""
    seconds = max(1, round(wait_s + 0.5))
    response = login_page(f"Too many wrong sign-ins from your address: wait {seconds} s, then try again.", 429)
    response.headers["retry-after"] = str(seconds)
    return response


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def web_access(request: Request) -> WebAccess:
    """The access rules the app was built with (`app.state.access`)."""
    return request.app.state.access


Access = Annotated[WebAccess, Depends(web_access)]


def login_routes() -> APIRouter:
    """GET /login?code=... (the one-time link) and POST /login (the token typed in): both set the cookie."""
    router = APIRouter(include_in_schema=False)

    @router.get(LOGIN_PATH)
    async def login_link(request: Request, access: Access, code: str | None = None) -> Response:
        if not access.required or access.allows(request.headers):
            return RedirectResponse("/", status_code=303)
        if code is None:
            return login_page()
        address = _address(request)
        if wait := access.throttle.wait_s(address):
            return _too_soon(wait)
        if not access.redeem(code):
            access.throttle.failed(address)
            return login_page("That sign-in link was already used or is wrong: type the token instead.", 401)
        access.throttle.succeeded(address)
        return access.start_session(RedirectResponse("/", status_code=303))

    @router.post(LOGIN_PATH)
    async def login_token(request: Request, access: Access, token: str = Form("")) -> Response:
        if not access.required:
            return RedirectResponse("/", status_code=303)
        address = _address(request)
        if wait := access.throttle.wait_s(address):
            return _too_soon(wait)
        if not access.token_matches(token.strip()):
            access.throttle.failed(address)
            return login_page("That is not this server's token.", 401)
        access.throttle.succeeded(address)
        return access.start_session(RedirectResponse("/", status_code=303))

    return router
