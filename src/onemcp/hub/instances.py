"""Template server instances: which ones a requester is bound to, starting them on demand, reaping idle ones.

Owns the instances of every `mcpTemplates` entry, each keyed by template + the hash of the config
it rendered to (`<template>@<hash>`; a per-session template's hash covers the session too), so
requesters whose contexts render the same config share one. Binding renders every template for a
requester's context (only a trusted context renders any: `Access.trusted`); `ensure` starts the
bound instances that are not running (within `maxInstances` and the hub-wide
`maxTemplateInstances`) and waits, bounded, until each was tried; an instance no live session is
bound to and nobody used for its template's `idleTimeout` is stopped. Starting and stopping are
the hub's (`start`/`stop` callbacks: the pool supervises an instance like any server, the catalog
lists it). Does not decide what a requester may see of an instance (`Reach`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from onemcp.auth.access import Access
from onemcp.catalog.catalog import Catalog
from onemcp.config.model import Limits, ServerConfig, ServerTemplate
from onemcp.config.templates import TemplateError, digest, render, rendered_tags
from onemcp.observability.limits import hit
from onemcp.observability.redact import REDACTOR, SECRET_NAME
from onemcp.protocol.errors import INSTANCE_LIMIT_STATUS, HubError, InvalidParams, LimitReached, NotFound
from onemcp.protocol.methods import KIND_BY_METHOD
from onemcp.protocol.names import INSTANCE_MARK

log = logging.getLogger("onemcp.templates")
audit = logging.getLogger("onemcp.audit")
T = TypeVar("T")
# requests a template instance may answer (by name, URI or task id); the rest (ping, logging/setLevel,
# tasks/list, ...) are answered without starting any instance
NAMED = frozenset(
    {
        "tools/call",
        "prompts/get",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "completion/complete",
        "tasks/get",
        "tasks/result",
        "tasks/cancel",
    }
)


@dataclass
class Instance:
    id: str  # <template>@<hash>
    template: str
    config: ServerConfig
    shareable: bool
    summary: dict[str, str]  # what it was rendered for (project path and name, client), for reports
    sessions: set[str] = field(default_factory=set)  # live sessions bound to it
    last_used: float = field(default_factory=time.monotonic)
    running: bool = False
    started_at: float | None = None
    start_seconds: float | None = None  # from start to tried (ready or failed), the last time
    stale: bool = False  # a reload changed its template while a request waited for its start: stopped once unheld


def context_of(access: Access, session_id: str, client_info: Mapping[str, Any], era: str) -> dict[str, Any]:
    """The values a template renders from: project.*, client.*, session.*, transport.*, user.*."""
    sent = dict(access.context or {})
    # a 2026-07-28 request has no session of its own: only one its client names (signed) counts
    session = sent.get("session") or (session_id if era == "legacy" else "")
    sent_project = sent.get("project")
    project: dict[str, Any] = sent_project if isinstance(sent_project, dict) else {}
    principal = access.principal
    return {
        "project": {"custom": {}, "environment": "", "git": {}, **project},
        "client": {k: str(client_info.get(k) or "") for k in ("name", "version", "title")},
        "session": {"id": str(session)},
        "transport": {"entry": access.entry, "era": era},
        "user": {"id": principal.id, "kind": principal.kind, "scopes": sorted(principal.scopes)},
    }


class TemplateInstances:
    def __init__(
        self,
        templates: Callable[[], Mapping[str, ServerTemplate]],
        limits: Callable[[], Limits],
        start: Callable[[Instance], Awaitable[bool]],
        stop: Callable[[Instance], Awaitable[None]],
    ) -> None:
        self.templates = templates
        self.limits = limits
        self._start = start  # adds it to the pool and catalog and waits until it was tried: ready?
        self._stop = stop
        self.instances: dict[str, Instance] = {}
        self._starting: dict[str, anyio.Event] = {}

    # ------------------------------------------------------------------ binding
    def bind(self, access: Access, session_id: str, client_info: Mapping[str, Any], era: str) -> frozenset[str]:
        """The instances `access`'s context renders to (none for an untrusted one, nor of a template out of its
        reach: `Access.runs`); InvalidParams names a field that does not render. A session id binds the
        session to them until `release`."""
        templates = self.templates()
        if not access.trusted or not templates:
            return frozenset()
        context = context_of(access, session_id, client_info, era)
        bound: set[str] = set()
        for name, template in templates.items():
            try:
                tags = rendered_tags(name, template, context)
            except TemplateError:
                tags = []  # then reached by its name alone (its error is said below, to whoever reaches it)
            if not access.runs(name, tags):
                continue  # out of its scopes or view: nothing of it runs, or is said, for this requester
            try:
                config = render(name, template, context)
            except TemplateError as exc:
                log.warning("template %s for principal %s: %s", name, access.principal.id, exc)
                raise InvalidParams(f"cannot render template server {name!r}: {exc}") from None
            if config.disabled:
                continue
            key = digest(config)
            if not template.template.shareable:
                if not context["session"]["id"]:
                    continue  # per session, but no session: a 2026-07-28 request whose client names none
                key = hashlib.sha256(f"{key}:{context['session']['id']}".encode()).hexdigest()
            instance_id = f"{name}{INSTANCE_MARK}{key[:12]}"
            instance = self.instances.get(instance_id)
            if instance is None:
                project = context["project"]
                summary = {
                    "project": str(project.get("path", "")),
                    "name": str(project.get("name", "")),
                    "client": context["client"]["name"],
                }
                instance = Instance(instance_id, name, config, template.template.shareable, summary)
                self.instances[instance_id] = instance
                named = [*config.env.items(), *config.headers.items()]
                REDACTOR.add(v for k, v in named if SECRET_NAME.search(k))  # masked like a server's
            if era == "legacy":  # a session holds its instances until it ends; a 2026-07-28 request uses them
                instance.sessions.add(session_id)
            instance.last_used = time.monotonic()
            bound.add(instance_id)
        return frozenset(bound)

    def release(self, session_id: str) -> None:
        """A session ended: it holds its instances no more (they idle out after their `idleTimeout`)."""
        now = time.monotonic()
        for instance in self.instances.values():
            if session_id in instance.sessions:
                instance.sessions.discard(session_id)
                instance.last_used = now

    def tags(self) -> dict[str, list[str]]:
        """Each known instance's rendered tags (views and scopes by tag decide on them)."""
        return {i.id: i.config.tags for i in self.instances.values()}

    def running(self) -> list[Instance]:
        return [i for i in self.instances.values() if i.running]

    # ------------------------------------------------------------------ running
    async def ensure(self, ids: Iterable[str]) -> None:
        """Start every instance in `ids` that is not running, and wait (bounded) until each was tried.

        LimitReached when a template's `maxInstances` or the hub's `maxTemplateInstances` is reached.
        """
        now = time.monotonic()
        waiting = []
        for instance_id in ids:
            instance = self.instances.get(instance_id)
            if instance is None:
                continue
            instance.last_used = now
            started = self._starting.get(instance_id)
            if started is None and instance.running:
                continue  # running (a start under way is `running` too: it is waited for below)
            if started is None:
                self._check_caps(instance)
                started = self._starting[instance_id] = anyio.Event()
                instance.running = True
                instance.started_at = time.monotonic()
                try:
                    await self._start(instance)
                finally:
                    instance.start_seconds = time.monotonic() - instance.started_at
                    del self._starting[instance_id]
                    started.set()
            else:
                waiting.append(started)
        for event in waiting:
            await event.wait()

    async def ensure_quietly(self, ids: Iterable[str], done: Callable[[], None]) -> None:
        """`ensure` in the background (a reload's new instances): a refusal is logged; `done` is called after."""
        try:
            await self.ensure(ids)
        except HubError as exc:
            log.warning("template instances after a reload: %s", exc)
        finally:
            done()

    async def ready(self, ids: Iterable[str]) -> dict[str, LimitReached]:
        """`ensure` each, as far as each may start: a requester's capabilities rest on its instances;
        one at its cap is said by the requests that need it (`serving`), not here. The refusals, by
        template."""
        refused: dict[str, LimitReached] = {}
        for instance_id in sorted(ids):
            try:
                await self.ensure([instance_id])
            except LimitReached as exc:
                refused.setdefault(instance_id.partition(INSTANCE_MARK)[0], exc)
        return refused

    async def serving(
        self, ids: frozenset[str], msg: Mapping[str, Any], catalog: Catalog, run: Callable[[], Awaitable[T]]
    ) -> T:
        """`run` a request once the bound instances it may need were started (`ensure`).

        An instance that may not start (a cap) fails only the requests that need it: a list (it would
        lack that template's items), or a request by a name or URI of that template that nothing else
        answers; a ping, a call to a static server or to another template's instance goes on.
        """
        method, params = msg.get("method"), msg.get("params")
        if not ids or (method not in NAMED and method not in KIND_BY_METHOD):
            return await run()
        refused = await self.ready(ids)
        if refused and method in KIND_BY_METHOD:
            raise next(iter(refused.values()))
        try:
            return await run()
        except NotFound:
            template = _named_template(catalog, params, refused)
            if template is None:
                raise
            raise refused[template] from None

    def _check_caps(self, instance: Instance) -> None:
        template = self.templates().get(instance.template)
        cap = template.template.max_instances if template is not None else None
        mine = sum(1 for i in self.instances.values() if i.running and i.template == instance.template)
        if cap is not None and mine >= cap:
            hit("template_instances", "template %s has %d instances running (maxInstances)", instance.template, cap)
            audit.info("template refused template=%s instance=%s reason=maxInstances", instance.template, instance.id)
            raise LimitReached(
                "maxInstances",
                f"template server {instance.template!r} already runs {cap} instances (its maxInstances); "
                "end a session that uses another, or raise maxInstances",
                INSTANCE_LIMIT_STATUS["maxInstances"],
            )
        hub_cap = self.limits().max_template_instances
        if len(self.running()) >= hub_cap:
            hit("template_instances", "%d template instances running (maxTemplateInstances)", hub_cap)
            raise LimitReached(
                "maxTemplateInstances",
                f"the hub already runs {hub_cap} template server instances (onemcp.limits.maxTemplateInstances)",
                INSTANCE_LIMIT_STATUS["maxTemplateInstances"],
            )

    async def reap(self, now: float | None = None, held: Iterable[str] = ()) -> list[str]:
        """Stop the running instances nobody is bound to and nobody used for their idleTimeout; those in
        `held` (an open 2026-07-28 `subscriptions/listen` uses them: it is no session) are in use."""
        now = time.monotonic() if now is None else now
        held = set(held)
        templates = self.templates()
        gone = []
        for instance in list(self.instances.values()):
            template = templates.get(instance.template)
            idle = template.template.idle_timeout if template is not None else 0.0
            if instance.id in held:
                instance.last_used = now  # idle from when the listen ends
                continue
            if (
                instance.sessions
                or instance.id in self._starting
                or (now - instance.last_used < idle and not instance.stale)
            ):
                continue
            del self.instances[instance.id]
            if instance.running:
                instance.running = False
                log.info("template instance %s idle for %.0fs: stopped", instance.id, now - instance.last_used)
                await self._stop(instance)
            gone.append(instance.id)
        return gone

    async def retire(self, keep: Callable[[Instance], bool]) -> list[str]:
        """Stop and forget the instances `keep` rejects (a reload changed or removed their template). One still
        starting is left to the requests waiting for it (a 2026-07-28 request is bound to it alone: stopped
        now, it would be answered as if its template had no instance); the next `reap` stops it."""
        gone = []
        for instance in list(self.instances.values()):
            if keep(instance):
                continue
            if instance.id in self._starting:
                instance.stale = True
                continue
            del self.instances[instance.id]
            if instance.running:
                instance.running = False
                await self._stop(instance)
            gone.append(instance.id)
        return gone

    def interval(self) -> float:
        """How often idle instances are looked for: a quarter of the shortest idleTimeout, 50 ms to 30 s."""
        timeouts = [t.template.idle_timeout for t in self.templates().values()]
        return max(0.05, min(30.0, min(timeouts, default=120.0) / 4))

    def report(self) -> list[dict[str, Any]]:
        """Each known instance, for /health and `mcp status`."""
        return [
            {
                "id": i.id,
                "template": i.template,
                "running": i.running,
                "shareable": i.shareable,
                "sessions": len(i.sessions),
                "idleSeconds": round(time.monotonic() - i.last_used, 1),
                "startSeconds": None if i.start_seconds is None else round(i.start_seconds, 3),
                "context": i.summary,
            }
            for i in self.instances.values()
        ]


def _named_template(catalog: Catalog, params: Any, refused: Mapping[str, LimitReached]) -> str | None:
    """The refused template a request's name or URI may be of (with unprefixed names: any refused one)."""
    if not refused:
        return None
    if not catalog.prefixed:
        return next(iter(refused))
    params = params if isinstance(params, dict) else {}
    ref = params.get("ref") if isinstance(params.get("ref"), dict) else {}
    for key, value in (("name", params.get("name")), ("uri", params.get("uri")), *ref.items()):
        if not isinstance(value, str) or key not in ("name", "uri"):
            continue
        split = catalog.codec.split_uri(value) if key == "uri" else catalog.codec.split_name(value)
        if split is not None and split[0] in refused:
            return split[0]
    return None
