"""Streamable HTTP upstream transport (legacy era: sessions, GET stream, JSON or SSE replies).

Owns the HTTP conversation with one upstream URL: session id capture and echo, the
MCP-Protocol-Version header, reading JSON or SSE response bodies, the standalone GET
stream for server notifications, and reporting an expired session (404) so the
connection can re-initialize. Never forwards a downstream client's credentials: the only
headers sent are the ones in this server's own config.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import orjson
from anyio.abc import TaskGroup

from onemcp import __version__
from onemcp.config.model import ServerConfig
from onemcp.protocol import sse
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream.h1 import HttpError, Pool, Response
from onemcp.upstream.transport import Deliver, SessionExpired, Transport, TransportError

GET_RETRY_MAX = 30.0


def base_headers(config: ServerConfig) -> dict[str, str]:
    """Headers every request to this upstream carries: ours, then the config's own."""
    headers = {"user-agent": f"onemcp/{__version__}"}
    headers.update({k.lower(): v for k, v in config.headers.items()})
    return headers


async def deliver_stream(response: Response, deliver: Deliver, related: Any, log: logging.Logger) -> None:
    """Parse an SSE body into messages for `deliver`; the response is closed at the end."""
    async for ev in sse.decode(sse.lines(response.stream())):
        if ev.event != "message" or not ev.data:
            continue
        try:
            msg = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            log.warning("non-JSON SSE event ignored: %.200r", ev.data)
            continue
        if isinstance(msg, dict):
            deliver(msg, related)


class StreamableHttpTransport(Transport):
    kind = "http"
    blocking_send = True

    def __init__(self, name: str, config: ServerConfig) -> None:
        super().__init__()
        assert config.url is not None
        self.name = name
        self.url = config.url
        self.config = config
        self.session_id: str | None = None
        self._target = Pool.target(config.url)
        self._base = base_headers(config)
        self._pool: Pool | None = None
        self._tg: TaskGroup | None = None
        self._deliver: Deliver | None = None
        self._get_scope: anyio.CancelScope | None = None
        self._log = logging.getLogger(f"onemcp.upstream.{name}")

    async def open(self, tg: TaskGroup, deliver: Deliver) -> None:
        try:
            self._pool = Pool(self.url, connect_timeout=min(self.config.startup_timeout, 30.0))
        except HttpError as exc:
            raise TransportError(str(exc)) from None
        self._tg = tg
        self._deliver = deliver

    def reset_session(self) -> None:
        self.session_id = None
        if self._get_scope is not None:
            self._get_scope.cancel()
            self._get_scope = None

    def _headers(self, accept: str = "application/json, text/event-stream") -> dict[str, str]:
        headers = {**self._base, "accept": accept, "content-type": "application/json"}
        if self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
        if self.protocol_version is not None:
            headers["mcp-protocol-version"] = self.protocol_version
        return headers

    async def send(self, message: Message, body: bytes) -> None:
        pool, deliver = self._pool, self._deliver
        if pool is None or deliver is None or self.closed.is_set():
            raise TransportError(self.close_reason or "not connected")
        had_session = self.session_id is not None
        try:
            response = await pool.request(b"POST", self._target, self._headers(), body)
            status = response.status
            if status == 404 and had_session:
                await response.aclose()
                raise SessionExpired("the upstream no longer knows our session (404)")
            if status >= 400:
                text = (await response.read())[:300].decode(errors="replace")
                raise TransportError(f"HTTP {status} from {self.url}: {text}")
            method = message.get("method")
            if method == "initialize":
                self.session_id = response.headers.get("mcp-session-id")
            elif method == "notifications/initialized":
                self._start_get_stream()
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                await deliver_stream(response, deliver, message.get("id"), self._log)
                return
            raw = await response.read()
        except HttpError as exc:
            raise TransportError(f"POST {self.url} failed: {exc}") from None
        if raw and status != 202:
            self._deliver_body(raw, deliver)

    def _deliver_body(self, raw: bytes, deliver: Deliver) -> None:
        try:
            doc: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._log.warning("non-JSON response body ignored: %.200r", raw)
            return
        for msg in doc if isinstance(doc, list) else [doc]:
            if isinstance(msg, dict):
                deliver(msg, None)

    def _start_get_stream(self) -> None:
        if self._tg is not None and self._get_scope is None:
            self._get_scope = anyio.CancelScope()
            self._tg.start_soon(self._get_stream, self._get_scope)

    async def _get_stream(self, scope: anyio.CancelScope) -> None:
        """The standalone stream for notifications; reopened with backoff, dropped on 4xx."""
        delay = 0.5
        with scope:
            while not self.closed.is_set() and self._pool is not None and self._deliver is not None:
                try:
                    response = await self._pool.request(b"GET", self._target, self._headers("text/event-stream"))
                    if response.status >= 400:
                        await response.aclose()
                        self._log.debug("no GET stream (HTTP %d)", response.status)
                        return
                    delay = 0.5
                    await deliver_stream(response, self._deliver, None, self._log)
                except HttpError as exc:
                    self._log.debug("GET stream broke: %s", exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, GET_RETRY_MAX)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if self._get_scope is not None:
            self._get_scope.cancel()
        if pool is None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            if self.session_id is not None:
                try:
                    response = await pool.request(b"DELETE", self._target, self._headers())
                    await response.read()
                except HttpError:
                    pass
            await pool.aclose()
        self._mark_closed("stopped")
