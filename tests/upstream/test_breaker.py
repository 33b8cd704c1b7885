"""The circuit breaker: opens after consecutive failures, fails fast, one probe closes it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command
from onemcp.upstream.breaker import Breaker, State
from support.hub import running_hub


def state_of(breaker: Breaker) -> State:
    """The breaker's state read afresh (mypy would keep `breaker.state` narrowed across the calls that change it)."""
    return breaker.state


def test_breaker_states() -> None:
    breaker = Breaker(threshold=2, cooldown=1000)
    assert breaker.allow() and state_of(breaker) == "closed"
    breaker.record(False)
    assert state_of(breaker) == "closed"
    breaker.record(True)  # a success resets the count
    breaker.record(False)
    assert state_of(breaker) == "closed"
    breaker.record(False)
    assert state_of(breaker) == "open" and not breaker.allow()
    assert breaker.opened_at is not None
    breaker.opened_at -= 1000  # the cooldown is over
    assert state_of(breaker) == "half-open"
    assert breaker.allow() and not breaker.allow()  # exactly one probe at a time
    breaker.record(False)  # the probe failed: open again
    assert state_of(breaker) == "open" and not breaker.allow()
    breaker.opened_at -= 1000
    assert breaker.allow()
    breaker.record(True)
    assert state_of(breaker) == "closed" and breaker.failures == 0


@pytest.mark.anyio
async def test_open_breaker_fails_fast_and_probe_closes_it() -> None:
    cmd = fixture_command()
    flaky: dict[str, Any] = {
        "command": cmd[0], "args": cmd[1:], "timeout": 0.3, "breakerThreshold": 2, "breakerCooldown": 0.8,
    }  # fmt: skip
    with anyio.fail_after(30):
        async with running_hub({"mcpServers": {"flaky": flaky, "other": {"command": cmd[0], "args": cmd[1:]}}}) as hub:
            async with Client(hub.url, mode="legacy", cache=None) as c:
                # the whole server hangs (answers nothing, not even ping) for a while, then recovers
                for tool, args in (("flaky__freeze", {"seconds": 1.5}), ("flaky__echo", {"message": "x"})):
                    with pytest.raises(MCPError) as err:
                        await c.call_tool(tool, args)
                    assert "timed out" in err.value.error.message
                while state_of(hub.app.hub.pool.slots["flaky"].breaker) != "open":  # it pinged the server: no answer
                    await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline
                conn = hub.app.hub.pool.connections["flaky"]
                with pytest.raises(MCPError) as err:
                    await c.call_tool("flaky__echo", {"message": "x"})
                assert "circuit open" in err.value.error.message
                assert conn.in_flight == 0  # failed fast: nothing was sent
                while state_of(hub.app.hub.pool.slots["flaky"].breaker) != "half-open":
                    await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
                ok = await c.call_tool("flaky__echo", {"message": "probe"})
                assert not ok.is_error
                assert state_of(hub.app.hub.pool.slots["flaky"].breaker) == "closed"
