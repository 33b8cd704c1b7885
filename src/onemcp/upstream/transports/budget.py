"""How many messages a second one upstream may make the hub read: past that, the hub stops reading it a while.

Owns: the message budget of one upstream connection, a token bucket of `maxMessagesPerSecond` (as many
in a burst), and the count of its pauses. A message counts as it is delivered: a notification (log,
progress, `resources/updated`, `list_changed`), a request to the hub (sampling, roots, elicitation,
ping), a message the transport ignores (not JSON, nested too deep: `ServerLog`) and, counted by the
connection, a reply to nothing the hub waits for. A reply to one of the hub's own requests does not
count: those are bounded by the hub's own requests (a busy server answers thousands of calls a second),
and a server that floods still gets its replies through, read as reading goes on. Nothing read is
dropped or reordered: once the budget is overdrawn the transport stops reading until the debt is
repaid, and `MIN_PAUSE` more, then reads on (stdio: after the line that overdrew it, the rest of that
read held unparsed; the pipe fills and the child blocks writing. HTTP: after the read that overdrew
it, on the connection that carried it; the socket's window closes). Each pause is counted as the
limit `upstream_messages` (warned at most once per `logInterval`, naming the server) and in `pauses`
(`/health`'s `floodPauses`). Does not own the reading (the transports: `owed` says for how long to stop).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from onemcp.observability.limits import hit
from onemcp.protocol.jsonrpc import Message

Deliver = Callable[[Message, Any], None]
RESUME_SLACK = 0.001  # seconds of debt left when a pause ends that are not worth another one
# added to each pause: what accrues meanwhile is read at once after it, so a server kept at its budget
# costs at most about 10 pauses a second, not one per message
MIN_PAUSE = 0.1


class Budget:
    """The messages one upstream connection may send a second; `per_second` None: no bound."""

    def __init__(self, server: str, per_second: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.server = server
        self.rate = per_second
        self.clock = clock  # tests drive it
        self._tokens = float(per_second or 0)
        self._stamp = clock()
        self.pauses = 0  # how many times its reading stopped
        self.taken = 0  # messages counted (a reader tells by it whether its read overdrew the budget)

    def counted(self, deliver: Deliver) -> Deliver:
        """`deliver`, counting each message that is not a reply (one with a method)."""
        if self.rate is None:
            return deliver

        def counting(msg: Message, related: Any) -> None:
            if "method" in msg:
                self.take()
            deliver(msg, related)

        return counting

    def take(self, n: int = 1) -> None:
        """`n` messages were read (the balance may go below zero: the debt is repaid by not reading)."""
        if self.rate is not None:
            self._refill()
            self._tokens -= n
            self.taken += n

    def _refill(self) -> None:
        assert self.rate is not None
        now = self.clock()
        self._tokens = min(float(self.rate), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def owed(self) -> float:
        """Seconds to stop reading now (0: read on), counted as a pause when not 0. Asked after each read."""
        if self.rate is None or self._tokens >= 0:
            return 0.0
        self._refill()
        wait = -self._tokens / self.rate
        if wait < RESUME_SLACK:
            return 0.0
        wait += MIN_PAUSE
        self.pauses += 1
        hit(
            "upstream_messages",
            "upstream %s sends more than %d messages a second: it is read no faster (paused %.2fs)",
            self.server,
            self.rate,
            wait,
        )
        return wait
