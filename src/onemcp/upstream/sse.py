"""Legacy HTTP+SSE upstream transport (2024-11-05): GET an event stream, POST to its endpoint.

Owns the long-lived GET stream (its `endpoint` event names where to POST) and the POSTs.
Every response arrives on the stream, so nothing here is related to a specific request.
"""

from __future__ import annotations

import logging
from urllib.parse import urljoin

import anyio
import httpx
import orjson
from anyio.abc import TaskGroup

from onemcp.config.model import ServerConfig
from onemcp.protocol import sse
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream.http import make_client
from onemcp.upstream.transport import Deliver, Transport, TransportError


class SseTransport(Transport):
    kind = "sse"

    def __init__(self, name: str, config: ServerConfig) -> None:
        super().__init__()
        assert config.url is not None
        self.name = name
        self.url = config.url
        self.config = config
        self.endpoint: str | None = None
        self._client: httpx.AsyncClient | None = None
        self._log = logging.getLogger(f"onemcp.upstream.{name}")

    async def open(self, tg: TaskGroup, deliver: Deliver) -> None:
        self._client = make_client(self.config)
        ready = anyio.Event()
        tg.start_soon(self._stream, deliver, ready)
        with anyio.fail_after(self.config.startup_timeout):
            await ready.wait()
        if self.endpoint is None:
            raise TransportError(self.close_reason or "the SSE stream sent no endpoint event")

    async def _stream(self, deliver: Deliver, ready: anyio.Event) -> None:
        assert self._client is not None
        try:
            async with self._client.stream("GET", self.url, headers={"accept": "text/event-stream"}) as r:
                if r.status_code != 200:
                    self._mark_closed(f"GET {self.url} answered HTTP {r.status_code}")
                    return
                async for ev in sse.decode(r.aiter_lines()):
                    if ev.event == "endpoint":
                        self.endpoint = urljoin(self.url, ev.data.strip())
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
        except httpx.HTTPError as exc:
            self._mark_closed(f"the SSE stream failed: {exc!r}")
        finally:
            ready.set()

    async def send(self, message: Message, body: bytes) -> None:
        if self._client is None or self.endpoint is None or self.closed.is_set():
            raise TransportError(self.close_reason or "not connected")
        try:
            r = await self._client.post(self.endpoint, content=body, headers={"content-type": "application/json"})
        except httpx.HTTPError as exc:
            raise TransportError(f"POST {self.endpoint} failed: {exc!r}") from None
        if r.status_code >= 400:
            raise TransportError(f"HTTP {r.status_code} from {self.endpoint}: {r.text[:300]}")

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await client.aclose()
        self._mark_closed("stopped")
