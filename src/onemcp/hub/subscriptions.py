"""Resource subscriptions: which sessions hold which upstream resource, one upstream subscription each.

Owns the subscriber map ((server, upstream URI) -> session ids): the first subscriber subscribes
upstream and the last one out unsubscribes, the per-session cap, forgetting a session that ended or
whose reach no longer shows a resource, and subscribing again when a connection (re)starts. Does
not own delivering `notifications/resources/updated` (the reverse path, by `Session.subscriptions`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import anyio

from onemcp.auth.access import SUBSCRIBE
from onemcp.catalog.catalog import Catalog
from onemcp.config.model import Limits
from onemcp.hub.connections import ready
from onemcp.hub.session import Session
from onemcp.observability.limits import hit
from onemcp.protocol.errors import HubError, InvalidParams, LimitReached, NotFound
from onemcp.upstream.connection import UpstreamConnection
from onemcp.upstream.pool import Pool

log = logging.getLogger("onemcp.hub")
Key = tuple[str, str]  # (server, upstream URI)


class Subscriptions:
    def __init__(self, catalog: Catalog, pool: Pool, limits: Callable[[], Limits]) -> None:
        self.catalog = catalog
        self.pool = pool
        self._limits = limits
        self._subscribers: dict[Key, set[str]] = {}  # -> ids of the sessions subscribed to it
        self.tg: anyio.abc.TaskGroup | None = None  # the hub's, while it runs (restored subscriptions)

    def can_subscribe(self, session: Session, uri: str) -> bool:
        """May this session subscribe to `uri`, and does its server take subscriptions?"""
        try:
            server, original = self.catalog.locate_uri(uri, session.access.reach)
            session.access.require(SUBSCRIBE, "resources", server, original, uri)
        except NotFound:
            return False
        conn = self.pool.get(server)
        caps = conn.capabilities.get("resources") if conn is not None else None
        return isinstance(caps, dict) and bool(caps.get("subscribe"))

    async def subscribe(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        """`resources/subscribe`: upstream only for the first subscriber."""
        server, original = self._locate(session, "resources/subscribe", params)
        cap = self._limits().max_subscriptions_per_session
        if (server, original) not in session.subscriptions and len(session.subscriptions) >= cap:
            hit("subscriptions_per_session", "session %s has %d subscriptions: refused another", session.id[:8], cap)
            raise LimitReached("subscriptions_per_session", f"too many resource subscriptions (limit {cap})", 429)
        conn = ready(self.pool, server)
        subscribers = self._subscribers.setdefault((server, original), set())
        if not subscribers:
            await conn.subscribe_resource(original, params)
        subscribers.add(session.id)
        session.subscriptions[(server, original)] = None
        return {}

    async def unsubscribe(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        """`resources/unsubscribe`: upstream only when the last subscriber goes."""
        server, original = self._locate(session, "resources/unsubscribe", params)
        session.subscriptions.pop((server, original), None)
        subscribers = self._subscribers.get((server, original), set())
        subscribers.discard(session.id)
        if not subscribers:
            self._subscribers.pop((server, original), None)
            conn = ready(self.pool, server)
            await conn.unsubscribe_resource(original, params)
        return {}

    def restore(self, session: Session, keys: list[Key]) -> None:
        """A revived session's subscriptions: held again; a server that is (re)starting is asked when it is
        ready (`held`), one that is ready already is asked now."""
        for key in keys:
            subscribers = self._subscribers.setdefault(key, set())
            first = not subscribers
            subscribers.add(session.id)
            session.subscriptions[key] = None
            conn = self.pool.get(key[0])
            if first and conn is not None and conn.state == "ready" and self.tg is not None:
                self.tg.start_soon(self.resubscribe, conn, [key[1]])

    async def subscribe_each(self, session: Session, uris: list[str]) -> None:
        """Subscribe to each of `uris`; one that fails is logged and left out."""
        for uri in uris:
            try:
                await self.subscribe(session, {"uri": uri})
            except HubError as exc:
                log.info("listen: subscribing %s failed: %s", uri, exc)

    async def unsubscribe_each(self, session: Session, uris: list[str]) -> None:
        """Unsubscribe from each of `uris`, even while cancelled (a session's last word)."""
        with anyio.CancelScope(shield=True):
            for uri in uris:
                with contextlib.suppress(HubError):
                    await self.unsubscribe(session, {"uri": uri})

    def _locate(self, session: Session, method: str, params: dict[str, Any]) -> Key:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise InvalidParams(f"{method}: params.uri must be a string")
        server, original = self.catalog.locate_uri(uri, session.access.reach)
        session.access.require(SUBSCRIBE, "resources", server, original, uri)
        return server, original

    def drop(self, session: Session, key: Key) -> None:
        """The session's reach no longer shows this resource: its updates stop."""
        session.subscriptions.pop(key, None)
        self._subscribers.get(key, set()).discard(session.id)

    def forget(self, session_id: str) -> None:
        """A session ended: it holds nothing any more."""
        for key, subscribers in list(self._subscribers.items()):
            subscribers.discard(session_id)
            if not subscribers:
                del self._subscribers[key]

    def held(self, server: str) -> list[str]:
        """The upstream URIs of `server` some session is still subscribed to."""
        return [uri for (name, uri), ids in self._subscribers.items() if name == server and ids]

    @staticmethod
    async def resubscribe(conn: UpstreamConnection, uris: list[str]) -> None:
        """A (re)started connection: ask again for the updates clients are still subscribed to."""
        for uri in uris:
            try:
                await conn.subscribe_resource(uri, {"uri": uri})
            except HubError as exc:
                log.info("resubscribing %s on %s failed: %s", uri, conn.name, exc)
