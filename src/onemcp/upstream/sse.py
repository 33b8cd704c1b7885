"""Legacy HTTP+SSE upstream transport (2024-11-05): GET an event stream, POST to its endpoint.

Owns the long-lived GET stream (its `endpoint` event names where to POST) and the POSTs.
Every response arrives on the stream, so nothing here is related to a specific request.
"""

from __future__ import annotations

import logging
from urllib.parse import urljoin, urlsplit

import anyio
import orjson
from anyio.abc import TaskGroup

from onemcp.config.model import ServerConfig
from onemcp.protocol import sse
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream.h1 import HttpError, Pool
from onemcp.upstream.http import base_headers
from onemcp.upstream.transport import Deliver, Transport, TransportError


class SseTransport(Transport):
    kind = "sse"
    blocking_send = True

    def __init__(self, name: str, config: ServerConfig) -> None:
        super().__init__()
        assert config.url is not None
        self.name = name
        self.url = config.url
        self.config = config
        self.endpoint: bytes | None = None
        self._base = base_headers(config)
        self._pool: Pool | None = None
        self._log = logging.getLogger(f"onemcp.upstream.{name}")

    async def open(self, tg: TaskGroup, deliver: Deliver) -> None:
        try:
            self._pool = Pool(self.url, connect_timeout=min(self.config.startup_timeout, 30.0))
        except HttpError as exc:
            raise TransportError(str(exc)) from None
        ready = anyio.Event()
        tg.start_soon(self._stream, self._pool, deliver, ready)
        await ready.wait()
        if self.endpoint is None:
            raise TransportError(self.close_reason or "the SSE stream sent no endpoint event")

    async def _stream(self, pool: Pool, deliver: Deliver, ready: anyio.Event) -> None:
        try:
            response = await pool.request(b"GET", Pool.target(self.url), {**self._base, "accept": "text/event-stream"})
            if response.status != 200:
                await response.aclose()
                self._mark_closed(f"GET {self.url} answered HTTP {response.status}")
                return
            async for ev in sse.decode(sse.lines(response.stream())):
                if ev.event == "endpoint":
                    endpoint = urljoin(self.url, ev.data.strip())
                    if urlsplit(endpoint).netloc != urlsplit(self.url).netloc:
                        self._mark_closed(f"the endpoint event points at another origin: {endpoint}")
                        return
                    self.endpoint = Pool.target(endpoint)
                    ready.set()
                elif ev.event == "message" and ev.data:
                    try:
                        msg = orjson.loads(ev.data)
                    except orjson.JSONDecodeError:
                        self._log.warning("non-JSON SSE event ignored: %.200r", ev.data)
                        continue
                    if isinstance(msg, dict):
                        deliver(msg, None)
            self._mark_closed("the SSE stream ended")
        except HttpError as exc:
            self._mark_closed(f"the SSE stream failed: {exc}")
        finally:
            ready.set()

    async def send(self, message: Message, body: bytes) -> None:
        if self._pool is None or self.endpoint is None or self.closed.is_set():
            raise TransportError(self.close_reason or "not connected")
        headers = {**self._base, "content-type": "application/json"}
        try:
            response = await self._pool.request(b"POST", self.endpoint, headers, body)
            text = await response.read()
        except HttpError as exc:
            raise TransportError(f"POST to the message endpoint failed: {exc}") from None
        if response.status >= 400:
            raise TransportError(f"HTTP {response.status} from the message endpoint: {text[:300]!r}")

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()
        self._mark_closed("stopped")
