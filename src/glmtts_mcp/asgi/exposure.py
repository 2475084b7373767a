"""Whether an address may be served at all: a non-loopback one needs a token, and any token given, on any
address, must be one nobody guesses (a weak token on loopback is still guessed by every local process and
by any page that reaches the port)."""

from __future__ import annotations

import ipaddress


class HttpSecurityError(Exception):
    """An HTTP setup that would expose the server without protection; the message says how to fix it."""


# How to make a token nobody guesses; bound in the error that asks for one.
TOKEN_MIN_CHARS = 32
TOKEN_MIN_DISTINCT = 10
MAKE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost (any letter case)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_token_strength(token: str) -> None:
    """A token must be long and varied enough that nobody guesses it, whatever the address it guards."""
    if len(token) < TOKEN_MIN_CHARS or len(set(token)) < TOKEN_MIN_DISTINCT or any(c.isspace() for c in token):
        raise HttpSecurityError(
            f"GLMTTS_MCP_TOKEN is too easy to guess: use at least {TOKEN_MIN_CHARS} "
            f"characters, {TOKEN_MIN_DISTINCT} of them different, no spaces; make one with {MAKE_TOKEN}"
        )


def refuse_unprotected_exposure(host: str, token: str | None, force_insecure: bool) -> None:
    """A token given is checked on every address; a non-loopback address needs one, unless the caller
    forces it (--force-insecure)."""
    if token:
        check_token_strength(token)
    if is_loopback(host) or force_insecure:
        return
    if not token:
        raise HttpSecurityError(
            f"refusing to serve on {host} (not loopback) without a token: set GLMTTS_MCP_TOKEN to a secret "
            f"that clients send as 'Authorization: Bearer <token>' (make one with {MAKE_TOKEN}), "
            "bind 127.0.0.1, or pass --force-insecure"
        )
