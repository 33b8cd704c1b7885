"""Who is calling: the principal a credential stands for, and what its scopes grant.

Scopes (space-separated in tokens, a list on API keys):
  `mcp`                 use the hub (every client needs it or something more specific)
  `server:<name>`       call and list that server's capabilities
  `tag:<tag>`           the servers carrying that tag
  `tool:<server>/<tool>` just that tool (listed and callable; not the server's resources or prompts)
  `admin`               management endpoints, and everything else
  `operator`            read-only: /health, /metrics, viewing the admin API, console and TUI
A principal with none of server:/tag:/tool: but with `mcp` or `admin` sees every server. A
principal with none of these scopes (an empty scope set, or only scopes of other services) may
not use the hub at all. What the scopes grant, through a view, is decided in `auth.access`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from onemcp.catalog.reach import EVERYTHING, Reach

ADMIN = "admin"
OPERATOR = "operator"  # read-only use of the operator surfaces (admin API, console, TUI)
BASE = "mcp"
NARROWING = ("server:", "tag:", "tool:")


@dataclass(frozen=True)
class Principal:
    id: str  # stable: "key:<id>", "jwt:<iss>#<sub>", "oauth:<client>#<user>"
    scopes: frozenset[str]
    kind: str = "token"  # "key" | "jwt" | "oauth" | "anonymous"
    expires: float | None = None  # unix time
    labels: Mapping[str, str] = field(default_factory=dict)
    # the built-in authorization server's grant (token family) an access token was issued in: a stream
    # opened with it lives while the grant does, past the token's own expiry (`Gate.holds`)
    grant: str | None = None

    @cached_property  # asked several times a request
    def key(self) -> str:
        """Who, with which scopes: what a session or a parked call is bound to. A token of the same
        subject with other scopes (a narrower one, say) is another requester. A space or `%` inside the
        id or a scope (a JWT's `sub` may hold one) is escaped, so no id and scopes read as another's."""
        return " ".join(_escaped(part) for part in (self.id, *sorted(self.scopes)))

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    @property
    def restricted(self) -> bool:
        """True when the scopes name particular servers, tags or tools."""
        return not self.is_admin and any(s.startswith(NARROWING) for s in self.scopes)

    @property
    def shared(self) -> bool:
        """Does it stand for more than one person (one built-in OAuth client's users, every caller of a
        hub without auth)? Such a principal may not choose per-user values for all of them."""
        return self.kind in ("oauth", "anonymous")

    @property
    def may_enter(self) -> bool:
        """Does it hold any scope of this hub? (None at all: it may not use the hub.)"""
        return any(s in (BASE, ADMIN) or s.startswith(NARROWING) for s in self.scopes)

    def reach(self, tags: Mapping[str, list[str]]) -> Reach:
        """What its scopes grant, given each enabled server's tags."""
        if not self.restricted:
            return EVERYTHING
        whole = {s[7:] for s in self.scopes if s.startswith("server:")}
        wanted_tags = {s[4:] for s in self.scopes if s.startswith("tag:")}
        whole |= {name for name, own in tags.items() if wanted_tags & set(own)}
        single: set[tuple[str, str]] = set()
        for scope in self.scopes:
            if scope.startswith("tool:"):
                server, sep, tool = scope[5:].partition("/")
                if sep and server not in whole:
                    single.add((server, tool))
        return Reach(frozenset(whole), frozenset(single))


def _escaped(part: str) -> str:
    return part.replace("%", "%25").replace(" ", "%20")


ANONYMOUS = Principal("anonymous", frozenset({BASE, ADMIN}), kind="anonymous")


class InvalidToken(Exception):
    """A credential in a format some verifier owns, but not valid (bad signature, expired, ...)."""


class Unconfirmed(InvalidToken):
    """A credential that cannot be checked now: the store the replicas share (Redis) cannot be reached,
    and this replica has not confirmed it there within `auth.redisOutageGrace`. Refused as any invalid
    one wherever a credential is checked; the gate answers it 503 (try again), not 401 (the client
    should keep its credential)."""


class Verifier(Protocol):
    """Turns a bearer credential into a principal, or None when it is not one of its own."""

    async def verify(self, token: str) -> Principal | None: ...
