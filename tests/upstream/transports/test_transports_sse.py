"""The legacy HTTP+SSE upstream transport (`upstream/transports/sse.py`): its POSTs to the endpoint, on the wire.

Its start, redirects and limits are covered end to end (tests/upstream/test_limits.py,
tests/upstream/transports/test_transports_redirect.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import anyio
import pytest

from onemcp.config.model import ServerConfig
from onemcp.upstream.transports import sse
from onemcp.upstream.transports.stream import StreamExchange

pytestmark = pytest.mark.anyio


class Endpoint:
    """A legacy HTTP+SSE server: GET /sse opens the stream (its endpoint: /messages); a POST there: 202.
    `posts`: each POST's body, in order; `handlers`: set when each connection's handler ends."""

    def __init__(self) -> None:
        self.posts: list[bytes] = []
        self.handlers: list[asyncio.Event] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ended = asyncio.Event()
        self.handlers.append(ended)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                if head.startswith("GET"):
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
                    writer.write(b"event: endpoint\ndata: /messages\n\n")
                    await writer.drain()
                    await reader.read()  # until the hub closes it
                    break
                sizes = [h.partition(":")[2] for h in head.split("\r\n") if h.lower().startswith("content-length")]
                length = int(sizes[0])
                self.posts.append(await reader.readexactly(length))
                writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        writer.close()
        ended.set()


async def test_a_post_cancelled_as_it_is_answered_leaves_its_connection_to_the_next_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A POST's sender cancelled just as its 202 came closed the connection all the same: by then it was back in
    the pool and carrying the next POST, which then never heard a thing (its sender waited for ever). Only a
    connection still carrying the cancelled POST is closed."""
    up = Endpoint()
    server = await asyncio.start_server(up.serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/sse"
    transport = sse.SseTransport("s", ServerConfig.model_validate({"url": url, "type": "sse"}))
    b_waits, go = asyncio.Event(), asyncio.Event()
    first: asyncio.Task[None] | None = None

    class AnsweredAsCancelled(StreamExchange):
        """The first POST's: as it ends, the next sender wakes, then the first sender is cancelled."""

        def on_end(self) -> None:
            go.set()  # (woken first: it takes the connection the 202 just freed)
            super().on_end()
            if first is not None and not first.done():
                first.cancel()

    def note(n: int) -> tuple[dict[str, Any], bytes]:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"n": n}}
        return msg, json.dumps(msg).encode()

    async def second() -> None:
        b_waits.set()
        await go.wait()
        await transport.send(*note(2))

    try:
        async with asyncio.timeout(10), anyio.create_task_group() as tg:
            await transport.open(tg, lambda msg, related: None, lambda msg, exc: None)
            b = asyncio.ensure_future(second())
            await b_waits.wait()
            monkeypatch.setattr(sse, "StreamExchange", AnsweredAsCancelled)
            first = asyncio.ensure_future(transport.send(*note(1)))
            with pytest.raises(asyncio.CancelledError):
                await first
            monkeypatch.setattr(sse, "StreamExchange", StreamExchange)
            await b  # its 202 came: it is told
            await transport.aclose()
        assert [json.loads(p)["params"]["n"] for p in up.posts] == [1, 2]
    finally:
        server.close()
        async with asyncio.timeout(10):
            for ended in up.handlers:
                await ended.wait()
        await server.wait_closed()
