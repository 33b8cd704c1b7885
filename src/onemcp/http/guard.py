"""DNS-rebinding protection: which Origin and Host headers the hub accepts.

Browsers send Origin; a page on evil.example must not drive a hub on localhost. When the
hub is bound to loopback, the Host header must name loopback too (a rebinding attack
reaches us with the attacker's host name).
"""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import urlsplit

from onemcp.config.values import origin_of
from onemcp.http import cors

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
TOLD_HOSTS = 64  # refused hosts the log names (once each): a client sending a new one each time cannot flood it
log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IP literals; never for names like 127.evil.example."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _hostname(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    def __init__(
        self, bind_host: str, allowed_origins: list[str], allowed_hosts: list[str], public_url: str | None = None
    ) -> None:
        """`public_url`: where browsers reach this hub; its own pages (the console, a user's pages) are
        served from there, so that origin is allowed without being listed."""
        self.check_host = is_loopback(bind_host)
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}
        own = origin_of(public_url) if public_url else None
        if own is not None:
            self.allowed_origins.add(own)
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.cors = cors.listed(allowed_origins)  # the origins named: the only ones CORS answers
        self._seen: dict[tuple[str, str | None], bool] = {}  # header values repeat: remember verdicts
        self._told: set[str | None] = set()  # refused hosts the log has named

    def _remember(self, kind: str, value: str | None, verdict: bool) -> bool:
        if len(self._seen) < 1024:
            self._seen[(kind, value)] = verdict
        return verdict

    def origin_ok(self, origin: str | None) -> bool:
        hit = self._seen.get(("origin", origin))
        return hit if hit is not None else self._remember("origin", origin, self._origin_ok(origin))

    @staticmethod
    def blind_cross_site(origin: str | None, fetch_site: str | None) -> bool:
        """A browser's cross-site request that carries no Origin (an `<img>`, a `<script>`, a link): the
        Origin check cannot judge it, and no MCP client or API caller sends one."""
        return origin is None and (fetch_site or "").strip().lower() == "cross-site"

    def host_ok(self, host: str | None) -> bool:
        verdict = self.host_allowed(host)
        if not verdict and host not in self._told and len(self._told) < TOLD_HOSTS:
            self._told.add(host)  # an operator behind a proxy learns why its clients get 421, and the fix
            log.warning("refused Host %s (421): %s", _shown(host), _allow_hint(host))
        return verdict

    def host_allowed(self, host: str | None) -> bool:
        """`host_ok` for a request answered either way (a probe): a refusal is not logged."""
        hit = self._seen.get(("host", host))
        return hit if hit is not None else self._remember("host", host, self._host_ok(host))

    def host_refusal(self, host: str | None) -> str:
        """What a client whose Host was refused is told: the host, and the setting that would let it in."""
        return f"Invalid Host header {_shown(host)}: {_allow_hint(host)}"

    def _origin_ok(self, origin: str | None) -> bool:
        if origin is None:
            return True
        origin = origin.strip().rstrip("/").lower()
        if origin in self.allowed_origins or "*" in self.allowed_origins:
            return True
        try:
            parts = urlsplit(origin)
            hostname = parts.hostname or ""
        except ValueError:
            return False  # not even a URL
        return parts.scheme in ("http", "https") and is_loopback(hostname)

    def _host_ok(self, host: str | None) -> bool:
        if not self.check_host:
            return True
        if host is None:
            return False
        if host.lower() in self.allowed_hosts:
            return True
        name = _hostname(host)
        return is_loopback(name) or name in self.allowed_hosts


def _shown(host: str | None) -> str:
    """A Host header as an error or the log may show it: quoted, cut, control characters as `?`."""
    if host is None:
        return "(none was sent)"
    text = "".join(c if " " <= c < "\x7f" else "?" for c in host[:100])
    return f"'{text}{'...' if len(host) > 100 else ''}'"


def _allow_hint(host: str | None) -> str:
    if host is None:
        return "a hub bound to loopback serves only requests naming it (HTTP/1.1 sends Host)"
    return (
        "a hub bound to loopback serves another host name only when it is listed in onemcp.allowedHosts "
        f'(add "{_shown(host)[1:-1]}" there)'
    )
