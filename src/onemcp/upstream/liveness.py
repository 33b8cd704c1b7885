"""Is an upstream alive? The evidence the circuit breaker weighs before it counts a failed call.

Owns the question and its one ping: the upstream answered something since a given moment, or
it answers a ping (`server/discover` for a 2026-07-28 upstream) within min(timeout, 5 s) now.
Callers asking while a ping is in flight share it. Does not own the breaker (`pool.judge`
decides what the answer means) or the connection it pings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import anyio

from onemcp.config.model import ServerConfig
from onemcp.protocol.errors import UpstreamError
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream.call import Call, Requester

LIVENESS_TIMEOUT = 5.0  # at most (and at most the server's `timeout`): how long a liveness ping may take


class Pingable(Protocol):
    """What the probe needs of its connection."""

    config: ServerConfig
    era: str
    last_answered: float  # monotonic time of the upstream's last response to any request of ours

    async def begin(self, msg: Message, *, origin: Requester | None = None) -> Call: ...
    def abandon(self, call: Call, reason: str) -> None: ...


@dataclass(eq=False, slots=True)
class _Probe:
    """One liveness ping in flight; whoever asks meanwhile waits for its outcome."""

    done: anyio.Event = field(default_factory=anyio.Event)
    alive: bool = False


class Liveness:
    def __init__(self, conn: Pingable) -> None:
        self.conn = conn
        self._probe: _Probe | None = None

    async def responsive(self, since: float) -> bool:
        """Has the upstream shown it is alive since `since` (monotonic)? It answered something since,
        or it answers a ping now within a short deadline (one ping at a time, shared)."""
        conn = self.conn
        if conn.last_answered >= since:
            return True
        probe = self._probe
        if probe is None:
            probe = self._probe = _Probe()
            try:
                probe.alive = await self._ping(min(conn.config.timeout, LIVENESS_TIMEOUT))
            finally:
                self._probe = None
                probe.done.set()
        else:
            await probe.done.wait()
        return probe.alive or conn.last_answered >= since

    async def _ping(self, deadline: float) -> bool:
        """True when the upstream answers a ping within `deadline`; an error answer is an answer too."""
        method = "server/discover" if self.conn.era == "modern" else "ping"
        call: Call | None = None
        with anyio.move_on_after(deadline):
            try:
                call = await self.conn.begin({"jsonrpc": "2.0", "id": 0, "method": method, "params": {}})
            except UpstreamError:
                return False  # it cannot even be sent: not connected
            await call.result()
            return not call.broken
        if call is not None:
            self.conn.abandon(call, "liveness ping timed out")
        return False
