"""The saved-session record: what a Streamable HTTP session writes to survive a restart, and what a
revived session gets back from it.

Owns only the record's shape (a JSON object): which fields of a `Session` and its `Access` go in,
and how they are read back, untrusted (the store may hold a record of an older version). Storing
records is `saved.py`'s; rebuilding the session's access and binding its servers is the hub's
(`revival.py`).
"""

from __future__ import annotations

from typing import Any

from onemcp.hub.session import Session


def record_of(session: Session) -> dict[str, Any]:
    """What the session needs to go on after a restart (never a credential: the principal's key only)."""
    access = session.access
    return {
        "principal": access.principal.key,
        "entry": access.entry,
        "query": access.query,
        "context": dict(access.context) if access.context is not None else None,
        "trusted": access.trusted,
        "protocolVersion": session.protocol_version,
        "capabilities": session.client_capabilities,
        "clientInfo": session.client_info,
        "logLevel": session.log_level,
        "initialized": session.initialized,
        "subscriptions": sorted(session.subscriptions),
    }


def restore(session: Session, doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Give a revived session the handshake state its record kept; returns its resource subscriptions
    (server, uri), for the caller to ask of the upstreams again."""
    session.protocol_version = str(doc.get("protocolVersion") or "")
    session.client_capabilities = dict(doc.get("capabilities") or {})
    session.client_info = dict(doc.get("clientInfo") or {})
    session.log_level = doc.get("logLevel")
    session.initialized = bool(doc.get("initialized"))
    kept = doc.get("subscriptions") or []
    return [(str(k[0]), str(k[1])) for k in kept if isinstance(k, list) and len(k) == 2]
