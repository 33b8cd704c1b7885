"""A lean, event-driven HTTP/1.1 client for upstream MCP servers: the HTTP forwarding hot path.

Owns: keep-alive connections to one origin, writing each request in one `write`, and
parsing responses with httptools (llhttp, in C) inside the event loop's `data_received`
callback, handing status, headers, body chunks and the end to an `H1Exchange`. No task per
request and no stream wrappers: a forwarded call costs one write and the parse of its
answer. Does not own MCP (which headers, what a body means). Goes through the environment's
forward proxy (tunnel.py). No redirects, no HTTP/2, no compression (a compressed body is refused,
saying so).

This module is the one place the hub uses asyncio directly (protocols and transports);
it runs under the asyncio backend that uvicorn already requires.
"""

from __future__ import annotations

import asyncio
import errno
import ssl
from collections.abc import Mapping
from typing import Protocol, cast
from urllib.parse import urlsplit

import httptools

from onemcp.observability.limits import hit
from onemcp.protocol.errors import LimitReached
from onemcp.protocol.headers import sendable
from onemcp.upstream.transports.tunnel import ProxyError, open_tunnel, proxy_for

# A response's status line and headers: as the hub's own server bounds a request's (maxHeaderBytes'
# default, and its header count). Beyond them the response is refused, not buffered.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
# An idle connection older than this is not reused: a server closes idle ones on its own clock
# (uvicorn after 5 s), and a request written as it closes fails with nothing to show for it. A
# response's `Keep-Alive: timeout=N` shortens it to a second under N.
MAX_IDLE_SECONDS = 4.0


class UpstreamHttpError(Exception):
    """Connecting, writing or reading failed, or the response was not valid HTTP/1.1."""

    def refusal(self, upstream: str) -> LimitReached | None:
        """What the hub's client is told instead of a transport failure, when this is a hub limit."""
        return None


class Gone(UpstreamHttpError):
    """The server closed the connection before the response ended, or cannot be reached (refused, or
    not made in time): it went away, as opposed to answering something the hub cannot use."""


class NoDescriptors(UpstreamHttpError):
    """The hub has no file descriptor left for a socket (EMFILE, ENFILE): a limit of the hub's own,
    not a failure of the upstream."""

    def refusal(self, upstream: str) -> LimitReached:
        return LimitReached("file_descriptors", f"[{upstream}] {self}; try again later", 503)


class Declined(Exception):
    """The exchange no longer wanted its request when it was to be written (`H1Exchange.wanted`): nothing was
    written, and a connection made for it went back to the pool."""


class Paced(Protocol):
    """How many messages an upstream may send (`transports.budget.Budget`): read, counted; overdrawn, owed."""

    taken: int  # messages counted so far

    def owed(self) -> float: ...  # seconds to stop reading now (0: read on)


class H1Exchange:
    """Receives one response, in event-loop callbacks. Override what you need.

    `on_head` and `on_body` may raise UpstreamHttpError to stop reading (say, a body grown too large):
    the connection is closed at once and `on_error` gets that error.
    """

    def wanted(self) -> bool:
        """Is its request still to be written? Asked just before it is (waiting for a connection can outlast
        the caller's interest): False writes nothing, and `Pool.send` raises Declined."""
        return True

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        """Status and headers (names lower-cased) are known."""

    def on_body(self, chunk: bytes) -> None:
        """More body bytes (already de-chunked)."""

    def on_end(self) -> None:
        """The response is complete."""

    def on_error(self, error: UpstreamHttpError) -> None:
        """The exchange failed; nothing more will be called."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one exchange at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.exchange: H1Exchange | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._headers: dict[str, str] = {}
        self._headers_done = False
        self._head_bytes = 0  # of the current response's head, read so far
        self._header_count = 0
        self._delimited = False  # the body has a length or is chunked (not read-until-close)
        self._close_after = False
        self._interim = False  # the head being read is a 1xx one
        self.idle_since = 0.0  # loop time it was last released
        self.reuse_within = MAX_IDLE_SECONDS  # the server's keep-alive bound, as its last response said
        self._read_on_later: asyncio.TimerHandle | None = None  # reading stopped until then (`Pool.owed`)

    # asyncio.Protocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._parser is None:  # bytes nobody asked for (after a response ended): read as the next request's
            self.close()  # answer, were it written on this connection; it is not reused (`Pool.send`)
            return
        taken = self.pool.budget.taken if self.pool.budget is not None else 0
        try:
            if not self._headers_done:
                room = MAX_HEAD_BYTES - self._head_bytes
                if len(data) > room:  # the head must end within its budget; the rest may be body
                    self._parser.feed_data(data[:room])
                    self._head_bytes = MAX_HEAD_BYTES
                    if not self._headers_done:
                        self._fail(
                            UpstreamHttpError(f"{self.pool.origin}'s response headers exceed {MAX_HEAD_BYTES} bytes")
                        )
                        return
                    if self._parser is not None:
                        self._parser.feed_data(data[room:])
                    return
                self._head_bytes += len(data)
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, UpstreamHttpError):  # raised by the exchange: it stops here
                self._fail(exc.__context__)
            else:
                self._fail(UpstreamHttpError(f"invalid HTTP response from {self.pool.origin}: {exc}"))
        budget = self.pool.budget
        if budget is not None and budget.taken != taken and self._read_on_later is None and (wait := budget.owed()):
            self._pause(wait)

    def _pause(self, wait: float) -> None:
        """This read's messages overdrew the upstream's budget: this connection (not another, carrying a
        reply) stops reading for `wait` seconds (the server's writes wait on the socket's window)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
            self._read_on_later = asyncio.get_running_loop().call_later(wait, self._read_on)

    def _read_on(self) -> None:
        self._read_on_later = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pool.forget(self)
        if self.exchange is not None and self._parser is not None:
            if self._headers_done and not self._delimited:
                self._finish()  # body delimited by the end of the connection
            else:
                self._fail(Gone(f"{self.pool.origin} closed the connection before the response ended"))

    # httptools callbacks ----------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            raise UpstreamHttpError(f"{self.pool.origin}'s response has more than {MAX_HEADERS} headers")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._headers[key] = text
        if key == "content-length" or (key == "transfer-encoding" and "chunked" in text.lower()):
            self._delimited = True
        elif key == "connection" and "close" in text.lower():
            self._close_after = True
        elif key == "keep-alive":
            self.reuse_within = min(MAX_IDLE_SECONDS, _keep_alive_timeout(text) - 1.0)

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        if 100 <= self._parser.get_status_code() < 200:  # interim (100 Continue, 103 Early Hints): the
            self._interim = True  # response follows it on this connection, in the same parser
            self._headers, self._header_count, self._delimited = {}, 0, False
            return
        self._headers_done = True
        coding = self._headers.get("content-encoding", "").strip().lower()
        if coding not in ("", "identity"):  # never asked for (no Accept-Encoding of ours): not decoded
            raise UpstreamHttpError(
                f"{self.pool.origin} answered with Content-Encoding {coding}, which the hub does not decode"
                " (is Accept-Encoding in this server's headers?)"
            )
        if self._parser.get_http_version() != "1.1":
            self._close_after = True
        if self.exchange is not None:
            self.exchange.on_head(self._parser.get_status_code(), self._headers)

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.on_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._finish()

    # ---------------------------------------------------------------------------
    def start(self, data: bytes, exchange: H1Exchange) -> None:
        assert self.transport is not None
        self.exchange = exchange
        self._parser = httptools.HttpResponseParser(self)
        self._headers = {}
        self._headers_done = False
        self._head_bytes = self._header_count = 0
        self._delimited = False
        self._close_after = self._interim = False
        self.transport.write(data)

    def abort(self) -> None:
        """Give up on the current exchange (the caller no longer wants it)."""
        self.exchange = None
        self._parser = None
        if self.transport is not None:
            self.transport.close()

    def _finish(self) -> None:
        exchange, self.exchange = self.exchange, None
        self._parser = None
        if self._close_after or self.lost:
            self.close()
        else:
            self.pool.release(self)
        if exchange is not None:
            exchange.on_end()

    def _fail(self, error: UpstreamHttpError) -> None:
        exchange, self.exchange = self.exchange, None
        self._parser = None
        self.close()
        if exchange is not None:
            exchange.on_error(error)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class Pool:
    """Keep-alive connections to one origin (scheme, host, port)."""

    def __init__(
        self, url: str, *, connect_timeout: float = 10.0, max_idle: int = 32, budget: Paced | None = None
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamHttpError(f"not an http(s) URL: {url}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.origin = f"{self.host}:{self.port}"
        netloc = parts.netloc.rpartition("@")[2]
        self.host_header = netloc.encode("idna")
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.budget = budget  # the upstream's message budget: a read that overdrew it stops its connection a while
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()  # idle or busy: closing the pool closes them all
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if self.tls else None
        self._closed = False
        try:
            self.proxy = proxy_for(parts.scheme, self.host)
        except ProxyError as exc:
            raise UpstreamHttpError(str(exc)) from None
        # plain HTTP through a proxy: the request names the whole URL, and carries the proxy's credentials
        self._via = None if self.proxy is None or self.tls else b"http://" + self.host_header

    @staticmethod
    def target(url: str) -> bytes:
        parts = urlsplit(url)
        return ((parts.path or "/") + ("?" + parts.query if parts.query else "")).encode()

    def encode(self, method: bytes, target: bytes, headers: Mapping[str, str], body: bytes) -> bytes:
        head = [method, b" ", target, b" HTTP/1.1\r\nhost: ", self.host_header, b"\r\n"]
        if self._via is not None and self.proxy is not None:
            head[2:3] = [self._via, target]
            if self.proxy.authorization is not None:
                head += [b"proxy-authorization: ", self.proxy.authorization.encode(), b"\r\n"]
        for name, value in headers.items():
            if not sendable(value):  # checked when the config loads and a principal's values render: the last guard
                raise UpstreamHttpError(f"the {name} header's value holds characters no HTTP header carries")
            head += [name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n"]
        if body or method == b"POST":
            head += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
        head.append(b"\r\n")
        return b"".join(head) + body

    async def send(
        self, method: bytes, target: bytes, headers: Mapping[str, str], body: bytes, exchange: H1Exchange
    ) -> _Connection:
        """Write a request; the response goes to `exchange`. Returns the connection (to abort it).

        Declined when the exchange no longer wants it (`H1Exchange.wanted`), asked again once connected."""
        if self._closed:
            raise UpstreamHttpError("the client is closed")
        if not exchange.wanted():
            raise Declined
        data = self.encode(method, target, headers, body)
        now = asyncio.get_running_loop().time()
        while self._idle:
            conn = self._idle.pop()
            if conn.lost or conn.transport is None or conn.transport.is_closing():
                continue
            if now - conn.idle_since >= conn.reuse_within:  # the server may be closing it right now
                conn.close()
                continue
            conn.start(data, exchange)
            return conn
        conn = await self._connect()
        if self._closed:  # closed while it connected (its transport stopping): nothing written, nothing kept open
            conn.close()
            raise UpstreamHttpError("the client is closed")
        if not exchange.wanted():  # given up on while it connected: the connection is kept for the next
            self.release(conn)
            raise Declined
        conn.start(data, exchange)
        return conn

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.proxy is None:
                    transport, protocol = await loop.create_connection(
                        lambda: _Connection(self), self.host, self.port, ssl=self._ssl
                    )
                elif not self.tls:
                    transport, protocol = await loop.create_connection(
                        lambda: _Connection(self), self.proxy.host, self.proxy.port
                    )
                else:
                    sock = await open_tunnel(self.proxy, self.host, self.port)
                    transport, protocol = await loop.create_connection(
                        lambda: _Connection(self), sock=sock, ssl=self._ssl, server_hostname=self.host
                    )
        except TimeoutError:
            raise Gone(f"connecting to {self.origin} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                hit("file_descriptors", "no file descriptor left to connect to %s", self.origin)
                raise NoDescriptors(f"the hub has no file descriptor left to connect to {self.origin}") from None
            via = f" through the proxy {self.proxy.origin}" if self.proxy is not None else ""
            raise Gone(f"cannot connect to {self.origin}{via}: {exc.strerror or exc}") from None
        protocol.transport = transport  # uvloop may call connection_made later
        self._open.add(protocol)
        return protocol

    def release(self, conn: _Connection) -> None:
        if self._closed or len(self._idle) >= self.max_idle:
            conn.close()
        else:
            conn.idle_since = asyncio.get_running_loop().time()
            self._idle.append(conn)

    def forget(self, conn: _Connection) -> None:
        self._open.discard(conn)

    def close(self) -> None:
        """Close every connection, busy ones too (a long-lived stream must not outlive its client)."""
        self._closed = True
        self._idle = []
        conns, self._open = self._open, set()
        for conn in conns:
            conn.close()


def _keep_alive_timeout(value: str) -> float:
    """The `timeout=N` of a Keep-Alive header (RFC 2068 19.7.1), else the default bound."""
    for part in value.split(","):
        name, _, number = part.strip().partition("=")
        if name.strip().lower() == "timeout":
            try:
                return max(0.0, float(number.strip()))
            except ValueError:
                break
    return MAX_IDLE_SECONDS + 1.0
