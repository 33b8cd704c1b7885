"""`serve --transport stdio` while an upstream never finishes starting: the start-up wait is one bound in
all, and a stop (or the end of input) during it ends it at once.

The hub runs in process over fixture upstreams; one never answers `initialize` (and may try for a minute),
and `firstListWait` is a minute too, so a request that waited for either would outlast the test's deadline.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectSendStream

from onemcp.app import OneMcpApp
from onemcp.auth.principal import ANONYMOUS
from onemcp.config.model import HubConfig
from onemcp.downstream.stdio import StdioServer
from support.inprocess import FixtureUpstreams, fixture, lifespan

pytestmark = pytest.mark.anyio
DEADLINE = 20.0  # well under the minute a wait for the hung upstream (or firstListWait) would take
LEGACY = "2025-11-25"
HUNG = {
    "mcpServers": {"quick": fixture(), "hung": fixture("--hang-on-start", startupTimeout=60)},
    "onemcp": {"firstListWait": 60},
}


@dataclass
class Line:
    """The client's end of the stdio line: what it sends, what the hub wrote back."""

    to_hub: MemoryObjectSendStream[bytes]
    replies: dict[Any, dict[str, Any]] = field(default_factory=dict)
    got: anyio.Event = field(default_factory=anyio.Event)

    async def send(self, rid: int | None, method: str, params: dict[str, Any] | None = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params or {}}
        if rid is not None:
            msg["id"] = rid
        await self.to_hub.send(json.dumps(msg).encode() + b"\n")  # returns once the hub has read it

    async def reply(self, rid: int) -> dict[str, Any]:
        while rid not in self.replies:
            self.got = anyio.Event()
            await self.got.wait()
        return self.replies[rid]


@asynccontextmanager
async def stdio_on_hung_hub(ready_wait: float) -> AsyncIterator[tuple[StdioServer, Line, anyio.Event]]:
    """A stdio server on a hub still waiting for `hung`; the event is set when the server has ended."""
    app = OneMcpApp(HubConfig.model_validate(HUNG), transports=FixtureUpstreams())
    to_hub, from_client = anyio.create_memory_object_stream[bytes](0)  # a send returns once it was read
    line = Line(to_hub)

    async def read_line() -> bytes:
        try:
            return await from_client.receive()
        except anyio.EndOfStream:
            return b""

    async def write(data: bytes) -> None:
        msg = json.loads(data)
        line.replies[msg.get("id")] = msg
        line.got.set()

    ended = anyio.Event()
    with anyio.fail_after(DEADLINE):
        async with lifespan(app), to_hub, from_client, anyio.create_task_group() as tg:
            assert not app.hub.pool.tried.is_set()
            server = StdioServer(app.hub, ANONYMOUS, read_line, write, ready_wait=ready_wait)

            async def serve() -> None:
                await server.serve()
                ended.set()

            tg.start_soon(serve)
            yield server, line, ended
            to_hub.close()


async def test_after_the_start_up_wait_no_request_waits_again_for_the_same_upstream() -> None:
    """cli hunt F1: initialize then each list waited `firstListWait` again, after the stdio wait (16 s, then 5 s
    per list); the wait is the stdio one alone (here none), and what is there is answered."""
    async with stdio_on_hung_hub(ready_wait=0) as (server, line, _ended):
        quick = server.hub.pool.get("quick")
        assert quick is not None
        await quick.settled.wait()  # so that its tools are there to list
        await line.send(1, "initialize", {"protocolVersion": LEGACY, "capabilities": {}})
        assert (await line.reply(1))["result"]["serverInfo"]["name"] == "onemcp"
        await line.send(None, "notifications/initialized")
        for rid, method in enumerate(("tools/list", "prompts/list", "resources/list"), 2):
            await line.send(rid, method)
            assert "result" in await line.reply(rid)
        names = {t["name"] for t in line.replies[2]["result"]["tools"]}
        assert "quick__echo" in names and not any(n.startswith("hung__") for n in names)


async def test_a_stop_during_the_start_up_wait_answers_what_was_sent_and_ends() -> None:
    """cli hunt F1: SIGTERM during the wait left initialize and tools/list (already sent) unanswered, and the
    process sat out the rest of the wait; now the wait ends, and each is answered 'the hub is shutting down'."""
    async with stdio_on_hung_hub(ready_wait=60) as (server, line, ended):
        await line.send(1, "initialize", {"protocolVersion": LEGACY, "capabilities": {}})
        await line.send(2, "tools/list")
        await line.send(3, "ping")
        assert not line.replies  # still waiting for the start-up
        server.stop()
        await ended.wait()
    error = {"code": -32000, "message": "the hub is shutting down"}
    assert line.replies[1] == {"jsonrpc": "2.0", "id": 1, "error": error}
    assert line.replies[2] == {"jsonrpc": "2.0", "id": 2, "error": error}
    assert line.replies[3] == {"jsonrpc": "2.0", "id": 3, "result": {}}  # nothing to wait for: answered


async def test_the_end_of_input_with_nothing_sent_ends_the_start_up_wait() -> None:
    """cli hunt F1: a client that starts the hub and closes stdin at once waited the whole start-up wait."""
    async with stdio_on_hung_hub(ready_wait=60) as (_, line, ended):
        line.to_hub.close()
        await ended.wait()
    assert not line.replies
