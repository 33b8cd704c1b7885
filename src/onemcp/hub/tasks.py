"""Tasks (2025-11-25, experimental): which upstream and session own a task, and the ids clients see.

A task-augmented tools/call answers with a task handle; from then on tasks/get, tasks/result
and tasks/cancel name the task by id, so the hub keeps `visible id -> (server, upstream id,
session)` and rewrites ids both ways. With prefixed names the visible id is
``<server>:<id>`` so two upstreams' ids cannot collide. Bounded: the oldest entries go
first beyond `MAX_TASKS`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import anyio

from onemcp.catalog.catalog import Catalog
from onemcp.protocol.errors import HubError, InvalidParams, NotFound

if TYPE_CHECKING:
    from onemcp.upstream.connection import UpstreamConnection

log = logging.getLogger("onemcp.tasks")

MAX_TASKS = 10_000
RELATED_TASK = "io.modelcontextprotocol/related-task"


class TaskRouter:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._tasks: OrderedDict[str, tuple[str, str, str]] = OrderedDict()
        self._visible: dict[tuple[str, str], str] = {}

    def _visible_id(self, server: str, upstream_id: str) -> str:
        return f"{server}:{upstream_id}" if self.catalog.prefixed else upstream_id

    def record(self, server: str, session_id: str, result: dict[str, Any]) -> None:
        """Remember a task an upstream created for a session; its id in `result` becomes the visible one."""
        task = result.get("task")
        if not isinstance(task, dict) or not isinstance(task.get("taskId"), str):
            return
        visible = self._visible_id(server, task["taskId"])
        self._tasks[visible] = (server, task["taskId"], session_id)
        self._visible[(server, task["taskId"])] = visible
        while len(self._tasks) > MAX_TASKS:
            _, (old_server, old_id, _) = self._tasks.popitem(last=False)
            self._visible.pop((old_server, old_id), None)
        result["task"] = {**task, "taskId": visible}

    def resolve(self, session_id: str, visible: object) -> tuple[str, str]:
        """(server, upstream task id) for a task this session may see."""
        if not isinstance(visible, str):
            raise InvalidParams("params.taskId must be a string")
        entry = self._tasks.get(visible)
        if entry is None or entry[2] != session_id:
            raise NotFound(f"Task not found: {visible}")
        return entry[0], entry[1]

    def owner(self, server: str, upstream_id: object) -> tuple[str, str] | None:
        """(session id, visible id) of an upstream's task, if the hub knows it."""
        visible = self._visible.get((server, upstream_id)) if isinstance(upstream_id, str) else None
        if visible is None:
            return None
        return self._tasks[visible][2], visible

    def rewrite(self, server: str, obj: dict[str, Any]) -> dict[str, Any]:
        """A task object, task result or status notification params, with visible ids."""
        out = dict(obj)
        tid = out.get("taskId")
        if isinstance(tid, str):
            out["taskId"] = self._visible.get((server, tid), self._visible_id(server, tid))
        meta = out.get("_meta")
        if isinstance(meta, dict) and isinstance(meta.get(RELATED_TASK), dict):
            related = meta[RELATED_TASK]
            if isinstance(related.get("taskId"), str):
                fixed = self._visible.get((server, related["taskId"]), self._visible_id(server, related["taskId"]))
                out["_meta"] = {**meta, RELATED_TASK: {**related, "taskId": fixed}}
        return out

    async def list_for(self, session_id: str, connections: Iterable[UpstreamConnection]) -> list[dict[str, Any]]:
        """Ask every ready upstream that lists tasks; keep this session's, with visible ids."""
        targets = [c for c in connections if c.state == "ready" and "list" in (c.capabilities.get("tasks") or {})]
        found: list[dict[str, Any]] = []

        async def one(conn: UpstreamConnection) -> None:
            try:
                listed = await conn.request("tasks/list", {})
            except HubError as exc:
                log.info("tasks/list to %s failed: %s", conn.name, exc)
                return
            tasks = listed.get("tasks")
            found.extend(self.session_tasks(session_id, conn.name, tasks if isinstance(tasks, list) else []))

        async with anyio.create_task_group() as tg:
            for conn in targets:
                tg.start_soon(one, conn)
        return found

    def session_tasks(self, session_id: str, server: str, listed: list[Any]) -> list[dict[str, Any]]:
        """The entries of an upstream's tasks/list that belong to this session, with visible ids."""
        out = []
        for task in listed:
            if isinstance(task, dict):
                owner = self.owner(server, task.get("taskId"))
                if owner is not None and owner[0] == session_id:
                    out.append({**task, "taskId": owner[1]})
        return out
