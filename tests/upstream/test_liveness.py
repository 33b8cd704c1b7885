"""The keepalive (liveness.keepalive): an idle upstream is pinged at most once per `pingInterval`.

A ping answered with an error is an answer (alive); one not answered in time, or one that cannot be
sent at all (an HTTP server that cannot be reached), recycles the connection: its supervisor then
reconnects with backoff. Whatever the ping got, the next one waits an interval: it never pings in a
loop (an unreachable HTTP upstream once cost ~10,000 POSTs and log lines a second; hunt-ops F1).
The breaker's use of `Liveness` is tested in test_breaker_liveness.py.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from onemcp.config.model import ServerConfig
from onemcp.protocol.errors import UpstreamError, UpstreamReplied, UpstreamTimeout
from onemcp.upstream.liveness import keepalive

pytestmark = pytest.mark.anyio
HOUR = 3600.0  # the interval: nothing here may wait for it


class Transport:
    def __init__(self) -> None:
        self.aborted: list[str] = []

    def abort(self, reason: str) -> None:
        self.aborted.append(reason)


class Conn:
    """An idle connection whose every ping ends in `outcome`."""

    name = "s"
    era = "legacy"

    def __init__(self, outcome: Exception) -> None:
        self.config = ServerConfig.model_validate({"command": "x", "timeout": 5})
        self.last_heard = float("-inf")  # silent for ever: the first ping goes at once
        self.transport = Transport()
        self.outcome = outcome
        self.pings = 0
        self.pinged = anyio.Event()

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.pings += 1
        self.pinged.set()
        raise self.outcome


async def test_a_ping_that_cannot_be_sent_recycles_the_connection_once() -> None:
    conn = Conn(UpstreamError("s", "POST failed: cannot connect to 127.0.0.1:9: Connection refused"))
    with anyio.fail_after(5):
        await keepalive(conn, HOUR)  # returns: the connection is dead
    assert conn.pings == 1
    assert conn.transport.aborted == ["POST failed: cannot connect to 127.0.0.1:9: Connection refused"]


async def test_a_ping_not_answered_in_time_recycles_the_connection() -> None:
    conn = Conn(UpstreamTimeout("s", "ping timed out after 5s"))
    with anyio.fail_after(5):
        await keepalive(conn, HOUR)
    assert conn.pings == 1 and conn.transport.aborted == ["stopped answering ping within 5s"]


async def test_a_ping_answered_with_an_error_waits_an_interval_before_the_next() -> None:
    conn = Conn(UpstreamReplied("s", "ping", {"code": -32601, "message": "Method not found"}))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(keepalive, conn, HOUR)
            await conn.pinged.wait()
            for _ in range(200):  # a loop without a wait would ping again at each of these
                await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
    assert conn.pings == 1 and conn.transport.aborted == []  # alive: an error is an answer
