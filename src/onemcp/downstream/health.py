"""Health documents: overall status, per-upstream state, liveness and readiness."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import Metric

from onemcp.hub.core import Hub
from onemcp.observability import limits
from onemcp.observability.metrics import counter, gauge
from onemcp.observability.redact import REDACTOR, display_url

if TYPE_CHECKING:
    from onemcp.reload import Reloader


def health(hub: Hub, *, links: bool = True) -> dict[str, Any]:
    """The hub's state; `links`: include upstream authorization links (only for an unexposed hub)."""
    state = hub.state
    upstreams: dict[str, Any] = {}
    authorizations = state.authorizations(with_link=links)
    tokens = hub.exposure.server_tokens()
    for name, slot, conn in state.upstreams():
        counts = state.list_counts(name)
        shown = replica_names([m.config.url for m in slot.members])
        upstreams[name] = {
            "state": conn.state,
            "supervisor": slot.status,
            "restarts": slot.restarts,
            "breaker": slot.breaker.state,
            "replicas": [
                {
                    "url": shown[i] if m.config.url else None,
                    "pid": getattr(m.conn.transport, "pid", None),
                    "state": m.conn.state,
                    "inFlight": m.conn.in_flight,
                    "breaker": m.breaker.state,
                    "probe": None if slot.config.probe is None else "up" if m.probe_ok else "down",
                    "weight": slot.balancer.weights[i] if slot.balancer is not None else 1.0,
                    "calls": m.picks,
                }
                for i, m in enumerate(slot.members)
            ]
            if slot.replicas
            else None,
            "balance": slot.config.balance if slot.replicas else None,
            "pid": getattr(conn.transport, "pid", None),
            "nextAttempt": slot.next_attempt,
            "transport": conn.transport.kind,
            "protocolVersion": conn.protocol_version,
            "serverInfo": conn.server_info or None,
            "tools": counts["tools"],
            "toolTokens": tokens.get(name, 0),
            "prompts": counts["prompts"],
            "resources": counts["resources"],
            "resourceTemplates": counts["resourceTemplates"],
            "toolRepairs": state.repairs(name, "tools"),
            "promptRepairs": state.repairs(name, "prompts"),
            "resourceRepairs": state.repairs(name, "resources"),
            "resourceTemplateRepairs": state.repairs(name, "resourceTemplates"),
            "unmatchedToolRules": hub.catalog.unmatched.get(name) or None,
            "withheldTools": sorted(hub.catalog.withheld.get(name, ())),
            "inFlight": state.in_flight(name),
            "isolation": conn.config.isolation,
            "sessionConnections": state.session_connections(name),
            "floodPauses": conn.transport.budget.pauses,  # its reading stopped for maxMessagesPerSecond
            "lastError": conn.last_error or (slot.last_failure if conn.state != "ready" else None),
            "authorization": authorizations.get(name),
        }
    for name, server in hub.config.servers.items():
        if server.disabled:
            upstreams[name] = {"state": "disabled", "transport": server.transport}
    states = list(state.states().values())
    if any(s == "starting" for s in states) and not hub.pool.tried.is_set():
        status = "starting"  # the first attempts; a server still starting after that is a degraded hub
    elif all(s == "ready" for s in states) and all(slot.breaker.state == "closed" for _, slot, _ in state.upstreams()):
        status = "ok"  # (a connected server whose breaker is open answers nothing: every call fails at once)
    else:
        status = "degraded"
    doc: dict[str, Any] = {
        "status": status,
        "version": hub.server_info()["version"],
        "sessions": state.sessions(),
        "upstreams": upstreams,
        "collisions": state.collisions(),
        "toolExposure": hub.exposure.report(hub.preset_reaches()),
        "templates": {
            name: {"transport": t.transport, "shareable": t.template.shareable}
            for name, t in hub.config.templates.items()
        },
        "instances": hub.instances.report(),
        "pins": {
            "mode": hub.config.hub.pin_tool_definitions,
            "changed": [
                {"server": c.server, "tool": c.tool, "seenAt": c.seen_at, "mode": hub.pin_mode(c.server)}
                for c in hub.pins.changes()
            ],
        },
    }
    if hub.replicas is not None:  # replicas sharing a Redis: this one, and what crossed to and from the others
        doc["replicas"] = hub.replicas.report()
        if doc["replicas"]["redis"] != "connected" and status == "ok":
            doc["status"] = "degraded"  # sessions and limits are this replica's alone for now
    return doc


def ready(hub: Hub) -> tuple[bool, dict[str, Any]]:
    """Ready once the start-up tried every upstream, and from then on. A server a reload adds or changes, or
    an operator restarts, shows as `starting` meanwhile but does not make the hub unready: replicas behind
    a balancer read the same edit at once, and would all drop out together (the servers that worked too)."""
    started = hub.state.started()
    return started, {"ready": started, "upstreams": hub.state.states()}


def replica_names(urls: list[str | None]) -> list[str]:
    """How /health and /metrics name a server's replicas: the URL without user, password or query, a
    key in its path masked (they may hold credentials; the log scrubs them too), `#<index>` for a
    process or a repeated one."""
    names: list[str] = []
    for index, url in enumerate(urls):
        shown = REDACTOR.scrub(display_url(url)) if url else ""  # a key in the path too
        names.append(shown if shown and shown not in names else f"{shown}#{index}")
    return names


def state_metrics(hub: Hub, reloader: Reloader | None) -> Iterator[Metric]:
    """Gauges and counters read from live state when /metrics is scraped."""
    up = gauge("onemcp_upstream_up", "1 when the upstream is connected and ready", ["server", "transport"])
    in_flight = gauge("onemcp_upstream_in_flight", "Client calls waiting on the upstream", ["server"])
    restarts = counter("onemcp_upstream_restarts", "Times the supervisor restarted the upstream", ["server"])
    looping = gauge("onemcp_upstream_crash_looping", "1 when the upstream is crash-looping", ["server"])
    breaker = gauge("onemcp_upstream_breaker_open", "1 when the circuit breaker is open or half-open", ["server"])
    unauthorized = gauge(
        "onemcp_upstream_needs_authorization", "1 when an operator must authorize the hub with the upstream", ["server"]
    )
    replica_up = gauge(
        "onemcp_upstream_replica_up",
        "1 when the replica is ready, its breaker closed and its probe up",
        ["server", "replica"],
    )
    replica_calls = counter("onemcp_upstream_replica_calls", "Calls balanced to the replica", ["server", "replica"])
    withheld = gauge("onemcp_tools_withheld", "Tools withheld: their definition changed, not yet approved", ["server"])
    for name, slot, _ in hub.state.upstreams():
        withheld.add_metric([name], float(len(hub.catalog.withheld.get(name, ()))))
        members = slot.members if slot.replicas else []
        for member, replica in zip(members, replica_names([m.config.url for m in members]), strict=True):
            ok = member.conn.state == "ready" and member.breaker.state != "open" and member.probe_ok
            replica_up.add_metric([name, replica], 1.0 if ok else 0.0)
            replica_calls.add_metric([name, replica], member.picks)
        up.add_metric([name, slot.conn.transport.kind], 1.0 if slot.conn.state == "ready" else 0.0)
        in_flight.add_metric([name], hub.state.in_flight(name))
        restarts.add_metric([name], slot.restarts)
        looping.add_metric([name], 1.0 if slot.status == "crash-looping" else 0.0)
        breaker.add_metric([name], 0.0 if slot.breaker.state == "closed" else 1.0)
        unauthorized.add_metric([name], 1.0 if slot.status == "needs-authorization" else 0.0)
    yield from (up, in_flight, restarts, looping, breaker, unauthorized, withheld, replica_up, replica_calls)
    sessions = gauge("onemcp_sessions", "Live sessions (2025-11-25 era and older)")
    sessions.add_metric([], hub.state.sessions())
    listens = gauge("onemcp_listen_streams", "Open subscriptions/listen streams (2026-07-28 era)")
    listens.add_metric([], hub.state.listen_streams())
    yield from (sessions, listens)
    tokens = gauge("onemcp_tool_tokens", "Tokens (o200k) of the server's tool definitions in a full list", ["server"])
    counted = hub.exposure.server_tokens()
    for name, _, _ in hub.state.upstreams():  # every server, as /health reports them: one with no tools is 0
        tokens.add_metric([name], counted.get(name, 0))
    searches = counter("onemcp_tool_searches", "search_tools calls answered")
    searches.add_metric([], hub.exposure.searches)
    yield from (tokens, searches)
    instances = gauge("onemcp_template_instances", "Running instances of a template server", ["template"])
    running: dict[str, int] = {name: 0 for name in hub.config.templates}
    for instance in hub.instances.running():
        running[instance.template] = running.get(instance.template, 0) + 1
    for name, count in running.items():
        instances.add_metric([name], count)
    yield instances
    if hub.replicas is not None:
        redis = gauge(
            "onemcp_redis_up", "1 when this replica's link to the replicas' Redis works (0: failing or unreachable)"
        )
        redis.add_metric([], 1.0 if hub.replicas.redis == "connected" else 0.0)
        yield redis
    yield from limits.HITS.metrics()
    if reloader is not None:
        reloads = counter("onemcp_config_reloads", "Config reloads, by outcome", ["outcome"])
        reloads.add_metric(["applied"], reloader.reloads)
        reloads.add_metric(["refused"], reloader.failures)
        yield reloads
