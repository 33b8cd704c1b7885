"""A connection's owner for tests that drive an `UpstreamConnection` alone: it keeps the lists it is told."""

from __future__ import annotations

from typing import Any

from onemcp.protocol.jsonrpc import Message
from onemcp.upstream.call import Call
from onemcp.upstream.connection import UpstreamConnection


class Events:
    """What a connection tells its owner: only the lists are kept."""

    def __init__(self) -> None:
        self.lists: dict[str, list[dict[str, Any]]] = {}

    def on_state(self, conn: UpstreamConnection) -> None:
        pass

    def on_list(self, conn: UpstreamConnection, kind: str, items: list[dict[str, Any]]) -> None:
        self.lists[kind] = items

    def on_notification(self, conn: UpstreamConnection, msg: Message, call: Call | None) -> None:
        pass

    async def on_server_request(self, conn: UpstreamConnection, msg: Message, call: Call | None) -> Message | None:
        return None

    def pending_client_request_limit(self) -> int:
        return 8

    def own_connection_limit(self) -> int:
        return 8

    def own_connection_group_limit(self) -> int:
        return 8
