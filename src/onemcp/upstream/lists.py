"""Reading one of an upstream's lists (tools, prompts, resources, resource templates) whole.

Owns paging through a list and its bounds: at most `MAX_LIST_PAGES` pages, `MAX_LIST_ITEMS`
items and `size_limit` bytes of one kind from one server (a server that pages without end
keeps what fits, and the limit hit is counted; one that names a page it already gave is not asked
for it again); a `nextCursor` that is not a string is passed back as
it came, and when the server refuses it, the pages read are kept; and `Relist`, one list being read
again after list_changed. Does not own when a list is read (the connection: after its handshake, on
list_changed, after a new session) or where it goes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson

from onemcp.observability.limits import hit
from onemcp.protocol.errors import METHOD_NOT_FOUND, UpstreamError
from onemcp.protocol.methods import KINDS

log = logging.getLogger("onemcp.upstream")
MAX_LIST_PAGES = 1000
MAX_LIST_ITEMS = 10_000  # of one kind from one server; the whole list is also bounded by maxResponseBytes

Request = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(slots=True)
class Relist:
    """A list being read again after the server said it changed: `again` when it said so once more
    meanwhile (one more reading follows). A call in flight when it was said (`awaited`) waits for the
    first reading that begins after that (`upcoming`, see `Call.after`), not for the readings to end:
    a server that keeps saying so would hold its own calls' answers as long as it did."""

    again: bool = False
    awaited: bool = False  # a call in flight waits for it: read without a pause (`pacing`)
    upcoming: anyio.Event = field(default_factory=anyio.Event)  # set when the reading not yet begun ends
    _reading: anyio.Event | None = None  # the reading under way's
    _pause: anyio.CancelScope | None = None  # a pause before the next reading, while it lasts

    def awaited_by_a_call(self) -> anyio.Event:
        """What a call in flight waits for: the next reading to begin, which no longer pauses."""
        self.awaited = True
        if self._pause is not None:
            self._pause.cancel()  # the pause of a server that keeps changing ends: a call waits
        return self.upcoming

    async def pause(self, sleep: Awaitable[None]) -> None:
        """Pause before the next reading, unless (or until) a call waits for it."""
        with anyio.CancelScope() as self._pause:
            await sleep
        self._pause = None

    def begin(self) -> None:
        """A reading begins: what was announced until now is in it."""
        self.again = self.awaited = False
        self._reading, self.upcoming = self.upcoming, anyio.Event()

    def end(self) -> None:
        if self._reading is not None:
            self._reading.set()

    def close(self) -> None:
        """No more readings: nobody waits for one."""
        self.end()
        self.upcoming.set()


async def read_list(
    request: Request, server: str, kind: str, size_limit: int, read: Callable[[list[object]], None] | None = None
) -> list[dict[str, Any]]:
    """Every page of `kind` that fits the bounds; UpstreamError when a page cannot be had. `read` is told
    the `ttlMs` of each page read (`freshness`), once they all were."""
    method = KINDS[kind][0]
    items: list[dict[str, Any]] = []
    ttls: list[object] = []
    cursor: Any = None
    size = 0  # of the whole list
    followed: set[bytes] = set()  # digests of the cursors asked for: a cursor may be large, its digest is not
    for _ in range(MAX_LIST_PAGES):
        try:
            page = await request(method, {"cursor": cursor} if cursor else {})
        except UpstreamError as exc:
            if kind == "resourceTemplates" and f"({METHOD_NOT_FOUND})" in str(exc):
                break
            if cursor is not None and not isinstance(cursor, str):
                # a cursor is a string: the server wrote another, passed back as it came, and refused
                why = "upstream %s: its %s list's nextCursor is not a string (%.40r) and the page it names "
                log.warning(why + "could not be had (%s): the rest is left out", server, kind, cursor, exc)
                break
            raise
        ttls.append(page.get("ttlMs"))
        got = page.get(kind)
        if isinstance(got, list):
            size += len(orjson.dumps(got))
            items.extend(i for i in got if isinstance(i, dict))
        if len(items) > MAX_LIST_ITEMS or size > size_limit:
            # a server that pages without end: keep what fits, say so, stop asking
            del items[MAX_LIST_ITEMS:]
            why = "upstream %s: its %s list is over %d items or %d bytes: the rest is left out"
            hit("list_items", why, server, kind, MAX_LIST_ITEMS, size_limit)
            break
        cursor = page.get("nextCursor")
        if not cursor:
            break
        seen = hashlib.blake2b(orjson.dumps(cursor), digest_size=16).digest()
        if seen in followed:  # a loop (the same nextCursor forever): every page of it is had
            why = "upstream %s: its %s list names a page it already gave (nextCursor %.40r): the rest is left out"
            hit("list_items", why, server, kind, cursor)
            break
        followed.add(seen)
    else:
        why = "upstream %s: its %s list is over %d pages: the rest is left out"
        hit("list_items", why, server, kind, MAX_LIST_PAGES)
    if read is not None:
        read(ttls)
    return items
