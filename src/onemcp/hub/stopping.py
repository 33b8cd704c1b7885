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
from typing import Any

import anyio

from onemcp.hub.session import Session
from onemcp.protocol.errors import UPSTREAM_UNAVAILABLE, HubError

log = logging.getLogger("onemcp.hub")
SHUTTING_DOWN = "the hub is shutting down"  # what a request still being answered after the grace hears
SETTLE = 0.25  # seconds each step waits for the answers the one before it caused


class ShuttingDown(HubError):
    """A request the stopping hub will not answer (-32000, `SHUTTING_DOWN`)."""

    code = UPSTREAM_UNAVAILABLE


class Bound:
    """One request being answered (a context manager): cancelled at the cut-off. `server`: the upstream it
    waits on, if any (the hub fails that call itself, which says more: that answer is waited for first).
    A class, not a generator: it is on every request's path."""

    __slots__ = ("_stopping", "scope", "server")

    def __init__(self, stopping: Stopping) -> None:
        self._stopping = stopping
        self.scope = anyio.CancelScope()
        self.server: str | None = None

    @property
    def reason(self) -> str:
        return f"[{self.server}] {SHUTTING_DOWN}" if self.server else SHUTTING_DOWN

    def __enter__(self) -> Bound:
        self.scope.__enter__()
        if self._stopping.cut:
            self.scope.cancel()
        self._stopping._bounds.add(self)
        return self

    def __exit__(self, *exc: Any) -> bool:
        self._stopping._bounds.discard(self)
        self._stopping.ended()
        return self.scope.__exit__(*exc)


class Open:
    """One HTTP exchange (a context manager giving its cancel scope): cancelled once everything else had
    its turn."""

    __slots__ = ("_stopping", "scope")

    def __init__(self, stopping: Stopping) -> None:
        self._stopping = stopping
        self.scope = anyio.CancelScope()

    def __enter__(self) -> anyio.CancelScope:
        self.scope.__enter__()
        self._stopping._last.add(self.scope)
        return self.scope

    def __exit__(self, *exc: Any) -> bool:
        self._stopping._last.discard(self.scope)
        self._stopping.ended()
        return self.scope.__exit__(*exc)


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

    def bound(self) -> Bound:
        """Around answering one request; after it, `bound.scope.cancelled_caught` says it was cut off."""
        return Bound(self)

    def ended(self) -> None:
        """Something being answered ended: the cut-off, if it is under way, may go on (no-op before it)."""
        if self.cut:
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
            self.ended()

    def last(self) -> Open:
        """Around one HTTP exchange: cancelled once everything else had its turn."""
        return Open(self)

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
