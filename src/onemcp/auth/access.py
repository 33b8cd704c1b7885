"""The one authorization decision: what a requester may see and use, whatever way it came in.

Owns `Access`, built once per requester by `decide` from three things and nothing else: the
principal an entry point admitted (a credential's, or the local operator's on stdio), the entry
point's name, and the view the client selected (tags, filter, preset). Every list, call, read,
prompt, completion, subscription and task of every era asks it, and every refusal is an audit
line with the principal and the entry point. Does not own credentials (the gate turns a token
into a principal), the catalog's data, or any wire (endpoints turn refusals into statuses).

A refusal is `NotFound` when the principal's scopes do not reach the item's server at all
(nothing is revealed), and `Forbidden` (HTTP 403 with a step-up challenge) for a tool of a
server it holds other tools of.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from onemcp.auth.principal import ADMIN, OPERATOR, Principal
from onemcp.catalog import views
from onemcp.catalog.catalog import missing
from onemcp.catalog.reach import Reach
from onemcp.catalog.views import View
from onemcp.config.model import Exposure
from onemcp.protocol.errors import Forbidden
from onemcp.protocol.names import INSTANCE_MARK

audit = logging.getLogger("onemcp.audit")

# Entry points: every way a request reaches the hub's methods. Proxy and agent CLI clients come
# in over HTTP (legacy and 2026-07-28 respectively), so they are these entries too.
LEGACY_HTTP = "mcp"  # POST/GET/DELETE /mcp, 2024-11-05 .. 2025-11-25 sessions
MODERN_HTTP = "mcp-2026"  # POST /mcp, 2026-07-28 stateless requests
SSE = "sse"  # GET /sse + POST /messages
STDIO = "stdio"  # onemcp serve --transport stdio
ENTRIES = (LEGACY_HTTP, MODERN_HTTP, SSE, STDIO)
# Not an MCP entry point: /api/v1 and the console at /ui, where an operator (admin scope: reach is
# everything) tries a tool. Its own matrix is tests/admin/test_api.py (every endpoint x caller).
ADMIN_API = "admin"

# Operations the decision is asked about (the kinds of thing a principal may do to an item).
LIST, CALL, READ, GET, COMPLETE, SUBSCRIBE = "list", "call", "read", "get", "complete", "subscribe"


@dataclass(frozen=True)
class Access:
    principal: Principal
    entry: str
    view: View | None  # as the client selected it (a preset is looked up again on each refresh)
    granted: Reach  # what the principal's scopes reach
    viewed: frozenset[str] | None  # the servers the view lets through (None: no view)
    reach: Reach  # both together: what lists show and lookups find
    exposure: Exposure | None = None  # how tools are shown, as the client asked (None: its preset's, else the hub's)
    # the client's template context as it came (see `config.context`), and whether it may render templates
    context: Mapping[str, Any] | None = None
    trusted: bool = False
    query: str = ""  # the query string that chose the view and exposure (a revived session chooses again)
    # the view as decided now (a preset's filter as it is defined now); None with `view` set: its preset is gone
    current: View | None = None

    def require(self, op: str, kind: str, server: str, original: str, visible: str) -> None:
        """Allow `op` on an existing item, or raise (NotFound / Forbidden) and audit the refusal."""
        if self.reach.shows(kind, server, original):
            return
        in_view = self.viewed is None or server in self.viewed
        if not in_view:
            raise missing(kind, visible)  # the client's own choice of view, not a refusal
        self.refused(op, f"{server}/{original}", "outside the principal's scopes")
        if kind == "tools" and op == CALL and self.granted.touches(server):
            needed = f"tool:{server}/{original}"
            raise Forbidden(f"Forbidden: calling {visible} needs scope {needed}", needed)
        raise missing(kind, visible)

    def refused(self, op: str, target: str, reason: str) -> None:
        refused(self.principal, self.entry, op, target, reason)

    def runs(self, template: str, tags: list[str]) -> bool:
        """May this requester's context render `template` (its tags rendered as `tags`) and start its instance?

        Only when that instance would be within its reach: its scopes (`server:` the template, `tool:` one
        of its tools, `tag:` a rendered tag) and its view both let it through. Otherwise the hub would run
        a command its context chose (an unsigned one, with scope `templates`) for a template it may not
        use, spend the template's `maxInstances` on it, and refuse it with that template's render error.
        """
        instance = f"{template}{INSTANCE_MARK}"  # any instance of it: what decides is the name and the tags
        own = {instance: list(tags)}
        if not self.principal.reach(own).bound(frozenset({instance})).touches(instance):
            return False
        if self.view is None:
            return True
        return self.current is not None and instance in self.current.servers(own)

    def rebuilt(self, tags: Mapping[str, list[str]], presets: Mapping[str, str]) -> Access:
        """The same requester and view, decided again (after a config or presets change).

        A preset deleted since leaves the view seeing nothing, rather than everything.
        """
        try:
            fresh = decide(self.principal, self.entry, self.view, tags, presets, self.exposure)
        except views.ViewError:
            granted = self.principal.reach(tags)
            fresh = Access(self.principal, self.entry, self.view, granted, frozenset(), granted.within(frozenset()))
        return replace(
            fresh,
            reach=fresh.reach.bound(self.reach.instances),
            exposure=self.exposure,
            context=self.context,
            trusted=self.trusted,
            query=self.query,
        )

    def bound(self, instances: frozenset[str]) -> Access:
        """The same decision with these template instances bound to the requester."""
        return replace(self, reach=self.reach.bound(instances))


def operator_needs(principal: Principal, change: bool) -> str | None:
    """May `principal` use the operator surfaces (admin API, console, TUI)? None, or the scope it lacks.

    Viewing needs `admin` or the read-only `operator` scope; any change (restart, config, presets,
    calling a tool) needs `admin`.
    """
    if principal.is_admin:
        return None
    if not change and OPERATOR in principal.scopes:
        return None
    return ADMIN if change else OPERATOR


def refused(principal: Principal, entry: str, op: str, target: str, reason: str) -> None:
    """The audit line of a refusal after admission (the gate writes those at the door)."""
    audit.info("auth denied principal=%s entry=%s op=%s target=%s reason=%s", principal.id, entry, op, target, reason)


def decide(
    principal: Principal,
    entry: str,
    view: View | None,
    tags: Mapping[str, list[str]],
    presets: Mapping[str, str],
    exposure: Exposure | None = None,
) -> Access:
    """What `principal`, through `view`, may reach; `tags` are each enabled server's tags.

    Raises `views.ViewError` when the view names a preset that does not exist.
    """
    if entry not in ENTRIES and entry != ADMIN_API:
        raise ValueError(f"unknown entry point {entry!r}")
    granted = principal.reach(tags)
    viewed: frozenset[str] | None = None
    current: View | None = None
    if view is not None:
        current = views.preset_view(view.preset, presets) if view.preset is not None else view
        viewed = current.servers(tags)
    return Access(principal, entry, view, granted, viewed, granted.within(viewed), exposure, current=current)
