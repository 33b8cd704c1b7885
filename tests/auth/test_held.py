"""One principal cannot hold the hub's connections: its open requests and streams are capped.

Before the caps, one API key opened `maxConnections` streams (legacy GET /mcp, /sse, 2026-07-28
listens or the admin event stream, each alike) and every other principal's request then got 503
(repro: /work/scratch/s31/p/repro_streams.py). Now the key's stream past `maxStreamsPerPrincipal`
(its request past `maxRequestsPerPrincipal`) is 429 with `data.limit`, and another key still gets in.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from fixtures.launch import fixture_command
from onemcp.auth.held import MIN_REQUESTS, Held, request_cap
from onemcp.auth.keys import KeyStore
from onemcp.auth.principal import ANONYMOUS, Principal
from onemcp.config.model import Limits
from onemcp.observability.limits import HITS
from support.hub import HEADERS, INIT, RunningHub, running_hub

pytestmark = pytest.mark.anyio
DEADLINE = 30.0
V = "2026-07-28"


def limits(**keys: Any) -> Limits:
    return Limits.model_validate(keys)


def test_streams_count_as_requests_and_a_refusal_counts_nothing() -> None:
    held, caps = Held(), limits(maxStreamsPerPrincipal=2, maxRequestsPerPrincipal=3)
    a, b = Principal("key:a", frozenset()), Principal("key:b", frozenset())
    assert held.take(a, caps, stream=True) is None and held.take(a, caps, stream=True) is None
    refused = held.take(a, caps, stream=True)
    assert refused is not None and refused.limit == "streams_per_principal" and refused.status == 429
    assert held.take(a, caps, stream=False) is None  # a call still gets in: the third request
    refused = held.take(a, caps, stream=False)
    assert refused is not None and refused.limit == "requests_per_principal"
    assert held.take(b, caps, stream=True) is None  # another principal is not held back
    assert (held.requests["key:a"], held.streams["key:a"]) == (3, 2)
    # what may be a response or a cancellation is counted at the cap; refused once known to be a request
    assert held.take(a, caps, stream=False, refusable=False) is None
    over = held.over(a, caps)
    assert over is not None and over.limit == "requests_per_principal"
    held.give_back(a, stream=False)
    assert held.over(a, caps) is None  # at the cap, not over it: the request counted is one of the three
    with held.holding(a, caps, stream=False) as refusal:
        assert refusal is not None  # refused: nothing counted, nothing given back
    assert held.requests["key:a"] == 3
    for stream in (True, True, False):
        held.give_back(a, stream=stream)
    held.give_back(b, stream=True)
    assert not held.requests and not held.streams  # a principal at 0 is forgotten


def test_the_default_request_cap_is_a_quarter_of_the_connections() -> None:
    assert request_cap(limits(maxConnections=4000)) == 1000
    assert request_cap(limits(maxConnections=20)) == MIN_REQUESTS  # never below 16
    assert request_cap(limits(maxConnections=20, maxRequestsPerPrincipal=2)) == 2
    assert limits().max_streams_per_principal == 100  # a desktop host opens a handful


def listen(rid: int) -> dict[str, Any]:
    meta = {"io.modelcontextprotocol/protocolVersion": V, "io.modelcontextprotocol/clientCapabilities": {}}
    params = {"notifications": {"toolsListChanged": True}, "_meta": meta}
    return {"jsonrpc": "2.0", "id": rid, "method": "subscriptions/listen", "params": params}


@asynccontextmanager
async def keyed(tmp_path: Path, **caps: Any) -> AsyncIterator[tuple[RunningHub, KeyStore]]:
    cmd = fixture_command()
    config = {
        "mcpServers": {"web": {"command": cmd[0], "args": cmd[1:]}},
        "onemcp": {"auth": {"apiKeys": True}, "limits": {"maxConnections": 64, **caps}},
    }
    (tmp_path / "mcp.json").write_text(json.dumps(config))
    async with running_hub(config, config_path=tmp_path / "mcp.json") as hub:
        yield hub, KeyStore(tmp_path / "keys.db")


async def test_one_key_cannot_hold_every_stream_and_another_key_still_gets_in(tmp_path: Path) -> None:
    with anyio.fail_after(DEADLINE):
        async with keyed(tmp_path, maxStreamsPerPrincipal=4) as (hub, keys), AsyncExitStack() as stack:
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=DEADLINE))
            a = {**HEADERS, "authorization": f"Bearer {keys.create('a', ['mcp', 'admin'])}"}
            b = {**HEADERS, "authorization": f"Bearer {keys.create('b', ['mcp'])}"}
            r = await http.post(hub.url, json=INIT, headers=a)
            session = {**a, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
            modern = {**a, "mcp-protocol-version": V, "mcp-method": "subscriptions/listen"}
            opened = [
                http.stream("GET", hub.url, headers=session),  # a legacy session's GET stream
                http.stream("POST", hub.url, json=listen(1), headers=modern),  # a 2026-07-28 listen
                http.stream("GET", f"{hub.base}/sse", headers=a),  # a legacy HTTP+SSE stream
                http.stream("GET", f"{hub.base}/api/v1/events", headers=a),  # the admin event stream
            ]
            for cm in opened:
                assert (await stack.enter_async_context(cm)).status_code == 200
            before = HITS.counts["streams_per_principal"]
            for method, url, body, headers in (
                ("GET", hub.url, None, session),
                ("POST", hub.url, listen(2), modern),
                ("GET", f"{hub.base}/sse", None, a),
            ):
                r = await http.request(method, url, json=body, headers=headers)
                assert r.status_code == 429 and r.headers["retry-after"] == "5", r.text
                assert r.headers["connection"] == "close"  # the refused connection is not kept either
                assert r.json()["error"]["code"] == -32000
                assert r.json()["error"]["data"] == {"limit": "streams_per_principal"}
            r = await http.get(f"{hub.base}/api/v1/events", headers=a)
            assert r.status_code == 429 and r.json()["limit"] == "streams_per_principal"
            assert HITS.counts["streams_per_principal"] == before + 4
            # a call of the same key is not a stream: answered
            ping = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
            assert (await http.post(hub.url, json=ping, headers=session)).status_code == 200
            # another key is not held back by the first one's streams
            r = await http.post(hub.url, json=INIT, headers=b)
            assert r.status_code == 200, r.text
            assert (
                await stack.enter_async_context(http.stream("GET", f"{hub.base}/sse", headers=b))
            ).status_code == 200


async def test_one_key_cannot_hold_every_connection_with_long_calls(tmp_path: Path) -> None:
    with anyio.fail_after(DEADLINE):
        async with (
            keyed(tmp_path, maxRequestsPerPrincipal=3) as (hub, keys),
            httpx.AsyncClient(timeout=DEADLINE) as http,
        ):
            a = {**HEADERS, "authorization": f"Bearer {keys.create('a', ['mcp'])}"}
            b = {**HEADERS, "authorization": f"Bearer {keys.create('b', ['mcp'])}"}
            await hub.wait_ready()
            r = await http.post(hub.url, json=INIT, headers=a)
            session = {**a, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
            key_a = next(iter(hub.app.gate.held.requests), None)
            assert key_a is None  # nothing held between requests

            async def long_call(rid: int) -> None:
                body = {"jsonrpc": "2.0", "id": rid, "method": "tools/call"}
                body["params"] = {"name": "sleep", "arguments": {"seconds": 60}}
                await http.post(hub.url, json=body, headers=session)  # until it is cancelled

            async with anyio.create_task_group() as tg:
                for rid in range(3):
                    tg.start_soon(long_call, 10 + rid)
                while sum(hub.app.gate.held.requests.values()) < 3:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                ping = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
                r = await http.post(hub.url, json=ping, headers=session)
                assert r.status_code == 429 and r.json()["error"]["data"] == {"limit": "requests_per_principal"}
                r = await http.post(hub.url, json=INIT, headers=b)  # another key: in
                assert r.status_code == 200, r.text
                for rid in range(3):  # the calls end (their POSTs with them)
                    note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 10 + rid}}
                    while (await http.post(hub.url, json=note, headers=session)).status_code == 429:
                        await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the cap frees as they end)
            assert not hub.app.gate.held.requests  # all given back


async def test_anonymous_clients_are_one_principal_under_the_default_caps() -> None:
    """No auth: every client is `anonymous`, so the caps bound all clients together; the defaults
    leave a local hub's handful of hosts far below them (streams: 100)."""
    cmd = fixture_command()
    config = {"mcpServers": {"web": {"command": cmd[0], "args": cmd[1:]}}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, AsyncExitStack() as stack:
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=DEADLINE))
            for _ in range(8):  # eight hosts, each with a session and its GET stream
                r = await http.post(hub.url, json=INIT, headers=HEADERS)
                session = {
                    **HEADERS,
                    "mcp-session-id": r.headers["mcp-session-id"],
                    "mcp-protocol-version": "2025-11-25",
                }
                assert (
                    await stack.enter_async_context(http.stream("GET", hub.url, headers=session))
                ).status_code == 200
            assert hub.app.gate.held.streams[ANONYMOUS.id] == 8
