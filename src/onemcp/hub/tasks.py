"""Tasks (2025-11-25, experimental): which connection and session own a task, and the ids clients see.

A task-augmented tools/call answers with a task handle; from then on tasks/get, tasks/result
and tasks/cancel name the task by id, so the hub keeps `(session, visible id) -> (connection,
upstream id)` and rewrites ids both ways. A task belongs to the connection that created it:
two connections to one server (`isolation: session`, replicas) or two servers with unprefixed
names may mint the same id, and neither must see or be told of the other's task. With prefixed
names the visible id is ``<server>:<id>``; one session given two equal ids gets ``~2``, ``~3``…
on the later ones; replicas sharing a Redis add ``@<replica>`` (`made_on`: another replica's
tasks/* go there). Bounded per session (beyond `MAX_SESSION_TASKS` a session's own oldest go, never another
session's) and hub-wide (beyond `MAX_TASKS` the session holding the most loses its oldest); a session's tasks
are forgotten when it ends (those not seen to end stay routed to it, `MAX_ORPHANS`, so that what they ask
reaches no one else, until they end, their ttl passes, their connection closes, or the server answers their
cancel with an error: it no longer knows them), and, when it cannot come back, those still running are cancelled
upstream (`tasks/cancel`, in the background, where the server offers it): no one can reach them any more. `tasks/list`
reads every page of each connection's list (at most `LIST_PAGES`, within `LIST_WAIT`: a server that has not
answered by then is left out) and withholds an entry a validating client would refuse.
A server may send a task's first `notifications/tasks/status` before the reply that creates it:
held (a few, for EARLY_SECONDS) until that reply names its session, then sent there. A server's request or log
line that names a task (`_meta` related-task) belongs to that task's session (`named`); one that names neither
a call nor a task may be for any session whose task on that connection has not been seen to end
(`running_for`).
The server's progress on a task whose call carried a `progressToken` names that call's token (the hub's
request id) after the call returned the handle: `progress` sends it to the task's session with the client's own
token, until the task is seen to end (held like an early status when it comes before the handle is recorded).
"""

from __future__ import annotations

import logging
import math
import re
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from onemcp.catalog.catalog import Catalog
from onemcp.hub.rewrite import task_problem
from onemcp.protocol.errors import (
    INVALID_PARAMS,
    HubError,
    InvalidParams,
    NotFound,
    UpstreamReplied,
    UpstreamTimeout,
    UpstreamUnavailable,
    echo,
)
from onemcp.protocol.names import shown_as

if TYPE_CHECKING:
    from onemcp.upstream.connection import UpstreamConnection

log = logging.getLogger("onemcp.tasks")

MAX_TASKS = 10_000  # hub-wide: beyond it the session holding the most loses its oldest
MAX_SESSION_TASKS = 1_000  # one session's: beyond it its own oldest go
RELATED_TASK = "io.modelcontextprotocol/related-task"
EARLY_STATUS = 256  # hub-wide: status notifications held for tasks whose creating reply is not in yet
EARLY_PER_TASK = 4  # of one task: its latest
EARLY_SECONDS = 30.0  # held at most this long (a reply that never comes, or a task the hub never records)
LIST_PAGES = 100  # of one connection's tasks/list
# how long a tasks/list waits for each connection's pages (within its `timeout`): one that has not answered by
# then is left out, logged, and the list answered with the others'; a hung server held it `timeout` (60 s)
LIST_WAIT = 5.0
MAX_ORPHANS = 1_000  # tasks of ended sessions not seen to end: kept so that what they ask goes to no one
# how long a task not seen to end is taken to be running: its ttl, at most a day; an hour if it gives none
# (a server need not say that a task ended, and one never read must not refuse others' requests for ever)
RUNNING_DEFAULT = 3_600.0
RUNNING_MOST = 86_400.0
Early = OrderedDict[tuple[int, Any], tuple[weakref.ref["UpstreamConnection"], float, list[Any]]]
TERMINAL = frozenset({"completed", "failed", "cancelled"})
MADE_ON = re.compile(r"@([0-9a-f]{8})$")  # the replica whose call made a task, at the end of its visible id


@dataclass(eq=False)
class Task:
    """One task an upstream connection created for a session."""

    conn: weakref.ref[UpstreamConnection]
    server: str
    upstream_id: str
    session_id: str
    visible: str
    until: float  # time.monotonic() after which it is taken to have ended (its ttl), seen or not
    ended: bool = False  # seen in a terminal status, or its result was read
    token: int | None = None  # the progress token upstream (the creating call's hub id), if the client gave one
    client_token: Any = None  # ... and the client's own


class TaskRouter:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._tasks: dict[str, OrderedDict[str, Task]] = {}  # session id -> visible id -> task, oldest first
        self._count = 0  # tasks held, all sessions
        self._by_conn: weakref.WeakKeyDictionary[UpstreamConnection, dict[str, Task]] = weakref.WeakKeyDictionary()
        # connection -> its progress token -> the task still running whose creating call had it
        self._progress: weakref.WeakKeyDictionary[UpstreamConnection, dict[int, Task]] = weakref.WeakKeyDictionary()
        # tasks of ended sessions not seen to end, oldest first: still routed, so that what they ask or say
        # reaches no other session (`named`, `running_for`), until they end or MAX_ORPHANS newer push them out
        self._orphans: OrderedDict[int, Task] = OrderedDict()
        self._orphans_due = math.inf  # no orphan's ttl passes before this: until then none is walked
        self.tag = ""  # this replica's (`replicas`): the ids it shows end with @tag, so that another finds it
        # (id of the connection, upstream task id) -> (the connection, when first held, its status notifications)
        self._early: Early = OrderedDict()
        self._early_progress: Early = OrderedDict()  # (id of the connection, progress token) -> the same
        self.tg: anyio.abc.TaskGroup | None = None  # the hub's, once it runs: where ended sessions' tasks are cancelled

    def _visible_id(self, server: str, upstream_id: str) -> str:
        return f"{server}:{upstream_id}" if self.catalog.prefixed else upstream_id

    def hold(self, conn: UpstreamConnection, msg: dict[str, Any]) -> bool:
        """Keep a status notification of a task `conn` has not been seen to create (its reply is still on the
        way) for `record` to hand over; False when it names no task."""
        params = msg.get("params")
        upstream_id = params.get("taskId") if isinstance(params, dict) else None
        if not isinstance(upstream_id, str):
            return False
        _keep(self._early, (id(conn), upstream_id), conn, msg)
        return True

    def progress(self, conn: UpstreamConnection, msg: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """(session id, the notification with the client's token) of progress `conn` sent under the token of a
        call that ended having made a task still running; None when it names none (held a while, for `record`:
        the reply with the handle may still be on its way, or never come)."""
        params = msg.get("params")
        token = params.get("progressToken") if isinstance(params, dict) else None
        if not isinstance(token, int) or isinstance(token, bool) or not isinstance(params, dict):
            return None
        entry = self._progress.get(conn, {}).get(token)
        if entry is None:
            _keep(self._early_progress, (id(conn), token), conn, msg)
            return None
        return entry.session_id, {**msg, "params": {**params, "progressToken": entry.client_token}}

    def record(
        self, conn: UpstreamConnection, session_id: str, result: dict[str, Any], progress: tuple[int, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Remember a task `conn` created for a session; its id in `result` becomes the visible one; `progress`:
        (token upstream, the client's) of the call that made it. Returns the progress and status notifications
        of it that came first (`progress`, `hold`), with the client's token and the visible id."""
        task = result.get("task")
        if not isinstance(task, dict) or not isinstance(task.get("taskId"), str):
            return []
        upstream_id: str = task["taskId"]
        known = self._by_conn.setdefault(conn, {})
        stale = known.get(upstream_id)  # the same connection minted it again: the old one is gone
        if stale is not None:
            self._forget(stale.session_id, stale.visible)
            if self._orphans.pop(id(stale), None) is not None:
                self._unroute(stale)
        base = self._visible_id(conn.name, upstream_id)
        made_here = f"@{self.tag}" if self.tag else ""
        visible, n = base + made_here, 1
        mine = self._tasks.setdefault(session_id, OrderedDict())
        while visible in mine:  # this session's task of another connection has it
            n += 1
            visible = f"{base}~{n}{made_here}"
        ttl = task.get("ttl")
        lasts = min(ttl / 1000, RUNNING_MOST) if isinstance(ttl, int | float) and ttl > 0 else RUNNING_DEFAULT
        entry = Task(weakref.ref(conn), conn.name, upstream_id, session_id, visible, time.monotonic() + lasts)
        mine[visible] = known[upstream_id] = entry
        early: list[dict[str, Any]] = []
        if progress is not None:
            entry.token, entry.client_token = progress
            self._progress.setdefault(conn, {})[progress[0]] = entry
            said = self._early_progress.pop((id(conn), progress[0]), None) if self._early_progress else None
            if said is not None and said[0]() is conn:
                early += [{**msg, "params": {**msg["params"], "progressToken": progress[1]}} for msg in said[2]]
        self._count += 1
        if len(mine) > MAX_SESSION_TASKS:
            self._forget(session_id, next(iter(mine)))
        while self._count > MAX_TASKS:  # one session's tasks never push out another's while it holds more
            busiest = max(self._tasks, key=lambda held: len(self._tasks[held]))
            self._forget(busiest, next(iter(self._tasks[busiest])))
        result["task"] = {**task, "taskId": visible}
        held = self._early.pop((id(conn), upstream_id), None) if self._early else None
        if held is not None and held[0]() is conn:
            early += [{**msg, "params": self.rewrite(conn, msg["params"])} for msg in held[2]]
        return early

    def _forget(self, session_id: str, visible: str) -> None:
        mine = self._tasks.get(session_id)
        entry = mine.pop(visible, None) if mine is not None else None
        if mine is None or entry is None:
            return
        self._count -= 1
        if not mine:
            del self._tasks[session_id]
        self._unroute(entry)

    def _unroute(self, entry: Task) -> None:
        owner = entry.conn()
        known = self._by_conn.get(owner) if owner is not None else None
        if known is not None and known.get(entry.upstream_id) is entry:
            del known[entry.upstream_id]
        self._unroute_progress(entry)

    def _unroute_progress(self, entry: Task) -> None:
        owner = entry.conn()
        tokens = self._progress.get(owner) if owner is not None and entry.token is not None else None
        if tokens is not None and tokens.get(entry.token) is entry:  # type: ignore[arg-type]
            del tokens[entry.token]  # type: ignore[arg-type]

    def forget_session(self, session_id: str, *, cancel: bool = False) -> None:
        """The session ended: its tasks are no one's any more (their status goes nowhere; room for others).
        `cancel`: it cannot come back (its record went too), so those not seen to end are cancelled upstream."""
        mine = self._tasks.pop(session_id, None)
        now = time.monotonic()
        if self._orphans_due < now:  # (not every session end walks them all)
            for key in [key for key, entry in self._orphans.items() if entry.until < now]:  # taken to have ended
                self._unroute(self._orphans.pop(key))
            self._orphans_due = min((entry.until for entry in self._orphans.values()), default=math.inf)
        if mine is not None:
            self._count -= len(mine)
            running = []
            for entry in mine.values():
                conn = entry.conn()
                if entry.ended or entry.until < now or conn is None or conn.state in ("failed", "stopped"):
                    self._unroute(entry)  # ended, past its ttl, or its connection closed: nothing more comes of it
                else:  # it runs on: what it asks is still its ended session's, no one else's
                    self._orphans[id(entry)] = entry
                    self._orphans_due = min(self._orphans_due, entry.until)
                    running.append(entry)
            while len(self._orphans) > MAX_ORPHANS:
                self._unroute(self._orphans.popitem(last=False)[1])
            if cancel and running and self.tg is not None:
                self.tg.start_soon(self._cancel_upstream, session_id, running)

    async def _cancel_upstream(self, session_id: str, entries: list[Task]) -> None:
        """`tasks/cancel` each task of an ended session on the connection that made it, if the server offers
        it and the connection is up; the answer (its status) ends the task here too. Failures are logged."""

        async def cancel(conn: UpstreamConnection, entry: Task) -> None:
            try:
                answer = await conn.request("tasks/cancel", {"taskId": entry.upstream_id})
            except UpstreamReplied as exc:
                if exc.code != INVALID_PARAMS:  # a failure of its own (busy, internal): the task may still run
                    log.info("task %s of ended session %s not cancelled: %s", entry.visible, session_id[:8], exc)
                    return
                self._ended(conn, entry.upstream_id)  # it knows no such task (its ttl ran out), or it has ended
                log.info("task %s of ended session %s was over upstream: %s", entry.visible, session_id[:8], exc)
                return
            except HubError as exc:
                log.info("task %s of ended session %s not cancelled: %s", entry.visible, session_id[:8], exc)
                return
            if isinstance(answer, dict):
                self.rewrite(conn, answer)  # a terminal status ends it here: no longer routed to the session
            log.info("task %s of ended session %s cancelled upstream", entry.visible, session_id[:8])

        async with anyio.create_task_group() as tg:
            for entry in entries:
                conn = entry.conn()
                if conn is not None and conn.state == "ready" and "cancel" in (conn.capabilities.get("tasks") or {}):
                    tg.start_soon(cancel, conn, entry)

    def made_on(self, visible: object) -> str:
        """The other replica whose call made the task `visible` names ("": this one's, or none named)."""
        found = MADE_ON.search(visible) if self.tag and isinstance(visible, str) else None
        return found.group(1) if found is not None and found.group(1) != self.tag else ""

    def resolve(self, session_id: str, visible: object) -> Task:
        """A task this session may see, by the id it knows."""
        if not isinstance(visible, str):
            raise InvalidParams("params.taskId must be a string")
        mine = self._tasks.get(session_id)
        entry = mine.get(visible) if mine is not None else None
        if entry is None:
            raise NotFound(f"Task not found: {echo(visible)}")
        return entry

    def connection(self, session_id: str, visible: object) -> UpstreamConnection:
        """The connection that created the session's task: its tasks/* go there and nowhere else."""
        entry = self.resolve(session_id, visible)
        conn = entry.conn()
        if conn is None or conn.state != "ready":  # a connection that closed never comes back (a restart is a new one)
            why = f" ({conn.last_error})" if conn is not None and conn.last_error else ""
            lost = f"task {entry.visible} is lost: the connection it ran on closed{why}; call the tool again"
            raise UpstreamUnavailable(entry.server, lost)
        return conn

    def owner(self, conn: UpstreamConnection, upstream_id: object) -> tuple[str, str] | None:
        """(session id, visible id) of a task `conn` created, if the hub knows it."""
        entry = self._by_conn.get(conn, {}).get(upstream_id) if isinstance(upstream_id, str) else None
        return None if entry is None else (entry.session_id, entry.visible)

    def named(self, conn: UpstreamConnection, msg: dict[str, Any]) -> Task | None:
        """The task of `conn` a message from it says it belongs to (`_meta` related-task), if the hub knows it."""
        params = msg.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        related = meta.get(RELATED_TASK) if isinstance(meta, dict) else None
        upstream_id = related.get("taskId") if isinstance(related, dict) else None
        return self._by_conn.get(conn, {}).get(upstream_id) if isinstance(upstream_id, str) else None

    def running_for(self, conn: UpstreamConnection) -> set[str]:
        """The sessions with a task on `conn` not yet seen to end: a request of the server that names no call
        and no task may be for any of them."""
        now = time.monotonic()
        return {
            entry.session_id for entry in self._by_conn.get(conn, {}).values() if not entry.ended and entry.until > now
        }

    def _shown(self, conn: UpstreamConnection, upstream_id: str) -> str:
        entry = self._by_conn.get(conn, {}).get(upstream_id)
        return entry.visible if entry is not None else self._visible_id(conn.name, upstream_id)

    def rewrite(self, conn: UpstreamConnection, obj: dict[str, Any], *, result: bool = False) -> dict[str, Any]:
        """A task object, task result (`result`: a tasks/result, so its task has ended) or status
        notification params from `conn`, with visible ids. Notes the end of a task it says has ended."""
        out = dict(obj)
        tid = out.get("taskId")
        if isinstance(tid, str):
            if out.get("status") in TERMINAL:
                self._ended(conn, tid)
            out["taskId"] = self._shown(conn, tid)
        meta = out.get("_meta")
        if isinstance(meta, dict) and isinstance(meta.get(RELATED_TASK), dict):
            related = meta[RELATED_TASK]
            if isinstance(related.get("taskId"), str):
                if result:
                    self._ended(conn, related["taskId"])
                out["_meta"] = {**meta, RELATED_TASK: {**related, "taskId": self._shown(conn, related["taskId"])}}
        return out

    def _ended(self, conn: UpstreamConnection, upstream_id: str) -> None:
        entry = self._by_conn.get(conn, {}).get(upstream_id)
        if entry is not None:
            entry.ended = True
            self._unroute_progress(entry)  # its progress ended with it
            if self._orphans.pop(id(entry), None) is not None:
                self._unroute(entry)

    async def list_for(self, session_id: str, reaches: Callable[[str], bool]) -> tuple[list[dict[str, Any]], list[str]]:
        """Ask each ready connection this session's tasks run on, if it lists tasks and its server is still in
        the session's reach (`reaches`: its view or scopes may have changed since); keep this session's.
        Also returns the servers (as shown) whose tasks are left out, all or some: one that did not answer
        within LIST_WAIT, or failed."""
        mine = self._tasks.get(session_id, OrderedDict()).values()
        held = (entry.conn() for entry in mine if reaches(entry.server))
        targets = {
            conn
            for conn in held
            if conn is not None and conn.state == "ready" and "list" in (conn.capabilities.get("tasks") or {})
        }
        found: list[dict[str, Any]] = []
        left_out: set[str] = set()

        async def one(conn: UpstreamConnection) -> None:
            cursor: object = None
            until = anyio.current_time() + min(LIST_WAIT, conn.config.timeout)
            for page in range(LIST_PAGES):  # every page (a server that pages without end: the first LIST_PAGES)
                left = until - anyio.current_time()
                try:
                    if left <= 0:
                        raise UpstreamTimeout(conn.name, "tasks/list timed out")
                    params = {"cursor": cursor} if cursor is not None else {}
                    listed = await conn.request("tasks/list", params, limit=left)
                except UpstreamTimeout:
                    log.warning(
                        "tasks/list: %s did not answer within %gs: %s tasks are left out of session %s's list",
                        conn.name,
                        min(LIST_WAIT, conn.config.timeout),
                        "the rest of its" if page else "its",
                        session_id[:8],
                    )
                    left_out.add(shown_as(conn.name))
                    return
                except HubError as exc:
                    log.info("tasks/list to %s failed: %s", conn.name, exc)
                    left_out.add(shown_as(conn.name))
                    return
                tasks = listed.get("tasks")
                found.extend(self.session_tasks(session_id, conn, tasks if isinstance(tasks, list) else []))
                cursor = listed.get("nextCursor")
                if not isinstance(cursor, str) or not cursor:
                    return

        async with anyio.create_task_group() as tg:
            for conn in targets:
                tg.start_soon(one, conn)
        return found, sorted(left_out)

    def session_tasks(self, session_id: str, conn: UpstreamConnection, listed: list[Any]) -> list[dict[str, Any]]:
        """The entries of a connection's tasks/list that belong to this session, with visible ids; one a
        validating client would refuse (`rewrite.task_problem`) is withheld, logged."""
        out = []
        for task in listed:
            if isinstance(task, dict):
                owner = self.owner(conn, task.get("taskId"))
                if owner is not None and owner[0] == session_id:
                    problem = task_problem(task)
                    if problem is not None:
                        log.warning("upstream %s: tasks/list entry %s withheld: %s", conn.name, owner[1], problem)
                        continue
                    if task.get("status") in TERMINAL:
                        self._ended(conn, task["taskId"])
                    out.append({**task, "taskId": owner[1]})
        return out


def _keep(early: Early, key: tuple[int, Any], conn: UpstreamConnection, msg: dict[str, Any]) -> None:
    """Hold a notification of a task not recorded yet (its creating reply is on the way): the latest
    EARLY_PER_TASK of it, EARLY_STATUS in all, for EARLY_SECONDS."""
    deadline = time.monotonic() - EARLY_SECONDS
    while early and next(iter(early.values()))[1] < deadline:
        early.popitem(last=False)
    entry = early.get(key)
    if entry is None or entry[0]() is not conn:  # none yet (or another connection's, gone, at that address)
        entry = early[key] = (weakref.ref(conn), time.monotonic(), [])
    entry[2].append(msg)
    del entry[2][:-EARLY_PER_TASK]
    while len(early) > EARLY_STATUS:
        early.popitem(last=False)
