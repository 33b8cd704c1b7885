"""An HTTP upstream's errors on non-2xx statuses, as a client of the hub sees them (issue 12, items 1 and 8).

The upstream here is a scripted Streamable HTTP server (legacy era, JSON replies) whose
`tools/call` answers the way real servers do: a JSON-RPC error on HTTP 400 (as 2026-07-28
servers must, and many SDK servers do for bad params), or an HTML error page from a proxy.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from support.credentials import asgi_body, loopback_asgi
from support.hub import HEADERS, raw_session, running_hub

pytestmark = pytest.mark.anyio
MODERN = "2026-07-28"
HTML = (  # nginx's own, its upstream down
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>"
    b"\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n"
)
TOOLS = [{"name": n, "inputSchema": {"type": "object"}} for n in ("rejects", "unnamed", "page")]


async def _reply(send: Any, status: int, body: bytes, ctype: bytes = b"application/json", extra: Any = ()) -> None:
    headers = [(b"content-type", ctype), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def scripted(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":
        await _reply(send, 405, b"")
        return
    body = await asgi_body(receive)
    msg = json.loads(body)
    rid, method = msg.get("id"), msg.get("method")
    if rid is None:
        await _reply(send, 202, b"")
        return
    if method == "initialize":
        result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "s"}}
        ok = json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode()
        await _reply(send, 200, ok, extra=[(b"mcp-session-id", b"s1")])
    elif method == "tools/list":
        await _reply(send, 200, json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}}).encode())
    elif method == "tools/call" and msg["params"]["name"] == "rejects":
        error = {"code": -32602, "message": "Invalid params: 'n' must be a number", "data": {"field": "n"}}
        await _reply(send, 400, json.dumps({"jsonrpc": "2.0", "id": rid, "error": error}).encode())
    elif method == "tools/call" and msg["params"]["name"] == "unnamed":  # refused before its id was read
        error = {"code": -32600, "message": "Invalid Request: header mismatch"}
        await _reply(send, 400, json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode())
    elif method == "tools/call":
        await _reply(send, 502, HTML, b"text/html")
    else:
        error = {"code": -32601, "message": f"Method not found: {method}"}
        await _reply(send, 404, json.dumps({"jsonrpc": "2.0", "id": rid, "error": error}).encode())


@asynccontextmanager
async def scripted_upstream() -> AsyncIterator[str]:
    async with loopback_asgi(scripted) as base:
        yield f"{base}/mcp"


def call(name: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": {}}}


def modern_headers(name: str) -> dict[str, str]:
    return {**HEADERS, "mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": name}


def modern_call(name: str) -> dict[str, Any]:
    body = call(name)
    body["params"]["_meta"] = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return body


async def test_an_upstream_json_rpc_error_on_http_400_reaches_the_client_as_that_error() -> None:
    with anyio.fail_after(30):
        async with scripted_upstream() as url:
            config = {"mcpServers": {"s": {"url": url, "protocol": "legacy"}}}
            async with running_hub(config) as hub, httpx.AsyncClient() as http:
                assert hub.app.hub.pool.connections["s"].state == "ready"
                legacy = await raw_session(http, hub.url)
                r = await http.post(hub.url, json=call("rejects"), headers=legacy)
                assert r.status_code == 200  # legacy era: errors ride a 200
                error = r.json()["error"]  # the upstream's error, named as the hub names every upstream error
                assert r.json()["id"] == 7 and error["code"] == -32602 and error["data"] == {"field": "n"}
                assert error["message"] == "[s] Invalid params: 'n' must be a number"
                r = await http.post(hub.url, json=modern_call("rejects"), headers=modern_headers("rejects"))
                assert r.status_code == 400  # 2026-07-28: -32602 is HTTP 400
                assert r.json()["error"]["code"] == -32602 and r.json()["error"]["data"] == {"field": "n"}
                # an error the upstream sent before reading the id is still the answer to this call
                r = await http.post(hub.url, json=call("unnamed"), headers=legacy)
                assert r.json()["id"] == 7 and r.json()["error"]["code"] == -32600


async def test_an_upstream_error_page_becomes_one_line_without_the_upstream_url() -> None:
    with anyio.fail_after(30):
        async with scripted_upstream() as url:
            config = {"mcpServers": {"s": {"url": url, "protocol": "legacy"}}}
            async with running_hub(config) as hub, httpx.AsyncClient() as http:
                legacy = await raw_session(http, hub.url)
                r = await http.post(hub.url, json=call("page"), headers=legacy)
                error = r.json()["error"]
                # the status, its reason and the page's words, not its markup (hunt s33-h F7)
                assert error == {"code": -32603, "message": "[s] HTTP 502 Bad Gateway: nginx/1.22.1"}
                assert (
                    "\n" not in error["message"]
                    and url not in error["message"]
                    and "127.0.0.1" not in json.dumps(r.json())
                )
                assert hub.app.hub.pool.connections["s"].state == "ready"  # one bad reply is not a dead upstream


async def test_a_url_of_an_old_sse_server_falls_back_to_http_sse() -> None:
    """No `type` given, the POSTed handshake refused (404/405): the spec's probe tries GET + SSE (item 8)."""
    from fixtures.launch import running_http_fixture

    with anyio.fail_after(30):
        async with running_http_fixture("--sse") as url:
            async with running_hub({"mcpServers": {"old": {"url": url}}}) as hub, httpx.AsyncClient() as http:
                conn = hub.app.hub.pool.connections["old"]
                assert conn.state == "ready" and conn.transport.kind == "sse", conn.last_error
                legacy = await raw_session(http, hub.url)
                body = {
                    "jsonrpc": "2.0",
                    "id": 3,
                    "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"message": "hi"}},
                }
                assert (await http.post(hub.url, json=body, headers=legacy)).json()["result"]["content"][0][
                    "text"
                ] == "hi"
                doc = (await http.get(f"{hub.base}/health")).json()["upstreams"]["old"]
                assert doc["transport"] == "sse" and doc["lastError"] is None
