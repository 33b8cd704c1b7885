"""Reading a Streamable HTTP upstream's non-2xx answer (http_status.py): when a 400 means the server
no longer knows the hub's session, what a client is told of it (a proxy's HTML page without its
markup; also for a legacy HTTP+SSE server's message endpoint). End to end, with a server that
restarts: test_http_outage.py."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import time
from typing import Any

import anyio
import httpx
import pytest

from onemcp.upstream.transports.http_status import RETRY_AFTER_MAX, error_text, retry_after, rpc_error, session_gone
from support.hub import raw_session, running_hub

SDK_400 = json.dumps(
    {"jsonrpc": "2.0", "error": {"code": -32000, "message": "Bad Request: No valid session ID provided"}, "id": None}
).encode()
OWN_400 = json.dumps({"jsonrpc": "2.0", "id": 3, "error": {"code": -32602, "message": "bad arguments"}}).encode()
# what nginx answers when its upstream is down (hunt s33-h F7: it reached the client with its markup)
NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>"
    b"\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n"
    b"<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n"
)


@pytest.mark.parametrize(
    ("status", "body", "session", "after_failure", "gone"),
    [
        (400, SDK_400, "s1", False, True),  # the reference servers' answer to an unknown session id
        (400, b"Invalid or expired session", "s1", False, True),
        (400, b"Bad Request", "s1", True, True),  # right after a connection to it broke
        (400, b"Bad Request", "s1", False, False),  # any other 400 is an answer to the request
        (400, OWN_400, "s1", False, False),
        (400, SDK_400, None, False, False),  # no session was sent: none can be gone
        (400, b"Bad Request", None, True, False),
        (500, SDK_400, "s1", True, False),
    ],
)
def test_a_400_means_the_session_is_gone_only_when_it_names_it_or_follows_a_failure(
    status: int, body: bytes, session: str | None, after_failure: bool, gone: bool
) -> None:
    assert session_gone(status, body, session, after_failure=after_failure) is gone


def test_the_error_body_and_the_json_rpc_error_it_carries() -> None:
    assert error_text(502, NGINX_502, "text/html") == "HTTP 502 Bad Gateway: nginx/1.22.1"
    assert error_text(429, b"slow down\r\n", "text/plain") == "HTTP 429 Too Many Requests: slow down"
    page = b"<!DOCTYPE html><html><head><style>p {}</style><title>Down</title></head><body><script>x = 1</script>"
    assert error_text(503, page + b"<p>Back &amp; <b>soon</b></p>", "") == "HTTP 503 Service Unavailable: Back & soon"
    only_title = b"<html><head><title>Oops</title></head></html>"
    assert error_text(500, only_title, "") == "HTTP 500 Internal Server Error: Oops"  # the title, when nothing else
    assert error_text(599, b"", "") == "HTTP 599"  # no reason known, no body
    assert error_text(400, b"<not a page>", "text/plain") == "HTTP 400 Bad Request: <not a page>"  # text stays text
    long = error_text(502, b"<html><body>" + b"<p>word</p>" * 200, "text/html")
    assert long.startswith("HTTP 502 Bad Gateway: word word") and len(long) == len("HTTP 502 Bad Gateway: ") + 200
    assert rpc_error(OWN_400, 3) == {"jsonrpc": "2.0", "id": 3, "error": {"code": -32602, "message": "bad arguments"}}
    assert rpc_error(SDK_400, 3) is not None  # id null: still the answer
    assert rpc_error(OWN_400, 4) is None and rpc_error(b"not json", 3) is None


def test_retry_after_in_seconds_or_as_a_date_bounded() -> None:
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after(" 7 ") == 7.0
    assert retry_after("86400") == RETRY_AFTER_MAX
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 < (retry_after(later) or 0) <= 120
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # past


@pytest.mark.anyio
async def test_a_server_refusing_with_429_and_retry_after_is_not_restarted_sooner() -> None:
    """Hunt s33-h F6: a rate-limited server (nginx limit_req, 429 + Retry-After: 7) was started again
    every 0.5 to 1 s, each start a burst of requests that met the limit again."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            length = int(head.partition("content-length:")[2].split("\r\n")[0] or 0)
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: 11\r\n\r\nslow down\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp"
    try:
        with anyio.fail_after(10):
            async with running_hub({"mcpServers": {"s": {"url": url, "protocol": "legacy"}}}) as hub:
                slot = hub.app.hub.pool.slots["s"]
                while slot.last_failure is None:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                assert "HTTP 429 Too Many Requests: slow down" in slot.last_failure
                assert "next in 7s" in slot.last_failure
    finally:
        server.close()


class SseBehindProxy:
    """A legacy HTTP+SSE server (its stream `/sse`, its endpoint `/messages`) whose `tools/call` POSTs
    a proxy answers with its 502 page (the server behind it went away)."""

    def __init__(self) -> None:
        self.stream: asyncio.StreamWriter | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                length = int(head.lower().partition("content-length:")[2].split("\r\n")[0] or 0)
                msg: dict[str, Any] = json.loads(await reader.readexactly(length)) if length else {}
                if head.startswith("GET"):  # the stream: delimited by the connection's end
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
                    writer.write(b"event: endpoint\ndata: /messages\n\n")
                    self.stream = writer
                    await writer.drain()
                    await reader.read()
                    break
                if msg.get("method") == "tools/call":
                    head_502 = b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: %d\r\n\r\n"
                    writer.write(head_502 % len(NGINX_502) + NGINX_502)
                else:
                    writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                    if "id" in msg and self.stream is not None:
                        self.stream.write(b"event: message\ndata: " + json.dumps(self._answer(msg)).encode() + b"\n\n")
                await writer.drain()
        writer.close()

    @staticmethod
    def _answer(msg: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        if msg["method"] == "initialize":
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "p"}}
        elif msg["method"] == "tools/list":
            result = {"tools": [{"name": "page", "inputSchema": {"type": "object"}}]}
        return {"jsonrpc": "2.0", "id": msg["id"], "result": result}


@pytest.mark.anyio
async def test_an_sse_servers_error_page_reaches_the_client_as_its_status_and_words() -> None:
    """Hunt s33-h F7 over legacy HTTP+SSE: the message endpoint's 502 said only "HTTP 502"; it says
    the reason and the page's words now, never its markup (Streamable HTTP: test_http_errors.py)."""
    up = SseBehindProxy()
    server = await asyncio.start_server(up.serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/sse"
    try:
        with anyio.fail_after(10):
            async with running_hub({"mcpServers": {"s": {"url": url, "type": "sse"}}}) as hub:
                async with httpx.AsyncClient() as http:
                    legacy = await raw_session(http, hub.url)
                    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "page"}}
                    r = await http.post(hub.url, json=call, headers=legacy)
                said = "[s] the message endpoint answered HTTP 502 Bad Gateway: nginx/1.22.1"
                assert r.json() == {"jsonrpc": "2.0", "id": 7, "error": {"code": -32603, "message": said}}
    finally:
        server.close()
        if up.stream is not None:
            up.stream.close()
