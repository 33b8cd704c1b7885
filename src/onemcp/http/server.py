"""The hub's HTTP/1.1 server: uvicorn's httptools protocol with the hub's limits applied on the wire.

Owns what must be decided before the ASGI app sees a request, because by then the harm is
done: the size of the request line plus headers (counted as bytes arrive, before the parser
buffers them, so one huge header costs neither memory nor quadratic parsing) and their count
(431); deadlines for the headers and for the body (408); the number of open connections
(503, closed at once); a client that takes nothing of a response for `sendTimeout` while more waits
to be written (closed: what it leaves unread is held that long at most); the reply bytes all clients
have left unread together (`maxUnsentBytes`, http/unsent.py: the connection holding the most is
closed); transfer codings it cannot decode (501); and the absolute-form request
target, whose authority replaces `Host` (RFC 9112 §3.2.2) so the Host guard judges the host the
request really names. Limits are read per connection from the live config (a reload applies to
new connections). Does not own routing or MCP: everything admitted goes to the app unchanged.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable
from typing import Any, ClassVar

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from onemcp.config.model import Limits
from onemcp.http.unsent import UnsentBudget
from onemcp.observability.limits import hit

CONNECTION_CAP = 10_000  # the default cap is never above this, whatever the fd limit
HEAD_ENDS = (b"\r\n\r\n", b"\n\n")
MAX_PIPELINED = 16  # requests a connection may have waiting behind the one being answered before reading pauses
LINGER = 2.0  # seconds a refused connection's further input is read and dropped before it is closed


class _Refused(Exception):
    """Raised from a parser callback after the refusal was written: stops the parser."""


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(limits: Limits) -> int:
    """Open connections allowed: the configured cap, else a third of the fd limit (a call a connection
    carries to an HTTP upstream holds a socket there too, and stdio upstreams, files and logs need fds)."""
    if limits.max_connections is not None:
        return limits.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return CONNECTION_CAP
    return max(16, min(CONNECTION_CAP, soft // 3))


def _response(status: int, reason: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class LimitedHttpProtocol(HttpToolsProtocol):
    """One client connection. `limits` and `unsent_budget` are set on the subclass `protocol_class` makes."""

    limits: ClassVar[Callable[[], Limits]]
    unsent_budget: ClassVar[UnsentBudget]  # one per server: all its connections' unsent reply bytes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = type(self).limits()
        self._in_head = True  # between requests too: the next bytes are a request line
        self._head_bytes = 0
        self._header_count = 0
        self._tail = b""  # the last bytes of the head so far (a terminator may span two reads)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._unsent = 0  # bytes waiting to be written when the send timer was armed
        self._refused = False

    # ------------------------------------------------------------------ connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cap = connection_cap(self._limits)
        if len(self.connections) > cap:
            hit("connections", "%d connections open (maxConnections %d): refused a new one", cap, cap)
            self._refuse(503, "Service Unavailable", f"too many connections (limit {cap})", linger=False)
            return
        self._arm_head_timer()  # a connection that never sends a byte is a request that never completes

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()  # the linger timer too
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        self.unsent_budget.release(self)
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """More waits to be written than the transport's high-water mark: the client must take some within
        `sendTimeout`. (A reply is written whole, so one a client never reads is held whole: 60 of 20 MB, 1.2
        GB, for as long as the connections stayed open.)"""
        super().pause_writing()
        if self._send_timer is None:
            self._arm_send_timer()
        budget = self._limits.max_unsent_bytes
        dropped = self.unsent_budget.hold(self, self.transport.get_write_buffer_size(), budget)
        for _ in dropped:  # closed already (this one among them, if it holds the most)
            hit("unsent_bytes", "clients left more than %d reply bytes unread: closed the one holding most", budget)

    def resume_writing(self) -> None:
        super().resume_writing()
        self.unsent_budget.release(self)
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def unsent(self) -> int:
        """Reply bytes written to this connection that its client has not taken yet."""
        return self.transport.get_write_buffer_size()

    def drop_unsent(self) -> None:
        """Closed at once: what waits to be written is dropped, not flushed; the app's next receive() says
        the client disconnected."""
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        cycle = self.cycle
        if cycle is not None:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.abort()

    def _arm_send_timer(self) -> None:
        self._unsent = self.transport.get_write_buffer_size()
        self._send_timer = self.loop.call_later(self._limits.send_timeout, self._send_timed_out)

    def _send_timed_out(self) -> None:
        """A slow reader that took some meanwhile gets another period; one that took nothing is closed (also
        one already closing: a close waits for the buffer to be written, and a peer that never reads keeps
        its window shut without end, so the keep-alive timeout's close alone would hold the reply for good)."""
        self._send_timer = None
        unsent = self.transport.get_write_buffer_size()
        if unsent == 0:
            return
        if unsent < self._unsent:
            self._arm_send_timer()
            return
        hit("send_timeout", "a client took none of a response within %gs: closed", self._limits.send_timeout)
        self.drop_unsent()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head and not self._count_head(data):
            return
        self._unset_keepalive_if_required()
        if self._in_head and self._head_timer is None:
            self._arm_head_timer()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # the hub serves no WebSocket: the request was answered as plain HTTP
        except httptools.HttpParserError:
            if not self._refused:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")

    def _count_head(self, data: bytes) -> bool:
        """Count the head bytes in `data` (up to its end, if it ends here); False: refused."""
        # where the head ends: across the previous read's last bytes, else within this read
        edge = self._tail + data[:3]
        ends = [i + len(end) - len(self._tail) for end in HEAD_ENDS if (i := edge.find(end)) >= 0]
        ends += [i + len(end) for end in HEAD_ENDS if (i := data.find(end)) >= 0]
        self._head_bytes += max(0, min(ends)) if ends else len(data)
        self._tail = (self._tail + data)[-3:] if len(data) < 3 else data[-3:]
        limit = self._limits.max_header_bytes
        if self._head_bytes > limit:
            hit("header_bytes", "a request's line and headers exceeded %d bytes", limit)
            self._refuse(431, "Request Header Fields Too Large", f"request headers exceed {limit} bytes")
            return False
        return True

    # ------------------------------------------------------------------ parser callbacks
    def on_message_begin(self) -> None:
        self._in_head = True
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        limit = self._limits.max_header_count
        if self._header_count > limit:
            hit("header_count", "a request had more than %d headers", limit)
            self._refuse(431, "Request Header Fields Too Large", f"more than {limit} request headers")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = self._header_count = 0
        self._tail = b""
        self._cancel_timers()
        self._check_framing()
        super().on_headers_complete()
        if not self.parser.should_upgrade() and self._has_body():
            self._body_timer = self.loop.call_later(self._limits.body_timeout, self._body_timed_out)

    def on_response_complete(self) -> None:
        # uvicorn resumes reading after every response, and one read may hold a thousand pipelined
        # requests: a client that sends without reading would grow the queue without end.
        super().on_response_complete()
        if len(self.pipeline) >= MAX_PIPELINED:
            self.flow.pause_reading()

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    # ------------------------------------------------------------------ rules
    def _check_framing(self) -> None:
        for name, value in self.headers:
            if name == b"transfer-encoding":
                codings = [c.strip().lower() for c in value.split(b",") if c.strip()]
                if codings != [b"chunked"]:
                    hit("bad_framing", "refused Transfer-Encoding %r", value[:64])
                    self._refuse(501, "Not Implemented", "only Transfer-Encoding: chunked is supported")
                    raise _Refused
        if self.url[:1] not in (b"/", b"*"):
            # absolute-form: the target's authority is the host the request is for, not Host
            try:
                parsed = httptools.parse_url(self.url)
            except httptools.HttpParserInvalidURLError:
                parsed = None
            if parsed is None or not parsed.host:
                hit("bad_framing", "refused request target %r", self.url[:64])
                self._refuse(400, "Bad Request", "invalid request target")
                raise _Refused
            authority = parsed.host + (b":%d" % parsed.port if parsed.port else b"")
            self.headers[:] = [(n, v) for n, v in self.headers if n != b"host"] + [(b"host", authority)]

    def _has_body(self) -> bool:
        for name, value in self.headers:
            if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"", b"0")):
                return True
        return False

    # ------------------------------------------------------------------ timers and refusals
    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self._limits.header_timeout, self._head_timed_out)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        hit("header_timeout", "a request's headers did not arrive within %gs", self._limits.header_timeout)
        if self._head_bytes:
            self._refuse(408, "Request Timeout", "the request headers did not arrive in time")
        else:
            self.transport.close()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None or not cycle.more_body:
            return
        hit("body_timeout", "a request's body did not arrive within %gs", self._limits.body_timeout)
        if not cycle.response_started:
            self.transport.write(_response(408, "Request Timeout", "the request body did not arrive in time"))
        cycle.disconnected = True  # the app's next receive() says so
        cycle.message_event.set()
        self.transport.close()

    def _refuse(self, status: int, reason: str, text: str, *, linger: bool = True) -> None:
        """Answer `status` and end the connection. With `linger`, what the client still sends is read
        and dropped for a moment first: closing with unread input resets the connection, and the
        client's kernel would then drop the answer before the client has read it."""
        self._refused = True
        self._cancel_timers()
        self.transport.write(_response(status, reason, text))
        if linger and self.transport.can_write_eof():
            self.transport.write_eof()
            self._head_timer = self.loop.call_later(LINGER, self.transport.close)
        else:
            self.transport.close()


def protocol_class(limits: Callable[[], Limits]) -> type[LimitedHttpProtocol]:
    """A protocol class that reads the limits in force from `limits` (called per connection)."""
    attributes = {"limits": staticmethod(limits), "unsent_budget": UnsentBudget()}
    return type("HubHttpProtocol", (LimitedHttpProtocol,), attributes)


def server_config(app: Any, limits: Callable[[], Limits], **options: Any) -> uvicorn.Config:
    """The uvicorn config every hub server uses (serve and the tests alike)."""
    return uvicorn.Config(
        app,
        http=protocol_class(limits),
        ws="none",
        lifespan="on",
        log_level="warning",
        # uvicorn's records go to the hub's handler: redacted, escaped, in its format and file (its own
        # logging config gave them a handler of their own, on stderr, past all three)
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        **options,
    )
