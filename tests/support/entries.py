"""A client for every entry point of the hub, behind one small interface, for matrix tests.

Boundary: test support. Each entry (legacy /mcp, 2026-07-28 /mcp, /sse with and without
`initialize`, `serve --transport stdio`, the stdio `proxy`, the agent CLI's `HubClient`) is driven
the way its real client drives it, in-process against one running hub, with the bearer token in
`$ONEMCP_TOKEN` for the entries whose real client reads it there. Every failure becomes `Refused`
carrying what the client saw (an HTTP status, a JSON-RPC error, a refused start).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import httpx

from onemcp.auth import access
from onemcp.cli.client.rpc import HubClient, HubUnreachable, RpcError
from onemcp.cli.proxy import Proxy
from onemcp.cli.serve import stdio_principal
from onemcp.cli.target import Endpoint
from onemcp.downstream.stdio import StdioServer
from support.hub import HEADERS, RunningHub

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
WAIT = 15.0  # the longest one request may take before the client gives up (a hang is a failure)
CLIENT_INFO = {"name": "matrix", "version": "0"}


class Refused(Exception):
    """The entry point did not do what was asked; `how` is what the client saw."""

    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.how = how


@asynccontextmanager
async def first_refusal() -> AsyncIterator[None]:
    """Let a Refused raised inside a task group out as itself, not wrapped in an ExceptionGroup."""
    try:
        yield
    except BaseExceptionGroup as group:
        refused = group.subgroup(lambda exc: isinstance(exc, Refused))
        while isinstance(refused, BaseExceptionGroup):
            refused = refused.exceptions[0]
        if isinstance(refused, Refused):
            raise refused from None
        raise


class Client(Protocol):
    era: str

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The result, or Refused."""
        ...

    async def listen(self, uris: list[str]) -> list[str]:
        """subscriptions/listen (2026-07-28 only): the resource subscriptions the hub honoured."""
        ...


@dataclass
class Target:
    hub: RunningHub
    config_path: Path
    http: httpx.AsyncClient
    token: str | None


Connect = Callable[[Target], AbstractAsyncContextManager[Client]]


def _bearer(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def _rpc_result(msg: dict[str, Any]) -> dict[str, Any]:
    error = msg.get("error")
    if isinstance(error, dict):
        raise Refused(f"rpc {error.get('code')} {error.get('message')}")
    result = msg.get("result")
    if not isinstance(result, dict):
        raise Refused(f"no result: {msg!r:.200}")
    return result


def _http_result(r: httpx.Response, rid: int) -> dict[str, Any]:
    """The result of request `rid` from a JSON or SSE reply (HTTP refusals and errors raise Refused)."""
    if r.status_code in (401, 403, 404, 429) and "json" in r.headers.get("content-type", ""):
        body = r.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            raise Refused(f"http {r.status_code} rpc {body['error'].get('code')} {body['error'].get('message')}")
    if r.status_code != 200:
        raise Refused(f"http {r.status_code} {r.text[:200]}")
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        for line in r.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                msg = json.loads(line[5:])
                if msg.get("id") == rid and ("result" in msg or "error" in msg):
                    return _rpc_result(msg)
        raise Refused("the reply stream ended without a response")
    return _rpc_result(r.json())


class Replies:
    """Replies by request id, for clients with several requests in flight on one stream."""

    def __init__(self) -> None:
        self._got: dict[int, dict[str, Any]] = {}
        self._events: dict[int, anyio.Event] = {}

    def expect(self, rid: int) -> Callable[[], Awaitable[dict[str, Any]]]:
        event = self._events[rid] = anyio.Event()

        async def wait() -> dict[str, Any]:
            with anyio.fail_after(WAIT):
                await event.wait()
            self._events.pop(rid, None)
            return self._got.pop(rid)

        return wait

    def deliver(self, msg: Any) -> None:
        if isinstance(msg, dict) and isinstance(msg.get("id"), int) and "method" not in msg:
            self._got[msg["id"]] = msg
            event = self._events.get(msg["id"])
            if event is not None:
                event.set()


# ----------------------------------------------------------------------------- /mcp, legacy era
class LegacyHttp:
    era = "legacy"

    def __init__(self, t: Target, headers: dict[str, str]) -> None:
        self.t = t
        self.headers = headers
        self.ids = itertools.count(2)

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        rid = next(self.ids)
        body = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
        r = await self.t.http.post(self.t.hub.url, json=body, headers=self.headers, timeout=WAIT)
        return _http_result(r, rid)

    async def listen(self, uris: list[str]) -> list[str]:
        raise NotImplementedError("subscriptions/listen is 2026-07-28 only")


@asynccontextmanager
async def legacy_http(t: Target) -> AsyncIterator[Client]:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": CLIENT_INFO},
    }
    headers = {**HEADERS, **_bearer(t.token)}
    r = await t.http.post(t.hub.url, json=init, headers=headers)
    _http_result(r, 1)
    headers |= {"mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": LEGACY}
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (await t.http.post(t.hub.url, json=note, headers=headers)).status_code == 202
    try:
        yield LegacyHttp(t, headers)
    finally:
        await t.http.delete(t.hub.url, headers=headers)


# ----------------------------------------------------------------------------- /mcp, 2026-07-28
class ModernHttp:
    era = "modern"

    def __init__(self, t: Target) -> None:
        self.t = t
        self.ids = itertools.count(1)

    def _envelope(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        rid = next(self.ids)
        meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        }
        body = {"jsonrpc": "2.0", "id": rid, "method": method, "params": {**params, "_meta": meta}}
        headers = {**HEADERS, **_bearer(self.t.token), "mcp-protocol-version": MODERN, "mcp-method": method}
        name = params.get("uri") if method == "resources/read" else params.get("name")
        if method in ("tools/call", "prompts/get", "resources/read") and isinstance(name, str):
            headers["mcp-name"] = name
        return rid, body, headers

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        rid, body, headers = self._envelope(method, params)
        r = await self.t.http.post(self.t.hub.url, json=body, headers=headers, timeout=WAIT)
        return _http_result(r, rid)

    async def listen(self, uris: list[str]) -> list[str]:
        _, body, headers = self._envelope("subscriptions/listen", {"notifications": {"resourceSubscriptions": uris}})
        async with self.t.http.stream("POST", self.t.hub.url, json=body, headers=headers, timeout=WAIT) as r:
            if r.status_code != 200:
                raise Refused(f"http {r.status_code}")
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if "error" in msg:
                        _rpc_result(msg)
                    honored = msg["params"]["notifications"].get("resourceSubscriptions", [])
                    return list(honored)
        raise Refused("the listen stream ended before its acknowledgement")


@asynccontextmanager
async def modern_http(t: Target) -> AsyncIterator[Client]:
    yield ModernHttp(t)


# ----------------------------------------------------------------------------- /sse + /messages
class LegacySse:
    era = "legacy"

    def __init__(self, t: Target, endpoint: str) -> None:
        self.t = t
        self.endpoint = endpoint
        self.ids = itertools.count(1)
        self.replies = Replies()

    async def pump(self, lines: AsyncIterator[str]) -> None:
        async for line in lines:
            if line.startswith("data:"):
                self.replies.deliver(json.loads(line[5:]))

    async def post(self, msg: dict[str, Any]) -> None:
        headers = {**HEADERS, **_bearer(self.t.token)}
        r = await self.t.http.post(self.endpoint, json=msg, headers=headers)
        if r.status_code != 202:
            raise Refused(f"http {r.status_code} {r.text[:200]}")

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        rid = next(self.ids)
        waiting = self.replies.expect(rid)
        await self.post({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        return _rpc_result(await waiting())

    async def listen(self, uris: list[str]) -> list[str]:
        raise NotImplementedError("subscriptions/listen is 2026-07-28 only")


def legacy_sse(initialize: bool) -> Connect:
    @asynccontextmanager
    async def connect(t: Target) -> AsyncIterator[Client]:
        headers = {"accept": "text/event-stream", **_bearer(t.token)}
        async with t.http.stream("GET", f"{t.hub.base}/sse", headers=headers, timeout=None) as r:
            if r.status_code != 200:
                raise Refused(f"http {r.status_code}")
            lines = r.aiter_lines()
            endpoint = None
            async for line in lines:
                if line.startswith("data:"):
                    endpoint = line[5:].strip()
                    break
            assert endpoint is not None
            client = LegacySse(t, f"{t.hub.base}{endpoint}")
            async with first_refusal(), anyio.create_task_group() as tg:
                tg.start_soon(client.pump, lines)
                if initialize:
                    params = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": CLIENT_INFO}
                    await client.request("initialize", params)
                    await client.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
                yield client
                tg.cancel_scope.cancel()

    return connect


# ----------------------------------------------------------------------------- line-based (stdio, proxy)
class LineClient:
    """JSON-RPC over newline-delimited lines, as a stdio client speaks it."""

    era = "legacy"

    def __init__(self) -> None:
        self.to_server, self.from_client = anyio.create_memory_object_stream[bytes](64)
        self.ids = itertools.count(1)
        self.replies = Replies()

    async def read_line(self) -> bytes:
        try:
            return await self.from_client.receive()
        except anyio.EndOfStream:
            return b""

    async def write(self, data: bytes) -> None:
        self.replies.deliver(json.loads(data))

    async def send(self, msg: dict[str, Any]) -> None:
        await self.to_server.send(json.dumps(msg).encode() + b"\n")

    def close(self) -> None:
        """Both ends of the line, once the server is done with them."""
        self.to_server.close()
        self.from_client.close()

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        rid = next(self.ids)
        waiting = self.replies.expect(rid)
        await self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        return _rpc_result(await waiting())

    async def initialize(self) -> None:
        await self.request("initialize", {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": CLIENT_INFO})
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def listen(self, uris: list[str]) -> list[str]:
        raise NotImplementedError("subscriptions/listen is 2026-07-28 only")


@asynccontextmanager
async def stdio(t: Target) -> AsyncIterator[Client]:
    """`serve --transport stdio` as its command decides the principal (from $ONEMCP_TOKEN), on this hub."""
    principal = await stdio_principal(t.hub.app.hub.config, t.config_path)
    if isinstance(principal, str):
        raise Refused(f"refused to start: {principal}")
    client = LineClient()
    server = StdioServer(t.hub.app.hub, principal, client.read_line, client.write)
    try:
        async with first_refusal(), anyio.create_task_group() as tg:
            tg.start_soon(server.serve)
            await client.initialize()
            yield client
            client.to_server.close()
    finally:
        client.close()


@asynccontextmanager
async def proxy(t: Target) -> AsyncIterator[Client]:
    """`onemcp proxy` (token from $ONEMCP_TOKEN) bridging a stdio client to the hub's /mcp."""
    client = LineClient()
    bridge = Proxy(Endpoint(t.hub.url), client.read_line, client.write, wait=5.0)
    try:
        async with first_refusal(), anyio.create_task_group() as tg:
            tg.start_soon(bridge.run)
            await client.initialize()
            yield client
            client.to_server.close()
    finally:
        client.close()


# ----------------------------------------------------------------------------- the agent CLI
class AgentCli:
    """The CLI's own client (`onemcp run`, `inspect`): one 2026-07-28 POST per request."""

    era = "modern"

    def __init__(self, client: HubClient) -> None:
        self.client = client

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return await anyio.to_thread.run_sync(self.client.request, method, params)
        except RpcError as exc:
            raise Refused(f"rpc {exc.code} {exc.message}") from None
        except HubUnreachable as exc:
            raise Refused(f"unreachable {exc}") from None

    async def listen(self, uris: list[str]) -> list[str]:
        raise NotImplementedError("the agent CLI does not listen")


@asynccontextmanager
async def agent_cli(t: Target) -> AsyncIterator[Client]:
    client = HubClient(t.hub.url, timeout=WAIT)  # reads $ONEMCP_TOKEN, as `onemcp run` does
    try:
        yield AgentCli(client)
    finally:
        client.close()


@dataclass(frozen=True)
class EntryClient:
    entry: str  # the hub's entry point it comes in through (onemcp.auth.access.ENTRIES)
    connect: Connect
    listens: bool = False  # 2026-07-28 subscriptions/listen
    tasks: bool = False  # tasks/* (legacy era)
    parallel: int = 6  # requests in flight at once (its real client allows that many)


# Every way a client reaches the hub's methods. A new entry point in `access.ENTRIES` without a
# client here fails the matrix's coverage test.
CLIENTS: dict[str, EntryClient] = {
    "mcp-legacy": EntryClient(access.LEGACY_HTTP, legacy_http, tasks=True),
    "mcp-2026": EntryClient(access.MODERN_HTTP, modern_http, listens=True),
    "sse": EntryClient(access.SSE, legacy_sse(initialize=True), tasks=True),
    "sse-before-initialize": EntryClient(access.SSE, legacy_sse(initialize=False), tasks=True),
    "stdio": EntryClient(access.STDIO, stdio, tasks=True),
    "proxy": EntryClient(access.LEGACY_HTTP, proxy, tasks=True),
    "agent-cli": EntryClient(access.MODERN_HTTP, agent_cli, parallel=1),  # one keep-alive connection
}
