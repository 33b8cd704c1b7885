"""Who is calling: the principal a credential stands for, and what its scopes grant.

Scopes (space-separated in tokens, a list on API keys):
  `mcp`                 use the hub (every client needs it or something more specific)
  `server:<name>`       call and list that server's capabilities
  `tag:<tag>`           the servers carrying that tag
  `tool:<server>/<tool>` just that tool
  `admin`               /metrics and management endpoints, and everything else
A principal with none of server:/tag:/tool: but with `mcp` or `admin` sees every server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

ADMIN = "admin"
BASE = "mcp"


@dataclass(frozen=True)
class Principal:
    id: str  # stable: "key:<id>", "jwt:<iss>#<sub>", "oauth:<client>#<user>"
    scopes: frozenset[str]
    kind: str = "token"  # "key" | "jwt" | "oauth" | "anonymous"
    expires: float | None = None  # unix time
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    @property
    def restricted(self) -> bool:
        """True when the scopes name particular servers, tags or tools."""
        return not self.is_admin and any(s.startswith(("server:", "tag:", "tool:")) for s in self.scopes)

    def servers(self, tags: Mapping[str, list[str]]) -> frozenset[str] | None:
        """The servers it may use (None: all)."""
        if not self.restricted:
            return None
        allowed = {s[7:] for s in self.scopes if s.startswith("server:")}
        wanted_tags = {s[4:] for s in self.scopes if s.startswith("tag:")}
        allowed |= {name for name, own in tags.items() if wanted_tags & set(own)}
        allowed |= {s[5:].split("/", 1)[0] for s in self.scopes if s.startswith("tool:")}
        return frozenset(allowed)

    def may_call(self, server: str, tool: str, tags: list[str]) -> bool:
        """May it call `tool` (the upstream's own name) of `server`?"""
        if not self.restricted:
            return True
        if f"server:{server}" in self.scopes or any(f"tag:{t}" in self.scopes for t in tags):
            return True
        return f"tool:{server}/{tool}" in self.scopes


ANONYMOUS = Principal("anonymous", frozenset({BASE, ADMIN}), kind="anonymous")


class InvalidToken(Exception):
    """A credential in a format some verifier owns, but not valid (bad signature, expired, ...)."""


class Verifier(Protocol):
    """Turns a bearer credential into a principal, or None when it is not one of its own."""

    async def verify(self, token: str) -> Principal | None: ...
