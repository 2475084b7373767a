"""Who may talk to the HTTP transports, and what they are told when refused.

Host/Origin allow-lists (DNS-rebinding protection) with host names matched in any case, the bearer
token (scheme in any case, constant-time comparison, and strong enough to guard an exposed address),
and the SDK's 413 for oversized requests rewritten as a JSON-RPC error that says what to do.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Sequence

from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class HttpSecurityError(Exception):
    """An HTTP setup that would expose the server without protection; the message says how to fix it."""


# How to make a token nobody guesses; bound in the error that asks for one.
TOKEN_MIN_CHARS = 32
TOKEN_MIN_DISTINCT = 10
MAKE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
# The SDK's cap on HTTP request bodies (both transports), named in the 413 answer.
MAX_REQUEST_BYTES = 4 * 1024 * 1024


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


OVERSIZE_MESSAGE = (
    f"the request is larger than the {MAX_REQUEST_BYTES // 1024 // 1024} MiB an HTTP request may carry: "
    "split long text into several synthesize calls, and pass large audio as a file path inside the allowed "
    "folders instead of base64"
)


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


def check_token_strength(token: str) -> None:
    """A token that guards a non-loopback address must be long and varied enough that nobody guesses it."""
    if len(token) < TOKEN_MIN_CHARS or len(set(token)) < TOKEN_MIN_DISTINCT or any(c.isspace() for c in token):
        raise HttpSecurityError(
            f"GLMTTS_MCP_TOKEN is too easy to guess for a non-loopback address: use at least {TOKEN_MIN_CHARS} "
            f"characters, {TOKEN_MIN_DISTINCT} of them different, no spaces; make one with {MAKE_TOKEN}"
        )


def refuse_unprotected_exposure(host: str, token: str | None, force_insecure: bool) -> None:
    """A non-loopback address needs a strong token, unless the caller forces it (--force-insecure)."""
    if is_loopback(host) or force_insecure:
        return
    if not token:
        raise HttpSecurityError(
            f"refusing to serve on {host} (not loopback) without a token: set GLMTTS_MCP_TOKEN to a secret "
            f"that clients send as 'Authorization: Bearer <token>' (make one with {MAKE_TOKEN}), "
            "bind 127.0.0.1, or pass --force-insecure"
        )
    check_token_strength(token)
