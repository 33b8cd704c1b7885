"""Telling an upstream the same kind of news once, however often clients ask at once.

A client's `logging/setLevel` and `notifications/roots/list_changed` are passed on to every upstream
it reaches; a client that sends a thousand of them would make a thousand times as many messages.
Both tell an upstream *state* (the level it should log at, that the roots changed since it last
asked), so a message sent after a request arrived serves it as well as its own would.

`Backlog` marks the news pending for a key (an upstream connection) and returns at once; one task
per key, in the hub's task group, sends while any is pending (the send reads the state then: the
latest level), so an upstream slow to take it holds up neither the client nor the other upstreams,
and at most one send per key is in flight however many ask. `mark` hands back an event set once a
send that started after it has ended, for a caller that would rather wait a little (a
`logging/setLevel` reply waits a bounded grace for the acknowledgements). A lone mark is sent at
once (nothing is delayed to merge). Owns only that; what is sent is the caller's.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio
import anyio.abc

log = logging.getLogger("onemcp.hub")


K = TypeVar("K")


class Backlog(Generic[K]):
    """News pending per key, sent by one task per key in `tg` (the hub's) while any is pending."""

    def __init__(self) -> None:
        self.tg: anyio.abc.TaskGroup | None = None  # the hub's, once it runs
        # per key: the latest send asked for, and the event its callers get (set once it has ended)
        self._pending: weakref.WeakKeyDictionary[K, tuple[Callable[[], Awaitable[None]], anyio.Event]] = (
            weakref.WeakKeyDictionary()
        )
        self._sending: weakref.WeakSet[K] = weakref.WeakSet()

    async def mark(self, key: K, send: Callable[[], Awaitable[None]]) -> anyio.Event:
        """News for `key`: sent by its task (started now if none runs), after any send in flight. Returns at
        once while the hub runs (without its task group, as in a test of the dispatcher alone: once sent),
        with an event set once a send begun after this call has ended, whether it succeeded or not."""
        if self.tg is None:
            await send()
            done = anyio.Event()
            done.set()
            return done
        waiting = self._pending.get(key)
        done = anyio.Event() if waiting is None else waiting[1]  # the next send serves everyone waiting
        self._pending[key] = (send, done)
        if key not in self._sending:
            self._sending.add(key)
            self.tg.start_soon(self._drain, key)
        return done

    def pending(self, key: K) -> bool:
        """Is news for `key` waiting or being sent?"""
        return key in self._sending

    async def _drain(self, key: K) -> None:
        try:
            while (next_send := self._pending.pop(key, None)) is not None:
                send, done = next_send
                try:
                    await send()
                except Exception:  # boundary: a bug here must not end the hub's task group
                    log.exception("telling an upstream what a client changed failed")
                finally:
                    done.set()
        finally:
            self._sending.discard(key)
