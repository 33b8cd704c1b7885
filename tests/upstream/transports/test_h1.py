"""The upstream HTTP/1.1 client (h1.py): bounds on a response head, interim responses, idle connections."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gzip
import os
from typing import Any

import pytest

from onemcp.observability.limits import HITS
from onemcp.upstream.transports import h1

pytestmark = pytest.mark.anyio


class Collect(h1.H1Exchange):
    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.status = 0
        self.body = b""
        self.error: h1.UpstreamHttpError | None = None

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        self.status = status

    def on_body(self, chunk: bytes) -> None:
        self.body += chunk

    def on_end(self) -> None:
        self.done.set()

    def on_error(self, error: h1.UpstreamHttpError) -> None:
        self.error = error
        self.done.set()


async def exchange(response: bytes) -> Collect:
    """One GET to a server that answers `response` in one write, then stays open."""

    served = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(ConnectionError):  # the client may close on a response it refuses
                await reader.readuntil(b"\r\n\r\n")
                writer.write(response)
                await writer.drain()
                await reader.read()  # until the client closes
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            served.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = h1.Pool(f"http://127.0.0.1:{port}/mcp")
    got = Collect()
    try:
        await pool.send(b"GET", b"/mcp", {}, b"", got)
        async with asyncio.timeout(10):
            await got.done.wait()
    finally:
        pool.close()
        server.close()
        async with asyncio.timeout(10):
            await served.wait()
            await server.wait_closed()
    return got


async def test_a_response_head_past_its_bounds_is_refused_not_buffered() -> None:
    huge = b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * (2 * h1.MAX_HEAD_BYTES) + b"\r\ncontent-length: 0\r\n\r\n"
    got = await exchange(huge)
    assert got.error is not None and f"exceed {h1.MAX_HEAD_BYTES} bytes" in str(got.error)
    many = b"".join(b"x-%d: v\r\n" % i for i in range(h1.MAX_HEADERS + 1))
    got = await exchange(b"HTTP/1.1 200 OK\r\n" + many + b"content-length: 0\r\n\r\n")
    assert got.error is not None and f"more than {h1.MAX_HEADERS} headers" in str(got.error)


async def test_a_small_head_with_a_large_body_in_one_read_is_whole() -> None:
    body = b"b" * (4 * h1.MAX_HEAD_BYTES)
    got = await exchange(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
    assert got.error is None and got.status == 200 and got.body == body


async def test_a_compressed_body_is_refused_saying_so_not_read_as_an_empty_reply() -> None:
    """Hunt s33-h F3: a server's `headers` with `Accept-Encoding: gzip` behind nginx's `gzip on`:
    the gzip body was fed to the SSE decoder as text, and the start failed "the reply stream ended
    before the reply", which says nothing of why."""
    body = gzip.compress(b'data: {"jsonrpc":"2.0","id":1,"result":{}}\n\n')
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n"
    got = await exchange(head + b"content-length: %d\r\n\r\n" % len(body) + body)
    assert got.body == b"" and got.error is not None
    assert "answered with Content-Encoding gzip, which the hub does not decode" in str(got.error)
    plain = b"HTTP/1.1 200 OK\r\ncontent-encoding: identity\r\ncontent-length: 2\r\n\r\nok"
    got = await exchange(plain)
    assert got.error is None and got.body == b"ok"


@pytest.mark.parametrize(("keep_alive", "within"), [(b"", h1.MAX_IDLE_SECONDS), (b"keep-alive: timeout=2\r\n", 1.0)])
async def test_an_idle_connection_the_server_may_be_closing_is_not_reused(keep_alive: bytes, within: float) -> None:
    """uvicorn closes an idle keep-alive connection after 5 s: a request written as it closes fails
    with nothing to show for it, so one idle that long (or past the server's own timeout) is not reused."""
    connections: list[asyncio.Event] = []  # one per connection made, set when its handler ends

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ended = asyncio.Event()
        connections.append(ended)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\n" + keep_alive + b"content-length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()
        ended.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    pool = h1.Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp")

    async def get() -> h1._Connection:
        got = Collect()
        conn = await pool.send(b"GET", b"/mcp", {}, b"", got)
        async with asyncio.timeout(10):
            await got.done.wait()
        assert got.error is None and got.body == b"ok"
        return conn

    try:
        first = await get()
        assert first.reuse_within == within
        assert await get() is first  # fresh: reused
        first.idle_since -= within  # as if idle that long (no sleeping in a test)
        assert await get() is not first and first.transport is not None and first.transport.is_closing()
        assert len(connections) == 2
    finally:
        pool.close()
        async with asyncio.timeout(10):
            for ended in connections:
                await ended.wait()
        server.close()
        await server.wait_closed()


async def test_an_interim_response_is_skipped_for_the_final_one() -> None:
    """A 103 Early Hints (or 100 Continue) comes before the response: it is not the response."""
    early = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"
    got = await exchange(early + b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    assert got.error is None and got.status == 200 and got.body == b"ok"


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE])
async def test_no_file_descriptor_left_to_connect_is_a_limit_of_the_hub(
    code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EMFILE/ENFILE on connect is the hub's own limit: `NoDescriptors`, whose refusal is -32000 with
    data.limit, and is counted as a limit hit (not 'cannot connect', a failure of the upstream)."""

    async def no_fds(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(asyncio.get_running_loop(), "create_connection", no_fds)
    counted = HITS.counts["file_descriptors"]
    pool = h1.Pool("http://127.0.0.1:9/mcp")
    with pytest.raises(h1.NoDescriptors) as caught:
        await pool.send(b"GET", b"/mcp", {}, b"", Collect())
    refusal = caught.value.refusal("web").to_error()
    assert refusal["code"] == -32000 and refusal["data"] == {"limit": "file_descriptors"}
    assert refusal["message"].startswith("[web] the hub has no file descriptor left to connect to 127.0.0.1:9")
    assert HITS.counts["file_descriptors"] == counted + 1
    assert h1.UpstreamHttpError("refused").refusal("web") is None  # any other failure stays the upstream's
    pool.close()


@pytest.mark.parametrize(
    "value", ["a\r\nx-injected: 1", "nul\x00", "\u0442\u043e\u043a\u0435\u043d", "t\u00f6k\u00e9n"]
)
def test_a_header_value_no_http_header_carries_is_refused_not_written(value: str) -> None:
    """The last guard: a line break would end the header and start one of the value's choosing; a
    character beyond latin-1 was a UnicodeEncodeError (a traceback), one within it went out raw."""
    pool = h1.Pool("http://127.0.0.1:9/mcp")
    assert b"authorization: Bearer tab\there" in pool.encode(
        b"GET", b"/mcp", {"authorization": "Bearer tab\there"}, b""
    )
    with pytest.raises(h1.UpstreamHttpError, match="the authorization header's value") as refused:
        pool.encode(b"GET", b"/mcp", {"authorization": f"Bearer {value}"}, b"")
    assert value not in str(refused.value)


async def test_a_connection_made_as_the_pool_closes_is_closed_with_nothing_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pool closed while a request's connection was being made (the transport stopping) wrote the request on it
    once made and kept it nowhere it would be closed: the server ran it for nobody and the socket stayed open
    until the server closed it. Now the send fails, the connection is closed, and nothing is written."""
    loop = asyncio.get_running_loop()
    create, connecting, closing = loop.create_connection, asyncio.Event(), asyncio.Event()

    async def connect_as_the_pool_closes(*args: Any, **kwargs: Any) -> Any:
        connecting.set()
        await closing.wait()
        return await create(*args, **kwargs)

    received: list[bytes] = []
    hung_up = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read())  # until the client closes
        writer.close()
        hung_up.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    monkeypatch.setattr(loop, "create_connection", connect_as_the_pool_closes)
    pool = h1.Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp")
    try:
        async with asyncio.timeout(10):
            sending = asyncio.ensure_future(pool.send(b"GET", b"/mcp", {}, b"", Collect()))
            await connecting.wait()
            pool.close()
            closing.set()
            with pytest.raises(h1.UpstreamHttpError, match="closed"):
                await sending
            await hung_up.wait()
        assert received == [b""]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_connection_that_gets_bytes_while_idle_is_not_reused() -> None:
    """Bytes a server sends after a response ended (a body longer than its content-length, a 408 before it closes
    an idle connection) were dropped and the connection kept in the pool: had they come after its next request
    was written, they would be read as that request's answer. Such a connection is closed; the next request gets
    one of its own."""
    answered = asyncio.Event()
    connections: list[asyncio.Event] = []  # one per connection made, set when its handler ends

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ended = asyncio.Event()
        connections.append(ended)
        stray = len(connections) == 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
                if stray:
                    await answered.wait()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale")  # nobody asked
                    await writer.drain()
                    stray = False
        writer.close()
        ended.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    pool = h1.Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp")

    async def get() -> tuple[h1._Connection, Collect]:
        got = Collect()
        conn = await pool.send(b"GET", b"/mcp", {}, b"", got)
        await got.done.wait()
        return conn, got

    try:
        async with asyncio.timeout(10):
            first, got = await get()
            assert got.body == b"ok"
            answered.set()
            await connections[0].wait()  # the hub closed it
            second, got = await get()
        assert second is not first and got.error is None and got.body == b"ok"
    finally:
        pool.close()
        async with asyncio.timeout(10):
            for ended in connections:
                await ended.wait()
        server.close()
        await server.wait_closed()
