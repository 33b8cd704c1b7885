"""Resource subscriptions: which sessions hold which upstream resource, and on which connection.

Owns the subscriber maps: for the shared connections, (server, upstream URI) -> session ids (the
first subscriber subscribes upstream and the last one out unsubscribes); for a connection that is
not the pool's (a session's own, the legacy-era companion, a principal's own), the same per
connection, so that a session hears the updates of the connection its calls go to, as it would
directly. Also the per-session cap and the length of a URI held (`MAX_URI`), refusing servers
that take no subscriptions, following a session onto a new connection of its own, forgetting a
session that ended or whose reach no longer shows a resource, and subscribing again when a
connection (re)starts. A key's subscribes and unsubscribes upstream go one at a time, in the order
asked (`_turn`): two POSTs to a Streamable HTTP server may arrive in either order. Does not own
delivering `notifications/resources/updated` (the reverse path asks `hears`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import anyio

from onemcp.auth.access import SUBSCRIBE
from onemcp.catalog.catalog import Catalog
from onemcp.config.model import Limits
from onemcp.hub.connections import ready, takes_subscriptions, wants_legacy
from onemcp.hub.session import Session
from onemcp.observability.limits import hit
from onemcp.protocol.errors import (
    HubError,
    InvalidParams,
    LimitReached,
    MethodNotFound,
    NotFound,
    SessionEnded,
    UpstreamTimeout,
)
from onemcp.protocol.names import INSTANCE_MARK, shown_as
from onemcp.upstream.connection import UpstreamConnection
from onemcp.upstream.pool import Pool

# A subscription's URI is held for as long as the subscription (and sent upstream, which holds it too):
# any URI under a server's prefix is taken, so with only the body limit 1,000 subscriptions of 4 MiB
# URIs could make one session hold 4 GB. Longer than a path can be (PATH_MAX 4,096) with room to spare.
MAX_URI = 8192
SUBSCRIBE_WAIT = 5.0  # how long each subscription a 2026-07-28 listen opens with is waited for (`subscribe_each`)
UNSUBSCRIBE_WAIT = 5.0  # how long an ended listen's servers are told of its subscriptions' end (`unsubscribe_each`)

log = logging.getLogger("onemcp.hub")
Key = tuple[str, str]  # (server, upstream URI)
Where = tuple[UpstreamConnection | None, Key]  # (where it is held: None for the pool's, key)


class Route(Protocol):
    """The connection a session's calls to a server go to (the dispatcher's, `connections.for_session`);
    `subscribing`: for a `resources/subscribe`."""

    def __call__(
        self, session: Session, server: str, *, subscribing: bool = False
    ) -> Awaitable[UpstreamConnection]: ...


class Subscriptions:
    def __init__(
        self,
        catalog: Catalog,
        pool: Pool,
        limits: Callable[[], Limits],
        view: Callable[[Session], Catalog] | None = None,
    ) -> None:
        self.catalog = catalog
        # the catalog as a session sees it (its own and its principal's connections' lists: `hub/own_lists.py`)
        self.view: Callable[[Session], Catalog] = view or (lambda session: session.own.catalog(catalog))
        self.pool = pool
        self._limits = limits
        self._subscribers: dict[Key, set[str]] = {}  # -> ids of the sessions subscribed to it
        # (a connection not the pool's, upstream URI) -> ids of the sessions subscribed on it
        self._own: dict[tuple[UpstreamConnection, str], set[str]] = {}
        self.route: Route = self._shared  # the dispatcher's (for_session)
        self.tg: anyio.abc.TaskGroup | None = None  # the hub's, while it runs (restored subscriptions)
        # server -> the revived sessions whose subscriptions to it wait for it to be ready (`_settle`, `up`)
        self._unsettled: dict[str, dict[str, Session]] = {}
        # (where it is held, key) -> its turn (a lock), and how many wait for it or hold it (`_turn`)
        self._turns: dict[Where, tuple[anyio.Lock, int]] = {}

    def can_subscribe(self, session: Session, uri: str) -> bool:
        """May this session subscribe to `uri`, and does its server take subscriptions?"""
        if len(uri) > MAX_URI:
            return False
        try:
            server, original = self.view(session).locate_uri(uri, session.access.reach)
            session.access.require(SUBSCRIBE, "resources", server, original, uri)
        except NotFound:
            return False
        return takes_subscriptions(self.pool.get(server))

    async def subscribe(self, session: Session, params: dict[str, Any], limit: float | None = None) -> dict[str, Any]:
        """`resources/subscribe`, on the connection the session's calls to that server go to: upstream only
        for its first subscriber there (within `limit`, else the server's `timeout`). A server that takes no
        subscriptions says -32601, as it would."""
        server, original = self._locate(session, "resources/subscribe", params)
        key = (server, original)
        cap = self._limits().max_subscriptions_per_session
        if key not in session.subscriptions and len(session.subscriptions) >= cap:
            hit("subscriptions_per_session", "session %s has %d subscriptions: refused another", session.id[:8], cap)
            raise LimitReached("subscriptions_per_session", f"too many resource subscriptions (limit {cap})", 429)
        # a listen stream's are held on the shared connection (a 2026-07-28 caller's own one is reaped idle)
        conn = ready(self.pool, server) if session.ephemeral else await self.route(session, server, subscribing=True)
        if not takes_subscriptions(conn):
            raise MethodNotFound(
                f"[{shown_as(server)}] resources/subscribe: this server takes no resource subscriptions"
            )
        await self._hold(session, key, conn, params, None if limit is None else min(limit, conn.config.timeout))
        return {}

    async def unsubscribe(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        """`resources/unsubscribe`: upstream only when the last subscriber on its connection goes."""
        server, original = self._locate(session, "resources/unsubscribe", params)
        key = (server, original)
        holder = session.subscriptions.pop(key, None)
        await self._release(session.id, key, holder, params)
        return {}

    async def follow(self, session: Session, server: str, conn: UpstreamConnection) -> None:
        """The session's calls to `server` go to `conn`: its subscriptions there move with them (its calls
        moved to a connection of its own, or that one was replaced). Quiet: a failure is logged."""
        home = self._home(conn)
        for key in [k for k, held in session.subscriptions.items() if k[0] == server and held is not home]:
            params = {"uri": key[1]}
            try:
                await self._hold(session, key, conn, params)
            except HubError as exc:
                log.info("moving the subscription to %s on %s failed: %s", key[1], server, exc)

    def hears(self, session: Session, conn: UpstreamConnection, key: Key) -> bool:
        """Is `session` subscribed to `key` on `conn` (its own one, or a shared one)?"""
        if key not in session.subscriptions:
            return False
        held = session.subscriptions[key]
        return held is conn if held is not None else self._home(conn) is None

    def _home(self, conn: UpstreamConnection) -> UpstreamConnection | None:
        """Where a subscription on `conn` is kept: None for the pool's connections (and for a 2026-07-28
        connection, whose updates come on the shared change feed), else `conn` itself."""
        return None if conn.era == "modern" or self.pool.is_current(conn) else conn

    async def _shared(self, session: Session, server: str, *, subscribing: bool = False) -> UpstreamConnection:
        return ready(self.pool, server)

    async def _hold(
        self, session: Session, key: Key, conn: UpstreamConnection, params: dict[str, Any], limit: float | None = None
    ) -> None:
        """Subscribe `session` to `key` on `conn` (upstream only for its first subscriber there), then let go
        of where it held it before, if elsewhere."""
        home = self._home(conn)
        before = session.subscriptions.get(key, home)
        if home is None and not self.pool.is_current(conn):  # a 2026-07-28 one of its own: the shared feed
            conn = ready(self.pool, key[0])
        deadline = None if limit is None else anyio.current_time() + limit  # (its turn waited for within it too)
        async with self._turn((home, key), limit):
            if session.closed:  # it ended while it waited for its turn: its end let go of what it held
                raise self._ended(key)
            if not self._holders(key, home):  # (looked at in its turn: an unsubscribe may have just gone upstream)
                left = None if deadline is None else max(deadline - anyio.current_time(), 0.0)
                await conn.subscribe_resource(key[1], params, left)
                if session.closed:  # it ended while the server was asked: nothing here holds it, so the server
                    await self._told_gone(conn, key, params)  # is told at once, still in this turn
                    raise self._ended(key)
            if home is None:
                self._subscribers.setdefault(key, set()).add(session.id)
            else:
                self._own.setdefault((home, key[1]), set()).add(session.id)
        session.subscriptions[key] = home
        if before is not home:
            with contextlib.suppress(HubError):
                await self._release(session.id, key, before, {"uri": key[1]})

    @staticmethod
    def _ended(key: Key) -> SessionEnded:
        return SessionEnded(f"[{shown_as(key[0])}] resources/subscribe: the session ended while it was asked for")

    @staticmethod
    async def _told_gone(conn: UpstreamConnection, key: Key, params: dict[str, Any]) -> None:
        """A subscribe answered after its session ended (its end found nothing to let go of): unsubscribed
        upstream, even while cancelled, for UNSUBSCRIBE_WAIT at most. Counted, it held the subscription (and
        its updates) for a session that was gone, for as long as the connection lived."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(UNSUBSCRIBE_WAIT):
            try:
                await conn.unsubscribe_resource(key[1], params)
            except HubError as exc:
                log.info("unsubscribing %s on %s (its subscriber ended) failed: %s", key[1], key[0], exc)

    def _holders(self, key: Key, held: UpstreamConnection | None) -> set[str]:
        """The sessions holding `key` where `held` (None: the pool's connections)."""
        found = self._subscribers.get(key) if held is None else self._own.get((held, key[1]))
        return found or set()

    @contextlib.asynccontextmanager
    async def _turn(self, where: Where, limit: float | None = None) -> AsyncIterator[None]:
        """A key's upstream subscribe or unsubscribe, one at a time in the order asked (anyio's lock is fair):
        an unsubscribe in flight and a new first subscribe went as two POSTs, which a Streamable HTTP server
        may take in either order, leaving it unsubscribed while a session here held the key. Waited for within
        `limit` (else UpstreamTimeout). Kept only while some call waits for it or holds it."""
        lock, users = self._turns.get(where, (None, 0))
        if lock is None:
            lock = anyio.Lock()
        self._turns[where] = (lock, users + 1)
        try:
            with anyio.move_on_after(math.inf if limit is None else limit) as waited:
                await lock.acquire()
            if waited.cancelled_caught:
                raise UpstreamTimeout(where[1][0], f"resources/subscribe waited over {limit:g}s for an earlier one")
            try:
                yield
            finally:
                lock.release()
        finally:
            lock, users = self._turns[where]
            if users > 1:
                self._turns[where] = (lock, users - 1)
            else:
                del self._turns[where]

    async def _release(
        self, session_id: str, key: Key, held: UpstreamConnection | None, params: dict[str, Any]
    ) -> None:
        """`session_id` no longer holds `key` where it `held` it: upstream unsubscribed when it was the last."""
        conn = self._let_go(session_id, key, held)
        if conn is not None:
            await self._unsubscribe_upstream(conn, key, held, params)

    async def _unsubscribe_upstream(
        self, conn: UpstreamConnection, key: Key, held: UpstreamConnection | None, params: dict[str, Any]
    ) -> None:
        """Tell `conn` that no session here holds `key` any more, in its turn: not when one subscribed since."""
        async with self._turn((held, key)):
            if not self._holders(key, held):
                await conn.unsubscribe_resource(key[1], params)

    def _let_go(self, session_id: str, key: Key, held: UpstreamConnection | None) -> UpstreamConnection | None:
        """`_release` here: the connection to tell upstream, when `session_id` was its last subscriber there."""
        subscribers = self._subscribers.get(key) if held is None else self._own.get((held, key[1]))
        if subscribers is None:
            return None
        subscribers.discard(session_id)
        if subscribers:
            return None
        self._forget_empty(key, held)
        if held is None:
            return ready(self.pool, key[0])
        return held if held.state == "ready" else None

    def _forget_empty(self, key: Key, held: UpstreamConnection | None) -> None:
        if held is None:
            if not self._subscribers.get(key, True):
                del self._subscribers[key]
        elif not self._own.get((held, key[1]), True):
            del self._own[(held, key[1])]

    def restore(self, session: Session, keys: list[Key]) -> None:
        """A revived session's subscriptions: held again; a server that is (re)starting is asked when it is
        ready (`held`), one that is ready already is asked now. One its access no longer allows stays gone.
        Where the shared connection takes none, they then move where a subscribe would hold them (`_settle`)."""
        servers = set()
        for key in keys:
            if not session.access.reach.shows("resources", *key):
                log.info("session %s: %s on %s is out of its reach now: not restored", session.id[:8], *key[::-1])
                continue
            subscribers = self._subscribers.setdefault(key, set())
            first = not subscribers
            subscribers.add(session.id)
            session.subscriptions[key] = None  # the shared connections', until its calls go elsewhere (`follow`)
            servers.add(key[0])
            conn = self.pool.get(key[0])
            if first and conn is not None and conn.state == "ready" and self.tg is not None:
                self.tg.start_soon(self._rejoin, conn, key)
        for server in sorted(servers):
            if self.tg is not None:
                self.tg.start_soon(self._settle, session, server)

    async def _rejoin(self, conn: UpstreamConnection, key: Key) -> None:
        """A revived session's subscription, asked of a ready server in its turn (`_turn`), while still held."""
        async with self._turn((None, key)):
            if self._holders(key, None):
                await self.resubscribe(conn, [key[1]])

    async def _settle(self, session: Session, server: str) -> None:
        """A revived session's subscriptions to `server`, back on the shared connection: where that one takes
        none (a dual-era server the hub speaks 2026-07-28 to, taking them in the legacy era alone), they move,
        once it is ready, to the connection a subscribe goes to (its legacy-era companion), where they are heard.
        They stayed inert until the session's next call to that server moved them (`follow`). A server not ready
        by then (its first start failed) is waited for: `up` settles them when it is. Quiet: logged."""
        conn = self.pool.get(server)
        if conn is None:
            return
        with anyio.move_on_after(conn.config.startup_timeout):
            await conn.settled.wait()
        conn = self.pool.get(server)  # (supervision makes a new one each start: the one now, read with no wait)
        held = any(key[0] == server and where is None for key, where in session.subscriptions.items())
        if conn is None or session.closed or not held or takes_subscriptions(conn):
            return
        if conn.state != "ready":  # when it is (supervision, or an operator, starts it again): `up`
            self._unsettled.setdefault(server, {})[session.id] = session
            return
        if not wants_legacy(conn, session, server, subscribing=True):
            return  # not a dual-era one: no other connection would take them (and none is made for nothing)
        try:
            await self.route(session, server, subscribing=True)  # its subscriptions follow (the dispatcher's)
        except HubError as exc:
            log.info(
                "session %s: its subscriptions to %s stay on the shared connection: %s", session.id[:8], server, exc
            )
        except Exception:  # the top of a task on the hub's task group (a user-secrets.db that cannot be read)
            log.exception("session %s: moving its subscriptions to %s failed", session.id[:8], server)

    def up(self, conn: UpstreamConnection) -> None:
        """A server's shared connection is ready (again): the revived sessions waiting for it settle now
        (`_settle`). They stayed inert on the shared connection until their next call to that server."""
        waiting = self._unsettled.pop(conn.name, {})
        for session in waiting.values():
            if self.tg is not None and not session.closed:
                self.tg.start_soon(self._settle, session, conn.name)

    async def match(self, session: Session, keys: list[Key]) -> None:
        """Hold exactly `keys` (another replica's copy of the session changed its subscriptions): the others
        are let go, the new ones subscribed on the connection its calls go to. Quiet: a failure is logged."""
        wanted = set(keys)
        for key in [k for k in session.subscriptions if k not in wanted]:
            try:
                await self._release(session.id, key, session.subscriptions.pop(key), {"uri": key[1]})
            except HubError as exc:
                log.info("session %s: unsubscribing %s on %s failed: %s", session.id[:8], key[1], key[0], exc)
        for key in sorted(wanted - session.subscriptions.keys()):
            try:
                if not session.access.reach.shows("resources", *key):
                    raise NotFound("out of the session's reach here")
                conn = await self.route(session, key[0], subscribing=True)
                if not takes_subscriptions(conn):
                    raise MethodNotFound("this server takes no resource subscriptions")
                await self._hold(session, key, conn, {"uri": key[1]})
            except HubError as exc:
                log.info("session %s: subscribing %s on %s failed: %s", session.id[:8], key[1], key[0], exc)

    def rebind(self, session: Session) -> None:
        """The session's template instances changed (a reload rendered new ones): what it held on an
        instance it no longer has moves to its instance of the same template now (asked there at once
        if that one is ready, else when it is)."""
        bound = session.access.reach.instances
        now = {shown_as(instance): instance for instance in bound}
        moved = []
        for key in list(session.subscriptions):
            if INSTANCE_MARK in key[0] and key[0] not in bound:
                self.drop(session, key)
                if shown_as(key[0]) in now:
                    moved.append((now[shown_as(key[0])], key[1]))
        if moved:
            self.restore(session, moved)

    async def subscribe_each(self, session: Session, uris: list[str]) -> list[str]:
        """Subscribe to each of `uris`; one that fails is logged and left out. Each server's in turn, the
        servers at once, each subscription within SUBSCRIBE_WAIT: a server that lets one pass is asked no
        more (the rest of its are left out, logged). One after another, each within its server's `timeout`,
        they held the listen's acknowledgement that long per URI of a server that stopped answering.
        Returns those held, in the order asked (what the listen's acknowledgement may say it honours)."""
        held: set[str] = set()
        by_server: dict[str, list[str]] = {}
        for uri in uris:
            try:
                by_server.setdefault(self._locate(session, "resources/subscribe", {"uri": uri})[0], []).append(uri)
            except HubError as exc:
                log.info("listen: subscribing %s failed: %s", uri, exc)

        async def each(server: str, theirs: list[str]) -> None:
            for n, uri in enumerate(theirs):
                try:
                    await self.subscribe(session, {"uri": uri}, SUBSCRIBE_WAIT)
                    held.add(uri)
                except UpstreamTimeout:
                    log.warning(
                        "listen: %s did not take a subscription in time (%gs at most): %d of its %d left out",
                        server,
                        SUBSCRIBE_WAIT,
                        len(theirs) - n,
                        len(theirs),
                    )
                    return
                except HubError as exc:
                    log.info("listen: subscribing %s failed: %s", uri, exc)

        async with anyio.create_task_group() as tg:
            for server, theirs in by_server.items():
                tg.start_soon(each, server, theirs)
        return [uri for uri in uris if uri in held]

    async def unsubscribe_each(self, session: Session, uris: list[str]) -> None:
        """Unsubscribe from each of `uris`, even while cancelled (a session's last word), telling their servers
        for UNSUBSCRIBE_WAIT at most: past it the rest are forgotten here only. One after another, each waited
        up to its server's `timeout`: a server that stopped answering held the ended listen (its principal's
        stream), and the hub's shutdown, that long per URI."""
        left = list(uris)
        with anyio.CancelScope(shield=True), anyio.move_on_after(UNSUBSCRIBE_WAIT):
            while left:
                with contextlib.suppress(HubError):
                    await self.unsubscribe(session, {"uri": left[0]})
                left.pop(0)
        for uri in left:  # (the first may be half done: it was let go of here before its server was asked)
            with contextlib.suppress(HubError):
                key = self._locate(session, "resources/unsubscribe", {"uri": uri})
                self._let_go(session.id, key, session.subscriptions.pop(key, None))

    def _locate(self, session: Session, method: str, params: dict[str, Any]) -> Key:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise InvalidParams(f"{method}: params.uri must be a string")
        if len(uri) > MAX_URI:
            raise InvalidParams(f"{method}: params.uri is {len(uri)} characters; at most {MAX_URI}")
        server, original = self.view(session).locate_uri(uri, session.access.reach)
        session.access.require(SUBSCRIBE, "resources", server, original, uri)
        return server, original

    def drop(self, session: Session, key: Key) -> None:
        """The session's reach no longer shows this resource: its updates stop."""
        held = session.subscriptions.pop(key, None)
        subscribers = self._subscribers.get(key) if held is None else self._own.get((held, key[1]))
        if subscribers is not None:
            subscribers.discard(session.id)
            self._forget_empty(key, held)

    def holds_on(self, conn: UpstreamConnection) -> bool:
        """Is a subscription held on `conn` (a connection of its own: a principal's legacy-era one)? Its
        updates come over it alone, so it is not closed for want of calls."""
        return any(held is conn for held, _ in self._own)

    def forget(self, session_id: str) -> None:
        """A session ended: it holds nothing any more, and what it was the last to hold is let go upstream
        (`_let_go_upstream`, on the hub's task group). Clients seldom unsubscribe before they go: the servers
        went on watching, and sending updates no one heard of, every resource an ended session subscribed to."""
        for server, waiting in list(self._unsettled.items()):
            if waiting.pop(session_id, None) is not None and not waiting:
                del self._unsettled[server]
        released: list[tuple[Key, UpstreamConnection | None]] = []
        for key, subscribers in list(self._subscribers.items()):
            subscribers.discard(session_id)
            if not subscribers:
                del self._subscribers[key]
                released.append((key, None))
        for (held, uri), subscribers in list(self._own.items()):
            subscribers.discard(session_id)
            if not subscribers:
                del self._own[(held, uri)]
                released.append(((held.name, uri), held))
        if released and self.tg is not None:
            self.tg.start_soon(self._let_go_upstream, released)

    async def _let_go_upstream(self, released: list[tuple[Key, UpstreamConnection | None]]) -> None:
        """Unsubscribe upstream what an ended session was the last to hold, within UNSUBSCRIBE_WAIT in all
        (a server that stopped answering is not waited on longer). One a session subscribed to since, or is
        subscribing to, stays. Quiet: a failure is logged (the top of a task on the hub's task group)."""
        with anyio.move_on_after(UNSUBSCRIBE_WAIT):
            for key, held in released:
                if self._holders(key, held):
                    continue
                if held is not None and held.state != "ready":
                    continue  # closing or closed: it holds nothing any more
                try:
                    conn = ready(self.pool, key[0]) if held is None else held  # where `_let_go` tells it too
                    await self._unsubscribe_upstream(conn, key, held, {"uri": key[1]})  # (one subscribing: stays)
                except HubError as exc:
                    log.info("unsubscribing %s on %s (its last subscriber ended) failed: %s", key[1], key[0], exc)
                except Exception:
                    log.exception("unsubscribing %s on %s (its last subscriber ended) failed", key[1], key[0])

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
