"""Health documents: overall status, per-upstream state, liveness and readiness."""

from __future__ import annotations

from typing import Any

from onemcp.hub import Hub


def health(hub: Hub) -> dict[str, Any]:
    conns = hub.pool.connections
    upstreams: dict[str, Any] = {}
    for name, slot in hub.pool.slots.items():
        conn = slot.conn
        counts = hub.catalog.counts(name)
        upstreams[name] = {
            "state": conn.state,
            "supervisor": slot.status,
            "restarts": slot.restarts,
            "nextAttempt": slot.next_attempt,
            "transport": conn.transport.kind,
            "protocolVersion": conn.protocol_version,
            "serverInfo": conn.server_info or None,
            "tools": counts["tools"],
            "prompts": counts["prompts"],
            "resources": counts["resources"],
            "resourceTemplates": counts["resourceTemplates"],
            "inFlight": conn.in_flight,
            "isolation": conn.config.isolation,
            "sessionConnections": hub.isolated.count(name),
            "lastError": conn.last_error,
        }
    for name, server in hub.config.servers.items():
        if server.disabled:
            upstreams[name] = {"state": "disabled", "transport": server.transport}
    states = [c.state for c in conns.values()]
    if any(s == "starting" for s in states):
        status = "starting"
    elif all(s == "ready" for s in states):
        status = "ok"
    else:
        status = "degraded"
    collisions = [c for kind in hub.catalog.collisions.values() for c in kind]
    return {
        "status": status,
        "version": hub.server_info()["version"],
        "sessions": len(hub.sessions),
        "upstreams": upstreams,
        "collisions": collisions,
    }


def ready(hub: Hub) -> tuple[bool, dict[str, Any]]:
    tried = hub.pool.all_tried()
    return tried, {"ready": tried, "upstreams": {n: c.state for n, c in hub.pool.connections.items()}}
