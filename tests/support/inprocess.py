"""The whole hub in-process: fixture upstreams in memory, driven through the app's ASGI interface.

Boundary: test plumbing, no sockets, no subprocesses, no sleeps. `inprocess_hub` builds a real
`OneMcpApp` whose upstreams (`"command": "fixture"`, the fixture's command-line options as `args`)
are `tests/fixtures/upstream.py` servers served over `MemoryTransport`, runs its lifespan, and
hands back an `AsgiClient` that calls the app directly (JSON replies and SSE streams alike).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from anyio.streams.memory import MemoryObjectReceiveStream

from fixtures.upstream import build_server, parse_args
from onemcp.app import OneMcpApp
from onemcp.config.model import HubConfig, ServerConfig
from onemcp.demo.kit import McpServer, Tool
from onemcp.demo.memory import serve_streams
from onemcp.demo.peer import Call
from onemcp.upstream.oauth.registry import UpstreamAuth
from onemcp.upstream.transports.base import Transport
from onemcp.upstream.transports.memory import MemoryTransport

Json = dict[str, Any]
STARTUP = 5.0
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
BOTH = "application/json, text/event-stream"
NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def fixture(*args: str, **extra: Any) -> Json:
    """A server entry for mcp.json: the in-memory fixture started with these command-line options."""
    return {"command": "fixture", "args": list(args), **extra}


def tool_call(tool: str, /, **arguments: Any) -> Json:
    """The params of a tools/call."""
    return {"name": tool, "arguments": arguments}


class FixtureUpstreams:
    """The hub's transport factory: every connection gets a fresh fixture server (as a new process would).

    In memory, the fixture's `crash` tool ends only its own server (not the test process),
    `freeze` (which blocks the event loop) is not offered, and `hold` answers when the test sets `let_go`.
    """

    def __init__(self) -> None:
        self.started: dict[str, list[McpServer]] = {}  # by server name, oldest first (sessions' own too)
        self.made = anyio.Event()  # set when the next transport is made (then replaced)
        self.let_go = anyio.Event()  # ends every `hold` call
        self.live: dict[str, int] = {}  # by server name: how many of its servers are being served now

    def __call__(
        self, name: str, config: ServerConfig, auth: UpstreamAuth | None = None, server: ServerConfig | None = None
    ) -> Transport:
        assert config.command == "fixture", f"{name}: not an in-memory fixture: {config.command!r}"
        upstream = build_server(parse_args(config.args))
        self.started.setdefault(name, []).append(upstream)
        scope = anyio.CancelScope()

        async def crash(call: Call, args: Json) -> Json:
            scope.cancel()
            await anyio.sleep_forever()  # a crashed server answers nothing: ending it cancels this
            raise AssertionError("unreachable")

        async def hold(call: Call, args: Json) -> Json:
            await self.let_go.wait()
            return {"content": [{"type": "text", "text": "let go"}]}

        upstream.add_tool(Tool("crash", "End this in-memory server (it never answers this call).", crash))
        upstream.add_tool(Tool("hold", "Answer once the test lets go (`let_go`).", hold))
        del upstream.tools["freeze"]

        async def serve(receive: ObjectReceiveStream[bytes], send: ObjectSendStream[bytes]) -> None:
            self.live[name] = self.live.get(name, 0) + 1
            try:
                with scope:
                    await serve_streams(upstream, receive, send)
            finally:
                self.live[name] -= 1

        self.made.set()
        self.made = anyio.Event()
        return MemoryTransport(name, config, serve)

    def current(self, name: str) -> McpServer:
        """The server behind `name`'s newest connection."""
        return self.started[name][-1]


# ------------------------------------------------------------------------------------------ ASGI client


class SseEnded(Exception):
    """The response ended before the message a test waited for."""


@dataclass
class AsgiResponse:
    """A response being received: its status and headers at once, then its body as it comes."""

    status: int
    headers: dict[str, str]
    _chunks: MemoryObjectReceiveStream[Json]
    _buffer: bytes = b""
    _ended: bool = False

    async def _more(self) -> bool:
        if self._ended:
            return False
        try:
            message = await self._chunks.receive()
        except anyio.EndOfStream:
            self._ended = True
            return False
        self._buffer += message.get("body", b"")
        self._ended = not message.get("more_body", False)
        return True

    async def read(self) -> bytes:
        while await self._more():
            pass
        body, self._buffer = self._buffer, b""
        return body

    async def message(self) -> Json:
        """The next SSE event's JSON data (events without data, like priming ones, are skipped)."""
        while True:
            event, sep, rest = self._buffer.partition(b"\n\n")
            if sep:
                self._buffer = rest
                data = b"\n".join(line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:"))
                if data:
                    parsed: Json = orjson.loads(data)
                    return parsed
                continue
            if not await self._more():
                raise SseEnded(f"the stream ended; left: {self._buffer!r}")

    async def messages(self) -> list[Json]:
        """Every message still to come: SSE events, or the one JSON body."""
        if not self.headers.get("content-type", "").startswith("text/event-stream"):
            body = await self.read()
            return [orjson.loads(body)] if body else []
        out = []
        while True:
            try:
                out.append(await self.message())
            except SseEnded:
                return out


@dataclass
class AsgiClient:
    app: OneMcpApp

    @asynccontextmanager
    async def open(
        self,
        method: str,
        *,
        query: str = "",
        headers: dict[str, str] | None = None,
        body: Json | None = None,
        path: str = "/mcp",
    ) -> AsyncIterator[AsgiResponse]:
        """A request to `path` whose response is read while it streams; leaving disconnects."""
        raw = [(b"host", b"127.0.0.1:8000")]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        scope: Json = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode("latin-1"),
            "headers": raw,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        payload = orjson.dumps(body) if body is not None else b""
        out, chunks = anyio.create_memory_object_stream[Json](math.inf)
        gone = anyio.Event()
        requested = False

        async def receive() -> Json:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": payload, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            if gone.is_set():
                raise OSError("the client went away")
            await out.send(dict(message))

        async def run() -> None:
            with out:
                await self.app(scope, receive, send)

        async with chunks, anyio.create_task_group() as tg:
            tg.start_soon(run)
            start = await chunks.receive()
            assert start["type"] == "http.response.start", start
            names = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start.get("headers", [])}
            try:
                yield AsgiResponse(start["status"], names, chunks)
            finally:
                gone.set()

    async def request(
        self,
        method: str,
        *,
        query: str = "",
        headers: dict[str, str] | None = None,
        body: Json | None = None,
        path: str = "/mcp",
    ) -> tuple[AsgiResponse, list[Json]]:
        """A request read to its end: the response and the messages it carried."""
        async with self.open(method, query=query, headers=headers, body=body, path=path) as response:
            return response, await response.messages()

    async def modern(
        self,
        method: str,
        *,
        query: str = "",
        capabilities: Json | None = None,
        meta: Json | None = None,
        rid: int | str = 1,
        **params: Any,
    ) -> tuple[AsgiResponse, list[Json]]:
        """A stateless 2026-07-28 request read to its end."""
        headers, body = modern_request(method, capabilities=capabilities, meta=meta, rid=rid, **params)
        return await self.request("POST", query=query, headers=headers, body=body)


def modern_request(
    method: str, *, capabilities: Json | None = None, meta: Json | None = None, rid: int | str = 1, **params: Any
) -> tuple[dict[str, str], Json]:
    """The headers and body of a 2026-07-28 request: the `_meta` envelope, and headers mirroring the body."""
    envelope = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": capabilities or {},
        **(meta or {}),
    }
    body = {"jsonrpc": "2.0", "id": rid, "method": method, "params": {**params, "_meta": envelope}}
    headers = {"accept": BOTH, "content-type": "application/json", "mcp-protocol-version": MODERN, "mcp-method": method}
    if method in NAMED:
        headers["mcp-name"] = str(params[NAMED[method]])
    return headers, body


# ------------------------------------------------------------------------------------------ sessions


@dataclass
class LegacySession:
    """A 2025-11-25 session on /mcp."""

    client: AsgiClient
    id: str
    query: str = ""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def headers(self, accept: str = BOTH) -> dict[str, str]:
        return {
            "accept": accept,
            "content-type": "application/json",
            "mcp-session-id": self.id,
            "mcp-protocol-version": LEGACY,
        }

    def body(self, method: str, params: Json | None = None, rid: int | str | None = None) -> Json:
        return {
            "jsonrpc": "2.0",
            "id": next(self._ids) if rid is None else rid,
            "method": method,
            "params": params or {},
        }

    def call(
        self, method: str, params: Json | None = None, *, rid: int | str | None = None, accept: str = BOTH
    ) -> AbstractAsyncContextManager[AsgiResponse]:
        """A request whose reply (JSON, or SSE when related messages go first) is read as it comes."""
        return self.client.open(
            "POST", query=self.query, headers=self.headers(accept), body=self.body(method, params, rid)
        )

    async def ask(
        self, method: str, params: Json | None = None, *, rid: int | str | None = None, accept: str = BOTH
    ) -> Json:
        """A request, and its reply (the last message of its response)."""
        _, messages = await self.client.request(
            "POST", query=self.query, headers=self.headers(accept), body=self.body(method, params, rid)
        )
        return messages[-1]

    async def tools(self) -> list[str]:
        reply = await self.ask("tools/list")
        return [tool["name"] for tool in reply["result"]["tools"]]

    async def post(self, message: Json) -> int:
        """A notification or a response to the hub's request: the status it got."""
        response, _ = await self.client.request("POST", query=self.query, headers=self.headers(), body=message)
        return response.status

    def listen(self) -> AbstractAsyncContextManager[AsgiResponse]:
        """The session's standalone GET stream."""
        headers = {"accept": "text/event-stream", "mcp-session-id": self.id, "mcp-protocol-version": LEGACY}
        return self.client.open("GET", query=self.query, headers=headers)


async def legacy_session(client: AsgiClient, *, query: str = "", capabilities: Json | None = None) -> LegacySession:
    """Initialize a session (and say it is initialized)."""
    params = {
        "protocolVersion": LEGACY,
        "capabilities": capabilities or {},
        "clientInfo": {"name": "t", "version": "0"},
    }
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}
    headers = {"accept": BOTH, "content-type": "application/json"}
    response, (reply,) = await client.request("POST", query=query, headers=headers, body=body)
    assert response.status == 200, reply
    session = LegacySession(client, response.headers["mcp-session-id"], query)
    assert await session.post({"jsonrpc": "2.0", "method": "notifications/initialized"}) == 202
    return session


# ------------------------------------------------------------------------------------------ the hub


@dataclass
class InProcessHub:
    app: OneMcpApp
    upstreams: FixtureUpstreams
    client: AsgiClient

    async def session(self, *, query: str = "", capabilities: Json | None = None) -> LegacySession:
        return await legacy_session(self.client, query=query, capabilities=capabilities)

    async def ready(self, name: str) -> None:
        """Wait until the newest connection to `name` has started (after a reload or a restart)."""
        conn = self.app.hub.pool.get(name)
        assert conn is not None, f"no server {name!r}"
        with anyio.fail_after(STARTUP):
            await conn.settled.wait()
        assert conn.state == "ready", conn.last_error


@asynccontextmanager
async def lifespan(app: OneMcpApp) -> AsyncIterator[None]:
    """Run the app's ASGI lifespan (startup before the body, shutdown after) in a task group."""
    to_app, app_inbox = anyio.create_memory_object_stream[Json](math.inf)
    app_outbox, from_app = anyio.create_memory_object_stream[Json](math.inf)

    async def receive() -> Json:
        return await app_inbox.receive()

    async def send(message: Any) -> None:
        await app_outbox.send(dict(message))

    async with to_app, app_inbox, app_outbox, from_app, anyio.create_task_group() as tg:
        tg.start_soon(app, {"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        await to_app.send({"type": "lifespan.startup"})
        started = await from_app.receive()
        assert started["type"] == "lifespan.startup.complete", started
        try:
            yield
        finally:
            await to_app.send({"type": "lifespan.shutdown"})
            stopped = await from_app.receive()
            assert stopped["type"] == "lifespan.shutdown.complete", stopped


@asynccontextmanager
async def inprocess_hub(servers: dict[str, Json], settings: Json | None = None) -> AsyncIterator[InProcessHub]:
    """The app over in-memory fixture upstreams, started, every upstream tried once."""
    upstreams = FixtureUpstreams()
    config = HubConfig.model_validate({"mcpServers": servers, "onemcp": settings or {}})
    app = OneMcpApp(config, transports=upstreams)
    async with lifespan(app):
        with anyio.fail_after(STARTUP):
            await app.hub.pool.tried.wait()
        yield InProcessHub(app, upstreams, AsgiClient(app))
