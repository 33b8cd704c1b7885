"""A Streamable HTTP upstream that redirects (redirect.py): followed on its own origin, else said.

Hunt s33-h: a FastMCP server reached at `/mcp/` answers every POST with a 307 to `/mcp` (Starlette's
trailing-slash redirect). The SDK's own client follows it and works; the hub failed to start the
server ("the server answered HTTP 307 (redirects are not followed)") and never said where to.
The upstream here is a raw asyncio server on 127.0.0.1 port 0 that serves MCP at one path and
answers a 307 or 308 at every other, recording each POST's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client

from onemcp.config.model import ServerConfig
from onemcp.upstream.transports.base import TransportError
from onemcp.upstream.transports.redirect import MAX_MOVES, Moved, redirected
from onemcp.upstream.transports.sse import SseTransport
from support.hub import running_hub
from support.results import text_of

pytestmark = pytest.mark.anyio
DEADLINE = 10.0


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
    """One HTTP/1.1 request off the wire: its method, path and body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    method, path = head[0].split(" ")[:2]
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
    return method, path, await reader.readexactly(int(headers.get("content-length", "0")))


class Moving:
    """MCP at `home`; any other path: `status` to `location` (relative or absolute)."""

    def __init__(self, home: str, status: int, location: str) -> None:
        self.home, self.status, self.location = home, status, location
        self.posts: list[str] = []  # each POST's path, in order

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                method, path, body = await read_request(reader)
                if method == "POST":
                    self.posts.append(path)
                if path != self.home:
                    moved = b"HTTP/1.1 %d Moved\r\nlocation: %s\r\ncontent-length: 0\r\n\r\n"
                    writer.write(moved % (self.status, self.location.encode()))
                elif method != "POST":
                    writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                else:
                    writer.write(self._answer(json.loads(body)))
                await writer.drain()
        writer.close()

    def _answer(self, msg: dict[str, Any]) -> bytes:
        if "id" not in msg:
            return b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"
        method = msg["method"]
        result: dict[str, Any] = {}
        if method == "initialize":
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "m"}}
        elif method == "tools/list":
            result = {"tools": [{"name": "where", "inputSchema": {"type": "object"}}]}
        elif method == "tools/call":
            result = {"content": [{"type": "text", "text": f"at {self.home}"}]}
        body = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}).encode()
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: s1\r\ncontent-length: %d\r\n\r\n"
        return head % len(body) + body


@asynccontextmanager
async def moving(home: str, status: int, location: str) -> AsyncIterator[tuple[Moving, str]]:
    up = Moving(home, status, location)
    server = await asyncio.start_server(up.serve, "127.0.0.1", 0)
    try:
        yield up, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


@pytest.mark.parametrize("status", [307, 308])
async def test_a_server_that_moved_on_its_own_origin_is_followed_once_and_reached_there_after(status: int) -> None:
    async with moving("/mcp", status, "/mcp") as (up, origin):
        config = {"mcpServers": {"s": {"url": f"{origin}/mcp/", "type": "http", "protocol": "legacy"}}}
        with anyio.fail_after(DEADLINE):
            async with running_hub(config) as hub, Client(hub.url, mode="legacy", cache=None) as c:
                assert hub.app.hub.pool.connections["s"].state == "ready"
                for _ in range(3):
                    assert text_of(await c.call_tool("where", {})) == "at /mcp"
        assert up.posts[0] == "/mcp/"  # the handshake, moved: every later POST went to the new path
        assert up.posts[1:] and set(up.posts[1:]) == {"/mcp"}


async def test_a_redirect_to_another_origin_is_not_followed_and_the_error_says_where() -> None:
    async with moving("/mcp", 307, "http://elsewhere.invalid/mcp?token=secret") as (up, origin):
        config = {"mcpServers": {"s": {"url": f"{origin}/old", "type": "http", "protocol": "legacy"}}}
        async with running_hub(config) as hub:
            conn = hub.app.hub.pool.connections["s"]
            assert conn.state == "failed"
            # the query (it may hold a credential) is never shown
            said = "the server answered HTTP 307 to http://elsewhere.invalid/mcp (not followed: set the url)"
            assert said in (conn.last_error or "")
        assert up.posts == ["/old"]  # nothing sent to the other origin (it does not resolve anyway)


async def test_a_server_that_keeps_moving_fails_to_start_instead_of_looping() -> None:
    async with moving("/never", 308, "/next") as (up, origin):
        config = {"mcpServers": {"s": {"url": f"{origin}/mcp", "type": "http", "protocol": "legacy"}}}
        with anyio.fail_after(DEADLINE):
            async with running_hub(config) as hub:
                conn = hub.app.hub.pool.connections["s"]
                assert conn.state == "failed"
                assert "the limit of moves was reached: set the url" in (conn.last_error or "")
        assert len(up.posts) == MAX_MOVES + 1


class SseMoving:
    """A legacy HTTP+SSE server at `/sse` (its endpoint `/messages`); a GET of any other path: `status`
    to `/sse`. Records each GET's path; with `endpoint_moves`, answers every POST with a 307 (recording its path)."""

    def __init__(self, status: int, endpoint_moves: bool = False) -> None:
        self.status = status
        self.endpoint_moves = endpoint_moves
        self.gets: list[str] = []
        self.posts: list[str] = []
        self.stream: asyncio.StreamWriter | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                method, path, body = await read_request(reader)
                if method == "GET":
                    self.gets.append(path)
                if method == "GET" and path != "/sse":
                    writer.write(b"HTTP/1.1 %d Moved\r\nlocation: /sse\r\ncontent-length: 0\r\n\r\n" % self.status)
                elif method == "GET":  # the stream: delimited by the connection's end
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
                    writer.write(b"event: endpoint\ndata: /messages\n\n")
                    self.stream = writer
                    await reader.read()
                    break
                elif self.endpoint_moves:
                    self.posts.append(path)
                    writer.write(b"HTTP/1.1 307 Moved\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                    msg = json.loads(body)
                    if "id" in msg and self.stream is not None:
                        answer = Moving("/", 0, "")._answer(msg).partition(b"\r\n\r\n")[2]
                        self.stream.write(b"event: message\ndata: " + answer + b"\n\n")
                await writer.drain()
        writer.close()


@pytest.mark.parametrize("status", [301, 307])
async def test_an_sse_server_whose_stream_moved_on_its_own_origin_is_followed(status: int) -> None:
    """Hunt s33-h: FastMCP's SSE app reached at `/sse/` answers 307 to `/sse`; the start failed with
    "the SSE stream ended: HTTP 307, content-type None"."""
    up = SseMoving(status)
    server = await asyncio.start_server(up.serve, "127.0.0.1", 0)
    origin = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        config = {"mcpServers": {"s": {"url": f"{origin}/sse/", "type": "sse"}}}
        with anyio.fail_after(DEADLINE):
            async with running_hub(config) as hub, Client(hub.url, mode="legacy", cache=None) as c:
                assert hub.app.hub.pool.connections["s"].state == "ready"
                assert text_of(await c.call_tool("where", {})) == "at /"
        assert up.gets == ["/sse/", "/sse"]
    finally:
        server.close()
        if up.stream is not None:
            up.stream.close()


async def test_a_redirected_post_to_an_sse_servers_endpoint_fails_the_message_at_once() -> None:
    """A POST to the endpoint its stream named, answered 307: the server did not take the message, but the
    transport counted it carried (it checked for 4xx and 5xx only), so a call waited out its whole timeout
    and a cancel counted as told. The endpoint is the server's own word: not followed, said."""
    up = SseMoving(307, endpoint_moves=True)
    server = await asyncio.start_server(up.serve, "127.0.0.1", 0)
    origin = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    transport = SseTransport("s", ServerConfig.model_validate({"url": f"{origin}/sse", "type": "sse"}))
    try:
        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as tg:
                await transport.open(tg, lambda msg, related: None, lambda msg, exc: None)
                ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
                with pytest.raises(TransportError, match=r"^the message endpoint answered HTTP 307 Temporary Redirect"):
                    await transport.send(ping, json.dumps(ping).encode())
                await transport.aclose()
        assert up.posts == ["/messages"]
    finally:
        server.close()
        if up.stream is not None:
            up.stream.close()


def test_which_redirects_move_the_server() -> None:
    base = "https://mcp.example.com/api/mcp?team=1"
    moved = redirected("initialize", 308, base, "/v2/mcp", 0)
    assert isinstance(moved, Moved) and moved.url == "https://mcp.example.com/v2/mcp"
    same = redirected("initialize", 307, base, "https://MCP.example.com:443/mcp/", 0)
    assert isinstance(same, Moved) and same.url == "https://MCP.example.com:443/mcp/"
    for status, location in [
        (301, "/v2/mcp"),  # a POST would become a GET
        (302, "/v2/mcp"),
        (307, "http://mcp.example.com/mcp"),  # another scheme: another origin
        (307, "https://mcp.example.com:8443/mcp"),
        (307, "https://login.example.com/mcp"),
    ]:
        error = redirected("initialize", status, base, location, 0)
        assert type(error) is TransportError and "(not followed: set the url)" in str(error), location
    assert "without a usable Location" in str(redirected("tools/call", 307, base, None, 0))
    assert "without a usable Location" in str(redirected("tools/call", 307, base, "http://host:port/", 0))
    assert "the limit of moves" in str(redirected("tools/call", 307, base, "/v3", MAX_MOVES))
    assert isinstance(redirected("GET", 302, base, "/sse", 0, get=True), Moved)  # a GET stays a GET
    assert type(redirected("GET", 302, base, "https://other.example.com/sse", 0, get=True)) is TransportError
