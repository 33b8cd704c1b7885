"""The method table: what each downstream request and notification means to an aggregator.

Owns the three ways a request is answered: here (`ping`, `logging/setLevel`, subscriptions, lists
from the catalog), routed by name, URI or task id to one upstream (after asking the session's
access, and charging a tool call to its quota), or fanned out to every ready upstream (`tasks/list`,
the log level, `roots/list_changed`, coalesced: `hub/coalesce.py`). A routed request comes back as a `Call` to drive
(`hub/forward.py`); the resumption of a parked call is routed here too, and so is the question of
which `Mcp-Param-*` headers a tool's arguments are mirrored in. Does not own any wire.
"""

from __future__ import annotations

import functools
import logging
import reprlib
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import anyio
import anyio.abc

from onemcp.auth import limits
from onemcp.auth.access import CALL, COMPLETE, GET, READ, Access
from onemcp.auth.limits import QuotaBook
from onemcp.catalog.catalog import Catalog, missing
from onemcp.config.model import HubConfig
from onemcp.hub import bridge, connections
from onemcp.hub.coalesce import Backlog
from onemcp.hub.exposure import ToolExposure
from onemcp.hub.session import Session, SessionStore
from onemcp.hub.stopping import SHUTTING_DOWN, ShuttingDown
from onemcp.hub.subscriptions import Subscriptions
from onemcp.hub.tasks import TaskRouter
from onemcp.protocol import headers as mcp_headers
from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import HubError, InvalidParams, MethodNotFound, NotFound, UpstreamUnavailable, echo
from onemcp.protocol.jsonrpc import Message
from onemcp.protocol.meta import SERVERS_LEFT_OUT
from onemcp.protocol.methods import KIND_BY_METHOD, LOG_LEVELS
from onemcp.protocol.names import shown_as
from onemcp.search import meta as meta_tools
from onemcp.upstream.call import CANCELLED, Call
from onemcp.upstream.connection import UpstreamConnection
from onemcp.upstream.isolation import IsolatedConnections, principal_owners
from onemcp.upstream.pool import Pool
from onemcp.upstream.user_secrets import UserSecrets

log = logging.getLogger("onemcp.hub")
Local = Callable[[Session, dict[str, Any]], Awaitable[Any]]
# methods routed by name, URI or task id to one upstream (the rest are lists or answered here)
ROUTED = frozenset(
    {"tools/call", "prompts/get", "resources/read", "completion/complete", "tasks/get", "tasks/result", "tasks/cancel"}
)
REVIVED_TASKS = (
    "this session was resumed after the hub restarted, and tasks made before a restart are not kept: "
    "call the tool again"
)
# how long a `logging/setLevel` reply waits for the upstreams' acknowledgements (the sends go on after it)
LEVEL_ACK_WAIT = 1.0


class Dispatcher:
    def __init__(
        self,
        catalog: Catalog,
        pool: Pool,
        tasks: TaskRouter,
        parking: bridge.Parking,
        isolated: IsolatedConnections,
        sessions: SessionStore,
        subscriptions: Subscriptions,
        exposure: ToolExposure,
        config: Callable[[], HubConfig],
    ) -> None:
        self.catalog = catalog
        self.exposure = exposure
        self.pool = pool
        self.isolated = isolated
        self.sessions = sessions
        self.tasks = tasks
        self.parking = parking
        self._config = config
        self.quotas = QuotaBook(config().hub.auth.quotas)
        self.user_secrets: UserSecrets | None = None  # each principal's values for `${user:NAME}` (the hub's)
        # the level each connection was told, and in which of its upstream sessions (a new one starts at the default)
        self._levels: weakref.WeakKeyDictionary[UpstreamConnection, tuple[str, object]] = weakref.WeakKeyDictionary()
        # a flood of setLevel / roots/list_changed from clients: one message in flight per upstream connection,
        # sent in the background (their `tg` is the hub's, set as it runs)
        self.level_sends: Backlog[UpstreamConnection] = Backlog()
        self.roots_sends: Backlog[UpstreamConnection] = Backlog()
        self._annotated: tuple[list[dict[str, Any]], dict[str, dict[str, str]]] = ([], {})  # tools -> x-mcp-header
        self._own_annotated: weakref.WeakKeyDictionary[Catalog, dict[str, dict[str, str]]] = (
            weakref.WeakKeyDictionary()
        )  # the same, of the sessions' views
        self._start_up: Literal["wait", "over", "stopping"] = "wait"  # how `until_started` waits
        self.subscriptions = subscriptions
        subscriptions.route = self.connection
        self.view = subscriptions.view  # the catalog as a session sees it (`hub/own_lists.py`)
        self.local: dict[str, Local] = {
            "ping": self._ping,
            "logging/setLevel": self._set_level,
            "resources/subscribe": subscriptions.subscribe,
            "resources/unsubscribe": subscriptions.unsubscribe,
            "tasks/list": self._tasks_list,
        }

    @property
    def sends_tg(self) -> anyio.abc.TaskGroup | None:
        return self.level_sends.tg

    @sends_tg.setter
    def sends_tg(self, tg: anyio.abc.TaskGroup) -> None:
        """The hub's task group, where levels and roots changes are told and ended sessions' tasks cancelled."""
        self.level_sends.tg = self.roots_sends.tg = self.tasks.tg = tg

    async def until_started(self) -> None:
        """While upstreams are still starting, wait (bounded by `firstListWait`) until each was tried; once
        `start_up_over`, not at all (stopping: the request is refused, 'the hub is shutting down')."""
        if self.pool.tried.is_set() or self._start_up == "over":
            return
        if self._start_up == "stopping":
            raise ShuttingDown(SHUTTING_DOWN)
        with anyio.move_on_after(self._config().hub.first_list_wait):
            await self.pool.tried.wait()

    async def ready_to_list(self, kind: str, session: Session) -> None:
        """Before a list is answered: the start-up waited for (`until_started`), and the kept lists of
        `kind` that expired (a server that cannot announce changes: `upstream/freshness.py`) of the servers
        `session` reaches (its own and its principal's own connections' too) read again, all at once."""
        await self.until_started()
        stale = [conn for conn in self.expiring(session) if conn.fresh.stale(kind)]
        if stale:
            async with anyio.create_task_group() as tg:
                for conn in stale:
                    tg.start_soon(conn.fresh.ensure, kind)

    def expiring(self, session: Session) -> list[UpstreamConnection]:
        """The connections whose lists `session` is shown: every replica of the servers it reaches, its own
        connections, and its principal's own (`isolation: session` for a 2026-07-28 caller, per-user values)."""
        reach = session.access.reach
        conns = [m.conn for name, slot in self.pool.slots.items() if reach.touches(name) for m in slot.members]
        conns += [conn for conn, _ in session.own.lists.values()]
        own = self.isolated.held_by(*principal_owners(session.principal.id))
        return conns + [c for c in own if reach.touches(c.name)]

    def _starting(self) -> bool:
        """Are upstreams still starting, with requests to wait for them? A request whose server is not (yet)
        known or ready then waits as a first list does, and is routed again: a 2026-07-28 call, or a session
        revived after a restart, has no handshake to wait in, and a server's tools are listed before it is
        ready."""
        return not self.pool.tried.is_set() and self._start_up == "wait"

    def start_up_over(self, *, stopping: bool) -> None:
        """The start-up was waited for elsewhere (`serve --transport stdio` waits before its first answer, its
        own bound): no request waits for it again; `stopping`: the wait was ended by a stop, so a request that
        would wait for the start-up is answered 'the hub is shutting down' at once."""
        self._start_up = "stopping" if stopping else "over"

    async def dispatch(self, session: Session, msg: Message) -> Message | bytes | tuple[UpstreamConnection, Call]:
        """A downstream request: its reply, a pre-serialised reply, or a Call to drive."""
        method: str = msg["method"]
        params = msg.get("params")
        if params is None:
            params = msg["params"] = {}
        kind = KIND_BY_METHOD.get(method)
        if kind is not None:
            if params.get("cursor") is not None:
                raise InvalidParams("Invalid cursor: this hub returns complete lists in one page")
            await self.ready_to_list(kind, session)
            return jsonrpc.splice_result(
                msg["id"], await self.exposure.served_list(kind, session.access, self.view(session))
            )
        local = self.local.get(method)
        if local is not None:
            return jsonrpc.result(msg["id"], await local(session, params))
        if self.parking.owns(params.get("requestState")):
            if not self.parking.rerun(params["requestState"], params.get("inputResponses")):
                return await self._resume(session, msg, method, params)
            del params["requestState"]  # the URLs it asked for were visited: the call again, as new
            params.pop("inputResponses", None)
        if method == "tools/call" and await self.exposure.handles(
            session.access, params.get("name"), self.view(session)
        ):
            await self.until_started()
            if params.get("task") is not None and not session.ephemeral and params.get("name") != meta_tools.CALL:
                # answered at once, no task handle: its taskSupport is "forbidden" (none listed), as for any such tool
                raise MethodNotFound(f"{echo(params['name'])} does not run as a task: call it without 'task'")
            answered = await self.exposure.call(session.access, params, self.view(session))  # params: its target
            if answered is not None:
                return jsonrpc.result(msg["id"], answered)
            try:
                server, key, value = self._route(session, method, params)
            except NotFound as exc:  # call_tool's `name` argument is wrong: a tool error the model can correct
                return jsonrpc.result(msg["id"], self.exposure.unknown(exc))
        else:
            try:
                server, key, value = self._route(session, method, params)
            except (NotFound, UpstreamUnavailable):
                if not self._starting():
                    raise
                await self.until_started()
                server, key, value = self._route(session, method, params)
        if key == "name" and method == "tools/call" and self.quotas.quotas:
            counted = shown_as(server)  # a template's quota counts its instances' calls
            refused = await self.quotas.charge(session.principal.id, counted, value)
            if refused is not None:
                session.access.refused(CALL, f"{counted}/{value}", "quota exceeded")
                return jsonrpc.result(msg["id"], limits.refusal(refused))
        if key == "taskId":  # to the connection that created it: another one's equal id is another task
            conn = self.tasks.connection(session.id, params.get("taskId"))
        else:
            try:
                conn = await self.connection(session, server, params)
            except UpstreamUnavailable:  # its tools are listed before it is ready
                if not self._starting():
                    raise
                await self.until_started()
                conn = await self.connection(session, server, params)
        if key == "name" and conn.owner is session:
            await self._offered_to(session, conn, "tools" if method == "tools/call" else "prompts", params["name"])
        if conn.era == "legacy" and params.get("requestState") is not None:  # not this hub's (`owns`), not theirs
            raise InvalidParams("requestState was not issued by this hub, and a legacy-era server issues none")
        if session.ephemeral and method == "tools/call":
            # tasks are not served in 2026-07-28 (an extension, not offered): a task handle would be one
            # the client can never follow, so the call runs as if not augmented, as a server without tasks does
            params.pop("task", None)
        if key == "name":
            params["name"] = value
        elif key == "uri":
            params["uri"] = value
        elif key in ("ref.name", "ref.uri"):
            params["ref"] = {**params["ref"], key[4:]: value}
        elif key == "taskId":
            params["taskId"] = value
        if session.routing.get(msg["id"]):  # cancelled while it waited (for the server, say): never sent
            raise HubError("cancelled by the client before it was sent")
        call = await conn.begin(msg, origin=session)
        session.in_flight[call.downstream_id] = (conn, call)  # type: ignore[index]
        return conn, call

    async def connection(
        self, session: Session, server: str, params: dict[str, Any] | None = None, *, subscribing: bool = False
    ) -> UpstreamConnection:
        """The connection the session's call to `server` goes to (`subscribing`: a `resources/subscribe`);
        its subscriptions there follow it."""
        servers, secrets = self._config().servers, self.user_secrets
        conn = await connections.for_session(
            self.pool, self.isolated, servers, session, server, params, secrets, subscribing
        )
        if session.subscriptions:
            await self.subscriptions.follow(session, server, conn)
        if not self.pool.is_current(conn):  # one made after the log level was set is told it too
            await self._tell_level(conn, self._level_of(conn))
        return conn

    async def _offered_to(self, session: Session, conn: UpstreamConnection, kind: str, visible: str) -> None:
        """A name the session found in the catalog, called over its own connection (made with its capabilities):
        that connection's list is read first if the session has none of it yet, and a name it lacks is not
        found, saying why (a server may offer a tool only to clients that declare a capability: the shared
        connection, which declares what the hub relays, lists it; this client's does not)."""
        held = session.own.lists.get(conn.name)
        if held is None or held[0] is not conn or kind not in held[1]:
            if kind not in conn.kinds():
                return
            try:
                await conn.refresh(kind)  # recorded as the session's view of the server (announced if it differs)
            except HubError as exc:
                log.info("%s/list of %s's own connection to %s failed: %s", kind, session.id[:8], conn.name, exc)
                return  # the call itself says what is wrong
        try:
            self.view(session).locate_name(kind, visible, session.access.reach)
        except NotFound as exc:
            lacks = [c for c in connections.REVERSE_KINDS if c not in session.client_capabilities]
            why = f"; this client declared no {', no '.join(lacks)}" if lacks else ""
            raise NotFound(
                f"{exc} (server {conn.name} does not offer it on this session's own connection, made with the"
                f" client's capabilities: a server may offer some only to clients that declare a capability{why})"
            ) from None

    def tool_headers(self, name: str, session: Session) -> dict[str, str]:
        """argument -> `Mcp-Param-*` header (`x-mcp-header`) of a tool `session` reaches, in the catalog as it
        sees it (its own and its principal's connections' lists, `hub/own_lists.py`); of another, nothing."""
        catalog = self.view(session)
        tools = catalog.items("tools")
        if catalog is not self.catalog:  # a session's view: its own table, made again when its view is
            annotated = self._own_annotated.get(catalog)
            if annotated is None:
                annotated = self._own_annotated[catalog] = mcp_headers.header_params(tools)
        else:
            if self._annotated[0] is not tools:
                self._annotated = (tools, mcp_headers.header_params(tools))
            annotated = self._annotated[1]
        headers = annotated.get(name)
        if not headers:
            return {}
        try:
            catalog.resolve_name("tools", name, session.access.reach)
        except NotFound:
            return {}
        return headers

    async def _resume(
        self, session: Session, msg: Message, method: str, params: dict[str, Any]
    ) -> tuple[UpstreamConnection, Call]:
        """A retry that answers a call this hub parked (`bridge.Parking`): that call, driven on."""
        if method == "tools/call" and await self.exposure.handles(
            session.access, params.get("name"), self.view(session)
        ):
            named = await self.exposure.call(session.access, params, self.view(session))  # call_tool: its target
            if named is not None:  # no call to resume (call_tool's arguments wrong; another meta-tool): it waits on
                wrong = named.get("isError") is True
                raise InvalidParams(meta_tools.text_of(named) if wrong else bridge.ANOTHER_CALL)
        target = self._route(session, method, params) if method in ROUTED else None  # still its to make
        parked = self.parking.resume(
            params["requestState"], method, params.get("inputResponses"), session.principal.key, target
        )
        conn, call = parked.conn, parked.call
        call.origin, call.downstream_id = session, msg["id"]
        meta = params.get("_meta")
        call.progress_token = meta.get("progressToken") if isinstance(meta, dict) else None  # the retry's own
        session.in_flight[call.downstream_id] = (conn, call)
        return conn, call

    def _route(self, session: Session, method: str, params: dict[str, Any]) -> tuple[str, str, str]:
        """(server, the param to rewrite, its upstream value); every lookup asks the session's access, in
        the catalog as the session sees it (its own connections' lists, `hub/own_lists.py`)."""
        access, catalog = session.access, self.view(session)
        if method not in ROUTED:
            raise MethodNotFound(f"Method not found: {echo(method)}")
        if method == "tools/call" or method == "prompts/get":
            name = params.get("name")
            if not isinstance(name, str):
                raise InvalidParams(f"{method}: params.name must be a string")
            kind = "tools" if method == "tools/call" else "prompts"
            try:
                server, original = catalog.locate_name(kind, name, access.reach)
            except NotFound:
                self._explain_missing(access, name)
                raise
            access.require(CALL if kind == "tools" else GET, kind, server, original, name)
            return server, "name", original
        if method == "resources/read":
            uri = params.get("uri")
            if not isinstance(uri, str):
                raise InvalidParams("resources/read: params.uri must be a string")
            server, original = catalog.locate_uri(uri, access.reach)
            access.require(READ, "resources", server, original, uri)
            return server, "uri", original
        if method == "completion/complete":
            ref = params.get("ref")
            if not isinstance(ref, dict):
                raise InvalidParams("completion/complete: params.ref must be an object")
            if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
                server, original = catalog.locate_name("prompts", ref["name"], access.reach)
                access.require(COMPLETE, "prompts", server, original, ref["name"])
                return server, "ref.name", original
            if ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
                try:
                    server, original = self._resolve_template(ref["uri"], access, catalog)
                    access.require(COMPLETE, "resourceTemplates", server, original, ref["uri"])
                except NotFound:  # out of reach or not there: one answer, naming neither
                    raise missing("resources", ref["uri"]) from None
                return server, "ref.uri", original
            raise InvalidParams("completion/complete: ref must be ref/prompt with a name or ref/resource with a uri")
        # tasks/get, tasks/result, tasks/cancel: a task this session made, of a server still in reach
        try:
            task = self.tasks.resolve(session.id, params.get("taskId"))
        except NotFound as exc:
            if session.revived:  # the table is in memory: a task made before a restart is not in it
                raise NotFound(f"{exc} ({REVIVED_TASKS})") from None
            raise
        server, upstream_id = task.server, task.upstream_id
        if not access.reach.touches(server):  # its scopes or view changed since the call
            access.refused(method, f"{server}/task", "outside the principal's scopes")
            raise NotFound(f"Task not found: {echo(params.get('taskId'))}")
        return server, "taskId", upstream_id

    def _explain_missing(self, access: Access, name: str) -> None:
        """An unknown name whose prefix is a server that is down: say that, not just 'not found'."""
        split = self.catalog.codec.split_name(name) if self.catalog.prefixed else None
        if split is not None and not access.reach.touches(split[0]):
            return  # a server out of its reach stays unmentioned
        conn = self.pool.get(split[0]) if split is not None else None
        if split is not None and conn is not None and conn.state != "ready":
            slot = self.pool.slots[split[0]]
            detail = f" ({conn.last_error})" if conn.last_error else ""
            state = conn.state if slot.status == "running" else slot.status
            raise UpstreamUnavailable(split[0], f"server is {state}{detail}; its tools return when it is back")

    @staticmethod
    def _resolve_template(visible: str, access: Access, catalog: Catalog) -> tuple[str, str]:
        try:
            return catalog.locate_name("resourceTemplates", visible, access.reach)
        except NotFound:
            return catalog.locate_uri(visible, access.reach)

    # ------------------------------------------------------------ answered here, or fanned out
    async def _ping(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def _set_level(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        level = params.get("level")
        if "level" not in params:
            raise InvalidParams(f"logging/setLevel: params.level is missing; expected one of {', '.join(LOG_LEVELS)}")
        if level not in LOG_LEVELS:
            shown = reprlib.repr(level)
            raise InvalidParams(f"logging/setLevel: unknown level {shown}; expected one of {', '.join(LOG_LEVELS)}")
        session.log_level = str(level)
        # Shared upstream connections: each is asked for the most verbose level a session reaching it
        # wants, and lines are filtered per session on the way back. Only the servers this session
        # reaches are asked again; its own connections get its own level.
        reach = session.access.reach
        shared = [*self.pool.connections.values(), *self.isolated.held_by(connections.LEGACY_COMPANION)]
        shared += self.isolated.held_by(*principal_owners(session.principal.id))
        targets = [c for c in shared if reach.touches(c.name)] + self.isolated.held_by(session.id)
        # Told in the background, coalesced (the level is read when the message is sent, so requests that came
        # meanwhile are served by one message with the latest). The reply waits for the acknowledgements a
        # short grace only: an upstream that never answers setLevel must not hold the client for its timeout.
        told = [await self.level_sends.mark(conn, functools.partial(self._retell_level, conn)) for conn in targets]
        with anyio.move_on_after(LEVEL_ACK_WAIT):
            for done in told:
                await done.wait()
        return {}

    async def _retell_level(self, conn: UpstreamConnection) -> None:
        await self._tell_level(conn, self._level_of(conn))

    async def adopt(self, session: Session, level: object, subscriptions: list[tuple[str, str]]) -> None:
        """Another replica changed this session's log level or subscriptions: this copy takes the change,
        its upstreams told as if the client had asked here (what fails here is logged, not answered)."""
        if isinstance(level, str) and level != session.log_level:
            try:
                await self._set_level(session, {"level": level})
            except HubError as exc:
                log.info("session %s: the log level set on another replica not taken: %s", session.id[:8], exc)
        await self.subscriptions.match(session, subscriptions)

    def _level_of(self, conn: UpstreamConnection) -> str | None:
        """The log level `conn` should send at: its session's (a session's own), else the most verbose a
        session reaching its server asked for; None while none asked."""
        if isinstance(conn.owner, Session):
            return conn.owner.log_level
        if not any(s.log_level for s in self.sessions):
            return None
        return LOG_LEVELS[self._wanted(conn.name)]

    async def _tell_level(self, conn: UpstreamConnection, level: str | None) -> None:
        """`logging/setLevel` to a legacy-era upstream that logs, unless it was told that level already in its
        current upstream session: every new client session setting the level the upstream already logs at
        cost one message per upstream. Modern upstreams get the level in each request's _meta."""
        if level is None:
            return
        told = (level, getattr(conn.transport, "session_id", None))
        if self._levels.get(conn) == told:
            return
        if conn.state == "ready" and conn.era == "legacy" and "logging" in conn.capabilities:
            self._levels[conn] = told
            await self._quiet_request(conn, "logging/setLevel", {"level": level})

    def _wanted(self, server: str) -> int:
        """The most verbose log level a session reaching `server` wants (as an index of LOG_LEVELS). A
        legacy-era session that set no level takes every line the server sends, as it would directly:
        it wants them all, so another client's level never narrows what it hears."""
        sessions = [s for s in self.sessions if (s.log_level or not s.ephemeral) and s.access.reach.touches(server)]
        levels = [LOG_LEVELS.index(str(s.log_level)) if s.log_level else 0 for s in sessions]
        return min(levels, default=LOG_LEVELS.index("info"))

    async def _tasks_list(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        """Every upstream's tasks that this session created, of servers it still reaches (one complete page);
        `_meta` names the servers whose tasks are left out (they did not answer in time, or failed)."""
        if params.get("cursor") is not None:
            raise InvalidParams("Invalid cursor: this hub returns complete lists in one page")
        found, left_out = await self.tasks.list_for(session.id, session.access.reach.touches)
        return {"tasks": found, "_meta": {SERVERS_LEFT_OUT: left_out}} if left_out else {"tasks": found}

    @staticmethod
    async def _quiet_request(conn: UpstreamConnection, method: str, params: dict[str, Any]) -> None:
        try:
            await conn.request(method, params)
        except HubError as exc:
            log.info("%s to %s failed: %s", method, conn.name, exc)

    async def notification(self, session: Session, msg: Message) -> None:
        """A client's notification: initialized, a cancelled request, new roots (told to every upstream), or
        progress on a server's request to it (told to that server)."""
        method = msg.get("method")
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        assert isinstance(params, dict)
        if method == "notifications/initialized":
            session.initialized = True
        elif method == "notifications/cancelled":
            rid = params.get("requestId")
            rid = None if isinstance(rid, bool) else rid  # JSON true is not request 1
            entry = session.in_flight.pop(rid, None) if isinstance(rid, str | int) else None
            if entry is not None:
                conn, call = entry
                conn.abandon(call, str(params.get("reason") or "cancelled by the client"))
                call.finish(CANCELLED)
            elif (
                isinstance(rid, str | int) and rid in session.routing
            ):  # not sent upstream yet: never sent nor answered
                session.routing[rid] = True
        elif method == "notifications/roots/list_changed":
            await self.roots_changed(session)
        elif method == "notifications/progress":
            await self._progress_upstream(session, params)

    @staticmethod
    async def _progress_upstream(session: Session, params: dict[str, Any]) -> None:
        """A client's progress on a request the hub sent it for a server (sampling, elicitation): to that
        server, under the token it gave; on a request no longer waiting, or one the hub never sent, dropped."""
        token = params.get("progressToken")
        pending = session.reverse.get(token) if isinstance(token, str) else None
        if pending is None or pending.progress is None:
            return
        conn, upstream_token = pending.progress
        try:
            await conn.notify("notifications/progress", {**params, "progressToken": upstream_token})
        except HubError as exc:
            log.info("progress to %s failed: %s", conn.name, exc)

    async def roots_changed(self, session: Session | None) -> None:
        """A client's roots changed: every ready shared upstream connection is told, and the connections its
        calls may go to besides (its own, the legacy-era companions, its principal's own)."""
        targets = [conn for conn in self.pool.connections.values() if conn.state == "ready"]
        if session is not None:  # the servers its calls may reach: another client's servers keep their roots
            targets = [conn for conn in targets if session.access.reach.touches(conn.name)]
            own = principal_owners(session.principal.id)
            targets += self.isolated.held_by(session.id, connections.LEGACY_COMPANION, *own)
        for conn in targets:  # in the background: changes that come while one is told are one change more
            await self.roots_sends.mark(conn, functools.partial(self._tell_roots, conn))

    @staticmethod
    async def _tell_roots(conn: UpstreamConnection) -> None:
        try:
            await conn.notify("notifications/roots/list_changed")
        except HubError as exc:
            log.info("roots/list_changed to %s failed: %s", conn.name, exc)
