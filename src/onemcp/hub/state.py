"""A read-only view of the running hub, for the endpoints that report on it (/health, /metrics).

Owns nothing and changes nothing: it reads the pool's slots and connections, the catalog's counts,
collisions and list repairs, the session and listen-stream counts, per-session connections and the
hub's upstream OAuth credentials, and hands out what the reports show. Which document or metric
is built from it is `downstream/health.py`'s.
"""

from __future__ import annotations

from typing import Any

from onemcp.catalog.catalog import Catalog
from onemcp.hub.listeners import Listener
from onemcp.hub.session import SessionStore
from onemcp.upstream.connection import UpstreamConnection
from onemcp.upstream.isolation import IsolatedConnections
from onemcp.upstream.oauth.registry import UpstreamAuth
from onemcp.upstream.pool import Pool, Slot


class HubState:
    def __init__(
        self,
        pool: Pool,
        catalog: Catalog,
        sessions: SessionStore,
        listeners: set[Listener],
        isolated: IsolatedConnections,
        upstream_auth: UpstreamAuth,
    ) -> None:
        self._pool = pool
        self._catalog = catalog
        self._sessions = sessions
        self._listeners = listeners
        self._isolated = isolated
        self._upstream_auth = upstream_auth

    def upstreams(self) -> list[tuple[str, Slot, UpstreamConnection]]:
        """Each running upstream: its name, its slot, and its connection (a ready replica's when there is one)."""
        return [(name, slot, self._pool.get(name) or slot.conn) for name, slot in self._pool.slots.items()]

    def states(self) -> dict[str, str]:
        """Each running upstream's connection state."""
        return {name: conn.state for name, conn in self._pool.connections.items()}

    def started(self) -> bool:
        """Did the start-up try every upstream (every replica too) once? Stays true: a server added,
        changed or restarted later is not waited for."""
        return self._pool.tried.is_set()

    def list_counts(self, server: str) -> dict[str, int]:
        return self._catalog.counts(server)

    def repairs(self, server: str, kind: str) -> dict[str, Any] | None:
        """The entries of one of `server`'s lists (a kind) that were mended or withheld, or None."""
        report = self._catalog.repairs.get(server, {}).get(kind)
        return report.as_json() if report is not None else None

    def collisions(self) -> list[str]:
        """Names and URIs hidden by another server's equal one."""
        return [c for kind in self._catalog.collisions.values() for c in kind]

    def session_connections(self, server: str) -> int:
        """Ready connections to `server` that one session owns."""
        return self._isolated.count(server)

    def in_flight(self, server: str) -> int:
        """Client calls waiting on `server`, over every connection to it: the shared one (each replica's)
        and those a session or a principal holds of its own (`isolation`, per-user credentials)."""
        slot = self._pool.slots.get(server)
        shared = sum(member.conn.in_flight for member in slot.members) if slot is not None else 0
        return shared + self._isolated.in_flight(server)

    def sessions(self) -> int:
        return len(self._sessions)

    def listen_streams(self) -> int:
        return len(self._listeners)

    def authorizations(self, *, with_link: bool) -> dict[str, object]:
        """Each running upstream that has (or may need) an OAuth credential of the hub's."""
        out: dict[str, object] = {}
        for name, server in self._upstream_auth.servers.items():
            if name in self._pool.slots and server.state != "unknown":
                out[name] = server.view(with_link=with_link)
        return out
