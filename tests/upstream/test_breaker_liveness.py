"""One client's calls cannot open a shared breaker: a timeout counts only when the upstream is not answering.

Calls an upstream never answers (as an SDK server silently drops a request nested too deeply) time
out for the client that sent them, while the server keeps answering everything else: the breaker
stays closed and every other client is served (issue 20, finding 7). A server that answers nothing,
not even ping, still opens it (tests/upstream/test_breaker.py).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command
from support.hub import running_hub

pytestmark = pytest.mark.anyio


def servers() -> dict[str, Any]:
    cmd = fixture_command()
    shared = {"command": cmd[0], "args": cmd[1:], "timeout": 0.3, "breakerThreshold": 2, "breakerCooldown": 30}
    return {"mcpServers": {"shared": shared, "other": {"command": cmd[0], "args": cmd[1:]}}}


async def test_calls_one_client_makes_time_out_without_opening_the_breaker() -> None:
    with anyio.fail_after(20):
        async with running_hub(servers()) as hub:
            async with Client(hub.url, mode="legacy", cache=None) as attacker:

                async def unanswered() -> None:
                    with pytest.raises(MCPError) as err:
                        await attacker.call_tool("shared__sleep", {"seconds": 60})  # never answered in time
                    assert "timed out" in err.value.error.message

                for _ in range(2):  # together, then again: more than breakerThreshold timeouts
                    async with anyio.create_task_group() as tg:
                        for _ in range(3):
                            tg.start_soon(unanswered)
            pool = hub.app.hub.pool
            while pool.judging:  # each timeout was judged by pinging the upstream, in the background
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            breaker = pool.slots["shared"].breaker
            assert breaker.state == "closed" and breaker.failures == 0
            async with Client(hub.url, mode="legacy", cache=None) as bystander:
                result = await bystander.call_tool("shared__echo", {"message": "served"})
                assert not result.is_error
