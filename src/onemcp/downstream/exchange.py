"""One downstream request answered end to end, whatever the wire: the error boundary.

`answer` runs the hub's dispatch and, for forwarded calls, drives them to their reply.
Every failure becomes a JSON-RPC error here, and only here; nothing else reaches a client.
"""

from __future__ import annotations

import logging

from onemcp.hub.core import Hub
from onemcp.hub.forward import Emit
from onemcp.hub.session import Session
from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import FORBIDDEN, INTERNAL_ERROR, UPSTREAM_UNAVAILABLE, HubError
from onemcp.protocol.jsonrpc import Message

log = logging.getLogger("onemcp.downstream")


async def answer(hub: Hub, session: Session, msg: Message, emit: Emit) -> Message | bytes | None:
    """The reply to a request (None when the client cancelled it); one still being answered when the
    shutdown grace ends is answered '[name] the hub is shutting down' (-32000)."""
    rid = msg.get("id")
    if log.isEnabledFor(logging.DEBUG):
        params = msg.get("params") or {}
        log.debug("session %s: %s %s", session.id[:8], msg.get("method"), params.get("name") or params.get("uri") or "")
    with hub.stopping.bound() as bound:  # still running when the shutdown grace ends: the error below
        try:
            outcome = await hub.dispatch(session, msg)
            if isinstance(outcome, tuple):
                conn, call = outcome
                bound.server = conn.name
                return await hub.complete(session, conn, call, emit)
            return outcome
        except HubError as exc:
            hub.metrics.answered_error(msg.get("method"), exc.code)
            return jsonrpc.error(rid, exc.to_error())
        except Exception:
            log.exception("internal error while answering %s", msg.get("method"))
            hub.metrics.answered_error(msg.get("method"), INTERNAL_ERROR)
            error = {"code": INTERNAL_ERROR, "message": "Internal error in onemcp (see the hub's log)"}
            return jsonrpc.error(rid, error)
    hub.metrics.answered_error(msg.get("method"), UPSTREAM_UNAVAILABLE)
    return jsonrpc.error(rid, {"code": UPSTREAM_UNAVAILABLE, "message": bound.reason})


def forbidden_scope(reply: Message) -> str | None:
    """The scope a Forbidden reply names: it becomes an HTTP 403 with a step-up challenge."""
    err = reply.get("error")
    if isinstance(err, dict) and err.get("code") == FORBIDDEN and isinstance(err.get("data"), dict):
        needed = err["data"].get("requiredScope")
        return needed if isinstance(needed, str) else None
    return None
