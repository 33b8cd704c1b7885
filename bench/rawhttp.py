"""A tiny HTTP/1.1 keep-alive client on an asyncio Protocol, and an MCP session over it.

Deliberately lean so the client costs the same small amount for every target: one
connection, one request at a time, Content-Length or chunked bodies, no redirects,
no TLS. Not a general-purpose client.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson

PROTOCOL_VERSION = "2025-11-25"
MODERN_VERSION = "2026-07-28"


class HttpError(Exception):
    pass


class _Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[_Response] | None = None
        self.head: tuple[int, dict[str, str], int] | None = None  # status, headers, body start
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError("connection closed by the server")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            response = self._parse()
        except Exception as exc:
            self.waiter.set_exception(exc)
            return
        if response is not None:
            self.waiter.set_result(response)

    def _parse(self) -> _Response | None:
        buf = self.buf
        if self.head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return None
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {}
            for line in lines[1:]:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
            self.head = (status, headers, end + 4)
        status, headers, start = self.head
        length = headers.get("content-length")
        if length is not None:
            stop = start + int(length)
            if len(buf) < stop:
                return None
            body = bytes(buf[start:stop])
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            pos = start
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
                if size == 0:
                    if len(buf) < eol + 4:
                        return None
                    stop = eol + 4  # no trailers expected
                    break
                if len(buf) < eol + 2 + size + 2:
                    return None
                parts.append(bytes(buf[eol + 2 : eol + 2 + size]))
                pos = eol + 2 + size + 2
            body = b"".join(parts)
        else:
            raise HttpError(f"response without length (HTTP {status})")
        del buf[:stop]
        self.head = None
        return _Response(status, headers, body)


class Connection:
    """One keep-alive connection to host:port; `post` one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._proto: _Protocol | None = None
        self._prefix = b""

    @classmethod
    def to(cls, url: str) -> tuple[Connection, str]:
        """A connection to an `http://host:port/path` URL's host and port, and its path."""
        hostport, _, path = url.removeprefix("http://").partition("/")
        host, _, port = hostport.rpartition(":")
        return cls(host, int(port)), "/" + path

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_Protocol, self.host, self.port)
        self._proto = proto

    async def post(self, path: str, body: bytes, headers: bytes = b"") -> _Response:
        proto = self._proto
        assert proto is not None and proto.transport is not None
        if proto.lost is not None:
            raise proto.lost
        waiter = asyncio.get_running_loop().create_future()
        proto.waiter = waiter
        proto.transport.write(
            b"POST %s HTTP/1.1\r\nhost: %s:%d\r\ncontent-type: application/json\r\n"
            b"accept: application/json, text/event-stream\r\n%scontent-length: %d\r\n\r\n%s"
            % (path.encode(), self.host.encode(), self.port, headers, len(body), body)
        )
        return await waiter

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()


class McpSession:
    """initialize + notifications/initialized, then requests with the session headers."""

    def __init__(self, url: str) -> None:
        self.conn, self.path = Connection.to(url)
        self.headers = b""
        self._ids = itertools.count(1)

    async def open(self) -> None:
        await self.conn.open()
        init = {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "onemcp-bench", "version": "0"},
        }
        reply = await self.conn.post(self.path, self._body("initialize", init))
        if reply.status != 200:
            raise HttpError(f"initialize: HTTP {reply.status}: {reply.body[:200]!r}")
        version = orjson.loads(reply.body)["result"]["protocolVersion"]
        sid = reply.headers.get("mcp-session-id")
        self.headers = (f"mcp-session-id: {sid}\r\n" if sid else "").encode()
        self.headers += f"mcp-protocol-version: {version}\r\n".encode()
        note = orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
        reply = await self.conn.post(self.path, note, self.headers)
        if reply.status != 202:
            raise HttpError(f"notifications/initialized: HTTP {reply.status}")

    def _body(self, method: str, params: dict[str, Any]) -> bytes:
        return orjson.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params})

    async def request(self, method: str, params: dict[str, Any]) -> bytes:
        """The raw response body; raises unless HTTP 200 with a JSON-RPC result in it."""
        reply = await self.conn.post(self.path, self._body(method, params), self.headers)
        if reply.status != 200 or b'"result"' not in reply.body:
            raise HttpError(f"{method}: HTTP {reply.status}: {reply.body[:300]!r}")
        return reply.body

    def close(self) -> None:
        self.conn.close()


class ModernSession:
    """A 2026-07-28 (stateless) client: no handshake; every request carries the `_meta` envelope
    and the `MCP-Protocol-Version`, `Mcp-Method` and (for a named method) `Mcp-Name` headers."""

    NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

    def __init__(self, url: str) -> None:
        self.conn, self.path = Connection.to(url)
        self._ids = itertools.count(1)
        self._meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "onemcp-bench", "version": "0"},
        }

    async def open(self) -> None:
        await self.conn.open()

    async def request(self, method: str, params: dict[str, Any]) -> bytes:
        """The raw response body; raises unless HTTP 200 with a JSON-RPC result in it."""
        body = orjson.dumps(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": {**params, "_meta": self._meta}}
        )
        headers = f"mcp-protocol-version: {MODERN_VERSION}\r\nmcp-method: {method}\r\n"
        field = self.NAMED.get(method)
        if field is not None:
            headers += f"mcp-name: {params[field]}\r\n"  # ASCII names only: no =?base64?...?= here
        reply = await self.conn.post(self.path, body, headers.encode())
        if reply.status != 200 or b'"result"' not in reply.body:
            raise HttpError(f"{method} (2026-07-28): HTTP {reply.status}: {reply.body[:300]!r}")
        return reply.body

    def close(self) -> None:
        self.conn.close()
