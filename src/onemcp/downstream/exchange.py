"""One downstream request answered end to end, whatever the wire: the error boundary.

`answer` runs the hub's dispatch and, for forwarded calls, drives them to their reply.
Every failure becomes a JSON-RPC error here, and only here; nothing else reaches a client.
"""

from __future__ import annotations

import logging

from onemcp.hub.core import Hub
from onemcp.hub.forward import Emit
from onemcp.hub.session import Session
from onemcp.hub.stopping import Bound
from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import FORBIDDEN, INTERNAL_ERROR, UPSTREAM_UNAVAILABLE, HubError
from onemcp.protocol.jsonrpc import Message, RequestId

log = logging.getLogger("onemcp.downstream")


async def answer(
    hub: Hub, session: Session, msg: Message, emit: Emit, *, bounded: bool = True
) -> Message | bytes | None:
    """The reply to a request (None when the client cancelled it); one still being answered when the
    shutdown grace ends is answered '[name] the hub is shutting down' (-32000). `bounded=False`: the
    caller's HTTP exchange ends in its own terms at the cut-off (`Stopping.last`), so the request keeps
    no bound of its own (a cancel scope costs a request ~4 us: /mcp requests go without one)."""
    if not bounded:
        return await _answer(hub, session, msg, emit, None)
    with hub.stopping.bound() as bound:  # still running when the shutdown grace ends: the error below
        return await _answer(hub, session, msg, emit, bound)
    hub.metrics.answered_error(msg.get("method"), UPSTREAM_UNAVAILABLE)
    return jsonrpc.error(msg.get("id"), {"code": UPSTREAM_UNAVAILABLE, "message": bound.reason})


async def _answer(hub: Hub, session: Session, msg: Message, emit: Emit, bound: Bound | None) -> Message | bytes | None:
    rid = msg.get("id")
    if log.isEnabledFor(logging.DEBUG):
        params = msg.get("params") or {}
        log.debug("session %s: %s %s", session.id[:8], msg.get("method"), params.get("name") or params.get("uri") or "")
    # Until it has a Call (`in_flight`), a notifications/cancelled for it finds it here: it may wait a while to
    # be sent (for a server, or the session's own connection, to start), and is then neither sent nor answered.
    key: RequestId | None = rid if isinstance(rid, str | int) and not isinstance(rid, bool) else None
    routed = key is not None and key not in session.routing
    if key is not None and routed:
        session.routing[key] = False
    cancelled = False
    try:
        try:
            outcome = await hub.dispatch(session, msg)
        finally:
            if key is not None and routed:
                cancelled = session.routing.pop(key, False)
        if cancelled:
            if isinstance(outcome, tuple):  # sent meanwhile: cancelled upstream too
                conn, call = outcome
                session.in_flight.pop(call.downstream_id, None)  # type: ignore[arg-type]
                conn.abandon(call, "cancelled by the client")
            return None
        if isinstance(outcome, tuple):
            conn, call = outcome
            if bound is not None:
                bound.server = conn.name
            return await hub.complete(session, conn, call, emit)
        return outcome
    except HubError as exc:
        if cancelled:
            return None
        hub.metrics.answered_error(msg.get("method"), exc.code)
        return jsonrpc.error(rid, exc.to_error())
    except Exception:
        log.exception("internal error while answering %s", msg.get("method"))
        hub.metrics.answered_error(msg.get("method"), INTERNAL_ERROR)
        error = {"code": INTERNAL_ERROR, "message": "Internal error in onemcp (see the hub's log)"}
        return jsonrpc.error(rid, error)


def forbidden_scope(reply: Message) -> str | None:
    """The scope a Forbidden reply names: it becomes an HTTP 403 with a step-up challenge."""
    err = reply.get("error")
    if isinstance(err, dict) and err.get("code") == FORBIDDEN and isinstance(err.get("data"), dict):
        needed = err["data"].get("requiredScope")
        return needed if isinstance(needed, str) else None
    return None
