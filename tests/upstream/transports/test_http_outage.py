"""A Streamable HTTP upstream that goes away and comes back (hunt-ops F1, F2).

- Down: the ping (or a call) that cannot reach it ends the connection: `failed` with the reason,
  the supervisor reconnects with backoff, calls meanwhile are told the server is down, and
  nothing is sent in a loop; back on the same port, a fresh session is made and calls work.
- Restarted between two requests: it answers the hub's old session id as the reference SDK
  servers do, 400 "Bad Request: No valid session ID provided" (the spec says 404); the hub starts a
  new session and the call goes through. A new session is a new server instance: its lists are read
  again, and clients are told when they changed. A 400 that is the server's answer to a request is
  passed on as it is, with no new session.

The upstream is a raw asyncio server on 127.0.0.1 (port 0, then the same port again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client, types
from mcp.shared.exceptions import MCPError

from support.hub import RunningHub, running_hub
from support.results import text_of

pytestmark = pytest.mark.anyio
DEADLINE = 15.0
NO_SESSION = {"jsonrpc": "2.0", "error": {"code": -32000, "message": "Bad Request: No valid session ID provided"}}


def response(status: bytes, doc: Any = None, extra: bytes = b"") -> bytes:
    body = b"" if doc is None else json.dumps(doc).encode()
    kind = b"content-type: application/json\r\n" if doc is not None else b""
    return b"HTTP/1.1 %s\r\n%s%scontent-length: %d\r\n\r\n%s" % (status, kind, extra, len(body), body)


class Stub:
    """A legacy-era Streamable HTTP server with sessions; `stop`/`start` is a restart (sessions forgotten).

    Tools: echo; bad (a 400 with the server's own JSON-RPC error); die (the server goes: the connection
    is closed unanswered and every session forgotten). `plain_400`: an unknown session gets a bare 400.
    """

    def __init__(self) -> None:
        self.port = 0
        self.sessions: set[str] = set()
        self.initializes = 0
        self.plain_400 = False
        self.tools = ["echo", "bad", "die"]  # what tools/list answers (a restart may change it)
        self.lists = 0  # tools/list requests answered
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def start(self) -> None:
        self.sessions.clear()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            with anyio.fail_after(DEADLINE):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                while (answer := await self._exchange(reader)) is not None:
                    writer.write(answer)
                    await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader) -> bytes | None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if not lines[0].startswith("POST "):
            return response(b"405 Method Not Allowed")
        msg = json.loads(body)
        method, rid = msg.get("method"), msg.get("id")
        if method == "initialize":
            self.initializes += 1
            sid = f"s{self.initializes}"
            self.sessions.add(sid)
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "stub"}}
            return response(
                b"200 OK", {"jsonrpc": "2.0", "id": rid, "result": result}, b"mcp-session-id: %s\r\n" % sid.encode()
            )
        if headers.get("mcp-session-id") not in self.sessions:
            return response(b"400 Bad Request", None if self.plain_400 else {**NO_SESSION, "id": None})
        if rid is None:
            return response(b"202 Accepted")
        if method == "tools/list":
            self.lists += 1
            tools = [{"name": n, "inputSchema": {"type": "object"}} for n in self.tools]
            return response(b"200 OK", {"jsonrpc": "2.0", "id": rid, "result": {"tools": tools}})
        tool = msg.get("params", {}).get("name")
        if method == "tools/call" and tool == "die":
            self.sessions.clear()
            return None
        if method == "tools/call" and tool == "bad":
            error = {"code": -32602, "message": "Invalid arguments: message is required"}
            return response(b"400 Bad Request", {"jsonrpc": "2.0", "id": rid, "error": error})
        answer: dict[str, Any] = {"content": [{"type": "text", "text": "ok"}]} if method == "tools/call" else {}
        return response(b"200 OK", {"jsonrpc": "2.0", "id": rid, "result": answer})


@asynccontextmanager
async def stub() -> AsyncIterator[Stub]:
    up = Stub()
    await up.start()
    try:
        yield up
    finally:
        await up.stop()


def config(up: Stub, **extra: Any) -> dict[str, Any]:
    return {"onemcp": {"prefixMode": "always"}, "mcpServers": {"s": {"url": up.url, **extra}}}


async def until(hub: RunningHub, state: str) -> None:
    with anyio.fail_after(DEADLINE):
        while (conn := hub.app.hub.pool.connections.get("s")) is None or conn.state != state:
            await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline


async def test_a_downed_upstream_is_failed_by_its_ping_then_reconnected_with_a_new_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="onemcp.upstream.s")
    async with stub() as up, running_hub(config(up, pingInterval=0.2)) as hub:
        await until(hub, "ready")
        await up.stop()
        await until(hub, "failed")  # the keepalive's ping could not be sent
        conn = hub.app.hub.pool.connections["s"]
        assert conn.last_error is not None and "cannot connect" in conn.last_error
        posts = [r for r in caplog.records if r.name == "onemcp.upstream.s" and r.getMessage().startswith("POST")]
        assert 1 <= len(posts) <= 3  # the ping, maybe a reconnect: not a POST after POST without end
        async with Client(hub.url, mode="legacy", cache=None) as c:
            with pytest.raises(MCPError) as err:
                await c.call_tool("s__echo", {})
            assert "[s] server is" in err.value.error.message and "cannot connect" in err.value.error.message
            await up.start()  # the same port
            await until(hub, "ready")
            assert text_of(await c.call_tool("s__echo", {})) == "ok"
        assert up.initializes == 2


async def test_a_call_that_cannot_reach_it_fails_the_connection_and_the_next_is_told_why() -> None:
    async with stub() as up, running_hub(config(up, pingInterval=None)) as hub:  # no keepalive to notice
        async with Client(hub.url, mode="legacy", cache=None) as c:
            await up.stop()
            with pytest.raises(MCPError) as err:
                await c.call_tool("s__echo", {})
            assert "cannot connect" in err.value.error.message
            await until(hub, "failed")  # not a per-call failure: the supervisor reconnects, backing off
            with pytest.raises(MCPError) as err:
                await c.call_tool("s__echo", {})
            assert "[s] server is" in err.value.error.message and "cannot connect" in err.value.error.message
            await up.start()
            await until(hub, "ready")
            assert text_of(await c.call_tool("s__echo", {})) == "ok"
        assert up.initializes == 2


async def test_a_restarted_upstream_answering_400_no_valid_session_gets_a_new_session() -> None:
    async with stub() as up, running_hub(config(up)) as hub:
        async with Client(hub.url, mode="legacy", cache=None) as c:
            assert text_of(await c.call_tool("s__echo", {})) == "ok"
            await up.stop()
            await up.start()  # between two calls: the hub's session id is unknown now
            with anyio.fail_after(DEADLINE):
                assert text_of(await c.call_tool("s__echo", {})) == "ok"
        assert up.initializes == 2
        assert hub.app.hub.pool.connections["s"].state == "ready"


async def test_a_bare_400_right_after_the_connection_broke_gets_a_new_session() -> None:
    async with stub() as up, running_hub(config(up)) as hub:
        up.plain_400 = True  # says nothing of the session
        async with Client(hub.url, mode="legacy", cache=None) as c:
            with pytest.raises(MCPError) as err:
                await c.call_tool("s__die", {})
            assert "closed the connection" in err.value.error.message
            with anyio.fail_after(DEADLINE):
                assert text_of(await c.call_tool("s__echo", {})) == "ok"
        assert up.initializes == 2


async def test_a_400_answering_the_request_is_passed_on_without_a_new_session() -> None:
    async with stub() as up, running_hub(config(up)) as hub:
        async with Client(hub.url, mode="legacy", cache=None) as c:
            with pytest.raises(MCPError) as err:
                await c.call_tool("s__bad", {})
            assert err.value.error.message == "[s] Invalid arguments: message is required"
            assert text_of(await c.call_tool("s__echo", {})) == "ok"
        assert up.initializes == 1


async def test_a_new_session_after_a_restart_lists_the_tools_again_and_announces_a_change() -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with stub() as up, running_hub(config(up)) as hub:
        async with Client(hub.url, mode="legacy", cache=None, message_handler=on_message) as c:
            assert text_of(await c.call_tool("s__echo", {})) == "ok"
            await up.stop()
            up.tools = ["echo", "fresh"]  # the restarted server offers other tools, and says nothing
            await up.start()
            with anyio.fail_after(DEADLINE):
                assert text_of(await c.call_tool("s__echo", {})) == "ok"  # in a new session
                await changed.wait()
            assert {t.name for t in (await c.list_tools()).tools} == {"s__echo", "s__fresh"}
        assert up.initializes == 2 and up.lists == 2


async def test_a_new_session_with_the_same_tools_is_listed_again_and_nothing_is_announced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with stub() as up, running_hub(config(up)) as hub:
        listed, announced = anyio.Event(), list[set[str]]()
        events, announcements = hub.app.hub.events, hub.app.hub.announcements
        on_list, announce = events.on_list, announcements.announce

        def spy_list(conn: Any, kind: str, items: list[dict[str, Any]]) -> None:
            on_list(conn, kind, items)  # announces (synchronously) if the list changed
            listed.set()

        def spy_announce(kinds: set[str]) -> None:
            announced.append(kinds)
            announce(kinds)

        monkeypatch.setattr(events, "on_list", spy_list)
        monkeypatch.setattr(announcements, "announce", spy_announce)
        async with Client(hub.url, mode="legacy", cache=None) as c:
            assert text_of(await c.call_tool("s__echo", {})) == "ok"
            await up.stop()
            await up.start()
            with anyio.fail_after(DEADLINE):
                assert text_of(await c.call_tool("s__echo", {})) == "ok"
                await listed.wait()
            assert announced == []
            assert {t.name for t in (await c.list_tools()).tools} == {"s__echo", "s__bad", "s__die"}
        assert up.initializes == 2 and up.lists == 2


async def test_a_restarting_server_is_named_once_in_its_error() -> None:
    """A reconnect whose handshake fails stores why without the server's "[s] " (the error adds it once)."""
    async with stub() as up, running_hub(config(up, pingInterval=None)) as hub:
        first = hub.app.hub.pool.connections["s"]
        async with Client(hub.url, mode="legacy", cache=None) as c:
            await up.stop()
            with pytest.raises(MCPError):
                await c.call_tool("s__echo", {})
            with anyio.fail_after(DEADLINE):  # the supervisor's reconnect: its handshake cannot reach it
                while (conn := hub.app.hub.pool.connections["s"]) is first or conn.state != "failed":
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            with pytest.raises(MCPError) as err:
                await c.call_tool("s__echo", {})
        port = up.port
        why = f"cannot connect to 127.0.0.1:{port}: Connect call failed ('127.0.0.1', {port})"
        assert conn.last_error == f"POST http://127.0.0.1:{port}/mcp failed: {why}"
        said = err.value.error.message
        assert said == f"[s] server is restarting ({conn.last_error}); its tools return when it is back"
