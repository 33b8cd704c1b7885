"""Telling an upstream the same kind of news once, however often clients ask at once.

A client's `logging/setLevel` and `notifications/roots/list_changed` are passed on to every upstream
it reaches; a client that sends a thousand of them would make a thousand times as many messages.
Both tell an upstream *state* (the level it should log at, that the roots changed since it last
asked), so a message sent after a request arrived serves it as well as its own would.

`Coalescer` (for a request, answered once its news was sent) keeps at most one send in flight per
key (an upstream connection): the first request sends at once, requests arriving meanwhile wait for
one more send after it (which reads the state then: the latest level), and every caller returns once
a send that started after it arrived has finished. `Backlog` (for a notification, which nobody waits
for) marks the news pending and returns at once; one task per key sends while any is pending, so an
upstream slow to take it holds up neither the client nor the other upstreams. A lone request is
never delayed. Owns only that; what is sent is the caller's.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio
import anyio.abc

log = logging.getLogger("onemcp.hub")


class _Slot:
    """One key's sends: how many were asked for, how many of those a finished send covers."""

    __slots__ = ("asked", "changed", "covered", "sending")

    def __init__(self) -> None:
        self.asked = 0
        self.covered = 0
        self.sending = False
        self.changed = anyio.Event()  # set (and replaced) whenever a send ends

    def waiting(self) -> int:
        return self.asked - self.covered - self.sending

    def wake(self) -> None:
        changed, self.changed = self.changed, anyio.Event()
        changed.set()


K = TypeVar("K")


class Coalescer(Generic[K]):
    """At most one `send` in flight per key; requests during one are served by a single send after it."""

    def __init__(self) -> None:
        self._slots: weakref.WeakKeyDictionary[K, _Slot] = weakref.WeakKeyDictionary()

    def waiting(self, key: K) -> int:
        """Requests for `key` waiting for a send (not counting the one being sent)."""
        slot = self._slots.get(key)
        return 0 if slot is None else slot.waiting()

    async def run(self, key: K, send: Callable[[], Awaitable[None]]) -> None:
        """Send for `key` now, or, with a send in flight, wait for one that starts after it. Returns once a send
        begun after this call has ended (or failed: its error is raised to the caller whose send it was; the
        others it would have served send again)."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot()
        slot.asked += 1
        mine = slot.asked
        while slot.covered < mine:
            changed = slot.changed
            if slot.sending:
                await changed.wait()
                continue
            slot.sending = True
            covers = slot.asked  # everyone asked so far: this send starts after they did
            try:
                await send()
                slot.covered = max(slot.covered, covers)
            finally:
                slot.sending = False
                slot.wake()


class Backlog(Generic[K]):
    """News pending per key, sent by one task per key in `tg` (the hub's) while any is pending."""

    def __init__(self) -> None:
        self.tg: anyio.abc.TaskGroup | None = None  # the hub's, once it runs
        self._pending: weakref.WeakKeyDictionary[K, Callable[[], Awaitable[None]]] = weakref.WeakKeyDictionary()
        self._sending: weakref.WeakSet[K] = weakref.WeakSet()

    async def mark(self, key: K, send: Callable[[], Awaitable[None]]) -> None:
        """News for `key`: sent by its task (started now if none runs), after any send in flight. Returns at
        once while the hub runs (without its task group, as in a test of the dispatcher alone: once sent)."""
        if self.tg is None:
            await send()
            return
        self._pending[key] = send
        if key not in self._sending:
            self._sending.add(key)
            self.tg.start_soon(self._drain, key)

    def pending(self, key: K) -> bool:
        """Is news for `key` waiting or being sent?"""
        return key in self._sending

    async def _drain(self, key: K) -> None:
        try:
            while (send := self._pending.pop(key, None)) is not None:
                try:
                    await send()
                except Exception:  # boundary: a bug here must not end the hub's task group
                    log.exception("telling an upstream what a client changed failed")
        finally:
            self._sending.discard(key)
