"""The change feed of a 2026-07-28 upstream: one `subscriptions/listen` the hub keeps open.

Owns what the hub asks that listen for: the list_changed kinds the upstream can announce,
and the resource URIs some client subscribed to (there is no `resources/subscribe` in the
modern era: the set travels in `resourceSubscriptions`, and a change reopens the listen).
What arrives on it is handled like any upstream notification by the connection.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import anyio

from onemcp.protocol.errors import UpstreamError
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream.call import Call, Requester

log = logging.getLogger("onemcp.upstream")
RETRY_MAX = 30.0
FLAGS = (("tools", "toolsListChanged"), ("prompts", "promptsListChanged"), ("resources", "resourcesListChanged"))


class FeedSource(Protocol):
    """What the feed needs of its upstream connection."""

    name: str
    capabilities: dict[str, Any]

    async def begin(self, msg: Message, *, origin: Requester | None = None) -> Call: ...
    def abandon(self, call: Call, reason: str) -> None: ...


class ChangeFeed:
    def __init__(self, conn: FeedSource) -> None:
        self.conn = conn
        self.uris: set[str] = set()
        self._call: Call | None = None
        self._wake = anyio.Event()

    def _filter(self) -> dict[str, Any]:
        caps = self.conn.capabilities
        wanted: dict[str, Any] = {
            flag: True for cap, flag in FLAGS if isinstance(caps.get(cap), dict) and caps[cap].get("listChanged")
        }
        if self.uris:
            wanted["resourceSubscriptions"] = sorted(self.uris)
        return wanted

    def add(self, uri: str) -> None:
        if uri not in self.uris:
            self.uris.add(uri)
            self._reopen()

    def remove(self, uri: str) -> None:
        if uri in self.uris:
            self.uris.discard(uri)
            self._reopen()

    def _reopen(self) -> None:
        """End the current listen so the loop opens one with the new filter."""
        call, self._call = self._call, None
        if call is not None:
            self.conn.abandon(call, "the subscription set changed")
            call.finish({"jsonrpc": "2.0", "id": None, "result": {}})
        self._wake.set()

    async def run(self) -> None:
        delay = 1.0
        while True:
            wanted = self._filter()
            if not wanted:
                await self._wake.wait()
                self._wake = anyio.Event()
                continue
            self._wake = anyio.Event()
            msg: Message = {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "subscriptions/listen",
                "params": {"notifications": wanted},
            }
            try:
                self._call = call = await self.conn.begin(msg)
                await call.result()
            except UpstreamError as exc:
                log.info("upstream %s: subscriptions/listen failed: %s", self.conn.name, exc)
            if self._wake.is_set():
                delay = 1.0  # reopened on purpose: at once
                continue
            with anyio.move_on_after(delay):
                await self._wake.wait()
            delay = min(delay * 2, RETRY_MAX)
