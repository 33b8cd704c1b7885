"""Expiring lists read again while a 2026-07-28 listen stream waits to hear that they changed.

A server that cannot announce its list changes has its lists kept for their `ttlMs`, at least
`MIN_KEEP` (`upstream/freshness.py`), and read again at a client's next list. A listen stream that
asked for a kind's `list_changed` would hear of a change only when some client lists. Owns when they
are read for listeners: while a listen stream asks for a kind, the expiring lists of that kind on the
connections its requester is shown (`Dispatcher.expiring`) are read again as their time runs out, the
same reading a client listing then shares (`Freshness.ensure`: one at a time per connection and kind),
never sooner than `MIN_KEEP` after the watch's last one ended (a server whose lists fail, or take long, to
read is not asked in a loop); what really changed is announced as any change. Nothing is read, nor any timer run,
while nobody listens for a list; it stops when the last such listener goes. A call answered does not make
the watch read at once (the next client list does): a list a call changed is heard of when it expires.
Does not own the reading (the connection), nor the announcing (`Announcements`), nor the streams.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable

import anyio

from onemcp.hub.listeners import Listener
from onemcp.hub.session import Session
from onemcp.protocol.methods import KINDS
from onemcp.upstream import freshness
from onemcp.upstream.connection import UpstreamConnection

RECHECK = 5.0  # seconds: while someone listens, a connection made since (a server restarted) is watched within this


class ListWatch:
    def __init__(
        self,
        listeners: set[Listener],
        shown: Callable[[Session], list[UpstreamConnection]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.listeners = listeners  # the hub's open listen streams (this adds and removes them)
        self.shown = shown  # the connections whose lists a requester is shown
        self.clock = clock
        self._wake = anyio.Event()
        self._reading: set[tuple[UpstreamConnection, str]] = set()  # readings the watch waits for now
        # connection -> kind -> when the watch last asked for a reading of it
        self._asked: weakref.WeakKeyDictionary[UpstreamConnection, dict[str, float]] = weakref.WeakKeyDictionary()

    def add(self, listener: Listener) -> None:
        self.listeners.add(listener)
        self._wake.set()

    def discard(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        self._wake.set()

    def watched(self) -> dict[UpstreamConnection, set[str]]:
        """Each connection some listener is shown, with the kinds of list those listening asked about."""
        out: dict[UpstreamConnection, set[str]] = {}
        for listener in self.listeners:
            kinds = {kind for kind, (_, method) in KINDS.items() if method in listener.methods}
            if kinds:
                for conn in self.shown(listener.session):
                    out.setdefault(conn, set()).update(kinds)
        return out

    def due(self, conn: UpstreamConnection, kind: str) -> float | None:
        """When the watch reads `kind` of `conn` again: as it expires, not sooner than `MIN_KEEP` after the
        watch last asked; None: it does not expire (the server announces changes, or said nothing of caching)."""
        expires = conn.fresh.expires(kind)
        last = self._asked.get(conn, {}).get(kind)
        return expires if expires is None or last is None else max(expires, last + freshness.MIN_KEEP)

    async def run(self) -> None:
        """For as long as the hub runs: read what is due, then wait until the next is, or until a listener
        comes or goes, or a reading ends; with nobody listening for a list, only for a listener."""
        async with anyio.create_task_group() as tg:
            while True:
                self._wake = anyio.Event()
                watched = self.watched()
                if not watched:
                    await self._wake.wait()
                    continue
                now = self.clock()
                wait = RECHECK
                for conn, kinds in watched.items():
                    for kind in kinds:
                        due = self.due(conn, kind)
                        if due is None or (conn, kind) in self._reading:
                            continue
                        if due > now:
                            wait = min(wait, due - now)
                            continue
                        self._reading.add((conn, kind))
                        self._asked.setdefault(conn, {})[kind] = now
                        tg.start_soon(self._read, conn, kind)
                with anyio.move_on_after(wait):
                    await self._wake.wait()

    async def _read(self, conn: UpstreamConnection, kind: str) -> None:
        try:
            await conn.fresh.ensure(kind)  # a list a client asked for meanwhile is this same reading
        finally:
            self._reading.discard((conn, kind))
            # `MIN_KEEP` from its end: a list slower to read than its ttl is not read back to back
            self._asked.setdefault(conn, {})[kind] = self.clock()
            self._wake.set()
