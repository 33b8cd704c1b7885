"""The ASGI application: routes, DNS-rebinding guard, lifespan that runs the hub.

Routes: /mcp (Streamable HTTP), /sse + /messages (legacy HTTP+SSE), /health,
/health/live, /health/ready, /metrics, the built-in authorization server's (/oauth/...,
well-known metadata), the hub's own upstream OAuth (/oauth/upstream...) and a caller's own upstream
values (/me/secrets). Everything else is 404.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import uvicorn

from onemcp.admin.api import PREFIX as API_PREFIX
from onemcp.admin.api import AdminApi
from onemcp.admin.console import PREFIX as CONSOLE_PREFIX
from onemcp.admin.console import Console
from onemcp.auth.access import operator_needs
from onemcp.auth.gate import PRM_PATH, Gate
from onemcp.auth.held import REFUSAL_HEADERS
from onemcp.auth.limits import RedisRateLimiter
from onemcp.auth.principal import Principal
from onemcp.config import context, schema
from onemcp.config.model import HubConfig
from onemcp.downstream import my_secrets, my_secrets_page, upstream_auth
from onemcp.downstream.health import health, ready, state_metrics
from onemcp.downstream.legacy_sse import LegacySseEndpoint
from onemcp.downstream.streamable import StreamableHttpEndpoint
from onemcp.http import asgi, cors
from onemcp.http import server as http11
from onemcp.http.asgi import Receive, Scope, Send, error_body
from onemcp.http.guard import Guard
from onemcp.hub.core import Hub
from onemcp.hub.pins import Pins
from onemcp.hub.saved import open_store
from onemcp.hub.stopping import SHUTTING_DOWN
from onemcp.observability import logs
from onemcp.observability.metrics import CONTENT_TYPE, Metrics
from onemcp.observability.redact import REDACTOR
from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import INTERNAL_ERROR, INVALID_REQUEST, UPSTREAM_UNAVAILABLE
from onemcp.protocol.versions import MODERN_VERSIONS
from onemcp.reload import Reloader
from onemcp.upstream.oauth.registry import UpstreamAuth
from onemcp.upstream.transports.factory import TransportFactory, make_transport
from onemcp.upstream.user_secrets import UserSecrets

GUARDED = frozenset({b"host", b"origin"})  # headers the guard judges: one of each, or none
log = logging.getLogger("onemcp.app")
FINISH = 1.0  # after the grace: for the hub to end what is still open (hub/stopping.py) before uvicorn cancels it
MCP_PATHS = frozenset({"/mcp", "/mcp/", "/sse", "/messages", "/messages/"})


def _entry_point(path: str) -> bool:
    """The hub's MCP entries and its APIs (not its pages, which a link from anywhere may open)."""
    apis = (API_PREFIX, my_secrets.PREFIX, upstream_auth.PREFIX)
    return path in MCP_PATHS or any(path == p or path.startswith(p + "/") for p in apis)


class OneMcpApp:
    def __init__(
        self,
        config: HubConfig,
        *,
        bind_host: str = "127.0.0.1",
        config_path: Path | None = None,
        public_url: str | None = None,
        transports: TransportFactory = make_transport,
    ) -> None:
        self.config = config
        self.config_path = config_path
        config_dir = config_path.parent if config_path is not None else None
        shared = config.hub.shared_store  # the Redis replicas share, if any
        self.gate = Gate(config.hub.auth, config_dir, public_url, bind_host, config.hub.allowed_hosts, shared)
        limit = config.hub.auth.rate_limit
        if limit is not None and self.gate.limiter is not None and shared is not None:
            # replicas sharing a Redis share one request rate per principal
            self.gate.limiter = RedisRateLimiter(limit.requests_per_minute, limit.burst, shared, self.gate.limiter)
        logs.configure_audit(config.hub.audit)
        REDACTOR.use(config)  # (again, for an app made without `onemcp serve`: tests, embedders)
        base = config.hub.auth.public_url or public_url
        # the hub's own OAuth credentials with its upstreams, and its metrics: the app's, lent to the hub
        # replicas on one Redis keep upstream tokens (and authorization links) there
        self.upstream_auth = UpstreamAuth(config_dir, base.removesuffix("/mcp") if base else None, shared)
        self.metrics = Metrics()
        self.hub = Hub(config, self.upstream_auth, transports, metrics=self.metrics)
        if config_path is not None:
            # legacy sessions survive a restart: in sessions.db beside the config, or in a Redis replicas share
            self.hub.saved = open_store(config.hub.session_store, config_path.parent, config.hub.session_idle_timeout)
            # tool definitions as first seen or last approved: a changed one is withheld until approved
            self.hub.pins = Pins(config_path.parent)
            # each principal's own values for `${user:NAME}` in a server's env or headers (made on the first set)
            self.hub.user_secrets = self.hub.dispatcher.user_secrets = UserSecrets(config_path.parent)
            # template contexts signed with it render templates (onemcp proxy, the agent CLI): made when the
            # config has templates (at start or by a reload), not before
            self.hub.context_secret_maker = lambda: self._context_secret(config_path)
            if config.templates:
                self.hub.context_secret = self._context_secret(config_path)
        self.bind_host = bind_host
        self._guard_settings = config.hub
        self._public_url = base  # the hub's own pages are served from its origin
        self._guard = Guard(bind_host, config.hub.allowed_origins, config.hub.allowed_hosts, base)
        if shared is not None:
            if config_path is None:
                self.hub.saved = open_store(shared, None, config.hub.session_idle_timeout)
            # replicas on one Redis: server->client messages, client answers and parked calls reach the right one
            self.hub.share_with_replicas(shared)
            assert self.hub.replicas is not None  # a session ended through another replica: not revived here
            self.hub.replicas.ended_here = lambda sid: self.hub.saved.delete(sid)
            self.hub.replicas.back_here = self.hub.forget_ended  # ends missed while the link was down
        self.mcp = StreamableHttpEndpoint(self.hub, self.gate)
        self.legacy = LegacySseEndpoint(self.hub)
        self.on_shutdown: list[Callable[[], None]] = []  # e.g. removing runtime.json
        # The hub's tasks ended on an internal error while serving: the process is no use any more and
        # says so (/health/live 503), and the server stops (HubServer) for a supervisor to restart it.
        self.failed: str | None = None
        self.on_failure: list[Callable[[], None]] = []
        self.reloader = Reloader(self.hub, config_path) if config_path is not None else None
        if self.reloader is not None:
            self.reloader.load_presets()
        self.metrics.add_state(lambda: state_metrics(self.hub, self.reloader))
        self.metrics.serves = self._serves
        self.api = AdminApi(self.hub, self.gate, self.reloader, config_path)
        self.console = Console(self.api, bind_host)

    def _serves(self, server: str) -> bool:
        """A server (or template) name the hub still serves: configured, or its connection not gone yet (a
        removed server's calls drain): a removed one's request series go (`Metrics.forget_gone`)."""
        config = self.hub.config
        return server in config.enabled or server in config.templates or self.hub.pool.busy(server)

    @staticmethod
    def _context_secret(config_path: Path) -> bytes | None:
        try:
            return context.ensure_secret(config_path)
        except OSError as exc:
            log.warning("no template context key (%s): only credentials with scope 'templates' may send one", exc)
            return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    @property
    def guard(self) -> Guard:
        """The Origin/Host rules of the current config (a reload may change them)."""
        settings = self.hub.config.hub
        if settings is not self._guard_settings:
            self._guard_settings = settings
            self._guard = Guard(self.bind_host, settings.allowed_origins, settings.allowed_hosts, self._public_url)
        return self._guard

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] in MCP_PATHS and cors.matches(self.guard.cors, origin := asgi.header(scope, b"origin")):
            send = cors.adding(send, cors.response_headers(origin or ""))  # a listed page reads every answer
        response = asgi.Response(send)
        with self.hub.stopping.last() as cut:  # open when everything else stopped: ended below, not by uvicorn
            await self._route(scope, receive, response.send)
        if cut.cancelled_caught:
            await self._cut_off(scope, response)

    @staticmethod
    async def _cut_off(scope: Scope, response: asgi.Response) -> None:
        """End an exchange still open at the end of the shutdown grace in its own terms: a stream where it
        is, an MCP request with its JSON-RPC error (in a type it accepts), anything else with a 503."""
        with contextlib.suppress(OSError):
            if response.ended:
                return
            request = scope["method"] == "POST" and scope["path"] in MCP_PATHS
            error = {"code": UPSTREAM_UNAVAILABLE, "message": SHUTTING_DOWN}
            if response.status is not None:
                if request and response.events:  # a request's own event stream: its reply, then its end
                    body = jsonrpc.dumps(jsonrpc.error(asgi.rpc_id(scope), error))
                    await asgi.sse_chunk(response.send, b"event: message\ndata: " + body + b"\n\n")
                await asgi.end_stream(response.send)
            elif request:
                await asgi.send_result(response.send, scope, jsonrpc.dumps(jsonrpc.error(asgi.rpc_id(scope), error)))
            else:
                await asgi.send_json(response.send, 503, error_body(UPSTREAM_UNAVAILABLE, SHUTTING_DOWN))

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        try:
            guard = self.guard
            if path in ("/health/live", "/health/ready"):  # probes: to a Host refused, nothing a rebound page could use
                await self._health(path, send, named=guard.host_allowed(asgi.header(scope, b"host")))
                return
            twice = asgi.repeated(scope, GUARDED)
            if twice is not None:
                text = f"Bad Request: more than one {twice.decode().title()} header"
                await asgi.send_json(send, 400, error_body(INVALID_REQUEST, text))
                return
            # Host before anything else: a DNS-rebound page must read neither /health (authorization
            # links) nor the consent page
            if not guard.host_ok(host := asgi.header(scope, b"host")):
                await asgi.send_json(send, 421, error_body(INVALID_REQUEST, guard.host_refusal(host)))
                return
            if path.startswith("/health"):
                # servers, instances and what they were rendered for, pins, token counts: the operator's
                # view (as the admin API's), not every client's; the probes above stay open
                if await self.gate.admit(scope, send, check=lambda p: operator_needs(p, False)) is not None:
                    await self._health(path, send)
                return
            if path == schema.SERVED_PATH:  # the config's JSON Schema, for editors
                await asgi.send_bytes(send, 200, schema.SCHEMA_FILE.read_bytes(), b"application/schema+json")
                return
            if path.startswith(PRM_PATH):  # public metadata: a browser-based client on any origin reads it
                if scope["method"] == "OPTIONS":
                    await asgi.send_empty(send, 204, cors.PUBLIC_PREFLIGHT)
                else:
                    await asgi.send_json(send, 200, self.gate.metadata(scope), cors.PUBLIC)
                return
            if path.startswith(upstream_auth.NAVIGATED):  # a browser's redirect or link: `state` and cookies judge
                await upstream_auth.serve(self.hub, self.upstream_auth, self.gate, scope, receive, send)
                return
            upstream_oauth = path.startswith(upstream_auth.PREFIX)  # the hub's own, behind the Origin check
            if (
                self.gate.oauth is not None
                and not upstream_oauth
                and (
                    path.startswith(("/oauth/", "/.well-known/oauth-authorization-server"))
                    or path == "/.well-known/openid-configuration"
                    or self.gate.oauth.handles(path)
                )
            ):
                await self.gate.oauth.app(scope, receive, send)
                return
            if path == "/metrics":
                # read-only, as /health is (it names no more than /health does): a scraper's key need not
                # be one that changes the hub
                if await self.gate.admit(scope, send, check=lambda p: operator_needs(p, False)) is not None:
                    await self.hub.exposure.ready_to_report({})  # per-server token gauges
                    await asgi.send_bytes(send, 200, self.metrics.render(), CONTENT_TYPE.encode())
                return
            if path == "/favicon.ico":  # what a browser asks of every page it shows: no icon, and no 404 logged
                await asgi.send_bytes(send, 204, b"", b"image/x-icon", [(b"cache-control", b"max-age=86400")])
                return
            if not guard.origin_ok(origin := asgi.header(scope, b"origin")):
                await asgi.send_json(send, 403, error_body(INVALID_REQUEST, "Forbidden: invalid Origin header"))
                return
            if guard.blind_cross_site(origin, asgi.header(scope, b"sec-fetch-site")) and _entry_point(path):
                text = "Forbidden: a cross-site browser request without an Origin header (an <img>, a link)"
                await asgi.send_json(send, 403, error_body(INVALID_REQUEST, text))
                return
            if path in MCP_PATHS and scope["method"] == "OPTIONS" and origin is not None:
                await self._preflight(scope, origin, send)
                return
            if upstream_oauth:  # the listing and logouts: an API, behind the Origin check
                await upstream_auth.serve(self.hub, self.upstream_auth, self.gate, scope, receive, send)
                return
            if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                await self.api(scope, receive, send)
                return
            if path in my_secrets_page.PATHS:  # the page for people; the endpoint below does the work
                await my_secrets_page.serve(ask_key=self.gate.required, send=send, method=scope["method"])
                return
            if path == my_secrets.PREFIX or path.startswith(my_secrets.PREFIX + "/"):
                await my_secrets.serve(self.hub, self.gate, scope, receive, send)
                return
            if path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/"):
                await self.console(scope, receive, send)
                return
            if path not in MCP_PATHS:
                await asgi.send_json(
                    send,
                    404,
                    {
                        "error": "not found",
                        "endpoints": ["/mcp", "/sse", "/health", "/api/v1", "/ui", "/me", "/me/secrets"],
                    },
                )
                return
            # every MCP entry gets the admitted principal as an argument: none can run without one
            principal = await self.gate.admit(scope, send)
            if principal is None:
                return
            # counted for its principal while it is open (a stream: as one of its streams too)
            # (a legacy POST only once it is known to carry a request: streamable.py; /messages answers at once)
            listen = (asgi.header(scope, b"mcp-method") or "").strip() == "subscriptions/listen"
            stream = scope["method"] == "GET" or listen
            modern = (asgi.header(scope, b"mcp-protocol-version") or "").strip() in MODERN_VERSIONS
            held = self.gate.held.holding(principal, self.hub.limits, stream=stream, refusable=stream or modern)
            with held as refusal:
                if refusal is not None:
                    body = jsonrpc.error(None, refusal.to_error())
                    await asgi.send_json(send, refusal.status, body, REFUSAL_HEADERS)
                    return
                await self._entry(path, scope, receive, send, principal)
        except OSError:
            pass  # the client went away mid-response
        except Exception:
            log.exception("unhandled error serving %s %s", scope["method"], path)
            with contextlib.suppress(Exception):
                await asgi.send_json(send, 500, error_body(INTERNAL_ERROR, "Internal error in onemcp"))

    async def _preflight(self, scope: Scope, origin: str, send: Send) -> None:
        """A browser's CORS preflight for an MCP entry: answered for the origins allowedOrigins names."""
        if not cors.matches(self.guard.cors, origin):
            text = f"CORS: origin {origin[:100]!r} is not listed in onemcp.allowedOrigins"
            await asgi.send_json(send, 403, error_body(INVALID_REQUEST, text), [cors.VARY])
            return
        requested = asgi.header(scope, b"access-control-request-headers")  # the origin's headers: _http
        await asgi.send_empty(send, 204, cors.preflight_headers(requested))

    async def _entry(self, path: str, scope: Scope, receive: Receive, send: Send, principal: Principal) -> None:
        """An MCP entry's request, its principal admitted."""
        if scope["method"] == "GET":  # a stream stays open: it ends when its credential does
            receive = self.gate.guarded(scope, principal, receive)
        if path == "/mcp" or path == "/mcp/":
            await self.mcp(scope, receive, send, principal)
        elif path == "/sse":
            await self.legacy.stream(scope, receive, send, principal)
        else:
            await self.legacy.message(scope, receive, send, principal)

    async def _health(self, path: str, send: Send, *, named: bool = True) -> None:
        """`named`: the probes may name servers and failures (not to a Host the guard refuses)."""
        if path == "/health":
            # the link only where nobody else can follow it: one who could would authorize as themselves
            await self.hub.exposure.ready_to_report(self.hub.preset_reaches())
            doc = health(self.hub, links=not self.gate.required)
            await self.hub.upstream_auth.links_written()  # a link in it works at any replica
            if self.reloader is not None:
                doc["config"] = self.reloader.status()
                if (self.reloader.last_error or self.reloader.restart_needed) and doc["status"] == "ok":
                    doc["status"] = "degraded"
            await asgi.send_json(send, 200, doc)
        elif path == "/health/live":
            live = self.failed is None
            said = {} if live or not named else {"error": self.failed}
            await asgi.send_json(send, 200 if live else 503, {"live": live, **said})
        elif path == "/health/ready":
            ok, doc = ready(self.hub)
            if self.gate.required or not named:  # an open probe: which servers run is the operator's (/health)
                doc.pop("upstreams", None)
            await asgi.send_json(send, 200 if ok else 503, doc)
        else:
            await asgi.send_json(send, 404, {"error": "not found"})

    def server_config(self, **options: Any) -> uvicorn.Config:
        """uvicorn's config for serving this app: the hub's HTTP/1.1 protocol, with the live limits."""
        return http11.server_config(self, lambda: self.hub.limits, **options)

    def begin_shutdown(self) -> None:
        """The server is stopping: end long-lived streams gracefully before it waits on them: 2026-07-28
        listen streams, and the GET and /sse streams of sessions with nothing being answered (the server
        would wait the whole grace on them). A busy session's stream still carries what its requests
        send; the cut-off at the end of the grace ends it (hub/stopping.py)."""
        self.hub.finish_listeners()
        for session in list(self.hub.sessions):
            if not session.in_flight and not self.legacy.answering(session.id):
                session.end_streams()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message: dict[str, Any] = dict(await receive())
        assert message["type"] == "lifespan.startup"
        started = False
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self.hub.run)
                if self.reloader is not None:
                    await tg.start(self.reloader.run)
                self.legacy.tg = tg
                await send({"type": "lifespan.startup.complete"})
                started = True
                while (await receive())["type"] != "lifespan.shutdown":
                    pass
                tg.cancel_scope.cancel()
        except Exception as exc:
            log.exception("the hub stopped on an internal error")
            if started:
                self.failed = f"the hub stopped on an internal error: {exc!r}"
                for hook in self.on_failure:
                    hook()
            kind = "shutdown" if started else "startup"
            await send({"type": f"lifespan.{kind}.failed", "message": str(exc)})
            return
        for hook in self.on_shutdown:
            hook()
        self.upstream_auth.close()
        self.hub.saved.close()
        await send({"type": "lifespan.shutdown.complete"})


class HubServer(uvicorn.Server):
    """uvicorn, letting the hub end its streams gracefully before uvicorn waits for them to close, ending
    the calls still running after the grace with a JSON-RPC error (uvicorn would cancel them: a bare 500
    and a traceback), and stopping when the hub failed while serving (uvicorn alone would go on
    answering with a dead hub)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.grace: float | None = config.timeout_graceful_shutdown
        if isinstance(config.app, OneMcpApp):
            config.app.on_failure.append(lambda: setattr(self, "should_exit", True))
            if self.grace is not None:  # uvicorn's own cancel comes later: the hub's errors are written first
                config.timeout_graceful_shutdown = math.ceil(self.grace + FINISH)

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        app = self.config.app
        if isinstance(app, OneMcpApp):
            app.begin_shutdown()
        if not isinstance(app, OneMcpApp) or self.grace is None:
            await super().shutdown(sockets)
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._cut_off, app, self.grace)
            await super().shutdown(sockets)
            tg.cancel_scope.cancel()

    @staticmethod
    async def _cut_off(app: OneMcpApp, grace: float) -> None:
        await anyio.sleep(grace)
        cut = await app.hub.stopping.cut_off()
        if cut:
            log.warning("%d request(s) still being answered after the %gs grace: ended (%s)", cut, grace, SHUTTING_DOWN)
