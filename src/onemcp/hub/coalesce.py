"""Telling an upstream the same kind of news once, however often clients ask at once.

A client's `logging/setLevel` and `notifications/roots/list_changed` are passed on to every upstream
it reaches; a client that sends a thousand of them would make a thousand times as many messages.
Both tell an upstream *state* (the level it should log at, that the roots changed since it last
asked), so a message sent after a request arrived serves it as well as its own would. `Coalescer`
keeps at most one send in flight per key (an upstream connection): the first request sends at once,
requests arriving meanwhile wait for one more send after it (which reads the state then: the latest
level, a roots change still pending), and every caller returns once a send that started after it
arrived has finished. A lone request is never delayed. Owns only that; what is sent is the caller's.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio


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
