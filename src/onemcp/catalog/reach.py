"""Reach: which part of the catalog one requester may see, as plain data the catalog can filter by.

Owns the shape of the answer only: whole servers, plus single tools of servers not granted
whole, plus the template instances bound to this requester (`<template>@<hash>`: an instance is
seen only by those bound to it, and then as its template would be: by the template's name and
by its own rendered tags). Who gets which reach (scopes, views) is decided in `onemcp.auth.access`; the catalog
only applies it to lists and lookups. Hashable, so filtered lists are cached per reach.
"""

from __future__ import annotations

from dataclasses import dataclass

from onemcp.protocol.names import INSTANCE_MARK


@dataclass(frozen=True)
class Reach:
    servers: frozenset[str] | None = None  # servers seen whole (None: every server)
    tools: frozenset[tuple[str, str]] = frozenset()  # (server, upstream tool name) granted one by one
    instances: frozenset[str] = frozenset()  # template instances bound to the requester

    @property
    def everything(self) -> bool:
        """Every server, and no template instance (those are seen only by whoever is bound to one)."""
        return self.servers is None and not self.instances

    def shows(self, kind: str, server: str, original: str) -> bool:
        """Is this item (its server, its upstream name or URI) within reach?"""
        template, at, _ = server.partition(INSTANCE_MARK)
        if at:
            if server not in self.instances:
                return False
            if self.servers is None or server in self.servers or template in self.servers:
                return True
            return kind == "tools" and ((template, original) in self.tools or (server, original) in self.tools)
        if self.servers is None or server in self.servers:
            return True
        return kind == "tools" and (server, original) in self.tools

    def touches(self, server: str) -> bool:
        """Does it reach anything of `server`?"""
        template, at, _ = server.partition(INSTANCE_MARK)
        if at:
            if server not in self.instances:
                return False
            if self.servers is not None and server in self.servers:  # granted by a tag it rendered (as `shows`)
                return True
            server = template
        if self.servers is None or server in self.servers:
            return True
        return any(owner == server for owner, _ in self.tools)

    def whole(self, server: str) -> bool:
        """Does it reach all of `server` (its prompts, resources and instructions), not some tools only?"""
        return self.shows("prompts", server, "")

    def within(self, servers: frozenset[str] | None) -> Reach:
        """This reach cut down to `servers` (a view's choice; None leaves it whole)."""
        if servers is None:
            return self
        # a view names a template's instances (`<template>@<hash>`, by their rendered tags), a scope the
        # template: what the scope grants of a template, the view's instances of it keep
        instances: dict[str, list[str]] = {}
        for name in servers:
            template, at, _ = name.partition(INSTANCE_MARK)
            if at:
                instances.setdefault(template, []).append(name)
        mine = servers
        if self.servers is not None:
            mine = self.servers & servers | {i for t in self.servers for i in instances.get(t, ())}
        tools = {t for t in self.tools if t[0] in servers}
        tools |= {(i, tool) for owner, tool in self.tools for i in instances.get(owner, ())}
        return Reach(frozenset(mine), frozenset(tools), self.instances)

    def bound(self, instances: frozenset[str]) -> Reach:
        """This reach with these template instances bound (replacing any bound before)."""
        return Reach(self.servers, self.tools, instances)


EVERYTHING = Reach()
NOTHING = Reach(frozenset())
