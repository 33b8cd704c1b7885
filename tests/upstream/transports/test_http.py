"""The Streamable HTTP upstream transport (http.py) against hand-written hostile servers.

Two things a careless server must not cost the hub:
- an abandoned call (deadline, client cancel) whose reply stream never ends leaves no connection
  behind: the modern era closes it (that is the cancellation), the legacy era tells the server
  with notifications/cancelled and then closes it;
- an exchange that ends without the reply (a redirect, a body that is not JSON, a reply stream
  that ends early) fails its call at once, saying what came, instead of waiting out its deadline.

The upstream is a raw asyncio server on 127.0.0.1 port 0 that counts its open connections and
records, in order, each notifications/cancelled it reads and each call connection the hub closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from onemcp.config.model import ServerConfig
from onemcp.protocol import sse
from onemcp.protocol.errors import LimitReached
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream import era
from onemcp.upstream.connection import UpstreamConnection
from onemcp.upstream.transports.http import StreamableHttpTransport
from onemcp.upstream.transports.sink import EventSink
from support.events import Events
from support.hub import raw_session, running_hub
from support.raw_server import SlowConnect, listening

pytestmark = pytest.mark.anyio
DEADLINE = 10.0  # for anything here to happen; a call's own timeout is 30 s, well past it
CALLS = 12  # abandoned calls in a row: more than the connections the hub keeps idle here
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
TOOLS = ("forever", "redirect", "html", "truncated", "cut", "poll", "poll_forever", "plain")


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def json_response(doc: Any, status: bytes = b"200 OK") -> bytes:
    body = json.dumps(doc).encode()
    head = b"HTTP/1.1 %s\r\ncontent-type: application/json\r\nmcp-session-id: s1\r\ncontent-length: %d\r\n\r\n"
    return head % (status, len(body)) + body


def reply(rid: Any, result: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode()


class Hostile:
    """A Streamable HTTP upstream whose `tools/call` misbehaves as the tool's name says.

    forever: an SSE reply stream of keepalive comments that never ends. redirect: 302.
    html: 200 with an HTML page. truncated: a chunked SSE stream that ends mid-event.
    cut: an SSE stream delimited by the connection, closed mid-event. poll / poll_forever: a
    stream that ends after a primed event id (SSE polling); the resuming GET answers the reply,
    or never ends. plain: a JSON reply.
    """

    def __init__(self, modern: bool = False) -> None:
        self.modern = modern
        self.open: set[int] = set()  # numbers of the connections still open
        self.held: dict[int, Any] = {}  # connection number -> the call id whose stream it carries
        # ("call" | "cancelled" | "closed" | "resumed", request id) and ("idle-closed", connection), in order
        self.seen: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()
        self.writers: set[asyncio.StreamWriter] = set()
        self._count = 0
        self.url = ""

    def _note(self, what: str, rid: Any) -> None:
        self.seen.append((what, rid))
        self.changed.set()

    async def wait_for(self, what: str, rid: Any) -> None:
        """Until (`what`, `rid`) was seen: event-driven, bounded by DEADLINE."""
        with anyio.fail_after(DEADLINE):
            while (what, rid) not in self.seen:
                self.changed.clear()
                await self.changed.wait()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._count += 1
        number = self._count
        self.open.add(number)
        self.writers.add(writer)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                while await self._exchange(number, reader, writer):
                    pass
        finally:
            self.open.discard(number)
            self.writers.discard(writer)
            if number in self.held:
                self._note("closed", self.held.pop(number))
            writer.close()
            self.changed.set()

    async def stop(self) -> None:
        """Close every connection still open and wait until their handlers are done."""
        for writer in list(self.writers):
            writer.close()
        with anyio.fail_after(DEADLINE):
            while self.open:
                self.changed.clear()
                await self.changed.wait()

    async def _exchange(self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection is done with."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:  # the hub closed a keep-alive connection between requests
                self._note("idle-closed", number)
            return False
        lines = head.decode("latin-1").split("\r\n")
        method = lines[0].split(" ")[0]
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if method == "GET":
            return await self._get(number, headers.get("last-event-id"), reader, writer)
        if method != "POST":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            return True
        msg = json.loads(body)
        rid, name = msg.get("id"), msg.get("method")
        if rid is None:
            if name == "notifications/cancelled":
                self._note("cancelled", msg["params"]["requestId"])
            writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
            return True
        if name == "tools/call":
            self._note("call", rid)
            return await self._call(number, rid, msg["params"]["name"], reader, writer)
        writer.write(json_response(json.loads(reply(rid, self._result(name)))))
        return True

    def _result(self, method: str) -> dict[str, Any]:
        caps: dict[str, Any] = {"tools": {}}
        if method == "initialize":
            return {"protocolVersion": "2025-11-25", "capabilities": caps, "serverInfo": {"name": "hostile"}}
        if method == "server/discover" and self.modern:
            return {"supportedVersions": [era.MODERN], "capabilities": caps}
        if method == "tools/list":
            return {"tools": [{"name": n, "inputSchema": {"type": "object"}} for n in TOOLS]}
        return {}

    async def _call(
        self, number: int, rid: Any, tool: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        if tool == "plain":
            writer.write(json_response(json.loads(reply(rid, {"content": [{"type": "text", "text": "ok"}]}))))
            return True
        if tool == "redirect":
            writer.write(b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n")
            return True
        if tool == "html":
            page = b"<html><body>Sign in</body></html>"
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: %d\r\n\r\n" % len(page) + page)
            return True
        partial = b'data: {"jsonrpc":"2.0","id":%d,"res' % rid
        if tool == "truncated":  # the chunked body ends, properly, in the middle of the reply's event
            writer.write(SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunk(partial) + b"0\r\n\r\n")
            return True
        if tool == "cut":  # no length, not chunked: the connection's end is the body's, mid-event
            writer.write(SSE_HEAD + b"\r\n" + partial)
            await writer.drain()
            return False
        if tool in ("poll", "poll_forever"):
            primed = b"id: %s-%d\nretry: 0\ndata: \n\n" % (tool.encode(), rid)
            writer.write(SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunk(primed) + b"0\r\n\r\n")
            return True
        self.held[number] = rid  # forever
        writer.write(SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunk(b": keepalive\n\n"))
        await writer.drain()
        await reader.read()  # until the hub closes it
        return False

    async def _get(
        self, number: int, last_id: str | None, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        if last_id is None:  # no standalone stream here
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            return True
        tool, _, rid = last_id.rpartition("-")
        self._note("resumed", int(rid))
        if tool == "poll":
            event = b"data: " + reply(int(rid), {"content": [{"type": "text", "text": "resumed"}]}) + b"\n\n"
            writer.write(SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunk(event) + b"0\r\n\r\n")
            return True
        self.held[number] = int(rid)
        writer.write(SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunk(b": keepalive\n\n"))
        await writer.drain()
        await reader.read()
        return False


@asynccontextmanager
async def hostile(modern: bool = False) -> AsyncIterator[Hostile]:
    up = Hostile(modern)
    async with listening(up.serve, up.stop, DEADLINE) as up.url:
        yield up


@asynccontextmanager
async def connected(up: Hostile, protocol: str) -> AsyncIterator[UpstreamConnection]:
    """A ready upstream connection to `up` over Streamable HTTP; stopped on the way out."""
    config = ServerConfig.model_validate({"url": up.url, "protocol": protocol, "timeout": 30})
    conn = UpstreamConnection("s", config, StreamableHttpTransport("s", config), Events())
    async with anyio.create_task_group() as tg:
        tg.start_soon(conn.run)
        with anyio.fail_after(DEADLINE):
            await conn.settled.wait()
        assert conn.state == "ready", conn.last_error
        try:
            yield conn
        finally:
            tg.cancel_scope.cancel()


def tool_call(name: str) -> Message:
    return {"jsonrpc": "2.0", "id": 0, "method": "tools/call", "params": {"name": name, "arguments": {}}}


async def test_an_abandoned_legacy_call_is_told_cancelled_then_its_connection_closed() -> None:
    """The legacy era: a call abandoned at its deadline leaves no connection open (it used to
    leave one per call, until the hub ran out of file descriptors)."""
    async with hostile() as up, connected(up, "legacy") as conn:
        ids = []
        for _ in range(CALLS):
            call = await conn.begin(tool_call("forever"))
            await up.wait_for("call", call.hub_id)
            conn.abandon(call, "timeout")  # what a deadline does
            await up.wait_for("closed", call.hub_id)
            ids.append(call.hub_id)
        order = [(what, rid) for what, rid in up.seen if what in ("cancelled", "closed")]
        assert order == [step for rid in ids for step in (("cancelled", rid), ("closed", rid))]
        assert not up.held and len(up.open) <= 3, up.open  # what is left is idle keep-alive connections
        assert (await conn.request("ping")) == {}  # and it still serves
        # no connection was closed under a message that had been given it (the cancellation's own,
        # lent out when the GET stream's 405 ended, was once closed by that GET's clean-up)
        assert not [seen for seen in up.seen if seen[0] == "idle-closed"]


async def test_an_abandoned_modern_call_is_cancelled_by_closing_its_stream() -> None:
    async with hostile(modern=True) as up, connected(up, "modern") as conn:
        for _ in range(3):
            call = await conn.begin(tool_call("forever"))
            await up.wait_for("call", call.hub_id)
            conn.abandon(call, "timeout")
            await up.wait_for("closed", call.hub_id)
        assert (await conn.request("ping")) == {}
        assert not [seen for seen in up.seen if seen[0] == "cancelled"]  # the close was the cancellation
        assert not up.held


async def test_an_abandoned_resumed_legacy_stream_is_closed_and_not_resumed_again() -> None:
    async with hostile() as up, connected(up, "legacy") as conn:
        call = await conn.begin(tool_call("poll_forever"))
        await up.wait_for("resumed", call.hub_id)
        with anyio.fail_after(DEADLINE):
            while not up.held:  # the resuming GET's stream is open
                up.changed.clear()
                await up.changed.wait()
        conn.abandon(call, "timeout")
        await up.wait_for("closed", call.hub_id)
        assert ("cancelled", call.hub_id) in up.seen
        assert (await conn.request("ping")) == {}
        assert [seen for seen in up.seen if seen[0] == "resumed"] == [("resumed", call.hub_id)]


async def test_a_legacy_reply_stream_closed_early_with_an_event_id_is_resumed() -> None:
    async with hostile() as up, connected(up, "legacy") as conn:
        with anyio.fail_after(DEADLINE):
            result = await conn.request("tools/call", {"name": "poll", "arguments": {}})
        assert result == {"content": [{"type": "text", "text": "resumed"}]}


@pytest.mark.parametrize("gives_up", ["cancel", "forget"])
async def test_a_legacy_reply_stream_abandoned_before_it_is_resumed_is_not_resumed(gives_up: str) -> None:
    """Its stream ended early (an event id, `retry:`) and the call was abandoned while the transport waited
    to resume it: the GET with Last-Event-ID went out all the same, after notifications/cancelled, and the
    server ran the stream again for nobody. Here the abandon comes before the resume task first runs."""
    async with hostile() as up:
        config = ServerConfig.model_validate({"url": up.url, "protocol": "legacy", "timeout": 30})
        transport = StreamableHttpTransport("s", config)
        came: list[Any] = []
        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as tg:  # its end waits for the resume task
                await transport.open(tg, lambda msg, _: came.append(msg), lambda msg, exc: came.append(str(exc)))
                call = tool_call("poll") | {"id": 5}
                sink = EventSink(transport.deliver, 5, transport.log)
                sink(sse.Event(id="poll-5", retry=0))  # the primed event the POST's stream ended after
                transport.resume(call, sink)
                if gives_up == "cancel":
                    assert not transport.cancel(5)  # legacy: the server still runs it, so it is told
                else:
                    transport.forget(5)  # its notifications/cancelled went
            await transport.aclose()
        assert ("resumed", 5) not in up.seen and not came, (up.seen, came)


async def test_a_legacy_reply_stream_abandoned_while_its_resume_connects_is_not_asked_for() -> None:
    """Abandoned (its cancel went: `forget`) while the resuming GET waited for a new connection, the call's stream
    was asked for all the same once connected (then closed at once): the server opened a stream for nobody. The GET
    is not written; the connection made for it serves the next request."""
    async with hostile() as up:
        config = ServerConfig.model_validate({"url": up.url, "protocol": "legacy", "timeout": 30})
        transport = StreamableHttpTransport("s", config)
        came: list[Any] = []
        answered = anyio.Event()

        def deliver(msg: Message, _: Any) -> None:
            came.append(msg)
            answered.set()

        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as tg:
                await transport.open(tg, deliver, lambda msg, exc: came.append(str(exc)))
                assert transport._pool is not None
                slow = SlowConnect(transport._pool)
                call = tool_call("forever") | {"id": 5}
                sink = EventSink(transport.deliver, 5, transport.log)
                sink(sse.Event(id="forever-5", retry=0))  # resumed, the server holds the stream open
                transport.resume(call, sink)
                await slow.connecting.wait()
                assert not transport.cancel(5)  # legacy: the server still runs it, so it is told ...
                transport.forget(5)  # ... and its notifications/cancelled went
                slow.go.set()
                await slow.made.wait()
                plain = tool_call("plain") | {"id": 6}
                await transport.send(plain, json.dumps(plain).encode())
                await answered.wait()
            await transport.aclose()
        assert [msg.get("id") for msg in came] == [6], came
        assert ("resumed", 5) not in up.seen and up._count == 1, up.seen  # one connection: the GET's, not written


async def test_a_legacy_reply_stream_that_ends_after_its_call_was_abandoned_is_not_resumed() -> None:
    """Abandoned while its POST's stream was open (kept until its notifications/cancelled goes), the call's
    stream then ended early with an event id: it was resumed, a GET for a call nobody awaits."""
    async with hostile() as up:
        config = ServerConfig.model_validate({"url": up.url, "protocol": "legacy", "timeout": 30})
        transport = StreamableHttpTransport("s", config)
        came: list[Any] = []
        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as tg:  # its end waits for a resume task
                await transport.open(tg, lambda msg, _: came.append(msg), lambda msg, exc: came.append(str(exc)))
                call = tool_call("poll") | {"id": 6}
                await transport.send(call, json.dumps(call).encode())
                assert not transport.cancel(6)  # before a byte of the answer is read: nothing yields meanwhile
                post = transport._abandoned[6]  # (until its notifications/cancelled goes)
                while post.conn is not None and post.conn.exchange is post:  # its stream has not ended yet
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            await transport.aclose()
        assert ("call", 6) in up.seen and ("resumed", 6) not in up.seen and not came, (up.seen, came)


FAILURES = [
    ("redirect", "tools/call: the server answered HTTP 302 to {origin}/elsewhere (not followed: set the url)"),
    ("html", "tools/call: the server answered with content-type text/html, not JSON or an event stream"),
    ("truncated", "tools/call: the reply stream ended before the reply"),
    ("cut", "tools/call: the reply stream ended before the reply"),
]


@pytest.mark.parametrize(("tool", "message"), FAILURES)
async def test_an_exchange_without_the_reply_fails_the_call_at_once_saying_why(tool: str, message: str) -> None:
    """The call's timeout is 30 s: it must fail long before, with what happened, not "timed out"."""
    async with hostile() as up:
        config = {"mcpServers": {"s": {"url": up.url, "protocol": "legacy", "timeout": 30}}}
        async with running_hub(config) as hub, httpx.AsyncClient() as http:
            assert hub.app.hub.pool.connections["s"].state == "ready"  # its notifications were accepted (202)
            legacy = await raw_session(http, hub.url)
            with anyio.fail_after(DEADLINE):
                r = await http.post(hub.url, json={**tool_call(tool), "id": 7}, headers=legacy)
                said = message.format(origin=up.url.removesuffix("/mcp"))
                assert r.json() == {"jsonrpc": "2.0", "id": 7, "error": {"code": -32603, "message": f"[s] {said}"}}
                r = await http.post(hub.url, json={**tool_call("plain"), "id": 8}, headers=legacy)
                assert r.json()["result"]["content"] == [{"type": "text", "text": "ok"}]
            assert hub.app.hub.pool.connections["s"].state == "ready"


async def test_no_file_descriptor_for_a_call_is_a_limit_error_and_the_upstream_stays_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call whose POST cannot get a socket (EMFILE) is refused with the hub's limit error (-32000,
    data.limit), not the upstream's failure: the connection stays ready and the next call goes through."""
    async with hostile() as up, connected(up, "legacy") as conn:
        loop = asyncio.get_running_loop()

        async def no_fds(*args: object, **kwargs: object) -> None:
            raise OSError(errno.EMFILE, "Too many open files")

        pool = conn.transport._pool  # type: ignore[attr-defined]
        while pool._idle:  # no idle connection to reuse: the call needs a new socket
            pool._idle.pop().close()
        monkeypatch.setattr(loop, "create_connection", no_fds)
        with pytest.raises(LimitReached) as caught:
            await conn.begin(tool_call("echo"))
        error = caught.value.to_error()
        assert error["code"] == -32000 and error["data"] == {"limit": "file_descriptors"}
        assert error["message"].startswith("[s] the hub has no file descriptor left to connect to")
        monkeypatch.undo()
        assert conn.state == "ready"
        assert (await conn.request("ping")) == {}


class Resumable(Hostile):
    """Its standalone GET stream: the first sends one event (id e1) and ends, as a proxy's read
    timeout ends an idle stream; the second sends no event and ends; the third is refused (400: the
    server forgot its events); the fourth is held open. Each GET's Last-Event-ID is recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: list[str | None] = []

    async def _get(
        self, number: int, last_id: str | None, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        self.gets.append(last_id)
        self.changed.set()
        ended = b"transfer-encoding: chunked\r\n\r\n%s0\r\n\r\n"
        if len(self.gets) == 1:
            note = b'{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":1}}'
            event = b"id: e1\ndata: " + note + b"\n\n"
            writer.write(SSE_HEAD + ended % chunk(event))
        elif len(self.gets) == 2:
            writer.write(SSE_HEAD + ended % chunk(b": nothing new\n\n"))
        elif len(self.gets) == 3:
            writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        else:
            writer.write(SSE_HEAD + b"transfer-encoding: chunked\r\n\r\n" + chunk(b": open\n\n"))
            await writer.drain()
            await reader.read()
            return False
        return True


async def test_the_get_stream_is_reopened_after_its_last_event_id_and_afresh_when_that_is_refused() -> None:
    """Hunt s33-h F2: behind nginx (proxy_read_timeout) the standalone stream of server-everything
    was cut every few seconds and reopened without Last-Event-ID: what the server said meanwhile
    (it keeps its events to resend them) was lost."""
    up = Resumable()
    async with listening(up.serve, up.stop, DEADLINE) as up.url, connected(up, "legacy"):
        with anyio.fail_after(DEADLINE):
            while len(up.gets) < 4:
                up.changed.clear()
                await up.changed.wait()
        assert up.gets == [None, "e1", "e1", None]
