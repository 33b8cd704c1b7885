"""The admin REST API under /api/v1: what the hub is doing, and the operator's actions on it.

Owns the routes (listed once in `ROUTES`, from which the OpenAPI document is made; each route's
body is an `admin.schema.Body`, checked and documented from that one definition), reading
and answering JSON, and the audit line of every change. Who may do what is the one operator
decision (`auth.access.operator_needs`: viewing needs `admin` or `operator`, changing needs
`admin`), asked through the gate like `/mcp` and `/metrics`; a browser's unsafe request also
needs the console's CSRF token (`admin.console`). Config edits go through `config.edit` as
`onemcp mcp ...` does (validated, atomic, backed up) and are applied by the reloader at once;
presets through `config.presets` as `onemcp preset ...` does. Does not render pages (`console`).
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import orjson

from onemcp import __version__
from onemcp.admin import event_stream, schema, user_values
from onemcp.admin.errors import ApiError
from onemcp.admin.routing import Request, Route
from onemcp.auth.access import ADMIN_API, operator_needs
from onemcp.auth.gate import Gate
from onemcp.config import presets as preset_files
from onemcp.config.edit import EditError, NoSuchServer, add_server, edit_config, remove_server, set_disabled
from onemcp.config.load import ConfigError, environment
from onemcp.downstream.exchange import answer
from onemcp.downstream.health import health
from onemcp.http import asgi
from onemcp.http.asgi import Receive, Scope, Send
from onemcp.hub.core import Hub
from onemcp.hub.exposure import load_counter
from onemcp.hub.session import Session, client_shown
from onemcp.observability.redact import REDACTOR
from onemcp.protocol import jsonrpc, meta
from onemcp.protocol.errors import HubError, NotFound, echo
from onemcp.protocol.names import shown_as
from onemcp.protocol.versions import MODERN_VERSIONS
from onemcp.reload import APPLIED, UNCHANGED, Reloader

PREFIX = "/api/v1"
CONSOLE = {"name": "onemcp-console", "version": __version__}  # who calls a tool through this API
TOOLS_QUERY = ("q", "server", "limit")  # GET /tools
MAX_LIMIT = 1000  # tools in one answer of GET /tools
audit = logging.getLogger("onemcp.audit")
log = logging.getLogger("onemcp.admin")


def rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


class AdminApi:
    def __init__(self, hub: Hub, gate: Gate, reloader: Reloader | None, config_path: Path | None) -> None:
        self.hub = hub
        self.gate = gate
        self.reloader = reloader
        self.config_path = config_path
        self.started = time.time()
        self._ids = itertools.count(1)
        # the console's CSRF check (a browser on a hub without auth)
        self.csrf_ok: Callable[[Scope], bool] = lambda scope: True

    # ------------------------------------------------------------------ dispatch
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"][len(PREFIX) :].rstrip("/") or "/"
        method = scope["method"]
        found = [(r, m) for r in ROUTES if (m := r.regex.match(path))]
        if not found:
            await asgi.send_json(
                send, 404, {"error": f"no such endpoint: {scope['path']}", "see": f"{PREFIX}/openapi.json"}
            )
            return
        match = next(((r, m) for r, m in found if r.method == method), None)
        if match is None:
            allow = ", ".join(sorted({r.method for r, _ in found}))
            await asgi.send_json(send, 405, {"error": f"{method} not allowed here"}, [(b"allow", allow.encode())])
            return
        route, m = match
        principal = await self.gate.admit(scope, send, check=lambda p: operator_needs(p, route.change))
        if principal is None:
            return
        if route.change and not self.csrf_ok(scope):
            audit.info("auth denied principal=%s entry=admin path=%s reason=csrf", principal.id, scope["path"])
            await asgi.send_json(send, 403, {"error": "missing or wrong CSRF token (x-onemcp-csrf)"})
            return
        request = Request(scope, receive, principal, m.groupdict(), route.body)
        if twice := request.repeated:
            await asgi.send_json(send, 400, {"error": f"parameter(s) given more than once: {echo(', '.join(twice))}"})
            return
        if unknown := sorted(set(request.query).difference(route.query)):
            expected = ", ".join(route.query) or "none"
            await asgi.send_json(
                send, 400, {"error": f"unknown parameter(s): {echo(', '.join(unknown))}; expected: {expected}"}
            )
            return
        if route.stream:  # it stays open: it ends when its credential does (checked again as /mcp's streams)
            guarded = Request(scope, self.gate.guarded(scope, principal, receive), principal, m.groupdict())
            await self.events(guarded, send)
            return
        try:
            doc = await route.handler(self, request)
        except ApiError as exc:
            await asgi.send_json(send, exc.status, {"error": exc.message})
            return
        except HubError as exc:
            await asgi.send_json(send, 404 if exc.code == -32002 else 400, {"error": exc.message})
            return
        await asgi.send_json(send, 200, doc)

    def _audit(self, request: Request, action: str, target: str, outcome: str = "ok") -> None:
        self.audit_change(request.principal.id, action, target, outcome)

    @staticmethod
    def audit_change(who: str, action: str, target: str, outcome: str = "ok") -> None:
        audit.info("admin principal=%s action=%s target=%s outcome=%s", who, action, target, outcome)

    @staticmethod
    def audit_refusal(who: str, reason: str) -> None:
        audit.info("auth denied principal=%s entry=admin reason=%s", who, reason)

    # ------------------------------------------------------------------ the hub
    async def summary(self, request: Request) -> dict[str, Any]:
        state = self.hub.state
        states = state.states()
        return {
            "version": __version__,
            "uptimeSeconds": round(time.time() - self.started, 1),
            "memoryMiB": rss_mib(),
            "pid": os.getpid(),
            "sessions": state.sessions(),
            "listenStreams": state.listen_streams(),
            "config": str(self.config_path) if self.config_path else None,
            "reload": self.reloader.status() if self.reloader is not None else None,
            "servers": {s: sum(1 for v in states.values() if v == s) for s in sorted(set(states.values()))},
            "instances": len(self.hub.instances.running()),
            "events": {"watchers": self.hub.bus.watchers, "dropped": self.hub.bus.dropped},
        }

    async def openapi(self, request: Request) -> dict[str, Any]:
        """The document of this hub's API: 401/403 when it takes credentials, 429 when it limits the rate."""
        rate_limited = self.gate.limiter is not None
        return schema.openapi(ROUTES, PREFIX, __version__, auth=self.gate.required, rate_limited=rate_limited)

    # ------------------------------------------------------------------ servers
    async def _servers(self) -> dict[str, dict[str, Any]]:
        await self.hub.exposure.ready_to_report(self.hub.preset_reaches())
        doc = health(self.hub, links=not self.gate.required)
        await self.hub.upstream_auth.links_written()  # a link in it works at any replica
        out: dict[str, dict[str, Any]] = {}
        for name, entry in doc["upstreams"].items():
            conn = self.hub.pool.get(name)
            tail = getattr(conn.transport, "stderr_tail", None) if conn is not None else None
            era = conn.era if conn is not None else None
            out[name] = {"name": name, **entry, "era": era, "stderrTail": [REDACTOR.shown(line) for line in tail or ()]}
        return out

    async def servers(self, request: Request) -> dict[str, Any]:
        return {"servers": list((await self._servers()).values())}

    async def server(self, request: Request) -> dict[str, Any]:
        name = request.params["name"]
        found = (await self._servers()).get(name)
        if found is None:
            raise ApiError(404, f"no server {name!r}")
        tools = [item.get("name") for item, owner, _ in self.hub.catalog.placed("tools") if owner == name]
        errors = [e for e in self.hub.bus.failures if e.get("server") == name]
        return {**found, "toolNames": tools, "recentErrors": errors[-20:]}

    async def restart(self, request: Request) -> dict[str, Any]:
        name = request.params["name"]
        await request.json()
        try:
            await self.hub.restart_server(name)  # a configured server, or a running template instance
        except NotFound as exc:
            known = name in self.hub.config.servers  # (a disabled one: there is nothing running to restart)
            raise ApiError(400 if known else 404, exc.message) from None
        self._audit(request, "restart", name)
        return {"restarted": name}

    def _config_path(self) -> Path:
        if self.config_path is None or self.reloader is None:
            raise ApiError(409, "this hub was not started from a config file: nothing to edit")
        return self.config_path

    async def _edit(
        self, request: Request, action: str, name: str, change: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        path = self._config_path()
        try:
            # on a worker thread: another editor (the CLI) may hold the file's lock for seconds
            edit = functools.partial(edit_config, path, change, env=environment(path), running=True)
            result = await anyio.to_thread.run_sync(edit)
        except (EditError, ConfigError) as exc:
            self._audit(request, action, name, "refused")
            raise ApiError(404 if isinstance(exc, NoSuchServer) else 400, f"not changed: {exc}") from None
        except OSError as exc:
            raise ApiError(500, f"cannot write {path}: {exc.strerror or exc}") from None
        assert self.reloader is not None
        reply: dict[str, Any] = {"changed": result.changed, "backup": str(result.backup) if result.backup else None}
        if result.changed:  # (the watch may have read the new file first: the reload finds it served, applied too)
            reply |= {"applied": await self.reloader.reload(), "unchanged": False}
        else:  # the file already said so: nothing written, nothing to apply
            detail = "unchanged: the file already says so (nothing written, nothing reloaded)"
            reply |= {"applied": False, "unchanged": True, "detail": detail}
        self._audit(request, action, name, "ok" if result.changed else "unchanged")
        return {**reply, "reload": self.reloader.status()}

    async def add(self, request: Request) -> dict[str, Any]:
        body = await request.json()  # (schema.ADD_SERVER: name and server given, replace a boolean)
        name, entry, replace = body["name"], body["server"], body.get("replace", False)
        return await self._edit(request, "add", name, lambda doc: add_server(doc, name, entry, replace=replace))

    async def remove(self, request: Request) -> dict[str, Any]:
        name = request.params["name"]
        await request.json()  # takes no body: one that says something is refused, not ignored
        return await self._edit(request, "remove", name, lambda doc: remove_server(doc, name))

    async def enable(self, request: Request) -> dict[str, Any]:
        name = request.params["name"]
        await request.json()  # takes no body: one that says something is refused, not ignored
        return await self._edit(request, "enable", name, lambda doc: set_disabled(doc, name, False))

    async def disable(self, request: Request) -> dict[str, Any]:
        name = request.params["name"]
        await request.json()  # takes no body: one that says something is refused, not ignored
        return await self._edit(request, "disable", name, lambda doc: set_disabled(doc, name, True))

    async def reload(self, request: Request) -> dict[str, Any]:
        await request.json()
        if self.reloader is None:
            raise ApiError(409, "this hub was not started from a config file: nothing to reload")
        outcome = await self.reloader.reload_outcome()
        self._audit(request, "reload", str(self.config_path), "ok" if outcome == APPLIED else outcome)
        reply: dict[str, Any] = {"applied": outcome == APPLIED, "unchanged": outcome == UNCHANGED}
        if outcome == UNCHANGED:  # nothing was reloaded: not "applied", and not refused either
            reply["detail"] = "unchanged: the file is the same as the config served"
        return {**reply, "reload": self.reloader.status()}

    # ------------------------------------------------------------------ pinned tool definitions
    async def pins(self, request: Request) -> dict[str, Any]:
        return {
            "mode": self.hub.config.hub.pin_tool_definitions,
            "changed": [
                {**change.as_json(), "mode": self.hub.pin_mode(change.server)} for change in self.hub.pins.changes()
            ],
        }

    async def approve(self, request: Request) -> dict[str, Any]:
        server, tool = request.params["server"], request.params.get("tool")
        body = await request.json()  # (schema.APPROVE: tools, a list of names, or none)
        tools = [tool] if tool is not None else body.get("tools")
        known = set(self.hub.config.servers) | set(self.hub.config.templates)
        if server not in known:
            raise ApiError(404, f"no server {server!r} in the config")
        pending = {c.tool for c in self.hub.pins.changes() if c.server == server}
        listed = {original for _, owner, original, _ in self.hub.catalog.entries("tools") if shown_as(owner) == server}
        if listed and (nosuch := sorted(set(tools or ()) - pending - listed)):
            raise ApiError(404, f"server {server!r} has no tool named {', '.join(map(repr, nosuch))}")
        unchanged = sorted(set(tools or ()) - pending)
        approved = self.hub.approve_tools(server, tools)
        for name in approved:
            self._audit(request, "approve", f"{server}/{name}")
        return {
            "approved": [f"{server}/{name}" for name in approved],
            "unchanged": [f"{server}/{t}" for t in unchanged],
        }

    # ------------------------------------------------------------------ tools
    async def tools(self, request: Request) -> dict[str, Any]:
        query = request.query
        server, text, limit_text = query.get("server"), query.get("q", "").strip(), query.get("limit", "50")
        if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= MAX_LIMIT:
            raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit_text!r}")
        limit = int(limit_text)
        every = self.hub.catalog.placed("tools")
        if server is not None and server not in {owner for _, owner, _ in every} | set(self.hub.config.servers):
            raise ApiError(404, f"no server {server!r}")
        placed = [(item, owner) for item, owner, _ in every if server in (None, owner)]
        await load_counter()  # each tool's count: the vocabulary loaded off the event loop, not on it
        tokens = self.hub.exposure.tool_tokens
        if text:
            exposure = self.hub.exposure
            vector = await exposure.query_vector(text)
            placed, total = exposure.find(text, limit, exposure.placed_allowed(server), vector)
        else:
            total = len(placed)
        items = [
            {
                "name": item.get("name"),
                "server": owner,
                "title": item.get("title"),
                "description": item.get("description"),
                "inputSchema": item.get("inputSchema"),
                "tokens": tokens(item),
            }
            for item, owner in placed[:limit]
        ]
        return {"tools": items, "total": total}  # with `q`: how many were searched, not how many were found

    async def call(self, request: Request) -> dict[str, Any]:
        name = request.params["name"]
        arguments = (await request.json()).get("arguments", {})  # (schema.CALL: an object)
        access = self.hub.access(request.principal, ADMIN_API)
        session = Session(
            access=access,
            id=f"admin-{next(self._ids)}",
            transport="modern",
            protocol_version="2025-11-25",
            client_info=CONSOLE,
            initialized=True,
            ephemeral=True,
        )
        msg: jsonrpc.Message = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            # as a 2026-07-28 client's call: its envelope, which a modern upstream needs (it asks nothing back)
            "params": {
                "name": name,
                "arguments": arguments,
                "_meta": {
                    meta.PROTOCOL_VERSION: MODERN_VERSIONS[-1],
                    meta.CLIENT_CAPABILITIES: {},
                    meta.CLIENT_INFO: CONSOLE,
                },
            },
        }
        started = time.perf_counter()

        async def emit(_: jsonrpc.Message) -> None:
            return None

        reply = await answer(self.hub, session, msg, emit, bounded=False)  # an HTTP exchange: app.py ends it
        ms = round((time.perf_counter() - started) * 1000, 1)
        self._audit(request, "call", name, "ok" if reply is not None and "error" not in str(reply)[:200] else "error")
        if reply is None:
            raise ApiError(504, "the call was cancelled")
        doc = orjson.loads(reply) if isinstance(reply, bytes) else reply
        if "error" in doc:
            return {"error": doc["error"], "ms": ms}
        return {"result": doc.get("result"), "ms": ms}

    # ------------------------------------------------------------------ sessions
    async def sessions(self, request: Request) -> dict[str, Any]:
        now = time.monotonic()
        out = []
        for session in self.hub.sessions:
            view = session.access.view
            out.append(
                {
                    "id": session.id[:8],
                    "transport": session.transport,
                    "protocolVersion": session.protocol_version,
                    "client": client_shown(session.client_info),
                    "principal": session.access.principal.id,
                    "view": None if view is None else repr(view),
                    "idleSeconds": round(now - session.last_seen, 1),
                    "instances": sorted(session.access.reach.instances),
                }
            )
        return {"sessions": out}

    # ------------------------------------------------------------------ presets
    def _presets_path(self) -> Path:
        return preset_files.presets_path(self._config_path())

    async def presets(self, request: Request) -> dict[str, Any]:
        if self.config_path is None:
            return {"presets": {name: {"filter": f} for name, f in self.hub.presets.items()}}
        try:
            return {"presets": preset_files.load_presets(self._presets_path())}
        except preset_files.PresetError as exc:
            raise ApiError(500, str(exc)) from None

    async def put_preset(self, request: Request) -> dict[str, Any]:
        name = request.params["name"]
        body = await request.json()  # (schema.PRESET)
        problem = preset_files.name_problem(name)
        if problem:
            raise ApiError(400, f"preset name {name!r}: {problem}")
        entry = {k: v for k, v in body.items() if k in ("filter", "description", "exposure") and v not in (None, "")}
        path = self._presets_path()
        try:
            await anyio.to_thread.run_sync(preset_files.put, path, name, entry)  # the lock may be held a while
        except preset_files.PresetError as exc:
            self._audit(request, "preset-save", name, "refused")
            raise ApiError(400, str(exc)) from None
        except OSError as exc:  # another edit held the lock too long, the directory is read-only...
            raise ApiError(500, f"cannot write {path}: {exc.strerror or exc}") from None
        assert self.reloader is not None
        await self.reloader.presets_edited()
        self._audit(request, "preset-save", name)
        return {"saved": name, "preset": entry}

    async def delete_preset(self, request: Request) -> dict[str, Any]:
        name = request.params["name"]
        await request.json()  # takes no body: one that says something is refused, not ignored
        path = self._presets_path()
        try:
            if not await anyio.to_thread.run_sync(preset_files.remove, path, name):
                raise ApiError(404, f"no preset {name!r}")
        except preset_files.PresetError as exc:  # presets.json is being edited, or broken: said, not a 500
            raise ApiError(400, str(exc)) from None
        except OSError as exc:
            raise ApiError(500, f"cannot write {path}: {exc.strerror or exc}") from None
        assert self.reloader is not None
        await self.reloader.presets_edited()
        self._audit(request, "preset-delete", name)
        return {"deleted": name}

    # ------------------------------------------------------------------ events
    async def payloads(self, request: Request) -> dict[str, Any]:
        on = (await request.json())["on"]  # (schema.PAYLOADS: a boolean)
        self.hub.bus.with_payloads = on
        self._audit(request, "event-payloads", "on" if on else "off")
        return {"withPayloads": on}

    async def events(self, request: Request, send: Send) -> None:
        """Server-sent events: every call, state change and log line from now on (recent ones first)."""
        await event_stream.serve(self.hub.bus, request, send, self.gate.held, self.hub.limits)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/", "The hub: version, uptime, memory, sessions, config and reload state", False, AdminApi.summary),
    Route("GET", "/openapi.json", "This API as an OpenAPI 3.1 document", False, AdminApi.openapi),
    Route(
        "GET",
        "/servers",
        "Every server: state, transport, era, pid, restarts, breaker, counts, tokens, stderr",
        False,
        AdminApi.servers,
    ),
    Route(
        "POST",
        "/servers",
        "Add a server to mcp.json ({name, server, replace?}) and apply it",
        True,
        AdminApi.add,
        body=schema.ADD_SERVER,
        fails=(409, 500),
    ),
    Route(
        "GET",
        "/servers/{name}",
        "One server, with its tool names and recent failed calls",
        False,
        AdminApi.server,
        fails=(404,),
    ),
    Route(
        "DELETE",
        "/servers/{name}",
        "Remove a server from mcp.json and apply it",
        True,
        AdminApi.remove,
        fails=(404, 409, 500),
    ),
    Route("POST", "/servers/{name}/restart", "Stop a server and start it again", True, AdminApi.restart, fails=(404,)),
    Route(
        "POST",
        "/servers/{name}/enable",
        "Enable a server in mcp.json and apply it",
        True,
        AdminApi.enable,
        fails=(404, 409, 500),
    ),
    Route(
        "POST",
        "/servers/{name}/disable",
        "Disable a server in mcp.json and apply it",
        True,
        AdminApi.disable,
        fails=(404, 409, 500),
    ),
    Route(
        "GET",
        "/tools",
        "Tools (?q= searches, ?server=, ?limit=) with schema and token cost",
        False,
        AdminApi.tools,
        query=TOOLS_QUERY,
        fails=(404,),
    ),
    Route(
        "POST",
        "/tools/{name}/call",
        "Call a tool ({arguments}) as the operator",
        True,
        AdminApi.call,
        body=schema.CALL,
        fails=(504,),
    ),
    Route("GET", "/sessions", "Live sessions: client, principal, view, idle time", False, AdminApi.sessions),
    Route("GET", "/presets", "The presets (presets.json beside mcp.json)", False, AdminApi.presets, fails=(500,)),
    Route(
        "PUT",
        "/presets/{name}",
        "Create or replace a preset ({filter, description?, exposure?})",
        True,
        AdminApi.put_preset,
        body=schema.PRESET,
        fails=(409,),
    ),
    Route("DELETE", "/presets/{name}", "Delete a preset", True, AdminApi.delete_preset, fails=(404, 409)),
    Route("POST", "/reload", "Read mcp.json again and apply it", True, AdminApi.reload, fails=(409,)),
    Route("GET", "/pins", "Tools whose definition changed since approved, with a diff each", False, AdminApi.pins),
    Route(
        "POST",
        "/pins/{server}/approve",
        "Approve a server's changed tools (all, or {tools})",
        True,
        AdminApi.approve,
        body=schema.APPROVE,
        fails=(404,),
    ),
    Route(
        "POST",
        "/pins/{server}/{tool}/approve",
        "Approve one tool's changed definition",
        True,
        AdminApi.approve,
        fails=(404,),
    ),
    Route(
        "GET", "/events", "Server-sent events: calls, state changes, log lines", False, AdminApi.summary, stream=True
    ),
    Route(
        "POST",
        "/events/payloads",
        "Include call arguments in events ({on})",
        True,
        AdminApi.payloads,
        body=schema.PAYLOADS,
    ),
    Route(
        "GET",
        "/user-secrets",
        "Who has which ${user:NAME} value, when (never a value)",
        False,
        user_values.listing,
        fails=(503,),
    ),
    Route(
        "DELETE",
        "/user-secrets",
        "Forget one principal's value (?principal=&name=)",
        True,
        user_values.forget,
        query=user_values.FORGET_QUERY,
        query_required=True,
        fails=(404, 503),
    ),
)
