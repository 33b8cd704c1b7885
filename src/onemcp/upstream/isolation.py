"""Per-session upstream connections (`isolation`), and per-principal ones (a user's own credentials).

A shared stdio connection cannot always tell which client a server->client request or a
log line belongs to. An isolated server gets one connection per downstream session,
started on the session's first call to it and closed when the session ends; everything
the upstream sends on it belongs to that session. The shared connection still exists and
feeds the catalog (lists are the same for everyone). A server has at most `maxOwnConnections`; the
connections of one group (the hub passes a session's principal) past `maxOwnConnectionsPerPrincipal`
close their stalest idle one first (one-shot clients that never end their sessions left a process each
until the session expired).
When the server is removed, reconfigured or restarted, its connections here stop as the pool's shared
one does: calls in flight get `DRAIN_SECONDS` to finish, then end with the reason (the next call gets
a new connection meanwhile).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup, TaskStatus

from onemcp.config.model import ServerConfig
from onemcp.observability.limits import hit
from onemcp.protocol.errors import LimitReached, UpstreamUnavailable
from onemcp.upstream import pool
from onemcp.upstream.call import Requester
from onemcp.upstream.connection import ConnectionEvents, UpstreamConnection
from onemcp.upstream.oauth.registry import UpstreamAuth
from onemcp.upstream.transports.factory import TransportFactory, make_transport

STALE = 60.0  # seconds unused before a connection may be closed to make room for another
PRINCIPAL = "user:"  # a principal's own connections are kept for `user:<principal>`
LEGACY = "legacy+"  # and its legacy-era ones to a dual-era server for `legacy+user:<principal>`


def principal_owner(principal: str, legacy: bool = False) -> str:
    """Whom a principal's own connections are kept for: its legacy-era ones (to a dual-era server, for its
    legacy clients that need that era) apart from the others, which speak the era the server negotiated."""
    return f"{LEGACY if legacy else ''}{PRINCIPAL}{principal}"


def principal_owners(principal: str) -> tuple[str, str]:
    """Both owners a principal's own connections are kept for (`held_by` takes them)."""
    return principal_owner(principal), principal_owner(principal, legacy=True)


def principal_in(owner: str | None) -> str | None:
    """The principal a connection kept for `owner` belongs to (`[legacy+]user:<principal>`), else None."""
    if owner is None:
        return None
    owner = owner.removeprefix(LEGACY)
    return owner.removeprefix(PRINCIPAL) if owner.startswith(PRINCIPAL) else None


class IsolatedConnections:
    def __init__(
        self, events: ConnectionEvents, auth: UpstreamAuth | None = None, transports: TransportFactory = make_transport
    ) -> None:
        self.auth = auth
        self.transports = transports
        self.events = events
        self._conns: dict[tuple[str, str], tuple[UpstreamConnection, anyio.CancelScope]] = {}
        self._used: dict[tuple[str, str], float] = {}  # last use of each (per-principal ones are reaped idle)
        self._credentials: dict[tuple[str, str], str] = {}  # the OAuth credential each one carries
        self._stamps: dict[tuple[str, str], object] = {}  # what each was made from, as its caller noted it
        self._groups: dict[tuple[str, str], str] = {}  # the group (principal) of each session's own connection
        # stopped ones whose calls still run (`close_server`), with their owner: out of `_conns`, so a
        # new call gets a new connection; not counted against `maxOwnConnections` (gone within the drain)
        self._draining: dict[UpstreamConnection, tuple[str, anyio.CancelScope]] = {}
        self._tg: TaskGroup | None = None
        # does something still need this connection though no call uses it (the hub's: a subscription held on
        # it, a listen's watch)? Such a one is neither swept idle nor closed to make room: its updates come over it
        self.busy: Callable[[UpstreamConnection], bool] = lambda conn: False
        if auth is not None:  # a credential logged out: the connections carrying it close (the next call asks anew)
            auth.dropped.append(self.close_credential)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            await anyio.sleep_forever()

    async def get(
        self,
        session_id: str,
        owner: Requester | None,
        name: str,
        config: ServerConfig,
        server: ServerConfig | None = None,
        credential: str | None = None,
        group: str | None = None,
    ) -> UpstreamConnection:
        """The session's own connection to `name` (at `config`'s URL, perhaps a replica's; `server`: the
        server's own config, whose credential it carries: the server's, or the one named `credential`,
        a principal's own), started (and awaited) on first use; `group`: whose it counts as (a principal)."""
        key = (session_id, name)
        entry = self._conns.get(key)
        if entry is not None and entry[0].state in ("failed", "stopped"):  # it died since: a new one takes over
            self._close(key)
            entry = None
        if entry is None:
            if self._tg is None:
                raise UpstreamUnavailable(name, "the hub is not running")
            self._make_room(name, group)
            self._used[key] = time.monotonic()
            if group is not None:
                self._groups[key] = group
            transport = self.transports(credential or name, config, self.auth, server)
            conn = UpstreamConnection(name, config, transport, self.events, owner=owner)
            scope = anyio.CancelScope()
            self._conns[key] = (conn, scope)
            self._credentials[key] = credential or name
            self._tg.start_soon(self._run, conn, scope)
        else:
            conn = entry[0]
            self._used[key] = time.monotonic()
        with anyio.move_on_after(config.startup_timeout):
            await conn.settled.wait()
        if conn.state != "ready":
            self._close(key)
            raise UpstreamUnavailable(name, f"the session's own connection is {conn.state}: {conn.last_error}")
        return conn

    def ready(self, session_id: str, name: str) -> UpstreamConnection | None:
        """The connection `get` would return, if it is there and ready (no config needed to ask)."""
        entry = self._conns.get((session_id, name))
        if entry is None or entry[0].state != "ready":
            return None
        self._used[(session_id, name)] = time.monotonic()
        return entry[0]

    def _make_room(self, name: str, group: str | None = None) -> None:
        """At `maxOwnConnections` for `name`: close its stalest connection that no call uses, nothing else
        needs (`busy`) and nobody used for a minute; with none, LimitReached (each may be a process: never
        unbounded). A `group` at its own limit for `name` closes its stalest idle ones first, down to below
        it (with none idle, it may go on)."""
        if group is not None:
            theirs = [key for key in self._conns if key[1] == name and self._groups.get(key) == group]
            while len(theirs) >= self.events.own_connection_group_limit() and (stalest := self._stalest(theirs)):
                why = "upstream %s: closed the stalest idle own connection of %s"
                hit("own_connections_per_principal", why, name, group)
                self._close(stalest)
                theirs.remove(stalest)
        limit = self.events.own_connection_limit()
        mine = [key for key in self._conns if key[1] == name]
        if len(mine) < limit:
            return
        stalest = self._stalest(mine)
        if stalest is not None:
            self._close(stalest)
            return
        why = f"{name} has {len(mine)} own connections (one per client session or user), the limit"
        hit("own_connections", "upstream %s: %s", name, why)
        raise LimitReached("own_connections", f"[{name}] {why}; try again later", 503)

    def _stalest(self, keys: list[tuple[str, str]]) -> tuple[str, str] | None:
        """Of `keys`, a dead connection, else the one unused longest that no call uses, nothing else needs
        (`busy`) and nobody used for a minute; None when none may go."""
        now = time.monotonic()
        dead = [k for k in keys if self._conns[k][0].state in ("failed", "stopped")]
        idle = sorted(dead or [k for k in keys if self._unused(k, now, STALE)], key=lambda k: self._used.get(k, now))
        return next((k for k in idle if dead or not self.busy(self._conns[k][0])), None)  # (asked stalest first)

    def connections(self) -> list[UpstreamConnection]:
        """Every connection kept here, draining ones too (the hub stopping cuts their calls off)."""
        return [*(conn for conn, _ in self._conns.values()), *self._draining]

    def owner_of(self, conn: UpstreamConnection) -> str | None:
        """Whom `conn` is kept for (a session id, `user:<principal>`, a caller's own key), else None."""
        for (owner, _), (held, _) in self._conns.items():
            if held is conn:
                return owner
        return None

    def principal_of(self, conn: UpstreamConnection) -> str | None:
        """The principal whose own connection `conn` is (kept for `[legacy+]user:<principal>`), else None."""
        return principal_in(self.owner_of(conn))

    def held_by(self, *owners: str) -> list[UpstreamConnection]:
        """The ready connections kept for any of `owners` (a session id, a `user:` principal, ...)."""
        return [conn for (owner, _), (conn, _) in self._conns.items() if owner in owners and conn.state == "ready"]

    async def _run(self, conn: UpstreamConnection, scope: anyio.CancelScope) -> None:
        with scope:
            await conn.run()

    def _unused(self, key: tuple[str, str], now: float, idle: float) -> bool:
        """Has no call used the connection at `key` for `idle` seconds, and does none use it now?"""
        return not self._conns[key][0].in_flight and now - self._used.get(key, now) > idle

    def close_idle(self, prefix: str, idle: float) -> None:
        """Close the connections keyed `prefix...` (a principal's own: its legacy-era ones too) unused for `idle`
        seconds, but those something still needs (`busy`: a subscription held on it, its updates)."""
        now = time.monotonic()
        for key in [k for k in self._conns if k[0].removeprefix(LEGACY).startswith(prefix)]:
            if self._unused(key, now, idle) and not self.busy(self._conns[key][0]):
                self._close(key)

    def _forget(self, key: tuple[str, str]) -> tuple[UpstreamConnection, anyio.CancelScope] | None:
        self._used.pop(key, None)
        self._credentials.pop(key, None)
        self._stamps.pop(key, None)
        self._groups.pop(key, None)
        return self._conns.pop(key, None)

    def _close(self, key: tuple[str, str]) -> None:
        entry = self._forget(key)
        if entry is not None:
            entry[1].cancel()

    def close_session(self, session_id: str) -> None:
        """The session ended: its connections close, draining ones too (nobody waits for their calls)."""
        for key in [k for k in self._conns if k[0] == session_id]:
            self._close(key)
        for conn, (owner, scope) in list(self._draining.items()):
            if owner == session_id:
                del self._draining[conn]
                scope.cancel()

    def stamp(self, owner: str, name: str, version: object = None) -> object:
        """What the caller noted with this connection (a version of what it was made from), or note it."""
        if version is not None and (owner, name) in self._conns:
            self._stamps[(owner, name)] = version
        return self._stamps.get((owner, name))

    def close_owned(self, owner: str, name: str) -> None:
        """Close `owner`'s connection to `name` (made from values that changed)."""
        self._close((owner, name))

    def close_credential(self, credential: str) -> None:
        """Close the connections carrying the OAuth credential `credential` (it was logged out)."""
        for key in [k for k, named in self._credentials.items() if named == credential]:
            self._close(key)

    def close_server(self, name: str, reason: str = "stopped by the hub") -> None:
        """Stop every connection to `name` (it was removed, reconfigured or restarted), as the pool stops its
        shared one: calls in flight get `pool.DRAIN_SECONDS` to finish, then end with `reason` (in the
        background); a connection no call uses closes at once. The next call gets a new connection."""
        for key in [k for k in self._conns if k[1] == name]:
            entry = self._forget(key)
            assert entry is not None
            conn, scope = entry
            if conn.in_flight and self._tg is not None:
                self._draining[conn] = (key[0], scope)
                self._tg.start_soon(self._drain, conn, scope, reason)
            else:
                conn.fail_pending(reason, closed=False)  # anything else pending (the hub's own): a clear error
                scope.cancel()

    async def _drain(self, conn: UpstreamConnection, scope: anyio.CancelScope, reason: str) -> None:
        try:
            with anyio.move_on_after(pool.DRAIN_SECONDS):
                await conn.drained()
        finally:
            if self._draining.pop(conn, None) is not None:  # not closed with its session meanwhile
                conn.fail_pending(reason, closed=False)  # a clear error, not "connection closed"
            scope.cancel()

    def in_flight(self, name: str) -> int:
        """Calls waiting on `name` over the connections kept here (every owner's, draining ones too)."""
        return sum(conn.in_flight for conn in self.connections() if conn.name == name)

    def count(self, name: str) -> int:
        return sum(1 for (_, n), (conn, _) in self._conns.items() if n == name and conn.state == "ready")
