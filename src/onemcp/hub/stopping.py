"""The end of the shutdown grace: whatever is still being answered then ends with an error, streams last.

Owns the order, not the wire. At the cut-off (`cut_off`): calls waiting on an upstream are failed by
the hub (`[name] the hub is shutting down`); requests being answered for another reason (waiting for
a server or template instance to start, for the hub's start-up, for a client's answer) are cancelled
from their `bound` and answer the same error themselves; once those answers went out (a bounded
wait, which also covers replies on their way to a stream: `replying`), each session's queue is
closed behind what it holds, so its streams (an /sse stream, a GET stream) send what is queued and
end; last, each HTTP exchange still open (`last`) is cancelled, and its entry point ends it in its
own terms. Nothing is left for the server to cancel (a bare 500 and a traceback in the log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import anyio

from onemcp.hub.session import Session

log = logging.getLogger("onemcp.hub")
SHUTTING_DOWN = "the hub is shutting down"  # what a request still being answered after the grace hears
SETTLE = 0.25  # seconds each step waits for the answers the one before it caused


class Bound:
    """One request being answered: cancelled at the cut-off. `server`: the upstream it waits on, if any
    (the hub fails that call itself, which says more: that answer is waited for first)."""

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.server: str | None = None

    @property
    def reason(self) -> str:
        return f"[{self.server}] {SHUTTING_DOWN}" if self.server else SHUTTING_DOWN


class Stopping:
    def __init__(self, cut_calls: Callable[[str], int], sessions: Callable[[], Iterable[Session]]) -> None:
        self._cut_calls = cut_calls  # fails the calls waiting on upstreams; how many there were
        self._sessions = sessions
        self._bounds: set[Bound] = set()
        self._replying: set[object] = set()
        self._last: set[anyio.CancelScope] = set()
        self._changed = anyio.Event()
        self.cut = False

    @property
    def exchanges(self) -> int:
        """HTTP exchanges open now."""
        return len(self._last)

    @contextmanager
    def bound(self) -> Iterator[Bound]:
        """Around answering one request; after it, `bound.scope.cancelled_caught` says it was cut off."""
        bound = Bound()
        with bound.scope:
            if self.cut:
                bound.scope.cancel()
            self._bounds.add(bound)
            try:
                yield bound
            finally:
                self._bounds.discard(bound)
                self._changed.set()

    @contextmanager
    def replying(self) -> Iterator[None]:
        """Around answering a request whose reply goes out on a stream (/messages): the streams end after it."""
        token = object()
        self._replying.add(token)
        try:
            yield
        finally:
            self._replying.discard(token)
            self._changed.set()

    @contextmanager
    def last(self) -> Iterator[anyio.CancelScope]:
        """Around one HTTP exchange: cancelled once everything else had its turn."""
        with anyio.CancelScope() as scope:
            self._last.add(scope)
            try:
                yield scope
            finally:
                self._last.discard(scope)
                self._changed.set()

    async def cut_off(self) -> int:
        """End what is still being answered, in order (see the module); how many requests were cut."""
        self.cut = True
        cut = self._cut_calls(SHUTTING_DOWN)
        for bound in list(self._bounds):
            if bound.server is None:
                cut += 1
                bound.scope.cancel()
        await self._settled(self._bounds)
        for bound in list(self._bounds):  # on an upstream, but not waiting on its reply (a client's answer)
            bound.scope.cancel()
        await self._settled(self._bounds, self._replying)
        for session in self._sessions():
            session.end_streams()
        await self._settled(self._last)
        for scope in list(self._last):
            scope.cancel()
        return cut

    async def _settled(self, *alive: set[Bound] | set[object] | set[anyio.CancelScope]) -> None:
        with anyio.move_on_after(SETTLE):
            while any(alive):
                self._changed = anyio.Event()
                await self._changed.wait()
