"""The Host names and Origins this server answers to: what the DNS-rebinding and cross-site checks compare.

A Host name is accepted with any port (a port forward keeps the name). An Origin must equal one of the
server's own origins (its names at its port, or the scheme and authority the request itself was sent to)
or one given with --allowed-host, exactly: scheme, host and port, never a prefix. Names and schemes match
in any letter case (RFC 9110 §4.2.3, RFC 6454).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from glmtts_mcp.asgi.exposure import HttpSecurityError, is_loopback

log = logging.getLogger(__name__)

Origin = tuple[str, str, int]  # scheme, host name, port
DEFAULT_PORTS = {"http": 80, "https": 443}
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::")


def parse_origin(value: str) -> Origin | None:
    """An Origin header (scheme://host[:port]) as its parts; None for "null" and anything that is not one."""
    parts = urlsplit(value.strip().lower())
    if parts.scheme not in DEFAULT_PORTS or parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        return None
    try:
        port = parts.port
    except ValueError:  # 'http://127.0.0.1:8765.evil.example'
        return None
    return (parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]) if parts.hostname else None


def host_name(authority: str) -> str | None:
    """The name in a Host header (host[:port]); None when it is not one."""
    parsed = parse_origin(f"http://{authority}")
    return parsed[1] if parsed else None


@dataclass(frozen=True)
class ServerNames:
    """`hosts` is None when the Host check is off: bound to every interface with no --allowed-host,
    the names clients use are unknown and the bearer token protects the server."""

    hosts: frozenset[str] | None
    origins: frozenset[Origin]

    @classmethod
    def for_bind(cls, host: str, port: int, allowed: Sequence[str] = ()) -> ServerNames:
        """Loopback names always, the bind address, and each --allowed-host: a name (Host, and Origin
        http://NAME:PORT) or an origin such as https://tts.example (that exact Origin, and its name as Host)."""
        names = set(LOOPBACK_NAMES)
        if not is_loopback(host) and host not in WILDCARD_BINDS:
            names.add(host.strip("[]").lower())
        extra_origins: set[Origin] = set()
        for entry in allowed:
            if "://" in entry:
                origin = parse_origin(entry)
                if origin is None:
                    raise HttpSecurityError(f"--allowed-host {entry!r} is not an origin: give scheme://name[:port]")
                extra_origins.add(origin)
                names.add(origin[1])
            else:
                name = host_name(entry)
                if name is None:
                    raise HttpSecurityError(
                        f"--allowed-host {entry!r} is not a host name: give NAME or scheme://NAME[:PORT]"
                    )
                names.add(name)
        own = {("http", name, port) for name in names}
        if host in WILDCARD_BINDS and not allowed:
            log.warning(
                "bound to %s without --allowed-host: the Host check is off; the bearer token protects the server",
                host,
            )
            return cls(None, frozenset(own))
        return cls(frozenset(names), frozenset(own | extra_origins))

    def host_allowed(self, host: str) -> bool:
        return self.hosts is None or host_name(host) in self.hosts

    def origin_allowed(self, origin: str, scheme: str, host: str) -> bool:
        """`origin` is ours or allowed; `scheme` and `host` are the request's own, so a page this server
        served is always same-origin with it."""
        given = parse_origin(origin)
        return given is not None and (given in self.origins or given == parse_origin(f"{scheme}://{host}"))
