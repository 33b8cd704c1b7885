"""What the hub hears from its upstream connections (`ConnectionEvents`), and who it tells.

Owns the hub's side of a connection's life: a shared connection's state feeds the catalog (its
lists dropped while no replica is ready, its subscriptions asked for again once it is back) and the
pool's bookkeeping; a new list updates the catalog and announces; notifications and server->client
requests go to the reverse path. Connections a session or a principal owns and ones a reload replaced
never touch the catalog: a session's (a principal's) own connection's lists are that session's (every
request and session of that principal's) view of the server (`hub/own_lists.py`), announced to them
alone. A dual-era server's legacy-era companion's lists are nobody's view either: when one of them
changes, the server's shared connections read theirs again (`Freshness.changed_elsewhere`). Does not
own the routing of what an upstream sends (`hub/reverse.py`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import orjson
from anyio.abc import TaskGroup

from onemcp.catalog.catalog import Catalog
from onemcp.config.model import Limits
from onemcp.hub.announcements import Announcements
from onemcp.hub.connections import LEGACY_COMPANION
from onemcp.hub.own_lists import OwnViews
from onemcp.hub.reverse import ReversePath
from onemcp.hub.session import Session
from onemcp.hub.subscriptions import Subscriptions
from onemcp.observability.events import EventBus
from onemcp.protocol.jsonrpc import Message
from onemcp.protocol.methods import KINDS
from onemcp.upstream.call import Call
from onemcp.upstream.connection import UpstreamConnection
from onemcp.upstream.isolation import principal_in
from onemcp.upstream.pool import Pool


class UpstreamEvents:
    # attached once the pool exists: the pool needs these events to be made
    pool: Pool
    subscriptions: Subscriptions
    announcements: Announcements

    def __init__(
        self, catalog: Catalog, reverse: ReversePath, limits: Callable[[], Limits], bus: EventBus | None = None
    ) -> None:
        self.bus = bus if bus is not None else EventBus()
        self.catalog = catalog
        self.reverse = reverse
        self._limits = limits
        self.tg: TaskGroup | None = None  # the hub's own tasks (resubscribing after a restart), while it runs
        # a server's tools list before the catalog sees it: the hub's pins pass, record or withhold each tool
        self.screen: Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]] = lambda server, items: items
        # the same for a session's own connection's list (it is not the server's list of record)
        self.screen_own: Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]] = lambda server, items: items
        self.views = OwnViews(catalog)  # principals' own connections' lists; the catalog each session sees
        self.owner_of: Callable[[UpstreamConnection], str | None] = lambda conn: None  # whom a kept one is for
        # a legacy-era companion -> kind -> the digest of the list it read last
        self._companions: weakref.WeakKeyDictionary[UpstreamConnection, dict[str, int]] = weakref.WeakKeyDictionary()

    def attach(self, pool: Pool, subscriptions: Subscriptions, announcements: Announcements) -> None:
        self.pool = pool
        self.subscriptions = subscriptions
        self.announcements = announcements

    def on_state(self, conn: UpstreamConnection) -> None:
        if isinstance(conn.owner, Session) and conn.state != "ready" and conn.owner.own.forget(conn):
            self.announcements.announce(set(KINDS))  # its view of the server is the catalog's again
        elif conn.owner is None and conn.state != "ready" and self.views.forget(conn):
            self.announcements.announce(set(KINDS))  # a principal's: the same, for its sessions and requests
        if conn.owner is not None or not self.pool.is_current(conn):
            return  # a session's own connection, or one a reload replaced: not the catalog's
        if self.bus.active:
            self.bus.publish("state", server=conn.name, state=conn.state, error=conn.last_error)
        if conn.state != "ready" and not self.pool.any_ready(conn.name):
            self.announcements.announce(self.catalog.drop(conn.name))
        if conn.state == "ready" and self.tg is not None:
            held = self.subscriptions.held(conn.name)
            if held:
                self.tg.start_soon(self.subscriptions.resubscribe, conn, held)
            self.subscriptions.up(conn)  # revived sessions' that wait for it move where they are heard
        self.pool.note_state()

    def on_list(self, conn: UpstreamConnection, kind: str, items: list[dict[str, Any]]) -> None:
        owner = self.owner_of(conn) if conn.owner is None and not self.pool.is_current(conn) else None
        if owner == LEGACY_COMPANION:
            self._companion_listed(conn, kind, items)
            return
        principal = principal_in(owner)
        if isinstance(conn.owner, Session) or principal is not None:
            items, report = self.catalog.repaired(kind, self.screen_own(conn.name, items) if kind == "tools" else items)
            if isinstance(conn.owner, Session):
                changed = not conn.owner.closed and conn.owner.own.record(conn, kind, items, report)
            else:
                changed = principal is not None and self.views.record(principal, conn, kind, items, report)
            if changed:
                self.announcements.announce({kind})  # only lists that really changed are announced: their own
            return
        if conn.owner is not None or not self.pool.is_current(conn) or not self.catalog.serves(conn.name):
            return  # not the catalog's, or no longer placed (removed, or a stopped instance, draining its calls)
        if kind == "tools":
            items = self.screen(conn.name, items)
        if self.catalog.update(conn.name, kind, items):
            self.announcements.announce({kind})

    def relist(self, max_item_bytes: int, own: list[UpstreamConnection]) -> None:
        """A new `maxListItemBytes`: every ready connection (the pool's and `own`, sessions' and principals')
        reads its lists again, so that what it withheld for its size (or would now) is shown or withheld as
        the new bound says."""
        if max_item_bytes == self.catalog.max_item_bytes:
            return
        self.catalog.max_item_bytes = max_item_bytes
        for conn in [*self.pool.connections.values(), *own]:
            if conn.state == "ready":
                for kind in conn.kinds():
                    conn.refresh_soon(kind)

    def _companion_listed(self, conn: UpstreamConnection, kind: str, items: list[dict[str, Any]]) -> None:
        """A dual-era server's legacy-era companion read `kind` (as it started, or after its `list_changed`):
        when it differs from what it read before, the server changed it, and its shared connections (every
        replica) read theirs again at once; what really changed is announced as any change. (Over stdio the
        companion is a process of its own: the shared one's list may not show its change.)"""
        kept = self._companions.setdefault(conn, {})
        before, kept[kind] = kept.get(kind), hash(orjson.dumps(items))
        slot = self.pool.slots.get(conn.name)
        if before is not None and before != kept[kind] and slot is not None:
            for member in slot.members:
                member.conn.fresh.changed_elsewhere(kind)

    def on_notification(self, conn: UpstreamConnection, msg: Message, call: Call | None) -> None:
        self.reverse.notification(conn, msg, call)

    async def on_server_request(self, conn: UpstreamConnection, msg: Message, call: Call | None) -> Message | None:
        return await self.reverse.request(conn, msg, call)

    def pending_client_request_limit(self) -> int:
        return self._limits().max_pending_client_requests

    def own_connection_limit(self) -> int:
        return self._limits().max_own_connections

    def own_connection_group_limit(self) -> int:
        return self._limits().max_own_connections_per_principal
