"""The hub: wires the upstream pool, the catalog and the sessions; the method table.

Owns what each MCP method means to an aggregator: answered locally (initialize, ping,
lists from the catalog), routed by name or URI to one upstream, or fanned out. Owns the
reverse path's decisions too: which session an upstream's notification or request goes
to. Does not own any wire: the downstream endpoint turns what this returns into HTTP.
"""

from __future__ import annotations

import logging
import reprlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from onemcp import __version__
from onemcp.auth import limits
from onemcp.auth.access import CALL, COMPLETE, GET, READ, SUBSCRIBE, Access, decide
from onemcp.auth.limits import QuotaBook
from onemcp.auth.principal import Principal
from onemcp.catalog.catalog import Catalog, tool_rules
from onemcp.catalog.views import View
from onemcp.config.model import HubConfig
from onemcp.hub import bridge
from onemcp.hub.instructions import render_instructions
from onemcp.hub.listeners import Listener
from onemcp.hub.reverse import ReversePath
from onemcp.hub.session import ReversePending, Session, SessionStore
from onemcp.hub.tasks import TaskRouter
from onemcp.observability.limits import HITS, hit
from onemcp.observability.metrics import Metrics
from onemcp.protocol import jsonrpc
from onemcp.protocol.capabilities import merge_capabilities
from onemcp.protocol.errors import (
    INVALID_PARAMS,
    RESOURCE_NOT_FOUND,
    HubError,
    InvalidParams,
    LimitReached,
    MethodNotFound,
    NotFound,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from onemcp.protocol.jsonrpc import Message
from onemcp.protocol.methods import KIND_BY_METHOD, KINDS, LOG_LEVELS
from onemcp.protocol.names import NameCodec
from onemcp.protocol.versions import negotiate
from onemcp.upstream import era
from onemcp.upstream.call import Call
from onemcp.upstream.connection import UpstreamConnection
from onemcp.upstream.isolation import IsolatedConnections
from onemcp.upstream.oauth.registry import UpstreamAuth
from onemcp.upstream.pool import Pool

log = logging.getLogger("onemcp.hub")
audit = logging.getLogger("onemcp.audit")
Emit = Callable[[Message], Awaitable[None]]
CANCELLED: Message = {"cancelled": True}
LEGACY_COMPANION = ""  # the key of the shared legacy-era connection to a dual-era upstream
REVERSE_KINDS = ("sampling", "elicitation", "roots")  # client capabilities a server->client request needs
# methods routed by name, URI or task id to one upstream (the rest are lists or answered here)
ROUTED = frozenset(
    {"tools/call", "prompts/get", "resources/read", "completion/complete", "tasks/get", "tasks/result", "tasks/cancel"}
)


class Hub:
    def __init__(self, config: HubConfig, upstream_auth: UpstreamAuth | None = None) -> None:
        self.config = config
        # the hub's own OAuth credentials for protected upstreams (never a client's token)
        self.upstream_auth = upstream_auth or UpstreamAuth(None, None)
        self._settings = config.hub
        self.catalog = Catalog(NameCodec(config.hub.separator), config.hub.prefix_mode)
        self.catalog.set_servers(config.enabled, tool_rules(config))
        self.presets: dict[str, str] = {}  # preset name -> filter (presets.json beside mcp.json)
        self._tags: tuple[HubConfig | None, dict[str, list[str]]] = (None, {})  # per config: server -> tags
        self._tg: anyio.abc.TaskGroup | None = None  # the hub's own tasks (resubscribing after a restart)
        self.sessions = SessionStore(config.hub.session_idle_timeout, config.hub.limits, on_remove=self._session_gone)
        HITS.interval = config.hub.limits.log_interval
        self.pool = Pool(config, self, self.upstream_auth)
        self.upstream_auth.on_authorized = self.pool.retry_now
        self.isolated = IsolatedConnections(self, self.upstream_auth)
        self.metrics = Metrics()
        self.quotas = QuotaBook(config.hub.auth.quotas)
        self.tasks = TaskRouter(self.catalog)
        self.parking = bridge.Parking()
        self.listeners: set[Listener] = set()  # modern subscriptions/listen streams
        self.reverse = ReversePath(
            self.sessions, self.catalog, self.tasks, self.listeners, lambda: self.config.hub.limits
        )
        # (server, upstream URI) -> ids of sessions subscribed to it
        self._subscribers: dict[tuple[str, str], set[str]] = {}
        self._local: dict[str, Callable[[Session, dict[str, Any]], Awaitable[Any]]] = {
            "ping": self._ping,
            "logging/setLevel": self._set_level,
            "resources/subscribe": self._subscribe,
            "resources/unsubscribe": self._unsubscribe,
            "tasks/list": self._tasks_list,
        }

    @property
    def local_methods(self) -> frozenset[str]:
        """The methods answered by the hub itself (besides the lists and `initialize`)."""
        return frozenset(self._local)

    # ============================================================ identity
    def server_info(self) -> dict[str, Any]:
        return {"name": "onemcp", "title": "onemcp hub", "version": __version__}

    def capabilities(self) -> dict[str, Any]:
        """What the hub really serves: lists always (relaying list_changed), the rest if routed."""
        ready = [c for c in self.pool.connections.values() if c.state == "ready"]
        caps: dict[str, Any] = {
            "tools": {"listChanged": True},
            "prompts": {"listChanged": True},
            "resources": {"listChanged": True},
            "logging": {},
        }
        if any(
            isinstance(c.capabilities.get("resources"), dict) and c.capabilities["resources"].get("subscribe")
            for c in ready
        ):
            caps["resources"]["subscribe"] = True
        if any("completions" in c.capabilities for c in ready):
            caps["completions"] = {}
        task_caps = [c.capabilities["tasks"] for c in ready if isinstance(c.capabilities.get("tasks"), dict)]
        if task_caps:
            caps["tasks"] = merge_capabilities(task_caps)
        return caps

    def instructions(self, access: Access) -> str:
        """A summary of the servers this requester reaches, then each one's own instructions, delimited."""
        return render_instructions(self.config, self.catalog, self.pool, access.reach.touched())

    def initialize(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        caps = params.get("capabilities")
        info = params.get("clientInfo")
        session.protocol_version = negotiate(params.get("protocolVersion"))
        session.client_capabilities = caps if isinstance(caps, dict) else {}
        session.client_info = info if isinstance(info, dict) else {}
        self.remember_lists(session)
        return {
            "protocolVersion": session.protocol_version,
            "capabilities": self.capabilities(),
            "serverInfo": self.server_info(),
            "instructions": self.instructions(session.access),
        }

    async def until_started(self) -> None:
        """While upstreams are still starting, wait (bounded by `firstListWait`) until each was tried."""
        if not self.pool.tried.is_set():
            with anyio.move_on_after(self.config.hub.first_list_wait):
                await self.pool.tried.wait()

    # ============================================================ authorization
    def access(self, principal: Principal, entry: str, view: View | None = None) -> Access:
        """What `principal`, come in through `entry`, may reach through `view` (the one decision).

        Raises `views.ViewError` for a view naming an unknown preset.
        """
        return decide(principal, entry, view, self._server_tags(), self.presets)

    def _server_tags(self) -> dict[str, list[str]]:
        cached = self._tags
        if cached[0] is not self.config:
            cached = self._tags = (self.config, {name: cfg.tags for name, cfg in self.config.enabled.items()})
        return cached[1]

    def remember_lists(self, session: Session) -> None:
        """Note what the session's lists look like now (list_changed goes out when they change)."""
        reach = session.access.reach
        session.seen = {kind: hash(self.catalog.result_json(kind, reach)) for kind in KINDS}

    def refresh_views(self) -> None:
        """After a config or presets change: decide every session's access again, tell whoever's lists changed."""
        tags = self._server_tags()
        for session in [*self.sessions, *(listener.session for listener in self.listeners)]:
            session.access = session.access.rebuilt(tags, self.presets)
            for key in [k for k in session.subscriptions if not session.access.reach.shows("resources", *k)]:
                session.subscriptions.discard(key)  # out of reach now: its updates stop
                self._subscribers.get(key, set()).discard(session.id)
        self._announce(set(KINDS))

    # ============================================================ forward path
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
            await self.until_started()
            return jsonrpc.splice_result(msg["id"], self.catalog.result_json(kind, session.access.reach))
        local = self._local.get(method)
        if local is not None:
            return jsonrpc.result(msg["id"], await local(session, params))
        if self.parking.owns(params.get("requestState")):
            parked = self.parking.resume(
                params["requestState"], method, params.get("inputResponses"), session.principal.key
            )
            conn, call = parked.conn, parked.call
            call.origin, call.downstream_id = session, msg["id"]
            session.in_flight[call.downstream_id] = (conn, call)
            return conn, call
        server, key, value = self._route(session, method, params)
        if key == "name" and method == "tools/call" and self.quotas.quotas:
            refused = self.quotas.charge(session.principal.id, server, value)
            if refused is not None:
                session.access.refused(CALL, f"{server}/{value}", "quota exceeded")
                return jsonrpc.result(msg["id"], limits.refusal(refused))
        conn = await self._connection_for(session, server)
        if key == "name":
            params["name"] = value
        elif key == "uri":
            params["uri"] = value
        elif key in ("ref.name", "ref.uri"):
            params["ref"] = {**params["ref"], key[4:]: value}
        elif key == "taskId":
            params["taskId"] = value
        call = await conn.begin(msg, origin=session)
        session.in_flight[call.downstream_id] = (conn, call)  # type: ignore[index]
        return conn, call

    def _route(self, session: Session, method: str, params: dict[str, Any]) -> tuple[str, str, str]:
        """(server, the param to rewrite, its upstream value); every lookup asks the session's access."""
        access = session.access
        if method not in ROUTED:
            raise MethodNotFound(f"Method not found: {method}")
        if method == "tools/call" or method == "prompts/get":
            name = params.get("name")
            if not isinstance(name, str):
                raise InvalidParams(f"{method}: params.name must be a string")
            kind = "tools" if method == "tools/call" else "prompts"
            try:
                server, original = self.catalog.locate_name(kind, name, access.reach)
            except NotFound:
                self._explain_missing(access, name)
                raise
            access.require(CALL if kind == "tools" else GET, kind, server, original, name)
            return server, "name", original
        if method == "resources/read":
            uri = params.get("uri")
            if not isinstance(uri, str):
                raise InvalidParams("resources/read: params.uri must be a string")
            server, original = self.catalog.locate_uri(uri, access.reach)
            access.require(READ, "resources", server, original, uri)
            return server, "uri", original
        if method == "completion/complete":
            ref = params.get("ref")
            if not isinstance(ref, dict):
                raise InvalidParams("completion/complete: params.ref must be an object")
            if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
                server, original = self.catalog.locate_name("prompts", ref["name"], access.reach)
                access.require(COMPLETE, "prompts", server, original, ref["name"])
                return server, "ref.name", original
            if ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
                server, original = self._resolve_template(ref["uri"], access)
                access.require(COMPLETE, "resourceTemplates", server, original, ref["uri"])
                return server, "ref.uri", original
            raise InvalidParams("completion/complete: ref must be ref/prompt with a name or ref/resource with a uri")
        # tasks/get, tasks/result, tasks/cancel: a task this session made, of a server still in reach
        server, upstream_id = self.tasks.resolve(session.id, params.get("taskId"))
        if not access.reach.touches(server):  # its scopes or view changed since the call
            access.refused(method, f"{server}/task", "outside the principal's scopes")
            raise NotFound(f"Task not found: {params.get('taskId')}")
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

    def _resolve_template(self, visible: str, access: Access) -> tuple[str, str]:
        try:
            return self.catalog.locate_name("resourceTemplates", visible, access.reach)
        except NotFound:
            return self.catalog.locate_uri(visible, access.reach)

    async def _connection_for(self, session: Session, server: str) -> UpstreamConnection:
        """The shared connection, or the session's own for `isolation: session` servers.

        A legacy client's calls to a dual-era upstream (one the hub speaks 2026-07-28 to) go over a
        legacy-era connection, as they would directly, when the client can be asked back (it declared
        sampling, elicitation or roots): such a server's tools that ask with a server->client request
        have no back-channel in 2026-07-28.
        """
        conn = self._ready(server, session)
        asks_back = any(kind in session.client_capabilities for kind in REVERSE_KINDS)  # else no use for one
        legacy = conn.era == "modern" and conn.speaks_legacy and not session.ephemeral and asks_back
        config = conn.config.model_copy(update={"protocol": "legacy"}) if legacy else conn.config
        auto = conn.config.isolation == "auto" and conn.asks_clients and asks_back and not session.ephemeral
        if conn.config.isolation == "session" or auto:
            return await self.isolated.get(session.id, session, server, config, self.config.servers.get(server))
        if legacy:  # one for all legacy clients, like the shared one
            try:
                return await self.isolated.get(LEGACY_COMPANION, None, server, config, self.config.servers.get(server))
            except UpstreamUnavailable as exc:  # it said it speaks legacy, but does not: bridge instead
                log.warning("upstream %s: no legacy-era connection (%s); bridging legacy clients", server, exc)
                conn.speaks_legacy = False
        return conn

    def _ready(self, server: str, session: Session | None = None) -> UpstreamConnection:
        """A connection to `server` that may take a call now (a balanced replica, sticky per session)."""
        pins = session.replica_pins if session is not None and not session.ephemeral else None
        slot = self.pool.slots.get(server)
        member = self.pool.pick(server, pins)
        if member is not None and member.breaker.allow():
            return member.conn
        if slot is None:
            raise UpstreamUnavailable(server, "server is removed")
        conn = self.pool.get(server)
        assert conn is not None
        if conn.state != "ready":
            detail = f": {conn.last_error}" if conn.last_error else ""
            raise UpstreamUnavailable(server, f"server is {conn.state}{detail}")
        breaker = (member or slot).breaker
        raise UpstreamUnavailable(
            server,
            f"circuit open after {breaker.failures} consecutive failures; next attempt in {breaker.retry_in():.0f}s",
        )

    async def complete(self, session: Session, conn: UpstreamConnection, call: Call, emit: Emit) -> Message | None:
        """Drive a forwarded call to its end: related messages to `emit`, then the reply.

        Returns None when the client cancelled (a cancelled request is never answered).
        The per-server deadline cancels upstream too.
        """
        rounds = 0
        parked = False
        started = time.perf_counter()
        sent = time.monotonic()  # the call is on its way: what the upstream answers from now shows it alive
        outcome = "cancelled"
        try:
            with anyio.move_on_after(call.timeout):
                while True:
                    msg, final = await call.receive()
                    if not final:
                        pending = self._input_request(session, msg)
                        if pending is not None:
                            # a legacy upstream asks a modern client: park, answer input_required
                            parked = True
                            outcome = "ok"
                            return self.parking.park(conn, call, msg, pending, session.principal.key)
                        await emit(msg)
                        continue
                    if msg is CANCELLED:
                        return None
                    outcome = "error" if "error" in msg else "ok"
                    needed = bridge.input_required(msg)
                    if needed is not None and not session.ephemeral and rounds < bridge.MAX_ROUNDS:
                        # a modern upstream asks a legacy client: ask live, then retry upstream
                        rounds += 1
                        answers = await bridge.ask_client(session, emit, needed.get("inputRequests"))
                        call = await conn.begin(bridge.retry_request(call, needed, answers), origin=session)
                        session.in_flight[call.downstream_id] = (conn, call)  # type: ignore[index]
                        continue
                    return self._rewrite_result(session, conn.name, call.method, msg, modern=conn.era == "modern")
            conn.abandon(call, f"timed out after {call.timeout:g}s")
            outcome = "timeout"
            err = UpstreamTimeout(conn.name, f"{call.method} timed out after {call.timeout:g}s")
            return jsonrpc.error(call.downstream_id, err.to_error())
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.observe(call.method, conn.name, outcome, elapsed)
            if audit.isEnabledFor(logging.INFO) and call.method == "tools/call":
                tool = call.request.get("params", {}).get("name")
                audit.info(
                    "call principal=%s server=%s tool=%s outcome=%s ms=%.1f",
                    session.principal.id,
                    conn.name,
                    tool,
                    outcome,
                    elapsed * 1000,
                )
            if outcome != "cancelled" and conn.owner is None:
                if outcome == "timeout" or call.broken:
                    self.pool.judge(conn, sent)  # may say more about the call than about the upstream
                else:
                    self.pool.record(conn, ok=True)
            if not call.done and not parked:
                conn.abandon(call, "the client went away")
            session.in_flight.pop(call.downstream_id, None)  # type: ignore[arg-type]

    @staticmethod
    def _input_request(session: Session, msg: Message) -> ReversePending | None:
        """The pending server->client request in `msg`, when it is one for a modern client."""
        if not session.ephemeral or "id" not in msg or "method" not in msg:
            return None
        return session.reverse.get(str(msg["id"]))

    def _rewrite_result(self, session: Session, server: str, method: str, msg: Message, *, modern: bool) -> Message:
        """Make URIs and task ids in results the ones the client knows, and the envelope its era's."""
        error = msg.get("error")
        if isinstance(error, dict) and session.ephemeral and not modern and error.get("code") == RESOURCE_NOT_FOUND:
            msg["error"] = {**error, "code": INVALID_PARAMS}  # SEP-2164: 2026-07-28's code for an unknown resource
        result = msg.get("result")
        if not isinstance(result, dict):
            return msg
        if modern and not session.ephemeral:
            era.legacy_result(result)  # a legacy client must not see the modern envelope
        if method == "tools/call" and "task" in result:
            self.tasks.record(server, session.id, result)
        elif method == "tools/call" and self.config.hub.max_result_bytes is not None:
            limits.truncate(result, self.config.hub.max_result_bytes)
        elif method.startswith("tasks/"):
            msg["result"] = result = self.tasks.rewrite(server, result)
        if not self.catalog.prefixed:
            return msg
        if method == "resources/read":
            contents = result.get("contents")
            if isinstance(contents, list):
                result["contents"] = [self._visible_resource(server, c) for c in contents]
        elif method in ("tools/call", "prompts/get"):
            items = result.get("content") if method == "tools/call" else result.get("messages")
            if isinstance(items, list):
                for i, item in enumerate(items):
                    if not isinstance(item, dict):
                        continue
                    body = item.get("content") if method == "prompts/get" else item
                    if isinstance(body, dict):
                        fixed = self._visible_content(server, body)
                        if method == "prompts/get":
                            items[i] = {**item, "content": fixed}
                        else:
                            items[i] = fixed
        return msg

    def _visible_resource(self, server: str, item: Any) -> Any:
        if isinstance(item, dict) and isinstance(item.get("uri"), str):
            return {**item, "uri": self.catalog.visible_uri(server, item["uri"])}
        return item

    def _visible_content(self, server: str, item: dict[str, Any]) -> dict[str, Any]:
        if item.get("type") == "resource_link":
            return self._visible_resource(server, item)  # type: ignore[no-any-return]
        if item.get("type") == "resource" and isinstance(item.get("resource"), dict):
            return {**item, "resource": self._visible_resource(server, item["resource"])}
        return item

    # ------------------------------------------------------------ local methods
    async def _ping(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def _set_level(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        level = params.get("level")
        if level not in LOG_LEVELS:
            shown = reprlib.repr(level)
            raise InvalidParams(f"logging/setLevel: unknown level {shown}; expected one of {', '.join(LOG_LEVELS)}")
        session.log_level = str(level)
        # Upstream connections are shared: ask for the most verbose level any session wants,
        # and filter per session on the way back.
        wanted = min((LOG_LEVELS.index(s.log_level) for s in self.sessions if s.log_level), default=0)
        targets = [
            c
            for c in self.pool.connections.values()
            if c.state == "ready" and c.era == "legacy" and "logging" in c.capabilities
        ]  # modern upstreams get the level in each request's _meta
        async with anyio.create_task_group() as tg:
            for conn in targets:
                tg.start_soon(self._quiet_request, conn, "logging/setLevel", {"level": LOG_LEVELS[wanted]})
        return {}

    async def _tasks_list(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        """Every upstream's tasks that this session created (one complete page)."""
        return {"tasks": await self.tasks.list_for(session.id, self.pool.connections.values())}

    async def _quiet_request(self, conn: UpstreamConnection, method: str, params: dict[str, Any]) -> None:
        try:
            await conn.request(method, params)
        except HubError as exc:
            log.info("%s to %s failed: %s", method, conn.name, exc)

    def can_subscribe(self, session: Session, uri: str) -> bool:
        """May this session subscribe to `uri`, and does its server take subscriptions?"""
        try:
            server, original = self.catalog.locate_uri(uri, session.access.reach)
            session.access.require(SUBSCRIBE, "resources", server, original, uri)
        except NotFound:
            return False
        conn = self.pool.get(server)
        caps = conn.capabilities.get("resources") if conn is not None else None
        return isinstance(caps, dict) and bool(caps.get("subscribe"))

    async def subscribe(self, session: Session, uri: str) -> None:
        await self._subscribe(session, {"uri": uri})

    async def unsubscribe(self, session: Session, uri: str) -> None:
        await self._unsubscribe(session, {"uri": uri})

    async def _subscribe(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise InvalidParams("resources/subscribe: params.uri must be a string")
        server, original = self.catalog.locate_uri(uri, session.access.reach)
        session.access.require(SUBSCRIBE, "resources", server, original, uri)
        cap = self.config.hub.limits.max_subscriptions_per_session
        if (server, original) not in session.subscriptions and len(session.subscriptions) >= cap:
            hit("subscriptions_per_session", "session %s has %d subscriptions: refused another", session.id[:8], cap)
            raise LimitReached("subscriptions_per_session", f"too many resource subscriptions (limit {cap})", 429)
        conn = self._ready(server)
        subscribers = self._subscribers.setdefault((server, original), set())
        if not subscribers:
            await conn.subscribe_resource(original, params)
        subscribers.add(session.id)
        session.subscriptions.add((server, original))
        return {}

    async def _unsubscribe(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise InvalidParams("resources/unsubscribe: params.uri must be a string")
        server, original = self.catalog.locate_uri(uri, session.access.reach)
        session.access.require(SUBSCRIBE, "resources", server, original, uri)
        session.subscriptions.discard((server, original))
        subscribers = self._subscribers.get((server, original), set())
        subscribers.discard(session.id)
        if not subscribers:
            self._subscribers.pop((server, original), None)
            conn = self._ready(server)
            await conn.unsubscribe_resource(original, params)
        return {}

    # ------------------------------------------------------------ client notifications
    async def on_client_notification(self, session: Session, msg: Message) -> None:
        method = msg.get("method")
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        assert isinstance(params, dict)
        if method == "notifications/initialized":
            session.initialized = True
        elif method == "notifications/cancelled":
            rid = params.get("requestId")
            entry = session.in_flight.pop(rid, None) if isinstance(rid, str | int) else None
            if entry is not None:
                conn, call = entry
                conn.abandon(call, str(params.get("reason") or "cancelled by the client"))
                call.finish(CANCELLED)
        elif method == "notifications/roots/list_changed":
            for conn in self.pool.connections.values():
                if conn.state == "ready":
                    try:
                        await conn.notify("notifications/roots/list_changed")
                    except HubError as exc:
                        log.info("roots/list_changed to %s failed: %s", conn.name, exc)

    def on_client_response(self, session: Session, msg: Message) -> None:
        pending = session.reverse.pop(str(msg.get("id")), None)
        if pending is not None:
            pending.reply = msg
            pending.done.set()

    def end_session(self, session_id: str) -> bool:
        return self.sessions.remove(session_id) is not None

    def _session_gone(self, session: Session) -> None:
        """Called for every session that ends (DELETE, expiry, dropped /sse stream)."""
        self.isolated.close_session(session.id)
        for key, subscribers in list(self._subscribers.items()):
            subscribers.discard(session.id)
            if not subscribers:
                del self._subscribers[key]

    # ============================================================ reverse path (ConnectionEvents)
    def on_state(self, conn: UpstreamConnection) -> None:
        if conn.owner is not None or not self.pool.is_current(conn):
            return  # a session's own connection, or one a reload replaced: not the catalog's
        if conn.state != "ready" and not self.pool.any_ready(conn.name):
            self._announce(self.catalog.drop(conn.name))
        if conn.state == "ready" and self._tg is not None:
            held = [uri for (server, uri), ids in self._subscribers.items() if server == conn.name and ids]
            if held:
                self._tg.start_soon(self._resubscribe, conn, held)
        self.pool.note_state()

    async def _resubscribe(self, conn: UpstreamConnection, uris: list[str]) -> None:
        """A (re)started connection: ask again for the updates clients are still subscribed to."""
        for uri in uris:
            try:
                await conn.subscribe_resource(uri, {"uri": uri})
            except HubError as exc:
                log.info("resubscribing %s on %s failed: %s", uri, conn.name, exc)

    def on_list(self, conn: UpstreamConnection, kind: str, items: list[dict[str, Any]]) -> None:
        if conn.owner is None and self.pool.is_current(conn) and self.catalog.update(conn.name, kind, items):
            self._announce({kind})

    def _announce(self, kinds: set[str]) -> None:
        """list_changed for these kinds, only to those whose visible list really changed."""
        for session in self.sessions:
            if session.initialized:
                for method in self._changed_for(session, kinds):
                    session.post(jsonrpc.notification(method))
        for listener in self.listeners:
            for method in self._changed_for(listener.session, kinds):
                if method in listener.methods:
                    listener.post(jsonrpc.notification(method))

    def _changed_for(self, session: Session, kinds: set[str]) -> list[str]:
        methods: set[str] = set()
        for kind in kinds:
            now = hash(self.catalog.result_json(kind, session.access.reach))
            if session.seen.get(kind) != now:
                session.seen[kind] = now
                methods.add(KINDS[kind][1])
        return sorted(methods)

    def on_notification(self, conn: UpstreamConnection, msg: Message, call: Call | None) -> None:
        self.reverse.notification(conn, msg, call)

    async def on_server_request(self, conn: UpstreamConnection, msg: Message, call: Call | None) -> Message | None:
        return await self.reverse.request(conn, msg, call)

    def pending_client_request_limit(self) -> int:
        return self.config.hub.limits.max_pending_client_requests

    # ============================================================ configuration
    async def apply_config(self, new: HubConfig) -> dict[str, list[str]]:
        """Reconcile with a new (already validated) config; only what changed is touched.

        Added servers start, removed and newly disabled ones stop (their in-flight calls get
        the pool's drain bound), servers whose own settings changed restart; the others,
        their calls and the sessions using them are left alone. Clients hear list_changed
        only for the lists whose visible content changed.
        """
        old_enabled, new_enabled = self.config.enabled, new.enabled
        removed = [name for name in old_enabled if name not in new_enabled]
        added = [name for name in new_enabled if name not in old_enabled]
        kept = [name for name in new_enabled if name in old_enabled and new_enabled[name] != old_enabled[name]]
        # only a change to how it connects restarts a server; tags and tool rules apply in place
        changed = [name for name in kept if not new_enabled[name].same_connection(old_enabled[name])]
        updated = [name for name in kept if name not in changed]
        self.config = new
        if new.hub != self._settings:
            self._settings = new.hub
            self.catalog.codec = NameCodec(new.hub.separator)
            self.catalog.mode = new.hub.prefix_mode
            self.sessions.idle_timeout = new.hub.session_idle_timeout
            self.sessions.limits = new.hub.limits
            HITS.interval = new.hub.limits.log_interval
        # What each client may reach changes now, not once the removed servers' calls drained.
        self.catalog.set_servers(new_enabled, tool_rules(new))
        self.refresh_views()  # announces what each client sees change
        for name in removed + changed:
            self.isolated.close_server(name)
        async with anyio.create_task_group() as tg:
            for name in removed + changed:
                tg.start_soon(self.pool.remove, name)
        for name in changed:
            self._announce(self.catalog.drop(name))  # its lists come back from the new connection
        for name in changed + added:
            self.pool.add(name, new_enabled[name])
        unchanged = [name for name in new_enabled if name not in added and name not in kept]
        return {"added": added, "removed": removed, "changed": changed, "updated": updated, "unchanged": unchanged}

    # ============================================================ lifecycle
    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await tg.start(self.pool.run)
            await tg.start(self.isolated.run)
            tg.start_soon(self._expire_sessions)
            task_status.started()

    async def _expire_sessions(self) -> None:
        interval = max(0.05, min(60.0, self.config.hub.session_idle_timeout / 2))
        while True:
            await anyio.sleep(interval)
            self.sessions.expire_idle()
            self.parking.expire()
