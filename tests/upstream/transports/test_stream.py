"""An HTTP upstream's event stream (stream.py) that is answered with an error page instead: what it says.

A failed stream said `HTTP 502, content-type 'text/html'` where a failed POST said the status, its
reason and the page's words (`http_status.error_text`); both say the latter now.
"""

from __future__ import annotations

import asyncio
import contextlib

import anyio
import pytest

from onemcp.upstream.transports.stream import StreamExchange
from support.hub import running_hub

pytestmark = pytest.mark.anyio
NGINX_502 = (  # what nginx answers when its upstream is down
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>"
    b"\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n"
)


def test_a_stream_answered_with_an_error_page_says_its_status_reason_and_words() -> None:
    heard: list[object] = []
    exchange = StreamExchange(heard.append, upstream="s")
    exchange.on_head(502, {"content-type": "text/html"})
    exchange.on_body(NGINX_502[:40])
    exchange.on_body(NGINX_502[40:])
    exchange.on_end()
    assert (exchange.error, heard, exchange.done.is_set()) == ("HTTP 502 Bad Gateway: nginx/1.22.1", [], True)


def test_a_stream_answered_as_a_json_document_says_what_it_got_instead() -> None:
    exchange = StreamExchange(lambda ev: None, upstream="s")
    exchange.on_head(200, {"content-type": "application/json"})
    exchange.on_body(b"{}")
    exchange.on_end()
    assert exchange.error == "HTTP 200, content-type 'application/json'"


async def test_a_legacy_sse_servers_stream_behind_a_proxy_that_fails_says_why_in_one_line() -> None:
    """Its GET stream answered by nginx's 502 page: the server's error reads as a POST's would."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            head = b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: %d\r\n\r\n"
            writer.write(head % len(NGINX_502) + NGINX_502)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/sse"
    try:
        with anyio.fail_after(10):
            async with running_hub({"mcpServers": {"s": {"url": url, "type": "sse"}}}) as hub:
                conn = hub.app.hub.pool.connections["s"]
                assert conn.state == "failed"
                assert conn.last_error is not None
                assert conn.last_error.endswith("the SSE stream ended: HTTP 502 Bad Gateway: nginx/1.22.1")
    finally:
        server.close()
