"""The set of upstream connections: start them all in parallel, own their tasks, report state.

Owns the task group every connection runs in. Restarts, reload and supervision build on
this (later issues); today a connection that dies stays failed with its last error.
"""

from __future__ import annotations

import anyio
from anyio.abc import TaskStatus

from onemcp.config.model import HubConfig
from onemcp.upstream.connection import ConnectionEvents, UpstreamConnection, make_transport


class Pool:
    def __init__(self, config: HubConfig, events: ConnectionEvents) -> None:
        self.config = config
        self.connections: dict[str, UpstreamConnection] = {
            name: UpstreamConnection(name, server, make_transport(name, server), events)
            for name, server in config.enabled.items()
        }
        self.tried = anyio.Event()

    def get(self, name: str) -> UpstreamConnection | None:
        return self.connections.get(name)

    def all_tried(self) -> bool:
        return all(c.state != "starting" for c in self.connections.values())

    def note_state(self) -> None:
        if self.all_tried():
            self.tried.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            for conn in self.connections.values():
                tg.start_soon(conn.run)
            self.note_state()
            task_status.started()
