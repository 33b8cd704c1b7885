"""The hub's front: the middle wired together, and the few calls the endpoints and the reloader make.

Owns the wiring (catalog, pool, sessions, listen streams and the parts below) and a narrow front:
a session's start and end, what `initialize` answers, access decisions, a request's dispatch and
completion, listen streams, presets and config reloads, and a read-only `state` for reports.
Each part lives in its own module: routing in `dispatch`, driving a call in `forward`, rewriting
replies in `rewrite`, `subscriptions`, `list_changed` in `announcements`, what upstreams tell the
hub in `events` and `reverse`, reload planning in `plan`. Does not own any wire.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

import anyio

from onemcp import __version__
from onemcp.auth.access import Access, decide
from onemcp.auth.limits import RedisQuotaBook
from onemcp.auth.principal import Principal
from onemcp.catalog import views
from onemcp.catalog.catalog import Catalog, tool_rules
from onemcp.catalog.reach import EVERYTHING, Reach
from onemcp.config.model import Exposure, HubConfig, Limits, PinMode, ServerConfig
from onemcp.hub import bridge, connections, records, revival
from onemcp.hub.announcements import Announcements
from onemcp.hub.dispatch import Dispatcher
from onemcp.hub.events import UpstreamEvents
from onemcp.hub.exposure import ToolExposure, release_counter, reported_name
from onemcp.hub.forward import Emit, Forwarder, answer_for_replica
from onemcp.hub.instances import Instance, TemplateInstances
from onemcp.hub.instructions import render_instructions
from onemcp.hub.list_watch import ListWatch
from onemcp.hub.listeners import Listener
from onemcp.hub.pins import Pins
from onemcp.hub.plan import plan
from onemcp.hub.relay import RedisRelay
from onemcp.hub.replicas import Replicas
from onemcp.hub.reverse import ReversePath
from onemcp.hub.saved import SavedSessions, SessionRecords
from onemcp.hub.session import Entry, Session, SessionStore, declaration
from onemcp.hub.state import HubState
from onemcp.hub.stopping import Stopping
from onemcp.hub.subscriptions import Subscriptions
from onemcp.hub.tasks import TaskRouter
from onemcp.observability.events import EventBus
from onemcp.observability.limits import HITS
from onemcp.observability.metrics import Metrics
from onemcp.protocol.capabilities import advertised
from onemcp.protocol.errors import HubError, NotFound
from onemcp.protocol.jsonrpc import Message
from onemcp.protocol.names import NameCodec, shown_as
from onemcp.protocol.versions import negotiate
from onemcp.upstream.call import Call
from onemcp.upstream.connection import UpstreamConnection
from onemcp.upstream.isolation import PRINCIPAL, IsolatedConnections
from onemcp.upstream.oauth.registry import UpstreamAuth
from onemcp.upstream.pool import CHANGED, REMOVED, Pool, retime
from onemcp.upstream.transports.factory import TransportFactory, make_transport
from onemcp.upstream.user_secrets import UserSecrets

log = logging.getLogger("onemcp.hub")
SAVED_ON = frozenset({"logging/setLevel", "resources/subscribe", "resources/unsubscribe"})  # changes a saved session


class Hub:
    def __init__(
        self,
        config: HubConfig,
        upstream_auth: UpstreamAuth | None = None,
        transports: TransportFactory = make_transport,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.upstream_auth = upstream_auth or UpstreamAuth(None, None)  # the hub's own, never a client's token
        self.metrics = metrics if metrics is not None else Metrics()
        self.catalog = Catalog(NameCodec(config.hub.separator), config.hub.prefix_mode)
        self.catalog.max_item_bytes = config.hub.limits.max_list_item_bytes
        self.instances = TemplateInstances(
            lambda: self.config.templates, lambda: self.limits, self._start_instance, self._stop_instance
        )
        self._place_servers()
        self.presets: dict[str, str] = {}  # preset name -> filter (presets.json beside mcp.json)
        self.context_secret: bytes | None = None  # signs template contexts (context.key beside mcp.json)
        self.context_secret_maker: Callable[[], bytes | None] | None = None  # makes it when templates appear
        self.saved: SessionRecords = SavedSessions(None)  # sessions that survive a restart (the app opens a store)
        self.preset_exposures: dict[str, str] = {}  # preset name -> its tool exposure, where it sets one
        self.exposure = ToolExposure(
            self.catalog, lambda: self.config, lambda: self.preset_exposures, lambda s: reported_name(self.pool.get(s))
        )
        self.sessions = SessionStore(0, config.hub.limits, on_remove=self._session_gone)
        self.sessions.configure(config.hub)
        HITS.interval = config.hub.limits.log_interval
        self.listeners: set[Listener] = set()  # modern subscriptions/listen streams
        self._opening: set[Listener] = set()  # listens still subscribing: their instances are in use already
        self.tasks = TaskRouter(self.catalog)
        self.parking = bridge.Parking()
        self.stopping = Stopping(self.cut_off_calls, lambda: self.sessions)  # the end of the shutdown grace
        self.reverse = ReversePath(self.sessions, self.catalog, self.tasks, self.listeners, lambda: self.limits)
        self.bus = EventBus()  # calls, state changes and log lines, for the console, the TUI and the API
        self.events = UpstreamEvents(self.catalog, self.reverse, lambda: self.limits, self.bus)
        self.pool = Pool(config, self.events, self.upstream_auth, transports)
        self.upstream_auth.on_authorized = self.pool.retry_now
        self.isolated = IsolatedConnections(self.events, self.upstream_auth, transports)
        self.subscriptions = Subscriptions(self.catalog, self.pool, lambda: self.limits, self.events.views.of)
        self.events.owner_of, self.reverse.principal_of = self.isolated.owner_of, self.isolated.principal_of
        self.isolated.busy = self.in_use
        self.announcements = Announcements(
            lambda kind, session: self.exposure.list_json(kind, session.access, self.events.views.of(session)),
            *(self.sessions, self.listeners, self.subscriptions, self.instances.tags),
        )
        self.announcements.before = self._ready_to_announce
        self.events.attach(self.pool, self.subscriptions, self.announcements)
        self.pins, self.user_secrets = Pins(None), UserSecrets(None)  # the app opens pins.db, user-secrets.db
        self.events.screen = self._screen_tools
        self.events.screen_own = lambda server, items: self.pins.passing(server, items, self.pin_mode(server))
        self.catalog.forgotten = lambda server: self.pins.forget(server)  # the app may replace self.pins
        parts = (self.catalog, self.pool, self.tasks, self.parking)
        self.dispatcher = Dispatcher(
            *parts, self.isolated, self.sessions, self.subscriptions, self.exposure, lambda: self.config
        )
        self.list_watch = ListWatch(self.listeners, self.dispatcher.expiring)
        self.forwarder = Forwarder(*parts, self.metrics, lambda: self.config.hub, self.bus, self.announcements.sent)
        self.reverse.hears, self.forwarder.url_required = self.subscriptions.hears, self.reverse.url_required
        self.dispatcher.user_secrets = self.user_secrets
        store = config.hub.shared_store
        if config.hub.auth.quotas and store is not None:
            self.dispatcher.quotas = RedisQuotaBook(config.hub.auth.quotas, store)  # replicas share the counts
        self.state = HubState(self.pool, self.catalog, self.sessions, self.listeners, self.isolated, self.upstream_auth)
        self.replicas: Replicas | None = None  # the other replicas sharing a Redis (`share_with_replicas`)

    def share_with_replicas(self, url: str) -> None:
        """Replicas on this Redis carry each other's messages for sessions and parked calls (before `run`)."""
        self.replicas = replicas = Replicas(
            RedisRelay(url),
            self.sessions,
            self.parking,
            self.tasks,
            resume_here=partial(answer_for_replica, self.dispatch, self.complete),
            reply_here=self.reverse.reply,
            notify_here=self._notified_elsewhere,
        )

        def authorized(server: str) -> None:
            self.pool.retry_now(server)
            replicas.upstream_authorized(server)

        self.upstream_auth.on_authorized = authorized
        self.upstream_auth.on_forgotten = replicas.upstream_forgotten
        replicas.authorized_here = self._authorized_elsewhere
        replicas.changed_here = self.dispatcher.adopt
        replicas.forgotten_here = self.upstream_auth.forgotten_elsewhere

    def _authorized_elsewhere(self, server: str) -> None:
        """Another replica finished `server`'s authorization: its tokens are in the shared store."""
        credential = self.upstream_auth.servers.get(server)
        if credential is not None:
            credential.reread()
        self.pool.retry_now(server)

    @property
    def limits(self) -> Limits:
        """The limits of the running config (a reload may change them)."""
        return self.config.hub.limits

    @property
    def local_methods(self) -> frozenset[str]:
        """The methods answered by the hub itself (besides the lists and `initialize`)."""
        return frozenset(self.dispatcher.local)

    # ============================================================ identity
    def server_info(self) -> dict[str, Any]:
        return {"name": "onemcp", "title": "onemcp hub", "version": __version__}

    def capabilities(self, access: Access, *, legacy: bool = False) -> dict[str, Any]:
        """What the hub serves this requester (`legacy`: in that era): lists always, the rest if a ready upstream
        it reaches has them (`connections.offered`); not one a reload removed, its calls draining."""
        shown = self.catalog.serves
        ready = [c for c in self.pool.connections.values() if c.state == "ready" and shown(c.name)]
        ready = [c for c in ready if access.reach.touches(c.name)]
        return advertised([connections.offered(c, self.isolated, legacy) for c in ready])

    def instructions(self, access: Access, catalog: Catalog | None = None) -> str:
        """A summary of the servers this requester reaches, then each one's own instructions, delimited
        (`catalog`: the catalog as it sees it, whose tools list decides an `auto` exposure)."""
        search = self.exposure.mode(access, catalog) == "search"
        return render_instructions(self.config, self.catalog, self.pool, access.reach, search=search)

    async def initialize(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        session.protocol_version = negotiate(params.get("protocolVersion"))
        session.client_capabilities, session.client_info = declaration(params)
        self.bind_templates(session)
        await self.dispatcher.until_started()  # its capabilities rest on the upstreams tried, as lists do
        await self.instances.ready(session.access.reach.instances)  # ... and on its template instances
        view = self.events.views.of(session)  # its principal's own connections' lists, if any
        await self.remember_lists(session)  # counted first: its instructions may rest on a count too
        if self.save_session(session):  # written before the answer: the next request may reach another replica
            await self.saved.flush()
        return {
            "protocolVersion": session.protocol_version,
            "capabilities": self.capabilities(session.access, legacy=True),
            "serverInfo": self.server_info(),
            "instructions": self.instructions(session.access, view),
        }

    async def until_tried(self) -> None:
        """Until every upstream was tried once, however long that takes (the caller bounds it)."""
        await self.pool.tried.wait()

    # ============================================================ who sees what
    def view(self, query: bytes | str) -> views.View | None:
        """The view a request's query string selects (None: everything); `views.ViewError` says what is wrong."""
        return views.from_query(query, self.presets, views.known_tags(self.config))

    def exposure_asked(self, query: bytes | str) -> Exposure | None:
        """The tool exposure a request's query string asks for (None: its preset's or the hub's); or ViewError."""
        return views.exposure_from_query(query)

    def access(
        self,
        principal: Principal,
        entry: str,
        view: views.View | None = None,
        exposure: Exposure | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        trusted: bool = False,
    ) -> Access:
        """What `principal`, come in through `entry`, may reach through `view` (the one decision);
        `context` is its template context, `trusted` when it may render templates (`config.context`)."""
        access = decide(principal, entry, view, self.announcements.tags(self.config), self.presets, exposure)
        if context is None and not trusted:
            return access
        return replace(access, context=context, trusted=trusted)

    def bind_templates(self, session: Session) -> None:
        """Bind the session to the template instances its context renders (InvalidParams: a field does
        not render); they start on its first list or call."""
        era = "modern" if session.ephemeral else "legacy"
        ids = self.instances.bind(session.access, session.id, session.client_info, era)
        if ids != session.access.reach.instances:
            tags = self.announcements.tags(self.config)
            session.access = session.access.bound(ids).rebuilt(tags, self.presets)

    def set_presets(self, presets: Mapping[str, str], exposures: Mapping[str, str] | None = None) -> None:
        """New presets (name -> filter; name -> tool exposure): every view naming one is decided again."""
        self.presets = dict(presets)
        self.preset_exposures = dict(exposures or {})
        self.refresh_views()

    def preset_reaches(self) -> dict[str, Reach]:
        """What each preset's view lets through (for reports: tokens per view)."""
        tags = self.announcements.tags(self.config)
        out: dict[str, Reach] = {}
        for name in self.presets:
            try:
                out[name] = EVERYTHING.within(views.preset_view(name, self.presets).servers(tags))
            except views.ViewError:
                continue
        return out

    async def _ready_to_announce(self, sessions: list[Session]) -> None:
        """Before list_changed goes out: what `auto` modes rest on is counted, in each session's view."""
        await self.exposure.ready_to_count([(session.access, self.events.views.of(session)) for session in sessions])

    async def remember_lists(self, session: Session) -> None:
        """Note what the session's lists look like now (list_changed goes out when they change); an `auto`
        tools list rests on a count, prepared off the event loop first (the vocabulary loaded, ~0.4 s)."""
        await self.exposure.ready_to_count([(session.access, self.events.views.of(session))])
        self.announcements.remember(session)

    def refresh_views(self) -> None:
        """After a config or presets change: decide every session's access again, tell whoever's lists changed."""
        self.announcements.refresh(self.config, self.presets)
        self.exposure.rewarm()  # search may have become likely (a preset or the hub's exposure)

    async def list_result(self, kind: str, session: Session) -> bytes:
        """A complete list, serialised, as `session` sees it (once the upstreams were tried, within bounds)."""
        await self.dispatcher.ready_to_list(kind, session)
        if session.access.reach.instances:
            await self.instances.ensure(session.access.reach.instances)
        return await self.exposure.served_list(kind, session.access, self.events.views.of(session))

    def tool_headers(self, name: str, session: Session) -> dict[str, str]:
        """argument -> `Mcp-Param-*` header (`x-mcp-header`) of a tool `session` reaches; of another, nothing."""
        return self.dispatcher.tool_headers(name, session)

    # ============================================================ sessions and requests
    def create_session(self, transport: Entry, access: Access) -> Session:
        """A new session (raises `LimitReached` when the hub or the principal has too many)."""
        return self.sessions.create(transport, access)

    def find_session(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    def end_session(self, session_id: str) -> bool:
        return self.sessions.remove(session_id) is not None

    # ============================================================ sessions that survive a restart
    def save_session(self, session: Session) -> bool:
        """Write what the session needs to go on after a restart (Streamable HTTP sessions only: an /sse
        session lives and dies with its stream, stdio with its process; an ended one never comes back).
        Whether it was written (else there is nothing to wait for)."""
        if session.transport == "streamable-http" and self.saved.enabled and not session.closed:
            self.saved.save(session.id, records.record_of(session))
            return True
        return False

    async def revive_session(self, session_id: str, principal: Principal) -> Session | None:
        """A session this hub (or an earlier run of it) saved, made live again for the principal it
        belongs to; None when there is none, it expired, or it is someone else's (`revival`)."""
        return await revival.revive(self, session_id, principal)

    def _session_gone(self, session: Session, ended: bool) -> None:
        """A session `ended` (DELETE, a dropped /sse stream), or this process forgot its copy (idle, evicted,
        ended on another replica): a shared record outlives a copy (it ends by its TTL or the session's end)."""
        self.isolated.close_session(session.id)
        self.instances.release(session.id)
        if ended or not self.saved.shared:
            self.saved.delete(session.id)
        if ended and self.replicas is not None:  # the copies on the other replicas end with it
            self.replicas.session_ended(session)
        self.subscriptions.forget(session.id)
        self.tasks.forget_session(session.id, cancel=ended or not self.saved.shared)  # it cannot come back
        self.reverse.forget_session(session)

    async def dispatch(self, session: Session, msg: Message) -> Message | bytes | tuple[UpstreamConnection, Call]:
        """A downstream request: its reply, a pre-serialised reply, or a Call to drive (`complete`)."""
        if self.replicas is not None and (elsewhere := self.replicas.elsewhere(msg)) is not None:
            kind, owner = elsewhere  # a call parked on another replica, or a task made there: answered there
            return await self.replicas.resume(owner, session, msg, kind)
        run = partial(self.dispatcher.dispatch, session, msg)  # once the instances it may need were started
        outcome = await self.instances.serving(session.access.reach.instances, msg, self.catalog, run)
        # the session's copies on the other replicas change with it (an /sse session has no record, and no copy)
        if msg.get("method") in SAVED_ON and self.save_session(session) and self.replicas is not None:
            self.replicas.session_changed(session)
            await self.saved.flush()  # in Redis before the answer: a replica reviving it next reads it
        return outcome

    async def complete(self, session: Session, conn: UpstreamConnection, call: Call, emit: Emit) -> Message | None:
        """Drive a forwarded call to its end: related messages to `emit`, then the reply (None: cancelled)."""
        return await self.forwarder.complete(session, conn, call, emit)

    async def on_client_notification(self, session: Session, msg: Message) -> None:
        if self.replicas is not None:
            self.replicas.client_notification(session, msg)
        await self.dispatcher.notification(session, msg)
        if msg.get("method") == "notifications/initialized":
            self.save_session(session)

    def on_client_response(self, session: Session, msg: Message) -> None:
        if self.replicas is None or not self.replicas.client_response(session, msg):
            self.reverse.reply(session, msg)

    async def _notified_elsewhere(self, session: Session | None, msg: Message) -> None:
        """A client's notification another replica passed on (a cancellation or a roots change)."""
        if session is not None:
            await self.dispatcher.notification(session, msg)
        elif msg.get("method") == "notifications/roots/list_changed":
            await self.dispatcher.roots_changed(None)

    # ============================================================ listen streams (2026-07-28)
    def can_subscribe(self, session: Session, uri: str) -> bool:
        """May this session subscribe to `uri`, and does its server take subscriptions?"""
        return self.subscriptions.can_subscribe(session, uri)

    async def add_listener(self, listener: Listener) -> None:
        """A listen stream opens: its resource subscriptions (each may fail alone), then list_changed."""
        self._opening.add(listener)  # an instance it subscribes on is not reaped while it does (idleTimeout)
        try:
            listener.keep(await self.subscriptions.subscribe_each(listener.session, listener.uris))
        finally:
            self._opening.discard(listener)
        self.list_watch.add(listener)  # its lists that expire are read again as they do (`hub/list_watch.py`)

    async def remove_listener(self, listener: Listener) -> None:
        """A listen stream ended: it hears nothing more, and its subscriptions go (even when cancelled)."""
        self.list_watch.discard(listener)
        listener.close()
        await self.subscriptions.unsubscribe_each(listener.session, listener.uris)

    def finish_listeners(self) -> None:
        """The hub is stopping: each listen stream ends gracefully, after what is queued."""
        for listener in list(self.listeners):
            listener.finish()

    # ============================================================ configuration
    async def apply_config(self, new: HubConfig) -> dict[str, list[str]]:
        """Carry out `plan(old, new)` for a new (already validated) config: only what changed is touched.

        Removed and restarted servers' calls get the pool's drain bound, in the background (the next
        reload does not wait for it); added servers start at once; list_changed only for lists that changed.
        """
        change = plan(self.config, new)
        old_templates = self.config.templates
        self.config = new
        if new.templates and self.context_secret is None and self.context_secret_maker is not None:
            self.context_secret = self.context_secret_maker()
        if change.settings:
            self.catalog.codec = NameCodec(new.hub.separator)
            self.catalog.mode = new.hub.prefix_mode
            self.sessions.configure(new.hub)
            HITS.interval = new.hub.limits.log_interval
            self.events.relist(new.hub.limits.max_list_item_bytes, self.isolated.connections())
        self._place_servers()  # what each client may reach changes now, not once removed servers' calls drained
        for name in change.updated:  # a new timeout applies to the next calls of its running connections
            settings = new.enabled[name].request_settings()
            self.pool.take_request_settings(name, settings)
            for conn in self.isolated.connections():
                if conn.name == name:
                    retime(conn, settings)
        self.refresh_views()  # announces what each client sees change
        await self._reload_templates(old_templates)
        for name in [*change.removed, *change.restarted]:  # sessions' own connections drain like the shared one
            self.isolated.close_server(name, REMOVED if name in change.removed else CHANGED)
        for name in [*change.removed, *change.restarted, *change.added]:
            if name in change.added and not self.pool.busy(name):
                self.pool.add(name, new.enabled[name])  # at once
            else:  # in the background, one change per server at a time: calls drain while later edits apply
                self.pool.restart_soon(name, partial(self._wanted, name), on_stopped=self._dropped)
        self.rescreen()  # pinToolDefinitions may have changed
        return change.report()

    # ============================================================ pinned tool definitions
    def pin_mode(self, server: str) -> PinMode:
        """The server's `pinToolDefinitions` (a template instance: its template's), else the hub's."""
        own = self.config.servers.get(server) or self.config.templates.get(shown_as(server))
        chosen = own.pin_tool_definitions if own is not None else None
        return chosen or self.config.hub.pin_tool_definitions

    def _screen_tools(self, server: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        mode = self.pin_mode(server)
        passed = self.pins.screen(server, items, mode)
        withheld = self.pins.withheld(server, mode)
        if withheld:
            self.catalog.withheld[server] = withheld
        else:
            self.catalog.withheld.pop(server, None)
        return passed

    def rescreen(self, servers: set[str] | None = None) -> None:
        """Screen the servers' last tools lists again (after an approval or a reload) and announce changes."""
        for server, raw in list(self.pins.raw.items()):
            wanted = (servers is None or shown_as(server) in servers) and self.catalog.has_lists(server)
            if wanted and self.catalog.update(server, "tools", self._screen_tools(server, raw)):
                self.announcements.announce({"tools"})

    def approve_tools(self, server: str, tools: list[str] | None = None) -> list[str]:
        """Approve the changed definitions of `server`'s tools (all, or `tools`): clients see them again."""
        approved = self.pins.approve(server, tools)
        self.rescreen({server})
        return approved

    async def restart_server(self, name: str) -> None:
        """Stop a server (its calls get the pool's drain bound) and start it again; NotFound if there is none."""
        if self._wanted(name) is None:  # a template: by its instances' names (`onemcp mcp status` lists them)
            ids = [i.id for i in self.instances.running() if i.template == name]
            said = f": a template, restarted by its instances' names ({', '.join(ids) or 'none runs now'})"
            raise NotFound(f"no enabled server {name!r}{said if name in self.config.templates else ''}")
        wanted, why = partial(self._wanted, name), "restarting (an operator asked)"
        self.isolated.close_server(name, why)
        if not await self.pool.restart(name, wanted, reason=why, on_stopped=self._dropped):
            raise NotFound(f"server {name!r} was removed from the config while it restarted: not started again")

    def _wanted(self, name: str) -> ServerConfig | None:
        """What `name` should run with now: its enabled config, or its running template instance's; None."""
        instance = self.instances.instances.get(name)
        running = instance.config if instance is not None and instance.running else None
        return self.config.enabled.get(name) or running

    def _dropped(self, name: str) -> None:
        """A server stopped to start again: its lists come back from the new connection."""
        self.announcements.announce(self.catalog.drop(name))

    def cut_off_calls(self, reason: str) -> int:
        """End every call waiting on an upstream now, with `reason` (the hub is stopping); how many there were."""
        conns = [*(m.conn for slot in self.pool.slots.values() for m in slot.members), *self.isolated.connections()]
        cut = sum(conn.in_flight for conn in conns)
        for conn in conns:
            conn.fail_pending(reason, closed=False, keep_own=True)
        return cut

    # ============================================================ template instances
    def _place_servers(self) -> set[str]:
        """Tell the catalog the servers in order (config, then running instances); the kinds that changed."""
        running = {i.id: i.config for i in self.instances.running()}
        order = [*self.config.enabled, *running]
        return self.catalog.set_servers(order, tool_rules(self.config, running), self.config.templates)

    async def _start_instance(self, instance: Instance) -> bool:
        """Supervise a new instance like any server and wait (its startupTimeout) until it was tried."""
        self.announcements.announce(self._place_servers())
        self.pool.add(instance.id, instance.config)
        conn = self.pool.get(instance.id)
        if conn is None:
            return False
        with anyio.move_on_after(instance.config.startup_timeout):
            await conn.settled.wait()
        return conn.state == "ready"

    async def _stop_instance(self, instance: Instance) -> None:
        self.isolated.close_server(instance.id, "template instance stopped")
        self.announcements.announce(self._place_servers())
        await self.pool.remove(instance.id, reason="template instance stopped")

    async def _reload_templates(self, old: Mapping[str, Any]) -> None:
        """Templates changed: sessions and listens bound again; changed instances none holds stop, new ones start."""
        if old == self.config.templates:
            return
        for instance in self.instances.instances.values():
            instance.sessions.clear()
        requesters = [*self.sessions, *(listener.session for listener in self.listeners)]
        for session in requesters:
            if session.access.trusted:
                try:
                    self.bind_templates(session)
                except HubError as exc:
                    log.warning("session %s: after the reload, %s", session.id, exc)
                    session.access = session.access.bound(frozenset())
                self.subscriptions.rebind(session)  # what it held on its old instances moves to the new ones
        unchanged = {name for name, t in self.config.templates.items() if old.get(name) == t}
        wanted = {i for s in requesters for i in s.access.reach.instances}  # a listen's are in no i.sessions
        release = self.announcements.hold()  # the old instances' lists go, the new ones' come: announced once
        try:
            await self.instances.retire(lambda i: i.id in wanted or i.template in unchanged)
        finally:
            self.refresh_views()
            if wanted and self.events.tg is not None:  # released once they were tried (or were refused)
                self.events.tg.start_soon(self.instances.ensure_quietly, frozenset(wanted), release)
            else:
                release()

    async def _reap_instances(self) -> None:
        while True:
            await anyio.sleep(self.instances.interval())
            listens = (*self.listeners, *self._opening)
            await self.instances.reap(held={i for ln in listens for i in ln.session.access.reach.instances})

    # ============================================================ lifecycle
    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self.events.tg = self.subscriptions.tg = self.dispatcher.sends_tg = tg
                await tg.start(self.pool.run)
                await tg.start(self.isolated.run)
                if self.replicas is not None:
                    await tg.start(self.replicas.run)
                for task in (self._expire_sessions, self._reap_instances, self.exposure.run_transformer):
                    tg.start_soon(task)
                for task in (self.exposure.trim_after_searches, self.announcements.run, self.list_watch.run):
                    tg.start_soon(task)
                tg.start_soon(self._warm_search)
                task_status.started()
        finally:
            self.sessions.close_all()  # the sessions' queues end with the hub
            self.pins.close()
            self.user_secrets.close()

    async def _warm_search(self) -> None:
        """Build the search index once every server was tried (and after changes) if clients are likely to search."""
        await self.pool.tried.wait()
        await self.exposure.warming()

    def in_use(self, conn: UpstreamConnection) -> bool:
        """Does a subscription, or a listen stream's watch, need `conn` (a principal's own) calls or not?"""
        return self.subscriptions.holds_on(conn) or conn in self.list_watch.watched()

    async def _expire_sessions(self) -> None:
        interval = max(0.05, min(60.0, self.config.hub.session_idle_timeout / 2))
        since = time.monotonic()
        while True:
            await anyio.sleep(interval)
            now = time.monotonic()
            self.sessions.expire_idle()
            self.parking.expire()
            release_counter()  # the token counter's vocabulary, once /health stopped asking
            self.isolated.close_idle(PRINCIPAL, self.config.hub.session_idle_timeout)
            if self.saved.enabled:  # last-seen times of the sessions used since, in one batch (not on every call)
                used = self.sessions.used_since(since)
                self.saved.seen([s.id for s in used if s.transport == "streamable-http"])
                self.saved.purge(self.config.hub.session_idle_timeout)
                await self.forget_ended()
            since = now

    async def forget_ended(self) -> bool:
        """Forget the copies here of sessions ended through another replica whose broadcast this one missed
        (its pub/sub link was down): their records are tombstones (one batched read). False: Redis could not say."""
        ended = await self.saved.ended([s.id for s in self.sessions if s.transport == "streamable-http"])
        for sid in ended or ():
            self.sessions.forget(sid)
        return ended is not None
