"""Streamable HTTP upstream transport (legacy era: sessions, GET stream, JSON or SSE replies).

Owns the HTTP conversation with one upstream URL: session id capture and echo, the
MCP-Protocol-Version header, reading JSON or SSE response bodies, the standalone GET
stream for server notifications, and reporting an expired session (404) so the
connection can re-initialize. Never forwards a downstream client's credentials: the only
headers sent are the ones in this server's own config.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import anyio
import httpx
import orjson
from anyio.abc import TaskGroup

from onemcp import __version__
from onemcp.config.model import ServerConfig
from onemcp.protocol import sse
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream.transport import Deliver, SessionExpired, Transport, TransportError

ACCEPT = "application/json, text/event-stream"
GET_RETRY_MAX = 30.0


def make_client(config: ServerConfig) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        headers={"user-agent": f"onemcp/{__version__}", **config.headers},
        timeout=httpx.Timeout(None, connect=min(config.startup_timeout, 30.0)),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        follow_redirects=False,
    )


class StreamableHttpTransport(Transport):
    kind = "http"

    def __init__(self, name: str, config: ServerConfig) -> None:
        super().__init__()
        assert config.url is not None
        self.name = name
        self.url = config.url
        self.config = config
        self.session_id: str | None = None
        self._client: httpx.AsyncClient | None = None
        self._tg: TaskGroup | None = None
        self._deliver: Deliver | None = None
        self._get_scope: anyio.CancelScope | None = None
        self._log = logging.getLogger(f"onemcp.upstream.{name}")

    async def open(self, tg: TaskGroup, deliver: Deliver) -> None:
        self._client = make_client(self.config)
        self._tg = tg
        self._deliver = deliver

    def reset_session(self) -> None:
        self.session_id = None
        if self._get_scope is not None:
            self._get_scope.cancel()
            self._get_scope = None

    def _headers(self) -> dict[str, str]:
        headers = {"accept": ACCEPT, "content-type": "application/json"}
        if self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
        if self.protocol_version is not None:
            headers["mcp-protocol-version"] = self.protocol_version
        return headers

    async def send(self, message: Message, body: bytes) -> None:
        client, deliver, tg = self._client, self._deliver, self._tg
        if client is None or deliver is None or tg is None or self.closed.is_set():
            raise TransportError(self.close_reason or "not connected")
        had_session = self.session_id is not None
        request = client.build_request("POST", self.url, content=body, headers=self._headers())
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise TransportError(f"POST {self.url} failed: {exc!r}") from None
        keep_open = False
        try:
            status = response.status_code
            if status == 404 and had_session:
                raise SessionExpired("the upstream no longer knows our session (404)")
            if status >= 400:
                text = (await response.aread())[:300].decode(errors="replace")
                raise TransportError(f"HTTP {status} from {self.url}: {text}")
            if message.get("method") == "initialize":
                self.session_id = response.headers.get("mcp-session-id")
            elif message.get("method") == "notifications/initialized":
                self._start_get_stream()
            if status == 202 or "id" not in message or "method" not in message:
                return
            ctype = response.headers.get("content-type", "")
            if ctype.startswith("text/event-stream"):
                keep_open = True
                tg.start_soon(self._read_sse, response, message["id"])
                return
            raw = await response.aread()
            self._deliver_body(raw)
        except httpx.HTTPError as exc:
            raise TransportError(f"reading the response from {self.url} failed: {exc!r}") from None
        finally:
            if not keep_open:
                await response.aclose()

    def _deliver_body(self, raw: bytes) -> None:
        assert self._deliver is not None
        try:
            doc: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._log.warning("non-JSON response body ignored: %.200r", raw)
            return
        for msg in doc if isinstance(doc, list) else [doc]:
            if isinstance(msg, dict):
                self._deliver(msg, None)

    async def _read_sse(self, response: httpx.Response, related: int | str | None) -> None:
        assert self._deliver is not None
        try:
            async for ev in sse.decode(response.aiter_lines()):
                if ev.event != "message" or not ev.data:
                    continue
                try:
                    msg = orjson.loads(ev.data)
                except orjson.JSONDecodeError:
                    self._log.warning("non-JSON SSE event ignored: %.200r", ev.data)
                    continue
                if isinstance(msg, dict):
                    self._deliver(msg, related)
        except httpx.HTTPError as exc:
            self._log.warning("response stream broke: %r", exc)
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()

    def _start_get_stream(self) -> None:
        if self._tg is not None and self._get_scope is None:
            self._get_scope = anyio.CancelScope()
            self._tg.start_soon(self._get_stream, self._get_scope)

    async def _get_stream(self, scope: anyio.CancelScope) -> None:
        """The standalone stream for notifications; reopened with backoff, dropped on 405."""
        assert self._client is not None and self._deliver is not None
        delay = 0.5
        with scope:
            while not self.closed.is_set():
                headers = self._headers()
                headers["accept"] = "text/event-stream"
                try:
                    async with self._client.stream("GET", self.url, headers=headers) as response:
                        if response.status_code in (405, 404) or response.status_code >= 400:
                            self._log.debug("no GET stream (HTTP %d)", response.status_code)
                            return
                        delay = 0.5
                        async for ev in sse.decode(response.aiter_lines()):
                            if ev.event == "message" and ev.data:
                                try:
                                    msg = orjson.loads(ev.data)
                                except orjson.JSONDecodeError:
                                    continue
                                if isinstance(msg, dict):
                                    self._deliver(msg, None)
                except httpx.HTTPError as exc:
                    self._log.debug("GET stream broke: %r", exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, GET_RETRY_MAX)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if self._get_scope is not None:
            self._get_scope.cancel()
        if client is None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            if self.session_id is not None:
                with contextlib.suppress(httpx.HTTPError):
                    await client.delete(self.url, headers=self._headers())
            await client.aclose()
        self._mark_closed("stopped")
