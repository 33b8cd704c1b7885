"""Server->client requests a client leaves unanswered are capped per session and per upstream connection.

An upstream flooding sampling requests at a client that declared sampling and never answers gets
the excess refused at once; the hub holds at most the limit, keeps serving everyone else, and takes
new requests again once the client has answered (issue 20, finding 2).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext

from fixtures.launch import fixture_command
from support.hub import RunningHub, running_hub

pytestmark = pytest.mark.anyio
DEADLINE = 20.0
FLOOD = 2000


def stdio(**extra: Any) -> dict[str, Any]:
    cmd = fixture_command("--flood-tool")
    return {"command": cmd[0], "args": cmd[1:], "timeout": 10, **extra}


def config(per_connection: int, per_session: int) -> dict[str, Any]:
    limits = {"maxPendingClientRequests": per_connection, "maxPendingClientRequestsPerSession": per_session}
    return {"mcpServers": {"one": stdio(isolation="shared"), "two": stdio()}, "onemcp": {"limits": limits}}


class SilentClient:
    """A sampling callback that holds every request until released (a client that does not answer)."""

    def __init__(self) -> None:
        self.asked = 0
        self.release = anyio.Event()

    async def __call__(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.asked += 1
        await self.release.wait()
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="hi"), model="m")


async def flood(c: Client, keep: int) -> dict[str, Any]:
    result = await c.call_tool("one__flood", {"count": FLOOD, "keep": keep, "within": 3})
    item = result.content[0]
    assert isinstance(item, types.TextContent) and not result.is_error, result
    seen: dict[str, Any] = json.loads(item.text)
    return seen


async def still_served(hub: RunningHub) -> None:
    """Another session's calls, to the flooding server and to another, are answered."""
    async with Client(hub.url, mode="legacy", cache=None) as other:
        for tool in ("one__echo", "two__echo"):
            result = await other.call_tool(tool, {"message": "still here"})
            assert not result.is_error and result.content[0] == types.TextContent(type="text", text="still here")


async def test_a_silent_client_holds_at_most_its_session_limit() -> None:
    silent = SilentClient()
    with anyio.fail_after(DEADLINE):
        async with running_hub(config(per_connection=16, per_session=8)) as hub:
            async with Client(hub.url, mode="legacy", cache=None, sampling_callback=silent) as c:
                seen = await flood(c, keep=8)
                assert seen["waiting"] == 8 and seen["refused"] == FLOOD - 8  # the excess refused at once
                assert all("too many requests to" in m and "are waiting (limit" in m for m in seen["messages"])
                assert "onemcp: too many requests to this client are waiting (limit 8 per session)" in seen["messages"]
                session = next(iter(hub.app.hub.sessions))
                conn = hub.app.hub.pool.connections["one"]
                assert len(session.reverse) == 8 and conn.reverse_open == 8
                await still_served(hub)
                # the client answers: what it held is released, and new requests are taken again
                silent.release.set()
                while session.reverse or conn.reverse_open:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                sampled = await c.call_tool("one__sample", {})
                assert not sampled.is_error and '"hi"' in str(sampled.content[0])
            assert silent.asked == 9  # the 8 held, then the one after


async def test_a_silent_client_holds_at_most_the_connection_limit() -> None:
    silent = SilentClient()
    with anyio.fail_after(DEADLINE):
        async with running_hub(config(per_connection=16, per_session=1000)) as hub:
            async with Client(hub.url, mode="legacy", cache=None, sampling_callback=silent) as c:
                seen = await flood(c, keep=16)
                assert seen["waiting"] == 16 and seen["refused"] == FLOOD - 16
                assert seen["messages"] == [
                    "onemcp: too many requests to clients are waiting (limit 16 for server 'one')"
                ]
                assert hub.app.hub.pool.connections["one"].reverse_open == 16
                await still_served(hub)
                silent.release.set()
            assert silent.asked == 16
