"""Streamable HTTP upstream transport (legacy era: sessions, GET stream, JSON or SSE replies).

Owns the HTTP conversation with one upstream URL: session id capture and echo, the
MCP-Protocol-Version header, JSON or SSE response bodies (parsed as they arrive, in the
event loop's callbacks), the standalone GET stream for server notifications,
reporting an expired session (404, or a 400 that says so: http_status.py) so the connection can
re-initialize, declaring itself dead when the server cannot be reached, and carrying the
hub's own OAuth token for this upstream (refreshed before expiry; a 401 is recovered from once,
by refresh, before the request fails), and following a 307/308 on the server's own origin (redirect.py);
each POST's answer is read by its exchange (http_post.py). A request abandoned before its POST is written (a
re-send waiting for a token or a connection) is never written, and there is nothing to cancel.
A request's exchange that ends without its reply (another redirect, a body that is not JSON, a reply
stream that ends early) fails it at once, saying which; an abandoned
request's connection is closed (at once in the modern era, where that is the cancellation; in the
legacy era once notifications/cancelled has gone, or could not go: sent once its POST is answered, as the
server has taken it, never for one refused unread). Never forwards a downstream
client's credentials: the only headers sent are this server's own config and the hub's own token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import orjson
from anyio.abc import TaskGroup

from onemcp import __version__
from onemcp.config.model import MAX_RESPONSE_BYTES, ServerConfig
from onemcp.observability.redact import display_url
from onemcp.protocol import headers as mcp_headers
from onemcp.protocol import jsonrpc
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream import era
from onemcp.upstream.transports.base import Deliver, Fail, Transport, TransportError
from onemcp.upstream.transports.h1 import Declined, Gone, Paced, Pool, UpstreamHttpError
from onemcp.upstream.transports.http_post import NO_REPLY, NOT_JSON, AuthRejected, PostExchange, drop
from onemcp.upstream.transports.redirect import Moved
from onemcp.upstream.transports.sink import EventSink
from onemcp.upstream.transports.stream import StreamExchange

GET_RETRY_MAX = 30.0
ACCEPT_BOTH = "application/json, text/event-stream"
RESUME_ATTEMPTS = 5  # GETs that resume one request's broken reply stream
RESUME_WAIT_MAX_MS = 5000  # the longest `retry:` honoured before resuming

if TYPE_CHECKING:  # only as a type: the OAuth client loads when a server uses OAuth
    from onemcp.upstream.oauth.client import ServerAuth


def base_headers(config: ServerConfig) -> dict[str, str]:
    """Headers every request to this upstream carries: ours, then the config's own."""
    headers = {"user-agent": f"onemcp/{__version__}"}
    headers.update({k.lower(): v for k, v in config.headers.items()})
    return headers


def make_pool(config: ServerConfig, url: str, budget: Paced) -> Pool:
    try:
        return Pool(url, connect_timeout=min(config.startup_timeout, config.timeout, 30.0), budget=budget)
    except UpstreamHttpError as exc:
        raise TransportError(str(exc)) from None


class StreamableHttpTransport(Transport):
    kind = "http"

    def __init__(self, name: str, config: ServerConfig, auth: ServerAuth | None = None) -> None:
        super().__init__(name, config)
        assert config.url is not None
        self.url = config.url
        self.auth = auth
        self.session_id: str | None = None
        self.limit = config.max_response_bytes or MAX_RESPONSE_BYTES  # of one message
        self._target = Pool.target(config.url)
        self._base = base_headers(config)
        self._pool: Pool | None = None
        self._tg: TaskGroup | None = None
        self._get_scope: anyio.CancelScope | None = None
        # request id -> the exchange its reply comes on (its POST, or a GET resuming its stream)
        self._requests: dict[Any, PostExchange | StreamExchange] = {}
        # legacy era: abandoned requests' exchanges, closed once notifications/cancelled has gone (or `forget`)
        self._abandoned: dict[Any, PostExchange | StreamExchange] = {}
        # requests the server refused without running them (401, 307/308), to be sent again (after a new
        # token, at the new URL): abandoned meanwhile, they are not (nor cancelled: it never saw them)
        self._unsent: set[Any] = set()
        # requests whose reply stream is to be resumed (legacy): abandoned meanwhile, they are not
        self._resuming: set[Any] = set()
        # requests whose POST waits to be written (a new token, a connection): abandoned meanwhile, it never is
        # (`PostExchange.wanted`), so there is nothing to cancel (a re-send's wait outlasts its caller's interest)
        self._sending: set[Any] = set()
        # The handshake's POST was refused as a method the URL does not take (404/405): an old
        # HTTP+SSE server, maybe (the spec's backwards-compatible probe then tries GET + SSE).
        self.handshake_refused: int | None = None
        self.link_failed = False  # a connection to the server broke since it last answered 2xx
        self.moves = 0  # redirects followed (redirect.py): the URL is the last one's
        self.retry_after: float | None = None  # what the last 429/503 asked (the supervisor waits as long)
        # the server answers a request with an event stream (its head as it takes the request), not with JSON (its
        # head only with the reply): a cancel waits for the head of its request's POST (`taken`)
        self.heads_early = True

    async def open(self, tg: TaskGroup, deliver: Deliver, fail: Fail) -> None:
        self._pool = make_pool(self.config, self.url, self.budget)
        self._tg = tg
        self.deliver = self.budget.counted(deliver)
        self.fail = fail

    def reset_session(self) -> None:
        self.session_id = None
        if self._get_scope is not None:
            self._get_scope.cancel()
            self._get_scope = None

    def _headers(
        self, accept: str = "application/json, text/event-stream", msg: Message | None = None, method: str = "POST"
    ) -> dict[str, str]:
        headers = {**self._base, "accept": accept, "content-type": "application/json"}
        if self.auth is not None and self.auth.header is not None:
            headers.update(self.auth.authorization(method, self.url))
        if self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
        if self.protocol_version is not None:
            headers["mcp-protocol-version"] = self.protocol_version
        if msg is not None and self.modern:
            headers.update(mcp_headers.request_headers(msg, self.param_names))
        return headers

    @property
    def modern(self) -> bool:
        return self.protocol_version == era.MODERN

    def cancel(self, request_id: int) -> bool:
        """Stop waiting for a request's reply: True when closing its stream was the cancellation.

        Modern era: closing the stream is the cancellation. Legacy era: it is not, so the caller
        sends notifications/cancelled, and `send` closes the stream once that has gone.
        """
        if request_id in self._unsent or request_id in self._sending:
            # refused (401, 307/308) and waiting to be sent again, or not written yet: the upstream never had it,
            # and it never will (never resent, nor written)
            self._unsent.discard(request_id)
            self._sending.discard(request_id)
            return True
        self._resuming.discard(request_id)  # (between two resumes: the server still runs it, so it is told)
        exchange = self._requests.pop(request_id, None)
        if exchange is None:
            return False
        if self.modern:
            drop(exchange)
            return True
        self._abandoned[request_id] = exchange
        return False

    def forget(self, request_id: int) -> None:
        """Also an abandoned request's, once its notifications/cancelled went, failed, or never could."""
        self._unsent.discard(request_id)
        self._sending.discard(request_id)
        self._resuming.discard(request_id)
        for table in (self._requests, self._abandoned):
            if (exchange := table.pop(request_id, None)) is not None:
                drop(exchange)

    async def send(self, message: Message, body: bytes, *, retry: bool = True) -> None:
        if self._abandoned and message.get("method") == "notifications/cancelled":
            await self._send_cancelled(message, body)
        else:
            await self._post(message, body, retry=retry)

    async def _send_cancelled(self, message: Message, body: bytes) -> None:
        """Tell the server a request was cancelled, once it has taken it, then close that request's stream
        (legacy era). Closed even when telling fails or is given up on: the connection is never left open.
        """
        params = message.get("params")
        rid = params.get("requestId") if isinstance(params, dict) else None
        exchange = self._abandoned.pop(rid, None)
        try:
            if isinstance(exchange, PostExchange) and not await self._taken(exchange):
                return  # refused unread (401, 307/308, a session gone): there is nothing to cancel
            await self._post(message, body)
        finally:
            if exchange is not None:
                drop(exchange)

    async def _taken(self, exchange: PostExchange) -> bool:
        """Whether the server took an abandoned request: its cancel goes on another connection and would overtake
        the request still on its way (a cancel for an id the server does not know yet is ignored, and the request
        run). Waits for its POST's status line, where that comes as the server takes it (`heads_early`); its
        bound is the cancel's own (`cancels.CANCEL_SEND_TIMEOUT`: given up on, the request's connection is
        closed). A status other than 2xx: the server refused it, or its answer ended it; nothing to cancel."""
        conn = exchange.conn
        if exchange.status == 0 and self.heads_early and conn is not None and conn.exchange is exchange:
            exchange.heard = exchange.heard or anyio.Event()
            await exchange.heard.wait()
        return exchange.status < 300

    async def _post(self, message: Message, body: bytes, *, retry: bool = True) -> None:
        pool = self._pool
        if pool is None or self.closed.is_set():
            raise self.gone()
        is_request = "id" in message and "method" in message
        if not is_request:
            return await self._post_awaited(pool, message, body, retry=retry)
        self._sending.add(message["id"])
        try:
            await self._post_request(pool, message, body, retry=retry)
        finally:
            self._sending.discard(message["id"])

    async def _post_request(self, pool: Pool, message: Message, body: bytes, *, retry: bool) -> None:
        """POST a request: its answer is the exchange's (`_settle`), its reply delivered when it comes. Abandoned
        before it is written (`cancel` while it waits for a token or a connection), it is not."""
        if self.auth is not None:
            await self.auth.ensure_fresh()
        exchange = PostExchange(self, message, body, awaited=False, retry=retry)
        if message.get("method") == "server/discover":
            # the era probe: a legacy server's refusal must come back as an error, not hang
            self.protocol_version = era.MODERN
        try:
            exchange.conn = await self._pool_send(pool, message, exchange)
        except Declined:
            return  # abandoned meanwhile: never written, so the server has nothing to run nor cancel
        self._requests[message["id"]] = exchange
        exchange.conn_key = message["id"]

    async def _post_awaited(self, pool: Pool, message: Message, body: bytes, *, retry: bool) -> None:
        """POST a notification or a response: carried once the server accepted it."""
        if self.auth is not None:
            await self.auth.ensure_fresh()
        exchange = PostExchange(self, message, body, awaited=True, retry=retry)
        exchange.conn = await self._pool_send(pool, message, exchange)
        assert exchange.done is not None
        try:
            await exchange.done.wait()
        except BaseException:
            drop(exchange)
            raise
        if isinstance(exchange.error, AuthRejected) and retry and await self._recover(exchange.error):
            await self.before_resend(message)
            await self._post(message, body, retry=False)
            return
        if isinstance(exchange.error, Moved) and self.move(exchange.error):
            await self.before_resend(message)
            return await self._post(message, body, retry=retry)
        if exchange.error is not None:
            raise exchange.error
        if message.get("method") == "notifications/initialized" and not self.modern:
            self._start_get_stream()

    async def _pool_send(self, pool: Pool, message: Message, exchange: PostExchange) -> Any:
        headers = self._headers(msg=message)
        exchange.authorization = headers.get("authorization")
        try:
            return await pool.send(b"POST", self._target, headers, exchange.sent, exchange)
        except UpstreamHttpError as exc:  # the server cannot be reached: this connection is dead
            self.log.info("POST %s failed: %s", self.url, exc)
            if (refused := exc.refusal(self.name)) is not None:  # no fd of our own: not the server's fault
                raise refused from None
            self.abort(f"POST {display_url(self.url)} failed: {exc}")  # the supervisor reconnects, backing off
            raise (self.gone if isinstance(exc, Gone) else TransportError)(f"POST failed: {exc}") from None

    def reauthorize(self, msg: Message, body: bytes, error: AuthRejected, *, retry: bool) -> None:
        """A request was refused for its credentials: recover (refresh) and resend once, or fail it."""
        if self._tg is None or not retry:
            self._refused(msg, error)
        else:
            self._unsent.add(msg["id"])
            self._tg.start_soon(self._resend_authorized, msg, body, error)

    def move(self, moved: Moved) -> bool:
        """Reach the server at the URL it moved to, from now on (its origin is the same: the pool too)."""
        self.moves += 1
        self.log.warning("moved to %s (HTTP 307/308): set that as its url", display_url(moved.url))
        self.url, self._target = moved.url, Pool.target(moved.url)
        return True

    async def resend(self, msg: Message, body: bytes) -> None:
        """A request the server redirected, sent at its new URL after the cancels before it."""
        await self.before_resend(msg)
        if msg["id"] not in self._unsent:
            return  # abandoned meanwhile
        self._unsent.discard(msg["id"])
        try:
            await self.send(msg, body)
        except TransportError as exc:
            self.fail(msg, exc)

    async def _resend_authorized(self, msg: Message, body: bytes, error: AuthRejected) -> None:
        recovered = await self._recover(error)
        if recovered:
            await self.before_resend(msg)
        if msg["id"] not in self._unsent:
            return  # cancelled (the client gave up, or a deadline passed) meanwhile
        self._unsent.discard(msg["id"])
        if recovered:
            try:
                await self.send(msg, body, retry=False)
                return
            except TransportError as exc:
                self.fail(msg, exc)
                return
        self._refused(msg, error)

    async def _recover(self, error: AuthRejected) -> bool:
        assert self.auth is not None
        return await self.auth.recover(error.status, error.challenge, error.used, error.nonce)

    def _refused(self, msg: Message, error: AuthRejected) -> None:
        assert self.auth is not None
        self.fail(msg, TransportError(self.auth.explain()))
        if error.status == 401 and self.auth.tokens is None:
            self.abort(f"authorization required: {self.auth.explain()}")

    def deliver_body(self, raw: bytes, request_id: Any = None) -> str | None:
        """Deliver the messages of a JSON body. Returns why it holds no reply to `request_id`
        (NOT_JSON, NO_REPLY, or why it was refused); None when it does, or when none was awaited."""
        try:
            doc: Any = jsonrpc.load_bounded(raw, f"upstream {self.name}")
        except orjson.JSONDecodeError:
            self.log.ignored("non-JSON response body ignored: %.200r", raw)
            return NOT_JSON
        except jsonrpc.TooDeep as exc:
            self.log.ignored("a response body was ignored: it %s", exc)
            return f"the server's JSON body was refused: it {exc}"
        answered = request_id is None
        for msg in doc if isinstance(doc, list) else [doc]:
            if isinstance(msg, dict):
                if not answered and msg.get("id") == request_id and "method" not in msg:
                    answered = True  # read before delivering: the connection rewrites the id
                self.deliver(msg, None)
        return None if answered else NO_REPLY

    def resume(self, msg: Message, sink: EventSink) -> None:
        """A request's reply stream ended before its response: GET it again after its last event."""
        if self._tg is not None:
            self._resuming.add(msg["id"])
            self._tg.start_soon(self._resume, msg, sink)

    async def _resume(self, msg: Message, sink: EventSink) -> None:
        try:
            await self._resuming_stream(msg, sink)
        finally:
            self._resuming.discard(msg["id"])

    async def _resuming_stream(self, msg: Message, sink: EventSink) -> None:
        for _ in range(RESUME_ATTEMPTS):
            await anyio.sleep(min(sink.retry_ms or 0, RESUME_WAIT_MAX_MS) / 1000)
            if self._pool is None or sink.last_id is None or msg["id"] not in self._resuming:
                return  # (not resuming: closed, nowhere to resume from, or abandoned while waiting)
            exchange = StreamExchange(sink, self.limit, self.name, still=lambda: msg["id"] in self._resuming)
            headers = {**self._headers("text/event-stream", method="GET"), "last-event-id": sink.last_id}
            try:
                exchange.conn = await self._pool.send(b"GET", self._target, headers, b"", exchange)
            except Declined:  # abandoned while it connected (its cancel went): not written, nor held open for nobody
                return
            except UpstreamHttpError as exc:
                self.fail(msg, TransportError(f"the reply stream broke and could not be resumed: {exc}"))
                return
            self._requests[msg["id"]] = exchange  # abandoning the call closes this stream
            try:
                await exchange.done.wait()
            finally:
                drop(exchange)
                abandoned = self._requests.pop(msg["id"], None) is not exchange
            if sink.answered or abandoned:
                return
            if exchange.refused is not None:  # resuming would only send it again
                self.fail(msg, TransportError(str(exchange.refused)))
                return
            if exchange.status != 200:
                self.fail(msg, TransportError(f"the reply stream broke and could not be resumed: {exchange.error}"))
                return
        self.fail(msg, TransportError("the reply stream kept breaking before the response"))

    def _start_get_stream(self) -> None:
        if self._tg is not None and self._get_scope is None:
            self._get_scope = anyio.CancelScope()
            self._tg.start_soon(self._get_stream, self._get_scope)

    async def _get_stream(self, scope: anyio.CancelScope) -> None:
        """The standalone stream for notifications; reopened with backoff, dropped on 4xx.

        Reopened after the last event id it gave (Last-Event-ID): a server that keeps its events
        sends again what was said while it was down (a proxy's read timeout cuts an idle stream).
        A server that cannot resume from there (a 4xx) gets one fresh stream instead."""
        delay = 0.5
        renewed = False  # one renewal per refusal, until a stream opens again
        resume: str | None = None  # this session's stream's last event id
        with scope:
            while not self.closed.is_set() and self._pool is not None:
                if self.auth is not None:
                    await self.auth.ensure_fresh()
                sink = EventSink(self.deliver, None, self.log, f"upstream {self.name}")
                exchange = StreamExchange(sink, self.limit, self.name)
                headers = self._headers("text/event-stream", method="GET")
                if resume is not None:
                    headers["last-event-id"] = resume
                try:
                    conn = await self._pool.send(b"GET", self._target, headers, b"", exchange)
                except UpstreamHttpError as exc:
                    self.log.debug("GET stream failed: %s", exc)
                else:
                    exchange.conn = conn
                    try:
                        await exchange.done.wait()
                    finally:
                        drop(exchange)  # cancelled: closed; ended: its connection is the pool's again
                    auth = self.auth if exchange.status == 401 and not renewed else None
                    used = headers.get("authorization")
                    if auth is not None and await auth.recover(401, exchange.challenge, used, exchange.nonce):
                        renewed = True
                        continue  # a new token: reopen at once
                    if 400 <= exchange.status < 500 and resume is not None:
                        resume = None
                        continue  # not resumable from there: a fresh stream
                    if 400 <= exchange.status < 500:
                        self.log.debug("no GET stream: %s", exchange.error)
                        return
                    resume = sink.last_id or resume
                    if exchange.status == 200 and exchange.refused is None:  # a refused one keeps backing off
                        delay, renewed = 0.5, False
                await anyio.sleep(delay)
                delay = min(delay * 2, GET_RETRY_MAX)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if self._get_scope is not None:
            self._get_scope.cancel()
        if pool is None:
            return
        if self.session_id is not None:
            exchange = StreamExchange(lambda ev: None, self.limit, self.name)
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                try:
                    await pool.send(b"DELETE", self._target, self._headers(method="DELETE"), b"", exchange)
                    await exchange.done.wait()
                except UpstreamHttpError:
                    pass
        pool.close()
        self._mark_closed("stopped")
