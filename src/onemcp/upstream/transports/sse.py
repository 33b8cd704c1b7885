"""Legacy HTTP+SSE upstream transport (2024-11-05): GET an event stream, POST to its endpoint.

Owns the long-lived GET stream (its `endpoint` event names where to POST) and the POSTs.
Every response arrives on the stream, so nothing here is related to a specific request.
The hub's own OAuth token for this upstream, when it has one, rides on both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import anyio
from anyio.abc import TaskGroup

from onemcp.config.model import MAX_RESPONSE_BYTES, ServerConfig
from onemcp.observability.redact import display_url
from onemcp.protocol import sse
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream.transports.base import Deliver, Fail, Transport, TransportClosed, TransportError
from onemcp.upstream.transports.h1 import Gone, Pool, UpstreamHttpError
from onemcp.upstream.transports.http import base_headers, make_pool
from onemcp.upstream.transports.redirect import Moved, redirected
from onemcp.upstream.transports.sink import EventSink
from onemcp.upstream.transports.stream import StreamExchange

if TYPE_CHECKING:  # only as a type: the OAuth client loads when a server uses OAuth
    from onemcp.upstream.oauth.client import ServerAuth


class _StreamExchange(StreamExchange):
    """The stream's GET, keeping a redirect's Location."""

    location: str | None = None

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        self.location = headers.get("location")
        super().on_head(status, headers)


class SseTransport(Transport):
    kind = "sse"

    def __init__(self, name: str, config: ServerConfig, auth: ServerAuth | None = None) -> None:
        super().__init__(name, config)
        assert config.url is not None
        self.url = config.url
        self.auth = auth
        self.endpoint: bytes | None = None
        self.endpoint_url = self.url  # the endpoint event's URL, in full
        self.limit = config.max_response_bytes or MAX_RESPONSE_BYTES  # of one event
        self._base = base_headers(config)
        self._pool: Pool | None = None
        self._endpoint_seen = anyio.Event()
        self._sink: EventSink | None = None
        self.moves = 0  # redirects of the stream's GET followed (redirect.py): the URL is the last one's

    async def open(self, tg: TaskGroup, deliver: Deliver, fail: Fail) -> None:
        self._pool = make_pool(self.config, self.url, self.budget)
        self._sink = EventSink(self.budget.counted(deliver), None, self.log, f"upstream {self.name}")
        tg.start_soon(self._stream, self._pool)
        await self._endpoint_seen.wait()
        if self.endpoint is None:
            raise TransportError(self.close_reason or "the SSE stream sent no endpoint event")

    def _on_event(self, ev: sse.Event) -> None:
        if ev.event == "endpoint":
            endpoint = urljoin(self.url, ev.data.strip())
            if urlsplit(endpoint).netloc != urlsplit(self.url).netloc:
                self._mark_closed(f"the endpoint event points at another origin: {endpoint}")
            else:
                self.endpoint = Pool.target(endpoint)
                self.endpoint_url = endpoint
            self._endpoint_seen.set()
        elif self._sink is not None:
            self._sink(ev)

    def _headers(self, method: str, url: str, **extra: str) -> dict[str, str]:
        headers = {**self._base, **extra}
        if self.auth is not None and self.auth.header is not None:
            headers.update(self.auth.authorization(method, url))
        return headers

    async def _stream(self, pool: Pool) -> None:
        try:
            attempt = 0
            while attempt < 2:  # a refused token gets one refresh
                if self.auth is not None:
                    await self.auth.ensure_fresh()
                headers = self._headers("GET", self.url, accept="text/event-stream")
                exchange = _StreamExchange(self._on_event, self.limit, self.name)
                try:
                    conn = await pool.send(b"GET", Pool.target(self.url), headers, b"", exchange)
                except UpstreamHttpError as exc:
                    self._mark_closed(f"GET {display_url(self.url)} failed: {exc}")
                    return
                try:
                    await exchange.done.wait()
                finally:
                    conn.abort()
                if 300 <= exchange.status < 400:
                    moved = redirected("GET", exchange.status, self.url, exchange.location, self.moves, get=True)
                    if not isinstance(moved, Moved):
                        self._mark_closed(f"the SSE stream ended: {moved}")
                        return
                    self.moves += 1
                    self.log.warning(
                        "moved to %s (HTTP %d): set that as its url", display_url(moved.url), exchange.status
                    )
                    self.url = self.endpoint_url = moved.url
                    continue
                attempt += 1
                if self.auth is not None and exchange.status in (401, 403):
                    used = headers.get("authorization")
                    if attempt == 1 and await self.auth.recover(
                        exchange.status, exchange.challenge, used, exchange.nonce
                    ):
                        continue
                    self._mark_closed(f"authorization required: {self.auth.explain()}")
                    return
                break
            self._mark_closed(f"the SSE stream ended{': ' + exchange.error if exchange.error else ''}")
        finally:
            self._endpoint_seen.set()

    async def send(self, message: Message, body: bytes, *, retry: bool = True) -> None:
        if self._pool is None or self.endpoint is None or self.closed.is_set():
            raise self.gone()
        if self.auth is not None:
            await self.auth.ensure_fresh()
        headers = self._headers("POST", self.endpoint_url, **{"content-type": "application/json"})
        # the reply to a POST is just "Accepted"; an error's body (its start) says why
        exchange = StreamExchange(lambda ev: None, self.limit, self.name)
        try:
            conn = await self._pool.send(b"POST", self.endpoint, headers, body, exchange)
            try:
                await exchange.done.wait()
            except BaseException:
                if conn.exchange is exchange:  # answered already, it may carry the next POST by now: not closed
                    conn.abort()
                raise
        except Gone as exc:  # the server went away
            raise TransportClosed(f"POST to the message endpoint failed: {exc}") from None
        except UpstreamHttpError as exc:
            raise TransportError(f"POST to the message endpoint failed: {exc}") from None
        if exchange.status == 401 and self.auth is not None:
            # refused before it was read: one new token, one resend
            used = headers.get("authorization")
            if retry and await self.auth.recover(401, exchange.challenge, used, exchange.nonce):
                await self.before_resend(message)
                await self.send(message, body, retry=False)
                return
            raise TransportError(self.auth.explain())
        if exchange.status >= 300:  # a redirect too: the server did not take it (the endpoint is its own word)
            raise TransportError(f"the message endpoint answered {exchange.error}")
        if exchange.status == 0:
            raise TransportError("the message endpoint answered HTTP 0")

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        self._mark_closed("stopped")
