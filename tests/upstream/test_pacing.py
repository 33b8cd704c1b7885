"""A server whose list keeps changing is read again after a pause that grows while it goes on.

Before: every `list_changed` that came after the last reading made a new one at once. A stdio
server that renamed its 5,000 tools on each reading and kept announcing it held the hub at ~100%
CPU (each reading: pins, the catalog, the search index): other servers' calls took 0.2-2 s
instead of ~3 ms, and `/health` took 7 s to over 30 s.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from fixtures.launch import fixture_command
from onemcp.observability.limits import HITS
from onemcp.upstream import pacing
from onemcp.upstream.connection import UpstreamConnection
from onemcp.upstream.pacing import Pace
from support.clock import Clock
from support.hub import raw_session, running_hub

pytestmark = pytest.mark.anyio
DEADLINE = 20.0
CHANGED = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_the_pause_doubles_while_the_list_keeps_changing_and_ends_once_it_is_quiet() -> None:
    clock = Clock()
    pace = Pace("evil", clock)
    before = HITS.counts["list_refreshes"]
    assert pace.delay("tools") == 0  # the first change: at once
    waits = []
    for _ in range(10):  # each change announced as soon as the last reading ended
        pace.done("tools")
        waits.append(pace.delay("tools"))
        clock.now += waits[-1]
    assert waits == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert HITS.counts["list_refreshes"] == before + 10  # an operator sees it
    pace.done("tools")
    clock.now += 59  # within twice the pause: still the same server changing
    assert pace.delay("tools") == 0  # the pause has passed: read now ...
    pace.done("tools")
    assert pace.delay("tools") == 30  # ... and the pause stays
    pace.done("tools")
    clock.now += 60  # quiet for twice the pause: the next change is read at once, and paused from the start
    assert pace.delay("tools") == 0
    pace.done("tools")
    assert pace.delay("tools") == 0.5
    assert pace.delay("prompts") == 0  # each list has its own pause


def test_a_server_that_changes_now_and_then_is_never_paused() -> None:
    clock = Clock()
    pace = Pace("fine", clock)
    for _ in range(5):
        assert pace.delay("tools") == 0
        pace.done("tools")
        clock.now += pacing.FIRST_PAUSE  # a change a second after the last, on and on
    assert pace.delay("tools") == 0


async def test_a_connection_reads_a_list_that_keeps_changing_after_each_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through a real connection: the pauses are asked of `pace.sleep` (driven here: it moves the
    clock), the changes announced during a pause make one reading after it, none is lost."""
    readings: list[float] = []
    pauses: list[float] = []
    clock = Clock()
    real = UpstreamConnection.refresh

    async def counted(self: UpstreamConnection, kind: str) -> None:
        await real(self, kind)
        readings.append(clock.now)

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        assert conn is not None
        for _ in range(3):  # announced again and again during the pause: one reading after it
            conn._on_notification(CHANGED, CHANGED["method"], None)
        clock.now += seconds

    cmd = fixture_command()
    config = {"mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub:
            conn = hub.app.hub.pool.get("fx")
            assert conn is not None
            conn.pace.clock, conn.pace.sleep = clock, sleep
            monkeypatch.setattr(UpstreamConnection, "refresh", counted)
            for n in range(1, 5):  # each change said once the last reading ended
                conn._on_notification(CHANGED, CHANGED["method"], None)
                while len(readings) < n or "tools" in conn._stale:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                if n > 1:  # a pause's announcements were read once, after it
                    assert len(readings) == n
            clock.now += 100  # quiet: the next change is read at once
            conn._on_notification(CHANGED, CHANGED["method"], None)
            while len(readings) < 5 or "tools" in conn._stale:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
    assert pauses == [0.5, 1, 2]
    assert readings == [1000, 1000.5, 1001.5, 1003.5, 1103.5]


async def test_a_call_in_flight_ends_the_pause_of_a_list_that_keeps_changing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A change announced while a client's call runs is read at once, even when the list is already
    waiting out a pause (up to 30 s): before, the pause went on and the call's answer waited the whole
    `RELIST_WAIT` (5 s), then went out with the list still stale."""
    from onemcp.hub.forward import Forwarder
    from onemcp.upstream import call as call_module

    monkeypatch.setattr(call_module, "RELIST_WAIT", 3.0)  # bounds the red run; never reached with the fix
    readings: list[float] = []
    paused = anyio.Event()
    answered_after: list[int] = []
    clock = Clock()
    real, real_for_client = UpstreamConnection.refresh, Forwarder.for_client

    async def counted(self: UpstreamConnection, kind: str) -> None:
        await real(self, kind)
        readings.append(clock.now)

    async def sleep(seconds: float) -> None:
        paused.set()
        await anyio.Event().wait()  # a pause that would outlast the test: only a call ends it

    def for_client(self: Forwarder, *args: Any, **kwargs: Any) -> Any:
        answered_after.append(len(readings))
        return real_for_client(self, *args, **kwargs)

    cmd = fixture_command()
    config = {"mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}}, "onemcp": {"prefixMode": "always"}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            conn = hub.app.hub.pool.get("fx")
            assert conn is not None
            conn.pace.clock, conn.pace.sleep = clock, sleep
            monkeypatch.setattr(UpstreamConnection, "refresh", counted)
            monkeypatch.setattr(Forwarder, "for_client", for_client)
            headers = await raw_session(http, hub.url)
            conn._on_notification(CHANGED, CHANGED["method"], None)  # read at once
            while not readings or "tools" in conn._stale:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            conn._on_notification(CHANGED, CHANGED["method"], None)  # again at once: paused
            await paused.wait()
            call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
            call["params"] = {"name": "fx__changed", "arguments": {"count": 1}}
            assert "result" in (await http.post(hub.url, json=call, headers=headers)).json()
    assert answered_after == [2]  # the paused reading was made at once, and the answer waited for it
