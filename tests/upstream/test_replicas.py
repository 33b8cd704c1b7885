"""A server with replica URLs: calls balanced, sessions sticky, one replica down keeps serving."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from fixtures.launch import running_http_fixture
from support.hub import running_hub

pytestmark = pytest.mark.anyio


async def test_replicas_balance_stick_and_survive_one_down() -> None:
    with anyio.fail_after(60):
        async with running_http_fixture() as first, running_http_fixture() as second:
            config = {"mcpServers": {"r": {"url": first, "replicas": [second], "timeout": 5}}}
            async with running_hub(config) as hub:
                slot = hub.app.hub.pool.slots["r"]
                assert [m.conn.state for m in slot.members] == ["ready", "ready"]
                async with (
                    Client(hub.url, mode="legacy", cache=None) as a,
                    Client(hub.url, mode="legacy", cache=None) as b,
                ):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(a.call_tool, "sleep", {"seconds": 0.5})
                        tg.start_soon(b.call_tool, "sleep", {"seconds": 0.5})
                        while sum(m.conn.in_flight for m in slot.members) < 2:
                            await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                        # two sessions, two replicas: one call on each
                        assert [m.conn.in_flight for m in slot.members] == [1, 1]
                    pins = [s.replica_pins["r"] for s in hub.app.hub.sessions]
                    assert sorted(pins) == [0, 1]
                    # a session sticks to its replica
                    for _ in range(3):
                        await a.call_tool("echo", {"message": "x"})
                    assert sorted(s.replica_pins["r"] for s in hub.app.hub.sessions) == [0, 1]
                    # take one replica down: its session moves to the other, nothing fails
                    down = slot.members[0]
                    down.conn.transport.abort("test: replica down")
                    while down.conn.state == "ready":
                        await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                    for _ in range(4):
                        assert not (await a.call_tool("echo", {"message": "a"})).is_error
                        assert not (await b.call_tool("echo", {"message": "b"})).is_error
                    assert "echo" in {t.name for t in (await a.list_tools()).tools}  # the catalog stayed
