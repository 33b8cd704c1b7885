"""`onemcp proxy` at its ends, as `serve --transport stdio` is: every request it forwarded is answered
once at end of input or SIGTERM (-32000 after the grace), and a stop while it waits for the hub ends
the wait at once. In process, against a stand-in hub on a loopback port."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import uvicorn

from onemcp.cli.proxy import Proxy
from onemcp.cli.proxy_modern import STOPPING
from onemcp.cli.target import Endpoint
from support.credentials import asgi_body, loopback_asgi

pytestmark = pytest.mark.anyio
DEADLINE = 30.0  # a hang guard only: nothing here waits for a timer
NEVER = 3600.0  # a --wait no test may sit through
MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}
INIT = {"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {"protocolVersion": "2025-11-25",
        "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}  # fmt: skip
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def request(rid: str, method: str, *, modern: bool = False) -> dict[str, Any]:
    params: dict[str, Any] = {"uri": "fx://held"} if method == "resources/read" else {}
    if modern:
        params["_meta"] = MODERN_META
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


class StandIn:
    """A hub that answers initialize, ping and lists at once, and anything else (a call still running)
    only at `release`: its SSE stream stays open until then. `gone`: after the
    session opened, the session is unknown (404) and no initialize succeeds (a hub that restarted badly)."""

    def __init__(self, *, gone: bool = False) -> None:
        self.gone = gone
        self.held: list[Any] = []
        self.changed = anyio.Event()
        self.refused = anyio.Event()
        self.release = anyio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await send({"type": "http.response.start", "status": 405, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        msg = json.loads(await asgi_body(receive))
        has_session = any(name == b"mcp-session-id" for name, _ in scope["headers"])
        if self.gone and (has_session or self.refused.is_set()):
            self.refused.set()
            await send({"type": "http.response.start", "status": 404 if has_session else 500, "headers": []})
            await send({"type": "http.response.body", "body": b"no such session"})
            return
        if "id" not in msg:
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        if msg["method"] in ("initialize", "ping", "tools/list"):
            result = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "s", "version": "1"}}
            body = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}).encode()
            headers = [(b"content-type", b"application/json"), (b"mcp-session-id", b"s" * 32)]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b": held\n\n", "more_body": True})
        self.held.append(msg["id"])
        self.changed.set()
        self.changed = anyio.Event()
        await self.release.wait()
        reply = {"jsonrpc": "2.0", "id": msg["id"], "result": {"released": True}}
        await send({"type": "http.response.body", "body": f"data: {json.dumps(reply)}\n\n".encode()})

    async def holding(self, count: int) -> None:
        while len(self.held) < count:
            await self.changed.wait()


class Client:
    """The stdio client's end: lines in, every line out kept in order."""

    def __init__(self) -> None:
        self.to_proxy, self.from_client = anyio.create_memory_object_stream[bytes](64)
        self.out: list[dict[str, Any]] = []
        self.read = 0  # lines the proxy took
        self._changed = anyio.Event()

    async def read_line(self) -> bytes:
        try:
            line = await self.from_client.receive()
        except anyio.EndOfStream:
            return b""
        self.read += 1
        self._poke()
        return line

    async def write(self, data: bytes) -> None:
        self.out.append(json.loads(data))
        self._poke()

    def _poke(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def send(self, *msgs: dict[str, Any]) -> None:
        for msg in msgs:
            await self.to_proxy.send(json.dumps(msg).encode() + b"\n")

    async def until(self, done: Callable[[], bool]) -> None:
        while not done():
            await self._changed.wait()

    def close(self) -> None:
        self.to_proxy.close()
        self.from_client.close()

    def replies(self, rid: str) -> list[dict[str, Any]]:
        return [m for m in self.out if m.get("id") == rid and "method" not in m]


@pytest.fixture
def client() -> Iterator[Client]:
    line = Client()
    try:
        yield line
    finally:
        line.close()


@asynccontextmanager
async def running(proxy: Proxy) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """The proxy running; yields a wait for its end."""
    ended = anyio.Event()

    async def run() -> None:
        await proxy.run()
        ended.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        yield ended.wait


def assert_cut_off(client: Client, rid: str) -> None:
    replies = client.replies(rid)
    assert len(replies) == 1, client.out  # answered, and only once
    error = replies[0]["error"]
    assert error["code"] == -32000 and STOPPING in error["message"], error


@pytest.mark.parametrize("end", ["eof", "sigterm"])
async def test_calls_still_running_after_the_grace_are_answered_once_in_their_era(end: str, client: Client) -> None:
    """A legacy and a 2026-07-28 call the hub never answers, then stdin closes (or SIGTERM): after the
    grace each is answered -32000 once, as `serve --transport stdio` answers it (the proxy wrote nothing
    for them and exited: the client waited for replies that never came)."""
    hub = StandIn()
    with anyio.fail_after(DEADLINE):
        async with loopback_asgi(hub) as base:
            proxy = Proxy(Endpoint(f"{base}/mcp"), client.read_line, client.write, wait=NEVER, drain=0.0)
            async with running(proxy) as ended:
                await client.send(INIT, INITIALIZED, request("ping", "ping"))
                await client.until(lambda: bool(client.replies("ping")))
                await client.send(request("legacy", "tools/call"), request("modern", "resources/read", modern=True))
                await hub.holding(2)
                if end == "eof":
                    client.to_proxy.close()
                else:
                    proxy.stop()
                await ended()
            hub.release.set()
    assert "result" in client.replies("init")[0]
    for rid in ("legacy", "modern"):
        assert_cut_off(client, rid)


async def test_a_call_the_hub_answers_within_the_grace_gets_its_own_reply(client: Client) -> None:
    """The grace comes first: a reply that arrives during it is the one the client gets (once)."""
    hub = StandIn()
    with anyio.fail_after(DEADLINE):
        async with loopback_asgi(hub) as base:
            proxy = Proxy(Endpoint(f"{base}/mcp"), client.read_line, client.write, wait=NEVER, drain=NEVER)
            async with running(proxy) as ended:
                await client.send(INIT, INITIALIZED, request("slow", "tools/call"))
                await hub.holding(1)
                proxy.stop()
                hub.release.set()  # during the grace
                await ended()
    assert [r.get("result") for r in client.replies("slow")] == [{"released": True}]


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_sigterm_while_waiting_for_the_hub_answers_what_was_read_and_ends_at_once(client: Client) -> None:
    """No hub yet, --wait of an hour: a 2026-07-28 request and the initialize are waiting; SIGTERM
    answers both (-32000, the proxy is shutting down) and the proxy ends (it sat out the whole wait)."""
    proxy = Proxy(Endpoint(f"http://127.0.0.1:{closed_port()}/mcp"), client.read_line, client.write, wait=NEVER)
    with anyio.fail_after(DEADLINE):
        async with running(proxy) as ended:
            await client.send(request("discover", "server/discover", modern=True), INIT)
            await client.until(lambda: client.read == 2)
            proxy.stop()
            await ended()
    for rid in ("discover", "init"):
        assert_cut_off(client, rid)


async def test_sigterm_while_a_request_waits_for_the_hub_to_come_back_answers_it_at_once(client: Client) -> None:
    """The session was lost and the hub does not take a new one: the request waiting for it (--wait of
    an hour) is answered at SIGTERM, not after the wait."""
    hub = StandIn(gone=True)
    with anyio.fail_after(DEADLINE):
        async with loopback_asgi(hub) as base:
            proxy = Proxy(Endpoint(f"{base}/mcp"), client.read_line, client.write, wait=NEVER)
            async with running(proxy) as ended:
                await client.send(INIT)
                await client.until(lambda: bool(client.replies("init")))
                await client.send(request("list", "tools/list"))
                await hub.refused.wait()
                proxy.stop()
                await ended()
    assert_cut_off(client, "list")


async def test_a_request_after_a_failed_initialize_is_refused_at_once(client: Client) -> None:
    """The hub refused the initialize, so no session will come: the next request is refused at once
    (-32600 not initialized; it waited all of --wait for a session, then blamed the hub)."""
    hub = StandIn(gone=True)
    hub.refused.set()  # every initialize is refused
    with anyio.fail_after(DEADLINE):
        async with loopback_asgi(hub) as base:
            proxy = Proxy(Endpoint(f"{base}/mcp"), client.read_line, client.write, wait=NEVER)
            async with running(proxy) as ended:
                await client.send(INIT, request("list", "tools/list"))
                await client.until(lambda: bool(client.replies("list")))
                client.to_proxy.close()
                await ended()
    assert "HTTP 500" in client.replies("init")[0]["error"]["message"]
    assert client.replies("list")[0]["error"]["code"] == -32600, client.out


async def test_requests_sent_while_initialize_waits_for_the_hub_are_answered_once_it_comes(client: Client) -> None:
    """A desktop client starts the proxy before the hub: its initialize waits (--wait), the requests
    behind it stay in the pipe, and once a hub listens they are all answered, initialize first."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not listening: refused, as an address no hub has taken yet
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    server = uvicorn.Server(uvicorn.Config(StandIn(), log_level="warning", lifespan="off"))
    proxy = Proxy(Endpoint(url), client.read_line, client.write, wait=NEVER)
    try:
        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as tg, running(proxy) as ended:
                await client.send(INIT, INITIALIZED, request("a", "tools/list"), request("b", "ping"))
                await client.until(lambda: client.read >= 1)  # initialize is waiting for a hub
                assert client.out == [] and client.read == 1  # nothing answered, nothing else read yet
                sock.listen(16)
                tg.start_soon(server.serve, [sock])
                await client.until(lambda: bool(client.replies("a") and client.replies("b")))
                client.to_proxy.close()
                await ended()
                server.should_exit = True
    finally:
        sock.close()
    assert client.out[0]["id"] == "init" and "result" in client.out[0]
    assert all("result" in client.replies(rid)[0] for rid in ("a", "b")), client.out


class HungHub:
    """A hub that takes each connection and never answers (hung, or stopped with SIGSTOP); with
    `ready`, its /health/ready answers 200 at once and only the initialize hangs."""

    def __init__(self, *, ready: bool) -> None:
        self.ready = ready
        self.hanging = anyio.Event()
        self.let_go = anyio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if self.ready and scope["path"] == "/health/ready":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        await asgi_body(receive)
        self.hanging.set()
        await self.let_go.wait()


@pytest.mark.parametrize("ready", [True, False], ids=["initialize-hangs", "readiness-hangs"])
async def test_sigterm_while_a_hung_hub_holds_the_initialize_ends_the_proxy_at_once(
    client: Client, ready: bool
) -> None:
    """The hub took the initialize (or the readiness probe before it) and never answers: SIGTERM
    answered nothing and the proxy went on for as long as the hub held the socket (a desktop client's
    quit left it running)."""
    hub = HungHub(ready=ready)
    with anyio.fail_after(DEADLINE):
        async with loopback_asgi(hub) as base:
            proxy = Proxy(Endpoint(f"{base}/mcp"), client.read_line, client.write, wait=NEVER)
            async with running(proxy) as ended:
                await client.send(INIT)
                await hub.hanging.wait()
                proxy.stop()
                await ended()
                hub.let_go.set()  # (so the stand-in's server can stop)
    assert_cut_off(client, "init")
