"""The JSON-RPC peer alone (`upstream/connection.py`), over an in-memory server the test scripts.

The hub end to end (ids, progress, crashes, re-initialize) is tested in tests/test_hub_e2e.py; here,
what only the peer can be asked: the hub's own requests (`request()`: tasks/list, subscribe, liveness)
when the task that made one is cancelled from outside, and `initialize`, which is never cancelled
upstream (the spec forbids it) whatever gives up on it: a stdio server's connection stopped during its
handshake (the hub stops, a session that had its own connection ends, an idle instance is reaped), or a
client's request that waits for a Streamable HTTP server's re-initialize (its session expired) and is
cancelled meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from onemcp.config.model import ServerConfig
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream.connection import UpstreamConnection
from onemcp.upstream.transports.http import StreamableHttpTransport
from onemcp.upstream.transports.memory import MemoryTransport
from onemcp.upstream.transports.stdio import StdioTransport
from support.events import Events
from support.raw_server import Connections, listening, read_message

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


# A stdio server that never answers `initialize`: it writes down every line it reads (until its stdin
# ends) and says, with a log notification, that the initialize has come.
HOLDS_INITIALIZE = """
import json, sys
record = open(sys.argv[1], "a")
for line in sys.stdin:
    record.write(line)
    record.flush()
    if json.loads(line).get("method") == "initialize":
        note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "held"}}
        sys.stdout.write(json.dumps(note) + "\\n")
        sys.stdout.flush()
"""


class Held(Events):
    """Set `held` when the server says it holds the initialize."""

    def __init__(self) -> None:
        super().__init__()
        self.held = anyio.Event()

    def on_notification(self, conn: UpstreamConnection, msg: Any, call: Any) -> None:
        self.held.set()


@pytest.mark.parametrize("gives_up", ["stopped", "startupTimeout"])
async def test_a_stdio_servers_initialize_is_never_cancelled(tmp_path: Path, gives_up: str) -> None:
    """The connection is stopped during its handshake (the hub stops; a session with its own connection,
    or an instance's last, ends) or its startup deadline passes: the server is never sent
    notifications/cancelled for `initialize` (the stdio write is synchronous: the courtesy cancel got
    out even as the connection was being cancelled)."""
    record = tmp_path / "read.jsonl"
    # startupTimeout: long enough for the server to have read the initialize before it passes
    startup = 2.0 if gives_up == "startupTimeout" else 60
    config = ServerConfig.model_validate(
        {
            "command": sys.executable,
            "args": ["-c", HOLDS_INITIALIZE, str(record)],
            "protocol": "legacy",
            "timeout": 60,
            "startupTimeout": startup,
        }
    )
    events = Held()
    conn = UpstreamConnection("held", config, StdioTransport("held", config), events)
    with anyio.fail_after(DEADLINE * 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.run)
            if gives_up == "stopped":
                await events.held.wait()
                tg.cancel_scope.cancel()
    # the server read all the hub wrote before its stdin closed (the connection waits for it to exit)
    read = [orjson.loads(line) for line in record.read_text().splitlines()]
    assert read[0]["method"] == "initialize"
    assert [m for m in read if m.get("method") == "notifications/cancelled"] == []


class ExpiringServer:
    """A legacy Streamable HTTP server: its first `initialize` opens session s1, which expires at once:
    anything else sent in it is 404; the next `initialize` (the hub's re-initialize) is never answered,
    its stream held open. Other requests are answered `{}`, other notifications 202, GET 405."""

    def __init__(self) -> None:
        self.initializes: list[int] = []
        self.reinitializing = anyio.Event()  # the second initialize has come
        self.released = anyio.Event()  # the hub closed the second initialize's connection
        self.cancelled: list[Any] = []  # the requestId of each notifications/cancelled read
        self.connections = Connections()
        self.url = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self.connections.held(writer):
            while True:
                _, headers, msg = await read_message(reader)
                method = msg.get("method")
                if not msg:
                    writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                elif method == "notifications/cancelled":
                    self.cancelled.append(msg["params"]["requestId"])
                    writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                elif method == "initialize" and self.initializes:
                    self.initializes.append(msg["id"])
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n: held\n\n")
                    self.reinitializing.set()
                    await reader.read()  # until the hub closes it
                    self.released.set()
                    break
                elif headers.get("mcp-session-id") == "s1" and method != "notifications/initialized":
                    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                elif "id" not in msg:
                    writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                else:
                    result: dict[str, Any] = {}
                    if method == "initialize":
                        self.initializes.append(msg["id"])
                        result = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "x"}}
                    doc = orjson.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result})
                    head_out = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: s1\r\n"
                    writer.write(f"{head_out}content-length: {len(doc)}\r\n\r\n".encode() + doc)
                await writer.drain()


@contextlib.asynccontextmanager
async def expiring() -> AsyncIterator[ExpiringServer]:
    up = ExpiringServer()
    async with listening(up.serve, up.connections.stop, DEADLINE) as up.url:
        yield up


class Spied(StreamableHttpTransport):
    """Keeps every message the hub sends (what went on the wire, in order)."""

    sent: list[Message]

    async def send(self, message: Message, body: bytes, *, retry: bool = True) -> None:
        self.sent.append(message)
        await super().send(message, body, retry=retry)


async def test_a_re_initialize_whose_sender_is_cancelled_is_never_cancelled_upstream() -> None:
    """A notification for a Streamable HTTP server (a client's progress on the server's request, its new
    roots) finds the server's session expired (404): the hub re-initializes within the sending task,
    and that task is cancelled (the client went away) while the server has not answered: the server is
    never sent notifications/cancelled for that `initialize` (the connection lives on, so the courtesy
    cancel would have gone out); its stream is closed, which in the legacy era is no cancellation."""
    async with expiring() as up:
        config = ServerConfig.model_validate({"url": up.url, "protocol": "legacy", "timeout": 60})
        transport = Spied("exp", config)
        transport.sent = []
        conn = UpstreamConnection("exp", config, transport, Events())
        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as tg:
                tg.start_soon(conn.run)
                await conn.settled.wait()
                assert conn.state == "ready", conn.last_error
                async with anyio.create_task_group() as client:
                    client.start_soon(conn.notify, "notifications/roots/list_changed")
                    await up.reinitializing.wait()
                    client.cancel_scope.cancel()
                await anyio.wait_all_tasks_blocked()  # a courtesy cancel would have been sent by now
                told = [m["params"] for m in transport.sent if m.get("method") == "notifications/cancelled"]
                assert told == []
                assert up.initializes[1] == 2 and up.cancelled == []
                # nor is its stream kept open for the cancellation that never comes (it was, until the
                # server answered or the connection ended)
                await up.released.wait()
                tg.cancel_scope.cancel()
