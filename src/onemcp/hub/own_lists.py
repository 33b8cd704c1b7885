"""A session's own connections' lists: that session's view of those servers.

A server the session has a connection of its own to (`isolation: session`, or `auto` once the server
asked clients back) may list other tools, prompts or resources to it than to the shared connection: a
server that registers tools per client, or after a login, or by the client's capabilities. What that
connection lists (and lists again after its `list_changed`) is what the session's lists show of the
server and what its calls and reads are looked up in; every other server, and every session without a
connection of its own, keeps the catalog's. A principal's own connections (`isolation: session` for a
2026-07-28 caller, which has no session; a server taking `${user:NAME}` values or per-user OAuth) are
the same for every request and session of that principal (`OwnViews`); a session's own lists come on
top of its principal's. A principal with two connections to one server (its legacy-era one beside its
2026-07-28 one, for a dual-era server: `hub/connections.py`; or one starting to replace another) sees the
first's lists; the others' are kept aside and the first still live is shown once the first stops.
Owns those lists, per session and per principal, and the catalog copies made from them. Does not own
the connections (`IsolatedConnections`) nor announcing (`Announcements`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from onemcp.auth.principal import Principal
from onemcp.catalog.catalog import Catalog
from onemcp.catalog.repair import Report
from onemcp.upstream.connection import UpstreamConnection


class Viewer(Protocol):
    """A session (`hub/session.py`), as its view of the catalog needs it."""

    @property
    def principal(self) -> Principal: ...
    @property
    def own(self) -> OwnLists: ...


Item = dict[str, Any]


@dataclass(eq=False)
class OwnLists:
    """server -> (the session's connection to it, kind -> its list), and the catalog as they make it."""

    lists: dict[str, tuple[UpstreamConnection, dict[str, list[Item]]]] = field(default_factory=dict)
    # other live connections' to the same server (a principal's own in the legacy era beside its 2026-07-28
    # one, and a replacement starting while both run): kept aside, in the order they came; the first still
    # live becomes the view if the view's stops
    spare: dict[str, dict[UpstreamConnection, dict[str, list[Item]]]] = field(default_factory=dict)
    # each connection's repair reports (kind -> report): what it withheld, for its calls' errors
    reports: dict[UpstreamConnection, dict[str, Report]] = field(default_factory=dict)
    _made: tuple[int, Catalog, Catalog] | None = None  # (catalog version, catalog, its overlaid copy)

    def record(self, conn: UpstreamConnection, kind: str, items: list[Item], report: Report | None = None) -> bool:
        """Keep a list the session's connection `conn` sent (and `report`, what its repair withheld of it);
        True when the list differs from the one kept."""
        kept_reports = self.reports.setdefault(conn, {})
        if report is not None and kept_reports.get(kind) != report:
            kept_reports[kind] = report
            self._made = None  # a call to what it withheld is said so: the copy's reports change
        held = self.lists.get(conn.name)
        if held is not None and held[0] is not conn and held[0].state not in ("failed", "stopped"):  # the first's
            kept = self.spare.setdefault(conn.name, {}).setdefault(conn, {})
            before, kept[kind] = kept.get(kind), items
            if before is not None and before != items:  # the server changed it (a call over this one did):
                held[0].fresh.changed_elsewhere(kind)  # the view's connection reads it again at once
            return False
        if held is None or held[0] is not conn:  # a new connection (the old one was replaced): its lists only
            held = self.lists[conn.name] = (conn, {})
        if held[1].get(kind) == items:
            return False
        held[1][kind] = items
        self._made = None
        return True

    def forget(self, conn: UpstreamConnection) -> bool:
        """The connection stopped (or failed): the server's catalog lists again, or a spare's. True if any were kept."""
        spares = self.spare.get(conn.name, {})
        spares.pop(conn, None)
        self.reports.pop(conn, None)
        held = self.lists.get(conn.name)
        if held is None or held[0] is not conn:
            if not spares:
                self.spare.pop(conn.name, None)
            return False
        del self.lists[conn.name]
        for other in [c for c in spares if c.state in ("failed", "stopped")]:
            del spares[other]
        if spares:  # the first still live takes over (lists come before "ready")
            first = next(iter(spares))
            self.lists[conn.name] = (first, spares.pop(first))
        if not spares:
            self.spare.pop(conn.name, None)
        self._made = None
        return True

    def catalog(self, catalog: Catalog) -> Catalog:
        """`catalog` as this session sees it: its own connections' lists in place of those servers'."""
        if not self.lists:
            return catalog
        made = self._made
        if made is None or made[1] is not catalog or made[0] != catalog.version:
            own = {server: kinds for server, (_, kinds) in self.lists.items()}
            reports = {server: self.reports.get(conn, {}) for server, (conn, _) in self.lists.items()}
            made = self._made = (catalog.version, catalog, catalog.overlaid(own, reports))
        return made[2]


class OwnViews:
    """Each principal's own connections' lists (by principal id), and the catalog a session sees."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.principals: dict[str, OwnLists] = {}
        self._holders: dict[UpstreamConnection, str] = {}  # a principal's connection -> that principal

    def record(
        self, principal: str, conn: UpstreamConnection, kind: str, items: list[Item], report: Report | None = None
    ) -> bool:
        """Keep a list `principal`'s own connection `conn` sent; True when it differs from the one kept."""
        self._holders[conn] = principal
        return self.principals.setdefault(principal, OwnLists()).record(conn, kind, items, report)

    def forget(self, conn: UpstreamConnection) -> bool:
        """A principal's connection stopped (or failed): its server's catalog lists again. True if any were kept."""
        principal = self._holders.pop(conn, None)
        lists = self.principals.get(principal) if principal is not None else None
        if principal is None or lists is None or not lists.forget(conn):
            return False
        if not lists.lists:
            del self.principals[principal]
        return True

    def of(self, session: Viewer) -> Catalog:
        """The catalog as `session` sees it: its principal's own lists, then its own, in place of those servers'."""
        mine = self.principals.get(session.principal.id)
        return session.own.catalog(self.catalog if mine is None else mine.catalog(self.catalog))
