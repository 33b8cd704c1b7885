"""A connection's courtesy cancels (`upstream/cancels.py`), against the fixture upstream on each wire.

A cancel the hub sends for a request it gave up on reaches the upstream before anything the connection
sends after it: over HTTP each message is its own POST, and a later one overtook the cancel (sent in the
background), so the upstream counted the cancelled request as still running when the next request came
(a server with a concurrency cap, or one that serialises per client, saw a phantom). The fixture's
`running` tool says how many other requests it is still running: it drops a request the moment its
`notifications/cancelled` is read, so the count is the order in which the two messages arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import anyio
import orjson
import pytest

from fixtures.launch import fixture_command, running_http_fixture
from onemcp.config.model import ServerConfig
from onemcp.upstream import cancels
from onemcp.upstream.connection import UpstreamConnection
from onemcp.upstream.transports.factory import make_transport
from support.events import Events
from support.fake_token import Token
from support.raw_server import Connections, listening, read_message

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


class Renewing:
    """A legacy Streamable HTTP server whose session s1 ends while a call of the hub's is held in it.

    In s1: `initialize` and `tools/call` "held" are answered with an event stream held open (`held` is
    set, `released` once the hub closes it); `tools/call` "gone" and `notifications/roots/list_changed`
    get 404 (the session ended). The next `initialize` (the hub's re-initialize) is held until `renew`
    is set, then answered with session s2, where everything is recorded (`in_s2`) and a request held.
    notifications/cancelled are recorded (`cancelled`) and accepted (refused with 500 if `refuse_cancels`), GET is 405.
    """

    def __init__(self) -> None:
        self.held = anyio.Event()
        self.released = anyio.Event()
        self.reinitializing = anyio.Event()
        self.renew = anyio.Event()
        self.cancelled: list[Any] = []
        self.refuse_cancels = False
        self.in_s2: list[Any] = []
        self.seen: list[str] = []  # the cancels, and what came in s2, in the order they came
        self.held_in_s2 = anyio.Event()
        self.sessions = 0
        self.connections = Connections()
        self.url = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self.connections.held(writer):
            while True:
                _, headers, msg = await read_message(reader)
                method, session = msg.get("method"), headers.get("mcp-session-id")
                name = (msg.get("params") or {}).get("name")
                if not msg:
                    writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                elif method == "notifications/cancelled":
                    self.cancelled.append(msg["params"]["requestId"])
                    self.seen.append(f"cancelled {msg['params']['requestId']}")
                    answer = b"500 Internal Server Error" if self.refuse_cancels else b"202 Accepted"
                    writer.write(b"HTTP/1.1 " + answer + b"\r\ncontent-length: 0\r\n\r\n")
                elif session == "s2" and method == "ping":
                    self.in_s2.append(msg)
                    doc = orjson.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {}})
                    json_head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(doc)}"
                    writer.write(f"{json_head}\r\n\r\n".encode() + doc)
                elif session == "s2" and "id" in msg:
                    self.in_s2.append(msg)
                    self.seen.append(str(method))
                    self.held_in_s2.set()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n: held\n\n")
                    await writer.drain()
                    await reader.read()
                    break
                elif "id" not in msg and (session == "s2" or method == "notifications/initialized"):
                    writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                elif method == "initialize":
                    self.sessions += 1
                    if self.sessions > 1:
                        self.reinitializing.set()
                        await self.renew.wait()
                    result = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "x"}}
                    doc = orjson.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result})
                    head_out = (
                        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: s{self.sessions}\r\n"
                    )
                    writer.write(f"{head_out}content-length: {len(doc)}\r\n\r\n".encode() + doc)
                elif name == "held":
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n: held\n\n")
                    await writer.drain()
                    self.held.set()
                    await reader.read()  # until the hub closes it
                    self.released.set()
                    break
                else:  # s1 has ended
                    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()


@contextlib.asynccontextmanager
async def renewing() -> AsyncIterator[tuple[Renewing, UpstreamConnection]]:
    """The server above, and a connection to it, ready."""
    up = Renewing()
    async with listening(up.serve, up.connections.stop, DEADLINE) as up.url:
        config = ServerConfig.model_validate({"url": up.url, "protocol": "legacy", "timeout": 60, "startupTimeout": 60})
        conn = UpstreamConnection("renew", config, make_transport("renew", config), Events())
        try:
            with anyio.fail_after(DEADLINE):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(conn.run)
                    await conn.settled.wait()
                    assert conn.state == "ready", conn.last_error
                    yield up, conn
                    tg.cancel_scope.cancel()
        finally:
            up.renew.set()


async def test_a_call_abandoned_while_its_session_is_renewed_has_its_reply_stream_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its cancel waits for the new session, and is given up on at CANCEL_SEND_TIMEOUT: the reply stream is
    closed all the same (it stayed open until the server answered or the connection ended)."""
    monkeypatch.setattr(cancels, "CANCEL_SEND_TIMEOUT", 0.2)
    async with renewing() as (up, conn):
        held = await conn.begin(call("held"))
        await up.held.wait()
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.notify, "notifications/roots/list_changed")  # a 404: the hub re-initializes
            await up.reinitializing.wait()
            conn.abandon(held, "timeout")
            await up.released.wait()
            assert up.cancelled == []  # never told: that session is gone
            up.renew.set()


async def test_a_call_abandoned_while_it_waits_for_a_new_session_is_not_sent_in_it() -> None:
    """A call whose session had ended (404) waits for the re-initialize to be sent again; abandoned
    meanwhile, it was sent all the same, never to be cancelled: the server ran it for nobody, and its
    reply stream stayed open until the server answered. Nor is it cancelled: s1 refused it unread, and s2
    never had it (its cancel went in s2 for an id s2 never had, and held that caller's next request)."""
    async with renewing() as (up, conn):
        gone = await conn.begin(call("gone"))
        await up.reinitializing.wait()
        conn.abandon(gone, "cancelled by the client")
        up.renew.set()
        for _ in range(2):
            assert await conn.request("ping") == {}
        assert [msg["method"] for msg in up.in_s2] == ["ping", "ping"]
        assert up.cancelled == []  # (nor cancelled in it: neither session ever had it)


async def test_a_call_sent_again_in_a_new_session_waits_for_the_cancels_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call whose session ended (404) is sent again once the hub has a new one; a cancel started meanwhile
    (it too waits for the new session) must reach the upstream first, as it does for a call sent anew: the
    resend went straight to the transport, ahead of the cancel."""
    monkeypatch.setattr(cancels, "CANCEL_SEND_TIMEOUT", DEADLINE)  # held while the session is renewed
    async with renewing() as (up, conn):
        held = await conn.begin(call("held"))
        await up.held.wait()
        await conn.begin(call("gone"))  # 404: sent again in the new session
        await up.reinitializing.wait()
        conn.abandon(held, "cancelled by the client")
        up.renew.set()
        await up.held_in_s2.wait()
        assert up.seen == [f"cancelled {held.hub_id}", "tools/call"]


async def test_a_call_whose_cancel_the_server_refuses_has_its_reply_stream_closed() -> None:
    """Pinned (it held before): told and refused, the stream is closed all the same."""
    async with renewing() as (up, conn):
        up.refuse_cancels = True
        held = await conn.begin(call("held"))
        await up.held.wait()
        conn.abandon(held, "timeout")
        await up.released.wait()
        assert up.cancelled == [held.hub_id]


async def test_a_send_waits_for_the_cancels_before_it_not_for_those_after() -> None:
    """A send waited until no cancel at all was in flight: one started after it began to wait (another
    caller's, on an upstream slow to accept them) held it too, up to CANCEL_SEND_TIMEOUT, and a steady
    flow of cancels held every request so."""
    gates = {1: anyio.Event(), 2: anyio.Event()}
    forgotten: list[int] = []

    async def send(note: dict[str, Any]) -> None:  # carried when its gate opens (a slow POST)
        await gates[note["params"]["requestId"]].wait()

    box = cancels.Cancels(send, forgotten.append)
    passed = anyio.Event()

    async def next_send() -> None:
        await box.carried()
        passed.set()

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            box.start(tg, 1, "timeout")
            tg.start_soon(next_send)
            await anyio.wait_all_tasks_blocked()
            box.start(tg, 2, "cancelled by the client")  # after the send began to wait
            await anyio.wait_all_tasks_blocked()
            gates[1].set()
            await anyio.wait_all_tasks_blocked()
            assert passed.is_set()  # the cancel before it went: it goes, 2 still in flight
            assert box.pending
            gates[2].set()
    assert not box.pending
    assert forgotten == [1, 2]


class Refusing:
    """A legacy Streamable HTTP server that refuses the request "r" once without running it (401, or a 307 to
    /next), then answers it; every other request is answered at once. `arrived`: each request's path and id."""

    def __init__(self, refusal: int) -> None:
        self.refusal = refusal
        self.arrived: list[tuple[str, Any]] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                request, _, msg = await read_message(reader)
                self.arrived.append((request.split()[1], msg["id"]))
                if (msg.get("params") or {}).get("name") == "r" and len(self.arrived) == 1:
                    refused = b"401 Unauthorized\r\nwww-authenticate: Bearer" if self.refusal == 401 else b""
                    moved = b"307 Temporary Redirect\r\nlocation: /next" if self.refusal == 307 else b""
                    writer.write(b"HTTP/1.1 " + (refused or moved) + b"\r\ncontent-length: 0\r\n\r\n")
                else:
                    doc = orjson.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {}})
                    json_head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(doc)}"
                    writer.write(f"{json_head}\r\n\r\n".encode() + doc)
                await writer.drain()
        writer.close()


@pytest.mark.parametrize("refusal", [401, 307])
@pytest.mark.parametrize("abandoned", [False, True])
async def test_a_request_sent_again_waits_for_the_cancels_before_it_and_not_at_all_once_abandoned(
    refusal: int, abandoned: bool
) -> None:
    """Sent again after a new token or to where the server moved, a request went straight out, ahead of a
    cancel in flight (the connection's `before_resend`, here a gate the test opens); and one abandoned while
    it waited for that was sent all the same after a redirect: the server ran it for nobody."""
    up = Refusing(refusal)
    server = await asyncio.start_server(up.serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp"
    config = ServerConfig.model_validate({"url": url, "protocol": "legacy", "timeout": 60})
    transport = make_transport("refusing", config)
    if refusal == 401:
        transport.auth = Token()  # type: ignore[attr-defined]
    replies: dict[Any, anyio.Event] = {1: anyio.Event(), 2: anyio.Event()}
    waiting, gate = anyio.Event(), anyio.Event()

    async def before_resend(message: dict[str, Any]) -> None:
        waiting.set()
        await gate.wait()

    transport.before_resend = before_resend
    try:
        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as tg:
                await transport.open(tg, lambda msg, _: replies[msg["id"]].set(), lambda msg, exc: None)
                message = call("r") | {"id": 1}
                await transport.send(message, orjson.dumps(message))
                await waiting.wait()
                assert up.arrived == [("/mcp", 1)]  # not sent again yet
                if abandoned:
                    assert transport.cancel(1)  # never run: nothing to tell the server
                gate.set()
                if abandoned:
                    await anyio.wait_all_tasks_blocked()
                    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
                    await transport.send(ping, orjson.dumps(ping))
                    await replies[2].wait()
                    assert up.arrived == [("/mcp", 1), ("/mcp" if refusal == 401 else "/next", 2)]
                    assert not replies[1].is_set()
                else:
                    await replies[1].wait()
                    assert up.arrived == [("/mcp", 1), ("/mcp" if refusal == 401 else "/next", 1)]
                await transport.aclose()
                tg.cancel_scope.cancel()
    finally:
        server.close()


class Holding:
    """A legacy Streamable HTTP server that reads the request "x" and holds its answer (no status line yet) until
    `answer` is set, then answers it with `refusal` (401, or a 307 to /next) or, without one, an event stream it
    holds open. Its replies stream (`initialize` gets an event stream): an answer's head comes before the reply.
    `seen`, in order: each request's method (and id), each `notifications/cancelled`'s ("cancelled", id), x's
    answer ("answered", x) and x's connection closed by the hub ("closed", x). `arrived`: x was read."""

    def __init__(self, refusal: int | None = None) -> None:
        self.refusal = refusal
        self.arrived, self.answer, self.closed = anyio.Event(), anyio.Event(), anyio.Event()
        self.seen: list[tuple[Any, ...]] = []
        self.paths: list[str] = []  # of each request with an id, in order
        self.connections = Connections()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self.connections.held(writer):
            while True:
                request, _, msg = await read_message(reader)
                method = msg.get("method")
                if not msg:
                    writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                elif "id" not in msg:
                    if method == "notifications/cancelled":
                        self.seen.append(("cancelled", msg["params"]["requestId"]))
                    writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                elif (msg.get("params") or {}).get("name") == "x" and not self.arrived.is_set():
                    await self._hold(reader, writer, msg["id"])
                    if self.refusal is None:
                        return
                else:
                    self.paths.append(request.split()[1])
                    self.seen.append((method,) if method != "tools/call" else (method, msg["id"]))
                    result = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "h"}}
                    doc = orjson.dumps(
                        {"jsonrpc": "2.0", "id": msg["id"], "result": result if method == "initialize" else {}}
                    )
                    event = b"event: message\ndata: " + doc + b"\n\n"
                    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nmcp-session-id: s1\r\n"
                    writer.write(head + b"content-length: %d\r\n\r\n" % len(event) + event)
                await writer.drain()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rid: Any) -> None:
        self.paths.append("/mcp")
        self.seen.append(("tools/call", rid))
        self.arrived.set()
        async with anyio.create_task_group() as tg:  # held until answered, or until the hub closes it

            async def hung_up() -> None:
                await reader.read()
                self.seen.append(("closed", rid))
                self.closed.set()
                tg.cancel_scope.cancel()

            tg.start_soon(hung_up)
            await self.answer.wait()
            self.seen.append(("answered", rid))
            if self.refusal is None:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n: held\n\n")
                await writer.drain()
                return  # (held open until the hub closes it)
            tg.cancel_scope.cancel()
        refused = b"401 Unauthorized\r\nwww-authenticate: Bearer" if self.refusal == 401 else b""
        moved = b"307 Temporary Redirect\r\nlocation: /next" if self.refusal == 307 else b""
        writer.write(b"HTTP/1.1 " + (refused or moved) + b"\r\ncontent-length: 0\r\n\r\n")


@contextlib.asynccontextmanager
async def holding(refusal: int | None = None) -> AsyncIterator[tuple[Holding, UpstreamConnection]]:
    """The server above, and a connection to it, ready (with the hub's own token, renewed when refused)."""
    up = Holding(refusal)
    async with listening(up.serve, up.connections.stop, DEADLINE) as url:
        config = ServerConfig.model_validate({"url": url, "protocol": "legacy", "timeout": 60, "startupTimeout": 60})
        transport = make_transport("holding", config)
        transport.auth = Token()  # type: ignore[attr-defined]
        conn = UpstreamConnection("holding", config, transport, Events())
        try:
            with anyio.fail_after(DEADLINE):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(conn.run)
                    await conn.settled.wait()
                    assert conn.state == "ready", conn.last_error
                    yield up, conn
                    tg.cancel_scope.cancel()
        finally:
            up.answer.set()


async def test_a_cancel_waits_until_the_server_has_taken_its_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request counts as sent once its POST is written; its cancel went at once on another connection, and could
    reach the server before the request itself did (the server ignores a cancel for an id it does not know, then
    runs the request). Now it waits for the request's POST to be answered (its status line): never here, so it is
    given up on at CANCEL_SEND_TIMEOUT, and the request's connection closed, with nothing sent before."""
    monkeypatch.setattr(cancels, "CANCEL_SEND_TIMEOUT", 0.2)
    async with holding() as (up, conn):
        x = await conn.begin(call("x"))
        await up.arrived.wait()
        conn.abandon(x, "cancelled by the client")
        await up.closed.wait()
        assert up.seen[1:] == [("tools/call", x.hub_id), ("closed", x.hub_id)]


async def test_a_cancel_goes_once_the_server_has_taken_its_request() -> None:
    """The same request, answered (an event stream) after it was abandoned: then its cancel goes, then its
    connection is closed."""
    async with holding() as (up, conn):
        x = await conn.begin(call("x"))
        await up.arrived.wait()
        conn.abandon(x, "cancelled by the client")
        await anyio.wait_all_tasks_blocked()
        up.answer.set()
        await up.closed.wait()
        rid = x.hub_id
        assert up.seen[1:] == [("tools/call", rid), ("answered", rid), ("cancelled", rid), ("closed", rid)]


@pytest.mark.parametrize("refusal", [401, 307])
async def test_a_request_abandoned_before_it_is_refused_is_neither_sent_again_nor_cancelled(refusal: int) -> None:
    """Abandoned while its POST waits, then refused unread (401: a new token; 307: the server moved): it was sent
    again all the same (the server ran it for nobody), and its cancel went for a request the server never had."""
    async with holding(refusal) as (up, conn):
        again: list[Any] = []
        gate = conn.transport.before_resend

        async def before_resend(message: dict[str, Any]) -> None:
            again.append(message.get("id"))
            await gate(message)

        conn.transport.before_resend = before_resend
        x = await conn.begin(call("x"))
        await up.arrived.wait()
        conn.abandon(x, "cancelled by the client")
        up.answer.set()
        assert await conn.request("ping") == {}  # after the cancel, had it gone (and the resend's first step)
        assert again == []
        assert up.seen[1:] == [("tools/call", x.hub_id), ("answered", x.hub_id), ("ping",)]
        assert up.paths[-1] == ("/next" if refusal == 307 else "/mcp")  # the move is followed all the same


class Session:
    """A downstream session, as the connection tells callers apart (`call.Requester`)."""

    def __init__(self, name: str) -> None:
        self.id = name


class Context:
    """A 2026-07-28 request's context (`hub.session.Session(ephemeral=True)`): one per request, so its client is
    known by its principal only."""

    def __init__(self, name: str, principal: str) -> None:
        self.id = name
        self.ephemeral = True
        self.principal = SimpleNamespace(key=principal)


def _legacy_origins() -> tuple[Any, Any, Any]:
    a, b = Session("a"), Session("b")
    return a, b, a


def _modern_origins() -> tuple[Any, Any, Any]:
    return Context("m-1", "key:a"), Context("m-2", "key:b"), Context("m-3", "key:a")


@pytest.mark.parametrize("origins", [_legacy_origins, _modern_origins], ids=["legacy", "2026-07-28"])
async def test_a_cancel_waiting_for_its_request_to_be_taken_holds_only_what_its_own_client_sends_next(
    origins: Callable[[], tuple[Any, Any, Any]],
) -> None:
    """A cancel waits until the server has taken its request (the status line of its POST: a server slow to send
    its headers, a queue before its workers, holds it up to 2 s), and every message the connection sent meanwhile
    waited behind it: another client's call was held up to 2 s by one client's cancel. Now that call goes at
    once; what the cancelling client sends next still goes after its cancel. [2026-07-28] A client of that era
    has no session: each request is a context of its own, so a cancel keyed by the context held nothing that
    client sent next (its next request reached the server before the cancel, which counted the cancelled one as
    still running). Its requests are that principal's; another principal's still go at once."""
    first, other_client, again = origins()
    async with holding() as (up, conn):
        x = await conn.begin(call("x"), origin=first)
        await up.arrived.wait()
        conn.abandon(x, "cancelled by the client")
        other = await conn.begin(call("y"), origin=other_client)
        assert "result" in await other.result()
        assert conn.cancels.pending  # x's cancel still waits: the other client's call did not
        own: list[int] = []
        async with anyio.create_task_group() as tg:

            async def next_call() -> None:
                z = await conn.begin(call("z"), origin=again)
                own.append(z.hub_id)
                await z.result()

            tg.start_soon(next_call)
            await anyio.wait_all_tasks_blocked()
            assert not own  # held until the cancel before it went
            up.answer.set()
        order = [step for step in up.seen[1:] if step[0] != "closed"]
        assert order == [
            ("tools/call", x.hub_id),
            ("tools/call", other.hub_id),
            ("answered", x.hub_id),
            ("cancelled", x.hub_id),
            ("tools/call", own[0]),
        ]
