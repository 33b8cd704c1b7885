"""How soon one server's list may be read again after its `list_changed`.

Owns: the pause between two readings of one list of one server. The first change after a quiet
spell is read at once; a server that keeps changing that list (a change announced within twice the
pause of the last reading's end) is read again only once the pause has passed, the pause doubling
from `FIRST_PAUSE` up to `MOST_PAUSE` while it goes on, and reset once it is quiet. Changes announced
during the pause are not lost: they make the one reading after it (the connection's `Relist`); one
announced while a client's call waits for the list is read without a pause (the connection's choice).
Each paused reading is counted as the limit `list_refreshes` (warned at most once per 10 s). Does not
own when a list is read or what is done with it (the connection).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio

from onemcp.observability.limits import hit

FIRST_PAUSE = 0.5  # seconds, the first pause of a server that changes a list again soon after it was read
MOST_PAUSE = 30.0  # the longest


class Pace:
    """The pauses of one server's lists, by kind (`tools`, `prompts`, ...)."""

    def __init__(self, server: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.server = server
        self.clock = clock  # tests drive both
        self.sleep: Callable[[float], Awaitable[None]] = anyio.sleep
        self._pause: dict[str, float] = {}  # the current pause of each kind (0: none, it was quiet)
        self._read: dict[str, float] = {}  # when the last reading of each kind ended

    def delay(self, kind: str) -> float:
        """Seconds to wait before reading `kind` again now (0: at once). A reading asked within twice
        the current pause (at least `FIRST_PAUSE`) of the last one's end doubles the pause."""
        now, read, pause = self.clock(), self._read.get(kind), self._pause.get(kind, 0.0)
        if read is None or now - read >= max(2 * pause, FIRST_PAUSE):
            self._pause[kind] = 0.0  # quiet: at once
            return 0.0
        pause = self._pause[kind] = min(MOST_PAUSE, max(FIRST_PAUSE, 2 * pause))
        wait = read + pause - now
        if wait <= 0:
            return 0.0
        hit(
            "list_refreshes",
            "upstream %s keeps changing its %s list: it is read again at most every %gs while it does",
            self.server,
            kind,
            pause,
        )
        return wait

    def done(self, kind: str) -> None:
        """A reading of `kind` ended (whether or not it succeeded)."""
        self._read[kind] = self.clock()
