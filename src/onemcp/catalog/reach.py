"""Reach: which part of the catalog one requester may see, as plain data the catalog can filter by.

Owns the shape of the answer only: whole servers, plus single tools of servers not granted
whole. Who gets which reach (scopes, views) is decided in `onemcp.auth.access`; the catalog
only applies it to lists and lookups. Hashable, so filtered lists are cached per reach.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reach:
    servers: frozenset[str] | None = None  # servers seen whole (None: every server)
    tools: frozenset[tuple[str, str]] = frozenset()  # (server, upstream tool name) granted one by one

    @property
    def everything(self) -> bool:
        return self.servers is None

    def shows(self, kind: str, server: str, original: str) -> bool:
        """Is this item (its server, its upstream name or URI) within reach?"""
        if self.servers is None or server in self.servers:
            return True
        return kind == "tools" and (server, original) in self.tools

    def touches(self, server: str) -> bool:
        """Does it reach anything of `server`?"""
        if self.servers is None or server in self.servers:
            return True
        return any(owner == server for owner, _ in self.tools)

    def touched(self) -> frozenset[str] | None:
        """Every server it reaches something of (None: all)."""
        if self.servers is None:
            return None
        return self.servers | {owner for owner, _ in self.tools}

    def within(self, servers: frozenset[str] | None) -> Reach:
        """This reach cut down to `servers` (a view's choice; None leaves it whole)."""
        if servers is None:
            return self
        mine = servers if self.servers is None else self.servers & servers
        return Reach(mine, frozenset(t for t in self.tools if t[0] in servers))


EVERYTHING = Reach()
NOTHING = Reach(frozenset())
