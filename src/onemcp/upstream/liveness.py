"""Is an upstream alive? The evidence the circuit breaker weighs before it counts a failed call,
and the keepalive that recycles an idle upstream which stopped answering (`pingInterval`).

Owns the question and its one ping: the upstream answered something since a given moment, or
it answers a ping (`server/discover` for a 2026-07-28 upstream) within min(timeout, 5 s) now.
Callers asking while a ping is in flight share it. Does not own the breaker (`pool.judge`
decides what the answer means) or the connection it pings.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from onemcp.config.model import ServerConfig
from onemcp.protocol.errors import UpstreamError, UpstreamReplied, UpstreamTimeout
from onemcp.protocol.jsonrpc import Message
from onemcp.protocol.names import shown_as
from onemcp.upstream.call import Call, Requester

log = logging.getLogger("onemcp.upstream")
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


class Idle(Protocol):
    """What the keepalive needs of its connection."""

    name: str
    config: ServerConfig
    era: str
    last_heard: float  # monotonic time the upstream last sent anything
    transport: Any  # what `abort` recycles

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]: ...


async def keepalive(conn: Idle, interval: float) -> None:
    """Ping an idle upstream (server/discover for a modern one) at most once per `interval`; recycle
    it when it is silent, or when the ping cannot be carried (the server cannot be reached)."""
    pinged = float("-inf")  # when the last ping went: the next waits an interval, whatever it got
    while True:
        await anyio.sleep(max(0.0, interval - (time.monotonic() - max(conn.last_heard, pinged))))
        if time.monotonic() - conn.last_heard < interval:
            continue
        method = "server/discover" if conn.era == "modern" else "ping"
        pinged = time.monotonic()
        try:
            await conn.request(method, {})
        except UpstreamTimeout:
            log.warning("upstream %s did not answer %s: recycling it", conn.name, method)
            conn.transport.abort(f"stopped answering {method} within {conn.config.timeout:g}s")
            return
        except UpstreamReplied:
            pass  # an error is an answer: it is alive
        except UpstreamError as exc:  # not even sent: the connection is dead (a server that cannot be reached)
            reason = str(exc).removeprefix(f"[{shown_as(conn.name)}] ")
            log.warning("upstream %s: %s could not be sent (%s): recycling it", conn.name, method, reason)
            conn.transport.abort(reason)
            return
