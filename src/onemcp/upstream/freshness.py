"""How long a list of an upstream that cannot announce its changes is kept before it is read again.

Owns the rule. A list the server announces changes of (`listChanged` in its capabilities: a legacy
session's `list_changed`, or the 2026-07-28 change feed) is kept until it does (the connection reads
it again then). A list the server cannot announce changes of, and whose result said how long it may
be cached (`ttlMs`, 2026-07-28: the SDK's low-level server without a `subscriptions/listen` handler
declares no `listChanged` and says 0), is kept that long (the least of its pages), at least `MIN_KEEP`
(a client listing in a loop costs the server one list a second, not one each), and is stale at once
after a client's call to that server was answered since its reading began (the call may have changed
it: a list asked right after is fresh, as directly). A stale list is read again when a client asks
for it, before the answer (at most `FRESH_WAIT`, else the kept list is answered), one reading shared
by every client asking meanwhile. A list with no `ttlMs` (legacy) and no `listChanged` is kept, as
the server said nothing of its changing. Any list is stale, too, once another connection to the same
server heard it change (`changed_elsewhere`: a dual-era server's legacy-era companion) until a reading
that began after that ends; such a reading starts at once, so that other clients hear of a real change.
Does not own the reading (the connection and its `Relist`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio

from onemcp.upstream.lists import Relist

MIN_KEEP = 1.0  # seconds a list kept by its ttlMs is kept at least
FRESH_WAIT = 5.0  # longest a client's list waits for a stale list to be read again


def announces(capabilities: dict[str, Any], kind: str) -> bool:
    """Does the server announce changes of `kind` (resource templates: with resources)?"""
    cap = capabilities.get("resources" if kind == "resourceTemplates" else kind)
    return isinstance(cap, dict) and cap.get("listChanged") is True


def ttl_of(ttls: list[object]) -> float | None:
    """Seconds one reading may be cached, from its pages' `ttlMs` (the least), None when one says nothing
    usable (missing, not a whole number of at least 0)."""
    kept = [t for t in ttls if isinstance(t, int) and not isinstance(t, bool) and t >= 0]
    return min(kept) / 1000 if kept and len(kept) == len(ttls) else None


class Freshness:
    """The kept lists of one connection that expire (by kind), and the readings asked for them."""

    def __init__(
        self,
        capabilities: Callable[[], dict[str, Any]],
        read_again: Callable[..., Relist | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capabilities = capabilities  # the server's, as its handshake said
        self.read_again = read_again  # the connection's `refresh_soon`
        self.clock = clock  # tests drive it
        self.answered = 0  # client calls to the server answered so far
        self._kept: dict[str, tuple[float, int]] = {}  # kind -> (until when, calls answered when it was read)
        self._asked: dict[str, anyio.Event] = {}  # kind -> the reading clients wait for now
        self._told: dict[str, int] = {}  # kind -> times another connection to the server heard it change
        self._heard: dict[str, int] = {}  # kind -> of those, how many a reading that ended began after

    def reading(self, kind: str) -> Callable[[list[object]], None]:
        """A reading of `kind` begins: what to call with its pages' `ttlMs` once it is done."""
        began, answered, told = self.clock(), self.answered, self._told.get(kind, 0)

        def read(ttls: list[object]) -> None:
            self._heard[kind] = max(self._heard.get(kind, 0), told)
            ttl = ttl_of(ttls)
            if ttl is None or announces(self.capabilities(), kind):
                self._kept.pop(kind, None)  # kept until the server says it changed (or for good)
            else:
                self._kept[kind] = (began + max(ttl, MIN_KEEP), answered)

        return read

    def stale(self, kind: str) -> bool:
        if self._told.get(kind, 0) > self._heard.get(kind, 0):
            return True
        kept = self._kept.get(kind)
        return kept is not None and (self.clock() >= kept[0] or self.answered > kept[1])

    def expires(self, kind: str) -> float | None:
        """When the kept list of `kind` expires by its ttl (`clock` time); None: it is not kept by a ttl."""
        kept = self._kept.get(kind)
        return kept[0] if kept is not None else None

    def changed_elsewhere(self, kind: str) -> None:
        """Another connection to this server heard `kind` change: read it again now (clients listing meanwhile
        wait for that reading, as for any stale list), whether or not this connection could have heard it."""
        self._told[kind] = self._told.get(kind, 0) + 1
        if (relist := self.read_again(kind)) is not None:  # one under way began too soon: one more follows it
            self._asked[kind] = relist.awaited_by_a_call()

    async def ensure(self, kind: str) -> None:
        """Read `kind` again if it is stale (with those asking meanwhile), within `FRESH_WAIT`."""
        done = self._asked.get(kind)
        if done is None or done.is_set():  # no reading asked for, or the last one is done
            if not self.stale(kind) or (relist := self.read_again(kind)) is None:
                return
            done = self._asked[kind] = relist.awaited_by_a_call()
        with anyio.move_on_after(FRESH_WAIT):
            await done.wait()
