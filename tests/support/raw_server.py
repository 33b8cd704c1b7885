"""A hand-written HTTP/1.1 upstream on a raw socket, for tests whose server must answer what no real one would.

What the server says is each test's own; this holds only the parts they all share: reading one request off
the wire and listening on a free loopback port for the length of a test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

import anyio
import orjson

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_message(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], dict[str, Any]]:
    """One request: its request line, its headers (names lower-cased) and its JSON body ({} unless a POST)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return head[0], headers, orjson.loads(body) if head[0].startswith("POST") else {}


@asynccontextmanager
async def listening(serve: Serve, stop: Callable[[], Awaitable[None]], deadline: float) -> AsyncIterator[str]:
    """`serve` on 127.0.0.1 at a free port; yields its URL (path /mcp). On the way out it stops listening,
    awaits `stop` (which closes the connections still open) and waits, within `deadline`, for the server."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp"
    finally:
        server.close()
        await stop()
        with anyio.fail_after(deadline):
            await server.wait_closed()


class Connections:
    """The connections a hand-written server has open: each `held` for as long as its handler runs (a peer
    that hangs up mid-request ends it quietly), and `stop` closes those still open."""

    def __init__(self) -> None:
        self._writers: set[asyncio.StreamWriter] = set()

    @contextmanager
    def held(self, writer: asyncio.StreamWriter) -> Iterator[None]:
        self._writers.add(writer)
        try:
            with suppress(ConnectionError, asyncio.IncompleteReadError):
                yield
        finally:
            self._writers.discard(writer)
            writer.close()

    async def stop(self) -> None:
        for writer in list(self._writers):
            writer.close()


class SlowConnect:
    """Holds the next connection an upstream pool makes (`h1.Pool._connect`) until `go` is set: `connecting` is
    set as it starts to wait, `made` once it is made, when the pool goes on at once with what it was for."""

    def __init__(self, pool: Any) -> None:
        self.connecting, self.go, self.made = anyio.Event(), anyio.Event(), anyio.Event()
        self._connect = pool._connect
        self._held = False
        pool._connect = self._slow

    async def _slow(self) -> Any:
        if self._held:
            return await self._connect()
        self._held = True
        self.connecting.set()
        await self.go.wait()
        conn = await self._connect()
        self.made.set()
        return conn
