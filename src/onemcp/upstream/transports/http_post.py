"""A Streamable HTTP upstream's POSTs: one message's answer, read as it arrives (`http.py` sends them).

Owns the exchange of one POSTed message: its status (a session gone, credentials refused, a redirect, the
server's own JSON-RPC error), its JSON or event-stream reply delivered, an answer without the reply failing
the request saying which, and what the transport does once it ends (`_settle`: resend after a new token or
at the new URL, resume a reply stream, fail the request). Does not own sending, sessions, resuming nor
cancels (`http.py`).
"""

from __future__ import annotations

from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup

from onemcp.protocol import sse
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream.transports.base import Deliver, Fail, ServerLog, SessionExpired, TransportClosed, TransportError
from onemcp.upstream.transports.h1 import Gone, H1Exchange, UpstreamHttpError
from onemcp.upstream.transports.http_status import ERROR_BODY_MAX, error_text, retry_after, rpc_error, session_gone
from onemcp.upstream.transports.redirect import Moved, redirected
from onemcp.upstream.transports.sink import EventSink
from onemcp.upstream.transports.stream import StreamExchange, TooLarge, feed, too_large


class Poster(Protocol):
    """What a POST's exchange uses of its transport (`http.StreamableHttpTransport`): read, and what it learns."""

    session_id: str | None  # an initialize's answer gives it
    retry_after: float | None  # what a 429/503 asked
    link_failed: bool
    heads_early: bool  # a request's answer is an event stream (its head comes as the server takes it)
    handshake_refused: int | None

    @property
    def name(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def limit(self) -> int: ...
    @property
    def log(self) -> ServerLog: ...
    @property
    def modern(self) -> bool: ...
    @property
    def moves(self) -> int: ...
    @property
    def auth(self) -> object: ...
    @property
    def deliver(self) -> Deliver: ...
    @property
    def fail(self) -> Fail: ...
    @property
    def _requests(self) -> dict[Any, PostExchange | StreamExchange]: ...
    @property
    def _sending(self) -> set[Any]: ...
    @property
    def _unsent(self) -> set[Any]: ...
    @property
    def _tg(self) -> TaskGroup | None: ...
    def gone(self, why: str | None = None) -> TransportClosed: ...
    def deliver_body(self, raw: bytes, request_id: Any = None) -> str | None: ...
    def move(self, moved: Moved) -> bool: ...
    def resume(self, msg: Message, sink: EventSink) -> None: ...
    def reauthorize(self, msg: Message, body: bytes, error: AuthRejected, *, retry: bool) -> None: ...
    async def resend(self, msg: Message, body: bytes) -> None: ...


class AuthRejected(TransportError):
    """The upstream refused our credentials (401, or 403 for want of scope)."""

    def __init__(
        self, message: str, status: int, challenge: str | None, used: str | None, nonce: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.challenge = challenge
        self.used = used  # the Authorization header the refused request carried
        self.nonce = nonce  # DPoP-Nonce


NOT_JSON = "the server's reply is not valid JSON"
NO_REPLY = "the server's JSON body holds no reply to this request"


def drop(exchange: PostExchange | StreamExchange) -> None:
    """Give up on an exchange: close its connection, if that still carries it; wake its waiter.

    An exchange that has ended is left alone: its connection went back to the pool and may be
    carrying another by now. A stream's waiter (a resume) is woken, to stop.
    """
    conn = exchange.conn
    if conn is not None and conn.exchange is exchange:
        conn.abort()
    if isinstance(exchange, StreamExchange):
        exchange.done.set()


class PostExchange(H1Exchange):
    """One POSTed message: its reply (JSON or SSE) is delivered, its failure reported."""

    def __init__(self, t: Poster, msg: Message, body: bytes, *, awaited: bool, retry: bool) -> None:
        self.t = t
        self.msg = msg
        self.sent = body
        self.retry = retry  # refused for its credentials: may it be resent once?
        self.authorization: str | None = None  # what it carried
        self.challenge: str | None = None
        self.nonce: str | None = None  # a DPoP nonce the server asks for
        self.is_request = "id" in msg and "method" in msg
        self.session = t.session_id
        self.status = 0
        self.decoder: sse.Decoder | None = None
        self.sink: EventSink | None = None
        self.body: list[bytes] = []
        self.size = 0  # bytes of body read
        self.error: TransportError | None = None
        self.done = anyio.Event() if awaited else None
        self.conn_key: Any = None
        self.conn: Any = None  # the connection carrying it (a request's: to close it if it is abandoned)
        self.content_type = ""  # of a body that is not an event stream
        self.heard: anyio.Event | None = None  # made by a cancel waiting for the server to answer it (`taken`)

    @property
    def label(self) -> str:
        """What an error names this message by: its method (a response to the server has none)."""
        return str(self.msg.get("method") or "a response to the server")

    def wanted(self) -> bool:
        """A request abandoned before it is written is not (`http.StreamableHttpTransport.cancel`)."""
        return not self.is_request or self.msg["id"] in self.t._sending

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        self.status = status
        if self.heard is not None:
            self.heard.set()
        if status == 404 and self.session is not None:
            self.error = SessionExpired("the upstream no longer knows our session (404)", self.session)
            return
        if status >= 400:
            self.t.retry_after = retry_after(headers.get("retry-after")) if status in (429, 503) else None
            if status in (401, 403):
                self.challenge = headers.get("www-authenticate")
                self.nonce = headers.get("dpop-nonce")
            return
        if status < 300:
            self.t.link_failed, self.t.retry_after = False, None  # it is reached again
        elif status < 400:  # it says nothing of our message: followed (Moved) or no reply will come
            self.error = redirected(self.label, status, self.t.url, headers.get("location"), self.t.moves)
            return
        if self.msg.get("method") == "initialize":
            self.t.session_id = headers.get("mcp-session-id")
        content_type = headers.get("content-type", "")
        if self.is_request:  # a stream's head comes as the server takes the request; a JSON body's, with the reply
            self.t.heads_early = content_type.startswith("text/event-stream")
        if content_type.startswith("text/event-stream"):
            self.decoder = sse.Decoder(self.t.limit)
            self.sink = EventSink(self.t.deliver, self.msg.get("id"), self.t.log, f"upstream {self.t.name}")
            return
        self.content_type = content_type
        if (length := headers.get("content-length", "")).isdigit() and int(length) > self.t.limit:
            raise too_large(self.t.name, self.t.limit)  # refused before a byte of it is read

    def on_body(self, chunk: bytes) -> None:
        if self.decoder is not None and self.sink is not None:
            feed(self.decoder, chunk, self.sink, self.t.name)
            return
        self.size += len(chunk)
        if self.status < 300 and self.size > self.t.limit:
            self.body = []
            raise too_large(self.t.name, self.t.limit)
        if self.status < 300 or self.size - len(chunk) < ERROR_BODY_MAX:
            self.body.append(chunk)

    def on_end(self) -> None:
        if self.error is None and self.status >= 400:
            raw = b"".join(self.body)[:ERROR_BODY_MAX]
            message = error_text(self.status, raw, self.content_type)  # the client sees it: no URL, one line
            if self.status in (404, 405) and self.msg.get("method") in ("initialize", "server/discover"):
                self.t.handshake_refused = self.status
            if session_gone(self.status, raw, self.session, after_failure=self.t.link_failed):
                self.error = SessionExpired(f"the upstream no longer knows our session ({message})", self.session)
            elif self.t.auth is not None and (self.status == 401 or (self.status == 403 and self.challenge)):
                self.error = AuthRejected(message, self.status, self.challenge, self.authorization, self.nonce)
            elif self.is_request and (reply := rpc_error(raw, self.msg["id"])) is not None:
                # the upstream's own JSON-RPC error (2026-07-28 carries them on 400/404): it passes as is
                self.t.deliver(reply, None)
            else:
                self.t.log.info("POST %s: %s", self.t.url, message)
                self.error = TransportError(message)
        elif self.error is None and self.decoder is not None and self.sink is not None:
            last = self.decoder.close()
            if last is not None:
                self.sink(last)
            if self.is_request and not self.sink.answered:
                self._stream_ended(self.sink)
        elif self.error is None and self.is_request and self.status != 202:
            self._read_reply(b"".join(self.body))
        elif self.error is None and self.body and self.status != 202:
            self.t.deliver_body(b"".join(self.body))
        self._settle()

    def _stream_ended(self, sink: EventSink) -> None:
        """A request's reply stream ended before its reply: resume it (legacy SSE polling) or fail it."""
        if not self.t.modern and sink.last_id is not None:
            if self.t._requests.get(self.conn_key) is self:  # (abandoned: its cancel is on its way, no resume)
                self.t.resume(self.msg, sink)  # the server closed the stream early, and said where to resume
        else:
            self.error = TransportError(f"{self.label}: the reply stream ended before the reply")

    def _read_reply(self, raw: bytes) -> None:
        """Deliver a request's JSON reply; without one for this request, fail it saying what came instead."""
        why: str | None
        if not raw:
            why = f"the server answered HTTP {self.status} with no reply"
        elif (why := self.t.deliver_body(raw, self.msg["id"])) is None:
            return
        elif why == NO_REPLY and (reply := rpc_error(raw, self.msg["id"])) is not None:
            self.t.deliver(reply, None)  # an error sent before its id was read (id null) is still the answer
            return
        elif why == NOT_JSON and "json" not in self.content_type:
            shown = self.content_type.partition(";")[0].strip() or "none"
            why = f"the server answered with content-type {shown}, not JSON or an event stream"
        self.error = TransportError(f"{self.label}: {why}")

    def on_error(self, error: UpstreamHttpError) -> None:
        self.t.log.info("POST %s failed: %s", self.t.url, error)
        self.t.link_failed = not isinstance(error, TooLarge)  # the server may be going away
        if isinstance(error, Gone):  # mid-reply: the server went away, as a stdio server that exits does
            self.error = self.t.gone(f"upstream closed: {error}")
        else:
            self.error = TransportError(str(error) if isinstance(error, TooLarge) else f"POST failed: {error}")
        self._settle()

    def _settle(self) -> None:
        if self.heard is not None:
            self.heard.set()
        if self.conn_key is not None and self.t._requests.get(self.conn_key) is not self:
            # abandoned (legacy: its cancel waits for this answer): nobody waits for it, and a request the server
            # refused unread (401, 307/308) is not sent again; a move is the server's all the same
            if isinstance(self.error, Moved):
                self.t.move(self.error)
            return
        if self.conn_key is not None:
            self.t._requests.pop(self.conn_key, None)
        if self.done is not None:
            self.done.set()
        elif isinstance(self.error, AuthRejected):
            self.t.reauthorize(self.msg, self.sent, self.error, retry=self.retry)
        elif isinstance(self.error, Moved) and self.t.move(self.error) and self.t._tg is not None:
            self.t._unsent.add(self.msg["id"])
            self.t._tg.start_soon(self.t.resend, self.msg, self.sent)
        elif self.error is not None:
            self.t.fail(self.msg, self.error)
