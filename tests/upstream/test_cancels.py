"""A connection's courtesy cancels (`upstream/cancels.py`), against the fixture upstream on each wire.

A cancel the hub sends for a request it gave up on reaches the upstream before anything the connection
sends after it: over HTTP each message is its own POST, and a later one overtook the cancel (sent in the
background), so the upstream counted the cancelled request as still running when the next request came
(a server with a concurrency cap, or one that serialises per client, saw a phantom). The fixture's
`running` tool says how many other requests it is still running: it drops a request the moment its
`notifications/cancelled` is read, so the count is the order in which the two messages arrived.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from fixtures.launch import fixture_command, running_http_fixture
from onemcp.config.model import ServerConfig
from onemcp.upstream.connection import UpstreamConnection
from onemcp.upstream.transports.factory import make_transport
from support.events import Events

pytestmark = pytest.mark.anyio
DEADLINE = 20.0


@contextlib.asynccontextmanager
async def fixture_config(wire: str) -> AsyncIterator[ServerConfig]:
    """The fixture upstream over `wire` (stdio, Streamable HTTP, legacy HTTP+SSE), as a server's config."""
    if wire == "stdio":
        command, *args = fixture_command()
        yield ServerConfig.model_validate({"command": command, "args": args, "timeout": 60})
        return
    async with running_http_fixture("--sse" if wire == "sse" else "--http") as url:
        yield ServerConfig.model_validate({"url": url, "type": wire, "timeout": 60})


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 0, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


async def running(conn: UpstreamConnection) -> int:
    """How many other requests the fixture is running, by the hub's own request."""
    result = await conn.request("tools/call", {"name": "running", "arguments": {}})
    return int(result["structuredContent"]["running"])


@pytest.mark.parametrize("wire", ["stdio", "http", "sse"])
async def test_a_cancel_reaches_the_upstream_before_the_next_request(wire: str) -> None:
    async with fixture_config(wire) as config:
        conn = UpstreamConnection("fx", config, make_transport("fx", config), Events())
        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as tg:
                tg.start_soon(conn.run)
                await conn.settled.wait()
                assert conn.state == "ready", conn.last_error
                for _ in range(3):
                    sleeping = await conn.begin(call("sleep", seconds=60))
                    while await running(conn) != 1:  # the upstream runs it (a POST's order is not its arrival's)
                        pass
                    conn.abandon(sleeping, "cancelled by the client")  # a client's cancel, or a deadline
                    after = await conn.begin(call("running"))  # the client's next request, at once
                    reply = await after.result()
                    assert reply["result"]["structuredContent"] == {"running": 0}, wire
                tg.cancel_scope.cancel()
