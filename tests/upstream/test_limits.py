"""An upstream message over maxResponseBytes (issue 20, findings 3 and 8c): refused with a clear error, not buffered.

The limit here is 64 KiB and the hostile replies 1-2 MB. HTTP upstreams are a scripted Streamable HTTP
server (raw ASGI on loopback) whose tools answer with a big JSON body (with and without Content-Length),
one big SSE event, or an SSE line that never ends; the fixture upstream's `blob` tool is used over stdio
and the legacy HTTP+SSE transport. Each time the call gets the reason, the refusal is counted in
`onemcp_limit_hits`, and the hub goes on serving.
"""

from __future__ import annotations

import json
import re
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from fixtures.launch import fixture_command, running_http_fixture
from onemcp.config.model import ServerConfig
from onemcp.upstream.transports.stdio import StdioTransport, _ChildProtocol
from support.credentials import asgi_body, loopback_asgi
from support.hub import raw_session, running_hub

pytestmark = pytest.mark.anyio
KiB = 1024
LIMIT = 64 * KiB
BIG = 2 * 1024 * KiB
REFUSED = f"response exceeded maxResponseBytes ({LIMIT} bytes)"
TOOLS = [
    {"name": n, "inputSchema": {"type": "object"}}
    for n in ("small", "big_json", "big_chunked", "big_event", "endless_line")
]


def _result(rid: Any, text: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": text}]}}).encode()


async def _pieces(send: Any, body: bytes, *, more: bool = False) -> None:
    """`body` in 64 KiB sends; the hub hanging up half-way ends it."""
    try:
        for i in range(0, len(body), 64 * KiB):
            last = i + 64 * KiB >= len(body)
            await send({"type": "http.response.body", "body": body[i : i + 64 * KiB], "more_body": more or not last})
    except OSError:
        pass


async def scripted(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = await asgi_body(receive)
    if scope["method"] != "POST":
        await send({"type": "http.response.start", "status": 405, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    msg = json.loads(body)
    rid, method = msg.get("id"), msg.get("method")
    json_type = (b"content-type", b"application/json")
    if rid is None:
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    name = msg.get("params", {}).get("name")
    if method == "initialize":
        result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "s"}}
        reply = json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode()
    elif method == "tools/list":
        reply = json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}}).encode()
    elif name == "big_json":  # with a Content-Length: refused before its body is read
        reply = _result(rid, "x" * BIG)
    elif name in ("big_chunked", "big_event", "endless_line"):
        sse = name != "big_chunked"
        ctype = (b"content-type", b"text/event-stream" if sse else b"application/json")
        await send({"type": "http.response.start", "status": 200, "headers": [ctype]})
        if name == "big_chunked":
            await _pieces(send, _result(rid, "x" * BIG))
        elif name == "big_event":
            await _pieces(send, b"event: message\ndata: " + _result(rid, "x" * BIG) + b"\n\n")
        else:
            await _pieces(send, b"data: " + b"x" * BIG, more=True)
            while (await receive())["type"] != "http.disconnect":
                pass  # the line never ends: only the hub hanging up ends this
        return
    else:
        reply = _result(rid, "small")
    headers = [json_type, (b"content-length", str(len(reply)).encode())]
    if method == "initialize":
        headers.append((b"mcp-session-id", b"s1"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await _pieces(send, reply)


@asynccontextmanager
async def scripted_upstream() -> AsyncIterator[str]:
    async with loopback_asgi(scripted) as base:
        yield f"{base}/mcp"


def call(name: str, rid: int = 7, **arguments: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


async def refusals(http: httpx.AsyncClient, base: str) -> float:
    """onemcp_limit_hits{limit="response_bytes"}, as /metrics says (0 while it is not there)."""
    text = (await http.get(f"{base}/metrics")).text
    found = re.search(r'^onemcp_limit_hits_total\{limit="response_bytes"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found is not None else 0.0


def error_of(r: httpx.Response) -> str | None:
    error = r.json().get("error")
    return error.get("message") if isinstance(error, dict) else None


async def test_a_json_body_over_the_limit_is_refused_and_the_upstream_keeps_serving() -> None:
    with anyio.fail_after(20):
        async with scripted_upstream() as url:
            server = {"url": url, "protocol": "legacy", "maxResponseBytes": LIMIT, "timeout": 10}
            async with running_hub({"mcpServers": {"s": server}}) as hub, httpx.AsyncClient() as http:
                session = await raw_session(http, hub.url)
                before = await refusals(http, hub.base)
                for name in ("big_json", "big_chunked"):
                    r = await http.post(hub.url, json=call(name), headers=session)
                    assert r.json()["id"] == 7 and error_of(r) == f"[s] {REFUSED}", name
                assert await refusals(http, hub.base) == before + 2
                r = await http.post(hub.url, json=call("small", 8), headers=session)
                assert r.json()["result"]["content"][0]["text"] == "small"
                assert hub.app.hub.pool.connections["s"].state == "ready"


async def test_an_sse_event_over_the_hub_wide_limit_is_refused() -> None:
    with anyio.fail_after(20):
        async with scripted_upstream() as url:
            config = {
                "mcpServers": {"s": {"url": url, "protocol": "legacy", "timeout": 10}},
                "onemcp": {"limits": {"maxResponseBytes": LIMIT}},
            }
            async with running_hub(config) as hub, httpx.AsyncClient() as http:
                session = await raw_session(http, hub.url)
                for name in ("big_event", "endless_line"):  # one event too big; one line that never ends
                    r = await http.post(hub.url, json=call(name), headers=session)
                    assert error_of(r) == f"[s] {REFUSED}", name
                r = await http.post(hub.url, json=call("small", 8), headers=session)
                assert r.json()["result"]["content"][0]["text"] == "small"


async def test_an_event_over_the_limit_on_a_legacy_sse_stream_fails_the_call_and_the_stream_is_remade() -> None:
    with anyio.fail_after(20):
        async with running_http_fixture("--sse") as url:
            server = {"url": url, "type": "sse", "maxResponseBytes": LIMIT}
            async with running_hub({"mcpServers": {"old": server}}) as hub, httpx.AsyncClient() as http:
                session = await raw_session(http, hub.url)
                r = await http.post(hub.url, json=call("blob", bytes=BIG), headers=session)
                assert error_of(r) == f"[old] upstream closed: the SSE stream ended: {REFUSED}"
                while hub.app.hub.pool.connections["old"].state != "ready":
                    await anyio.sleep(0.02)  # allowed-sleep: polling for the restart, within fail_after
                r = await http.post(hub.url, json=call("echo", 8, message="hi"), headers=session)
                assert r.json()["result"]["content"][0]["text"] == "hi"


async def test_a_stdio_reply_over_the_limit_fails_its_call_and_the_server_goes_on_serving() -> None:
    """Finding 8c gave the reason; the server was stopped for it, so one client's read of a large resource
    failed every other call to that server and restarted it. Now only that call fails (as over HTTP); a
    message over the limit that is not plainly a reply still stops it (tests/upstream/transports)."""
    command, *args = fixture_command()
    server = {"command": command, "args": args, "maxResponseBytes": LIMIT}
    with anyio.fail_after(20):
        async with running_hub({"mcpServers": {"s": server}}) as hub, httpx.AsyncClient() as http:
            session = await raw_session(http, hub.url)
            before = await refusals(http, hub.base)
            conn = hub.app.hub.pool.connections["s"]
            r = await http.post(hub.url, json=call("blob", bytes=BIG), headers=session)
            assert error_of(r) == f"[s] {REFUSED}"
            assert await refusals(http, hub.base) == before + 1
            r = await http.post(hub.url, json=call("blob", 8, bytes=1000), headers=session)
            assert len(r.json()["result"]["content"][0]["text"]) == 1000
            assert hub.app.hub.pool.connections["s"] is conn and conn.state == "ready"  # never restarted


def test_stdio_line_assembly_costs_linear_allocation() -> None:
    """A 2 MB line arriving in 4 KB pipe reads is not re-copied as it grows (tracemalloc, no clock).

    Counted: the bytes allocated by each read before the line ends; re-copying the pending line
    on every read (quadratic) allocates ~n²/8 KB in all, ~256 times the line here. The last read
    (join, parse) is left out: orjson reserves, without touching, a dozen times its input.
    """
    size = 2 * 1024 * KiB
    delivered: list[Any] = []
    owner = StdioTransport("s", ServerConfig(command="unused"))
    protocol = _ChildProtocol(owner, lambda msg, related: delivered.append(msg))
    line = b'{"jsonrpc":"2.0","id":1,"result":{"text":"' + b"x" * size + b'"}}\n'
    chunks = [line[i : i + 4 * KiB] for i in range(0, len(line), 4 * KiB)]
    growing = 0
    tracemalloc.start()
    try:
        for chunk in chunks[:-1]:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            protocol.pipe_data_received(1, chunk)
            _, peak = tracemalloc.get_traced_memory()
            growing += peak - before
    finally:
        tracemalloc.stop()
    protocol.pipe_data_received(1, chunks[-1])
    assert len(delivered) == 1 and len(delivered[0]["result"]["text"]) == size
    assert growing < size, f"{growing / size:.0f}x the line's size allocated while it grew: quadratic"


def own_connections_config(limits: dict[str, int]) -> dict[str, Any]:
    """One fixture server with a connection (a process) per client session, under `limits`."""
    fx = fixture_command()
    return {
        "mcpServers": {"own": {"command": fx[0], "args": fx[1:], "isolation": "session"}},
        "onemcp": {"limits": limits},
    }


async def test_a_servers_own_connections_are_bounded() -> None:
    """`isolation: session` makes one connection (a process) per client session: at
    `maxOwnConnections` the stalest idle one closes to make room, and with none idle the call is
    refused with the limit's name, never a process more."""
    config = own_connections_config({"maxOwnConnections": 2})
    with anyio.fail_after(30):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=30) as http:
            isolated = hub.app.hub.isolated
            sessions = [await raw_session(http, hub.url) for _ in range(3)]
            for headers in sessions[:2]:
                assert "result" in (await http.post(hub.url, json=call("echo", 2, message="x"), headers=headers)).json()
            refused = (await http.post(hub.url, json=call("echo", 2, message="x"), headers=sessions[2])).json()
            assert refused["error"]["data"] == {"limit": "own_connections"}, refused
            assert len(isolated._conns) == 2
            first = next(iter(isolated._conns))
            isolated._used[first] -= 120  # unused for two minutes: it may make room
            assert "result" in (await http.post(hub.url, json=call("echo", 2, message="x"), headers=sessions[2])).json()
            assert len(isolated._conns) == 2 and first not in isolated._conns


async def test_one_principals_own_connections_past_its_limit_close_its_stalest_idle_one() -> None:
    """One-shot clients (a CLI run per call) never end their sessions: each left its own connection, a
    process, until the session expired (30 min; 50 runs: 50 processes). Past
    `maxOwnConnectionsPerPrincipal` a principal's new one closes its stalest idle one; with none idle it
    is still made (the server-wide `maxOwnConnections` bounds)."""
    config = own_connections_config({"maxOwnConnectionsPerPrincipal": 2})
    with anyio.fail_after(30):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=30) as http:
            isolated = hub.app.hub.isolated
            sessions = [await raw_session(http, hub.url) for _ in range(4)]
            for headers in sessions[:3]:  # none idle: the third is made all the same
                assert "result" in (await http.post(hub.url, json=call("echo", 2, message="x"), headers=headers)).json()
            assert isolated.count("own") == 3
            first, second, _ = list(isolated._conns)
            isolated._used[first] -= 120  # unused for two minutes: idle ones, down to below the limit
            isolated._used[second] -= 60.5
            assert "result" in (await http.post(hub.url, json=call("echo", 2, message="x"), headers=sessions[3])).json()
            assert isolated.count("own") == 2 and first not in isolated._conns and second not in isolated._conns
            assert (
                "result" in (await http.post(hub.url, json=call("echo", 2, message="x"), headers=sessions[0])).json()
            )  # made again
