"""The proxy's legacy-era session with the hub (`proxy_legacy.HubSession`), against an in-memory hub.

The hub here is an `httpx.MockTransport`: every exchange is seen, and a session can be made to vanish
(a 404, as after a hub restart) without a process or a socket. End to end through a real hub and a
restart: tests/cli/test_proxy.py.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import orjson
import pytest

from onemcp.cli.proxy_legacy import LIST_CHANGED, NOT_INITIALIZED, HubSession
from onemcp.cli.target import Endpoint
from onemcp.protocol.jsonrpc import Message

pytestmark = pytest.mark.anyio
URL = "http://hub.test/mcp"
INIT: Message = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}},
}


class FakeHub:
    """A legacy hub: sessions by number; `forget()` makes every session so far unknown (404)."""

    def __init__(self) -> None:
        self.sessions = 0
        self.gone: set[str] = set()
        self.posted: list[tuple[str | None, Message]] = []  # (session id, message) in order

    def forget(self) -> None:
        self.gone.update(f"s{n}" for n in range(1, self.sessions + 1))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health/ready":
            return httpx.Response(200)
        if request.method != "POST":
            return httpx.Response(405)  # no GET stream, DELETE ignored
        sid = request.headers.get("mcp-session-id")
        if sid in self.gone:
            return httpx.Response(404)
        msg = orjson.loads(request.content)
        self.posted.append((sid, msg))
        if msg.get("method") == "initialize":
            self.sessions += 1
            result = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "hub"}}
            body = {"jsonrpc": "2.0", "id": msg["id"], "result": result}
            return httpx.Response(200, json=body, headers={"mcp-session-id": f"s{self.sessions}"})
        if "id" not in msg:
            return httpx.Response(202)
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": msg["id"], "result": {"echo": msg["method"]}})


async def _session(hub: FakeHub, out: list[Message], halt: anyio.Event) -> tuple[HubSession, httpx.AsyncClient]:
    async def write(msg: Message) -> None:
        out.append(msg)

    http = httpx.AsyncClient(transport=httpx.MockTransport(hub))
    return HubSession(Endpoint(URL), http, write, 5.0, halt), http


async def test_a_request_before_initialize_is_refused_and_a_ping_answered() -> None:
    hub, out, halt = FakeHub(), list[Message](), anyio.Event()
    session, http = await _session(hub, out, halt)
    async with http:
        await session.request({"jsonrpc": "2.0", "id": 7, "method": "tools/list"})
        await session.request({"jsonrpc": "2.0", "id": 8, "method": "ping"})
    assert out[0] == {"jsonrpc": "2.0", "id": 7, "error": {"code": -32600, "message": NOT_INITIALIZED}}
    assert out[1] == {"jsonrpc": "2.0", "id": 8, "result": {}}
    assert hub.posted == []  # nothing reached the hub


async def test_a_lost_session_is_reopened_with_the_clients_params_and_replayed() -> None:
    hub, out, halt = FakeHub(), list[Message](), anyio.Event()
    session, http = await _session(hub, out, halt)
    async with http, anyio.create_task_group() as tg:
        await tg.start(session.run)
        await session.initialize(INIT)
        await session.notify({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await session.request({"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "info"}})
        sub = {"jsonrpc": "2.0", "id": 3, "method": "resources/subscribe", "params": {"uri": "file:///a"}}
        await session.request(sub)
        hub.forget()  # the hub restarted: s1 is unknown now
        with anyio.fail_after(5):
            await session.request({"jsonrpc": "2.0", "id": 4, "method": "tools/list"})
        tg.cancel_scope.cancel()
    assert out[-1] == {"jsonrpc": "2.0", "id": 4, "result": {"echo": "tools/list"}}
    after: list[tuple[str | None, Any]] = [(sid, m.get("method")) for sid, m in hub.posted[4:]]
    assert after == [
        (None, "initialize"),
        ("s2", "notifications/initialized"),
        ("s2", "logging/setLevel"),
        ("s2", "resources/subscribe"),
        ("s2", "tools/list"),  # the request whose POST got a 404 is sent again, on the new session
    ]
    assert hub.posted[4][1]["params"] == INIT["params"]  # the client's own initialize params
    assert [m.get("method") for m in out if "id" not in m] == list(LIST_CHANGED)  # the client lists again


async def test_no_hub_fails_initialize_after_the_wait_with_a_clear_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    out: list[Message] = []

    async def write(msg: Message) -> None:
        out.append(msg)

    halt = anyio.Event()
    halt.set()  # stopping: the wait for a hub ends at once
    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        session = HubSession(Endpoint(URL), http, write, 5.0, halt)
        with anyio.fail_after(5):
            await session.initialize(INIT)
    assert out[0]["id"] == 1
    assert out[0]["error"]["code"] == -32000
    assert "no onemcp hub answers at http://hub.test/mcp" in out[0]["error"]["message"]
    assert session.session_id is None
