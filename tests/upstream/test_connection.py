"""The JSON-RPC peer alone (`upstream/connection.py`), over an in-memory server the test scripts.

The hub end to end (ids, progress, crashes, re-initialize) is tested in tests/test_hub_e2e.py; here,
what only the peer can be asked: the hub's own requests (`request()`: tasks/list, subscribe, liveness)
when the task that made one is cancelled from outside.
"""

from __future__ import annotations

from typing import Any

import anyio
import orjson
import pytest
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from onemcp.config.model import ServerConfig
from onemcp.upstream.connection import UpstreamConnection
from onemcp.upstream.transports.memory import MemoryTransport
from support.events import Events

pytestmark = pytest.mark.anyio
DEADLINE = 5.0
CONFIG = ServerConfig.model_validate({"command": "in-memory", "timeout": 60, "protocol": "legacy"})
STARTED = {
    "initialize": {
        "protocolVersion": "2025-11-25",
        "capabilities": {"resources": {"subscribe": True}},
        "serverInfo": {"name": "silent"},
    },
    "resources/list": {"resources": []},
    "resources/templates/list": {"resourceTemplates": []},
}


class SilentServer:
    """Answers the handshake and the lists, never anything else; keeps the cancellations it is sent."""

    def __init__(self) -> None:
        self.asked = anyio.Event()  # a request it will not answer arrived
        self.cancelled: list[dict[str, Any]] = []
        self.told = anyio.Event()  # a notifications/cancelled arrived
        self.unanswered: list[int] = []

    async def __call__(self, receive: ObjectReceiveStream[bytes], send: ObjectSendStream[bytes]) -> None:
        async for raw in receive:
            msg = orjson.loads(raw)
            method = msg.get("method")
            if method == "notifications/cancelled":
                self.cancelled.append(msg["params"])
                self.told.set()
            elif "id" in msg and method in STARTED:
                await send.send(orjson.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": STARTED[method]}))
            elif "id" in msg:
                self.unanswered.append(msg["id"])
                self.asked.set()


async def test_a_hub_request_whose_caller_is_cancelled_is_forgotten_and_cancelled_upstream() -> None:
    """A `resources/subscribe` (any hub-own request) whose task is cancelled from outside: its entry
    leaves the pending table at once, and the server is told, under the id it was sent (it stayed
    there until the server answered, and the server worked on for nobody)."""
    server = SilentServer()
    conn = UpstreamConnection("mem", CONFIG, MemoryTransport("mem", CONFIG, server), Events())
    with anyio.fail_after(DEADLINE):  # far under the server's 60 s timeout
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.run)
            await conn.settled.wait()
            assert conn.state == "ready", conn.last_error
            async with anyio.create_task_group() as caller:
                caller.start_soon(conn.subscribe_resource, "file:///x", {})
                await server.asked.wait()
                assert len(conn._pending) == 1
                caller.cancel_scope.cancel()
            assert conn._pending == {}
            await server.told.wait()
            assert server.cancelled == [{"requestId": server.unanswered[0], "reason": "cancelled"}]
            tg.cancel_scope.cancel()


class ProgressServer(SilentServer):
    """After the handshake, sends progress notifications whose token no JSON-RPC id can be (a list, an
    object), then a log message: the connection must still be serving when that arrives."""

    async def __call__(self, receive: ObjectReceiveStream[bytes], send: ObjectSendStream[bytes]) -> None:
        async for raw in receive:
            msg = orjson.loads(raw)
            method = msg.get("method")
            if "id" in msg and method in STARTED:
                await send.send(orjson.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": STARTED[method]}))
            elif method == "notifications/initialized":
                for token in ([1], {"a": 1}):
                    params = {"progressToken": token, "progress": 1}
                    await send.send(
                        orjson.dumps({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})
                    )
                log = {"level": "info", "data": "after"}
                await send.send(orjson.dumps({"jsonrpc": "2.0", "method": "notifications/message", "params": log}))


async def test_a_progress_token_no_id_can_be_is_ignored_not_the_connections_end() -> None:
    """A server's progress notification with a list or an object as its token (unhashable: it was looked
    up in the table of calls as it came, a TypeError that ended the connection as an internal error)."""
    told: list[str] = []

    class Told(Events):
        def on_notification(self, conn: UpstreamConnection, msg: Any, call: Any) -> None:
            told.append(msg["method"])
            if msg["method"] == "notifications/message":
                heard.set()

    heard = anyio.Event()
    conn = UpstreamConnection("mem", CONFIG, MemoryTransport("mem", CONFIG, ProgressServer()), Told())
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.run)
            await heard.wait()
            await conn.settled.wait()  # the lists read after the handshake
            assert conn.state == "ready", conn.last_error
            tg.cancel_scope.cancel()
    assert told[-1] == "notifications/message"
