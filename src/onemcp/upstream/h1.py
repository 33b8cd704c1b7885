"""A lean HTTP/1.1 client for talking to upstream MCP servers: the hot path of HTTP forwarding.

Owns: a keep-alive connection pool for one origin, writing each request in one send, and
parsing responses with httptools (llhttp, in C), bodies read whole or streamed (SSE).
Does not own: MCP (session ids, which headers to send) or retries beyond one reconnect of
a pooled connection the server had already closed. General-purpose HTTP clients spend most
of a forwarded call's CPU in pool bookkeeping, cookies and layered streams; this does the
little an MCP upstream needs. No proxies, no redirects, no HTTP/2.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

import anyio
import httptools
from anyio.abc import ByteStream

READ_SIZE = 65536


class HttpError(Exception):
    """Connecting, writing or reading failed, or the response was not valid HTTP/1.1."""


class _Parse:
    """httptools callbacks for one response."""

    __slots__ = ("body", "chunked", "complete", "has_length", "headers", "headers_done")

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.headers_done = False
        self.complete = False
        self.body: list[bytes] = []
        self.has_length = False
        self.chunked = False

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        self.headers[key] = value.decode("latin-1")
        if key == "content-length":
            self.has_length = True
        elif key == "transfer-encoding" and "chunked" in value.decode("latin-1").lower():
            self.chunked = True

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class Response:
    """Status and headers are known; the body is read with `read` or `stream`, then `aclose`."""

    def __init__(self, pool: Pool, stream: ByteStream, parser: httptools.HttpResponseParser, state: _Parse) -> None:
        self._pool = pool
        self._stream: ByteStream | None = stream
        self._parser = parser
        self._state = state
        self.status = parser.get_status_code()
        self.headers: Mapping[str, str] = state.headers

    async def _more(self) -> bool:
        """Feed the parser more bytes; False at the end of the body."""
        if self._state.complete or self._stream is None:
            return False
        try:
            data = await self._stream.receive(READ_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            data = b""
        if not data:
            if self._state.has_length or self._state.chunked:
                raise HttpError("connection closed in the middle of a response body")
            self._state.complete = True  # body delimited by the end of the connection
            return False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise HttpError(f"invalid HTTP response: {exc}") from None
        return True

    async def read(self) -> bytes:
        try:
            while await self._more():
                pass
            return b"".join(self._state.body)
        finally:
            await self.aclose()

    async def stream(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive (for text/event-stream)."""
        try:
            while True:
                if self._state.body:
                    chunks, self._state.body = self._state.body, []
                    for chunk in chunks:
                        yield chunk
                    continue
                if not await self._more() and not self._state.body:
                    return
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        reusable = (
            self._state.complete
            and self._parser.get_http_version() == "1.1"
            and "close" not in self._state.headers.get("connection", "").lower()
        )
        if reusable:
            await self._pool.release(stream)
        else:
            with anyio.CancelScope(shield=True):
                await stream.aclose()


class Pool:
    """Keep-alive connections to one origin (scheme, host, port)."""

    def __init__(self, url: str, *, connect_timeout: float = 10.0, max_idle: int = 32) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpError(f"not an http(s) URL: {url}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        default_port = self.port == (443 if self.tls else 80)
        self.host_header = (parts.netloc.rpartition("@")[2] if not default_port else self.host).encode("idna")
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self._idle: list[ByteStream] = []
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if self.tls else None
        self._closed = False

    @staticmethod
    def target(url: str) -> bytes:
        parts = urlsplit(url)
        path = parts.path or "/"
        return (path + ("?" + parts.query if parts.query else "")).encode()

    async def _connect(self) -> ByteStream:
        try:
            with anyio.fail_after(self.connect_timeout):
                if self.tls:
                    return await anyio.connect_tcp(
                        self.host, self.port, tls=True, ssl_context=self._ssl, tls_standard_compatible=False
                    )
                return await anyio.connect_tcp(self.host, self.port)
        except TimeoutError:
            raise HttpError(f"connecting to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise HttpError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None

    async def release(self, stream: ByteStream) -> None:
        if self._closed or len(self._idle) >= self.max_idle:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
        else:
            self._idle.append(stream)

    async def request(self, method: bytes, target: bytes, headers: Mapping[str, str], body: bytes = b"") -> Response:
        """Send a request and read up to the end of the response headers."""
        head = [method, b" ", target, b" HTTP/1.1\r\nhost: ", self.host_header, b"\r\n"]
        for name, value in headers.items():
            head += [name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n"]
        if body or method == b"POST":
            head += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
        head.append(b"\r\n")
        data = b"".join(head) + body
        # A pooled connection may have been closed by the server while idle: one retry on a
        # fresh one, only when nothing at all came back (so the request was not processed).
        while True:
            reused = bool(self._idle)
            stream = self._idle.pop() if reused else await self._connect()
            try:
                return await self._exchange(stream, data)
            except _StaleConnection:
                if not reused:
                    raise HttpError(f"{self.host}:{self.port} closed the connection without answering") from None

    async def _exchange(self, stream: ByteStream, data: bytes) -> Response:
        state = _Parse()
        parser = httptools.HttpResponseParser(state)
        got_any = False
        try:
            await stream.send(data)
            while not state.headers_done:
                chunk = await stream.receive(READ_SIZE)
                got_any = True
                parser.feed_data(chunk)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
            if not got_any:
                raise _StaleConnection from None
            raise HttpError(f"connection to {self.host}:{self.port} failed: {exc!r}") from None
        except httptools.HttpParserError as exc:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
            raise HttpError(f"invalid HTTP response from {self.host}:{self.port}: {exc}") from None
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
            raise
        return Response(self, stream, parser, state)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        with anyio.CancelScope(shield=True):
            for stream in idle:
                await stream.aclose()


class _StaleConnection(Exception):
    pass
