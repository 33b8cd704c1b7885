"""The reverse path: which downstream session gets what an upstream sends, and under which ids.

Owns the routing rule (documented in docs/server-behaviour.md, "Which session gets an
upstream's message"), hub-minted ids for server->client requests and the map back,
cancellation of those requests by the upstream, logging fan-out with the server's name,
resource updates to subscribers only, and URL-mode elicitation ids. Does not own the
forward path or any wire.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio

from onemcp.catalog.catalog import Catalog
from onemcp.config.model import Limits
from onemcp.hub.bridge import park_seconds
from onemcp.hub.listeners import Listener
from onemcp.hub.rewrite import long_id
from onemcp.hub.session import ReversePending, Session, SessionStore
from onemcp.hub.tasks import TaskRouter
from onemcp.observability.limits import count, hit
from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    MISSING_CLIENT_CAPABILITY,
    UPSTREAM_TIMEOUT,
    URL_ELICITATION_REQUIRED,
    UpstreamError,
    echo,
)
from onemcp.protocol.jsonrpc import Message, RequestId
from onemcp.protocol.meta import SUBSCRIPTION_ID
from onemcp.protocol.methods import REVERSE_CAPABILITY
from onemcp.upstream.call import Call
from onemcp.upstream.connection import UpstreamConnection

log = logging.getLogger("onemcp.reverse")
MAX_ELICITATIONS = 1024  # hub-wide: beyond it the session waiting on the most loses its oldest
MAX_SESSION_ELICITATIONS = 64  # one session's: beyond it its own oldest is forgotten, never another's
PARKED_SLACK = 60.0  # past a parked call's expiry (bridge.park_seconds), which ends it first


class ReversePath:
    def __init__(
        self,
        sessions: SessionStore,
        catalog: Catalog,
        tasks: TaskRouter,
        listeners: set[Listener],
        limits: Callable[[], Limits] = Limits,
    ) -> None:
        self.sessions = sessions
        self.catalog = catalog
        self.tasks = tasks
        self.listeners = listeners
        self.limits = limits  # the hub's current onemcp.limits (a reload may change them)
        # (id of the upstream connection, the upstream's request id) -> (session, hub id)
        # (connection, upstream id) -> the session asked, its id there, the call it went out on (if any)
        self._requests: dict[tuple[int, RequestId], tuple[Session, str, Call | None]] = {}
        # (the connection that asked, its elicitationId) -> (the session asked, the id that client knows):
        # two connections (`isolation`, per-principal ones) may mint the same id for two clients
        self._elicitations: dict[tuple[UpstreamConnection, str], tuple[Session, str]] = {}
        # principal id -> its 2026-07-28 calls' requests held here (each call parked until its client retries)
        self._parked_for: Counter[str] = Counter()
        # a session's id (a 2026-07-28 caller's principal id) -> bytes of its requests held here; all of them
        self._held: Counter[str] = Counter()
        self._held_total = 0
        # is the session subscribed to (server, upstream URI) on this connection? (the hub's `Subscriptions`)
        self.hears: Callable[[Session, UpstreamConnection, tuple[str, str]], bool] = lambda s, _, k: (
            k in s.subscriptions
        )
        # whose own connection a connection is (the hub's `IsolatedConnections.principal_of`): a principal's
        # own connection runs with its values or tokens, and only its sessions hear from it or are asked
        self.principal_of: Callable[[UpstreamConnection], str | None] = lambda conn: None

    # ------------------------------------------------------------------ requests
    def _target(
        self, conn: UpstreamConnection, call: Call | None, needed: str | None, msg: Message
    ) -> tuple[Session | None, Call | None]:
        """The session (and the call, to relate to) a server->client request belongs to."""
        task = None if isinstance(conn.owner, Session) else self.tasks.named(conn, msg)
        if task is not None:
            # It names a task (one running after its call returned): that task's session alone may answer,
            # whatever call is in flight (another principal's client never answers for a task it did not make)
            if call is not None and isinstance(call.origin, Session) and call.origin.id == task.session_id:
                return call.origin, call
            owner = self.sessions.get(task.session_id)
            return (owner if owner is not None and owner.access.reach.touches(conn.name) else None), None
        if call is not None and isinstance(call.origin, Session):
            # over stdio or legacy SSE the call is only guessed (the one in flight): while another session's
            # task there may still ask, the request may be that task's, so it is no one's to guess
            guessed = conn.config.url is None or conn.config.type == "sse"
            if not guessed or not self.tasks.running_for(conn) - {call.origin.id}:
                return call.origin, call
            return None, None
        if isinstance(conn.owner, Session):
            return conn.owner, None  # an isolated connection serves exactly one session
        candidates = [
            s
            for s in self._audience(conn)
            if s.initialized and needed in s.client_capabilities and s.access.reach.touches(conn.name)
        ]
        callers = conn.origins()
        running = self.tasks.running_for(conn)  # sessions whose tasks there may still ask, naming no call
        if callers or running:
            # Calls or tasks are under way but the request names none of them: it is one of theirs, so it
            # may go only to a session with one under way, and only when that is one session
            # (another principal's client must never answer for a call or task it did not make).
            candidates = [s for s in candidates if s in callers or s.id in running]
            if len({c.id if isinstance(c, Session) else str(id(c)) for c in callers} | running) > 1:
                candidates = []
        return (candidates[0] if len(candidates) == 1 else None), None

    async def request(self, conn: UpstreamConnection, msg: Message, call: Call | None) -> Message | None:
        """Forward an upstream's request to its client; the reply (None: the upstream cancelled it)."""
        method = str(msg.get("method"))
        needed = REVERSE_CAPABILITY.get(method)
        if conn.owner is None and needed is not None:
            conn.asks_clients = True  # isolation "auto": the next calls of sessions that can be asked go apart
        if (
            method == "roots/list"
            and call is None
            and not conn.origins()
            and self._shared_by_all(conn)
            and not (self.tasks.named(conn, msg) or self.tasks.running_for(conn))
        ):
            # Part of no call: a client's roots would stay with the server, which answers every caller of
            # this connection with them (clients without roots, 2026-07-28 ones, other principals). The
            # connection's own roots are none; a session's own connection asks its client.
            return jsonrpc.result(None, {"roots": []})
        session, call = self._target(conn, call, needed, msg)
        if session is not None and session.ephemeral and call is None:
            # A 2026-07-28 client takes input only as the result of one of its calls.
            why = f"{echo(method)} is not related to a call of a 2026-07-28 client"
            return jsonrpc.error(None, {"code": METHOD_NOT_FOUND, "message": why})
        if (
            session is not None
            and session.ephemeral
            and needed is not None
            and needed not in session.client_capabilities
        ):
            # a 2026-07-28 client that did not declare it: the error it should see is -32021
            why = f"the client did not declare the {needed!r} capability this call needs"
            return jsonrpc.error(
                None,
                {"code": MISSING_CLIENT_CAPABILITY, "message": why, "data": {"requiredCapabilities": {needed: {}}}},
            )
        if needed is None or (session is not None and needed not in session.client_capabilities):
            # what the client itself would answer: it does not offer that method
            why = (
                f"onemcp cannot forward {echo(method)}"
                if needed is None
                else f"the client did not declare the {needed!r} capability"
            )
            return jsonrpc.error(None, {"code": METHOD_NOT_FOUND, "message": why})
        if session is None:
            # not the client's answer but the hub's: it cannot tell whose request this is
            modern = any(isinstance(caller, Session) and caller.ephemeral for caller in conn.origins())
            if conn.config.isolation == "auto" and not modern:
                hint = "calls from now on get a connection of their own: try again"
            elif conn.config.isolation == "auto":  # a 2026-07-28 caller has no session to split for
                hint = (
                    "a session's calls get a connection of their own from now on, a 2026-07-28 client's stay on"
                    f' this shared one: "isolation": "session" on {conn.name!r} gives each principal its own'
                )
            else:
                hint = f'set "isolation": "auto" or "session" on {conn.name!r} to give each client its own connection'
            why = (
                f"onemcp cannot tell which client {method} is for: several clients' calls or tasks are under way on "
                f"the shared connection to {conn.name!r}, or no client that can answer it is connected; {hint}"
            )
            return jsonrpc.error(None, {"code": INTERNAL_ERROR, "message": why})
        if (long := self._long_elicitation_id(msg)) is not None:  # its completion would be waited for, the id kept
            return jsonrpc.error(None, {"code": INVALID_PARAMS, "message": f"onemcp: {long}"})
        limit = self.limits().max_pending_client_requests_per_session
        principal = session.principal.id
        if session.ephemeral and self._parked_for[principal] >= limit:
            # A 2026-07-28 caller has no session to count in: each call of its principal's waits parked until
            # its client retries. Refused at once, none evicted: another user of that principal may be answering.
            hit("pending_client_requests", "principal %s: %s from %s refused", principal, method, conn.name)
            why = (
                f"onemcp: too many of this principal's 2026-07-28 calls are waiting for their client's input"
                f" (limit {limit} per principal)"
            )
            return jsonrpc.error(None, {"code": INTERNAL_ERROR, "message": why})
        if len(session.reverse) >= limit:  # before anything is held for it
            hit("pending_client_requests", "session %s: %s from %s refused", session.id[:8], method, conn.name)
            why = f"onemcp: too many requests to this client are waiting (limit {limit} per session)"
            return jsonrpc.error(None, {"code": INTERNAL_ERROR, "message": why})
        holder, size = principal if session.ephemeral else session.id, len(jsonrpc.dumps(msg))
        per = "principal" if session.ephemeral else "session"
        if (full := self._full(holder, size, per)) is not None:
            hit("pending_client_requests", "%s %s: %s from %s refused (%s)", per, holder[:8], method, conn.name, full)
            return jsonrpc.error(None, {"code": INTERNAL_ERROR, "message": f"onemcp: {full}"})
        out = self._outgoing(conn, session, msg)
        rid = out["id"] = session.new_reverse_id()
        pending = ReversePending()
        if not session.ephemeral:  # a legacy client may report progress on it (a 2026-07-28 one answers by retry)
            self._progress_token(conn, out, pending, rid)
        session.reverse[rid] = pending
        key = (id(conn), msg["id"])
        related = call if call is not None and not call.done else None
        self._requests[key] = (session, rid, related)
        why = "the server stopped waiting for it (its connection closed)"
        self._held[holder] += size
        self._held_total += size
        if session.ephemeral:
            self._parked_for[principal] += 1
        try:
            if related is not None:
                related.push(out)
            else:
                session.post(out)
            # A modern client answers by calling again; its parked call expires on its own.
            parked = park_seconds(method, conn.config.timeout) + PARKED_SLACK
            patience = parked if session.ephemeral else conn.config.timeout
            with anyio.move_on_after(patience):
                await pending.done.wait()
            why = f"the client did not answer in time ({patience:g}s)"
        finally:
            session.reverse.pop(rid, None)
            self._requests.pop(key, None)
            self._held[holder] -= size
            self._held_total -= size
            if not self._held[holder]:
                del self._held[holder]
            if session.ephemeral:
                self._parked_for[principal] -= 1
                if not self._parked_for[principal]:
                    del self._parked_for[principal]
            if not pending.done.is_set() and not session.closed and not session.ephemeral:
                # nobody waits for its answer now (the server went away, or stopped waiting): the client is told,
                # as when the server withdraws it, so that it stops asking its user or its model
                self._withdraw(session, rid, related, f"[{conn.label}] {method} withdrawn: {why}")
        if pending.cancelled:
            return None
        if pending.reply is None:
            return jsonrpc.error(
                None, {"code": UPSTREAM_TIMEOUT, "message": f"the client did not answer {method} in time"}
            )
        return pending.reply

    def _full(self, holder: str, size: int, per: str) -> str | None:
        """Why a request of `size` bytes may not be held for `holder` (a session, or a principal: `per`) now
        (None: it may; alone, it always may). Counted only, a session held 32 of up to maxResponseBytes (64 MiB)
        each, 2 GiB. Past the budget of all clients only one holding more than its share (the budget over the
        clients holding any) is refused, as the sessions' outboxes do: one client, or one principal's many
        sessions, cannot make every other client's requests refused; past twice the budget, everyone's are."""
        limits = self.limits()
        mine, budget = limits.max_pending_client_request_bytes_per_session, limits.max_pending_client_request_bytes
        held, total = self._held[holder], self._held_total
        if held and held + size > mine:
            return f"the requests waiting for this client would be over {mine} bytes (limit per {per})"
        if not total or total + size <= budget:
            return None
        if total + size > 2 * budget:
            return f"the requests waiting for clients would be over {2 * budget} bytes together"
        share = budget // (len(self._held) + (held == 0))
        if held and held + size > share:  # past the budget: those over their share are refused
            return (
                f"the requests waiting for clients would be over {budget} bytes together,"
                f" this client's over its share ({share})"
            )
        return None

    @staticmethod
    def _progress_token(conn: UpstreamConnection, out: Message, pending: ReversePending, rid: str) -> None:
        """A request that carries a progressToken: the client is given the hub's (the request's id, unique in
        its session: two servers may use the same token), and its progress is sent back under the server's."""
        params = out.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        if isinstance(token, str | int) and not isinstance(token, bool):
            assert isinstance(params, dict) and isinstance(meta, dict)
            pending.progress = (conn, token)
            out["params"] = {**params, "_meta": {**meta, "progressToken": rid}}

    def _shared_by_all(self, conn: UpstreamConnection) -> bool:
        """Is this a legacy-era connection (whose server keeps what it is told for the connection: a
        2026-07-28 one is given the roots with each call) that serves the calls of every client (an
        `auto` server's shared one, or its legacy-era companion), not one session's or principal's?"""
        shared = conn.owner is None and self.principal_of(conn) is None
        return shared and conn.era != "modern" and conn.config.isolation == "auto"

    def reply(self, session: Session, msg: Message) -> None:
        """A client's reply to a request the hub sent it: the waiting request has its answer."""
        pending = session.reverse.pop(str(msg.get("id")), None)
        if pending is not None:
            wrong = jsonrpc.malformed_response(msg)
            if wrong is not None:  # the upstream could not read it either: it is told, not left waiting
                err = {"code": INTERNAL_ERROR, "message": f"onemcp: the client answered with {wrong}"}
                msg = jsonrpc.error(msg.get("id"), err)
            pending.reply = msg
            pending.done.set()

    def _outgoing(self, conn: UpstreamConnection, session: Session, msg: Message) -> Message:
        params = msg.get("params")
        if isinstance(params, dict) and self.tasks.named(conn, msg) is not None:  # the task id the client knows
            msg = {**msg, "params": (params := self.tasks.rewrite(conn, params))}
        if msg.get("method") == "elicitation/create" and isinstance(params, dict):
            upstream_eid = params.get("elicitationId")
            if isinstance(upstream_eid, str):
                return {**msg, "params": {**params, "elicitationId": self._expect(conn, session, upstream_eid)}}
        return dict(msg)

    @staticmethod
    def _long_elicitation_id(msg: Message) -> str | None:
        """Why a URL-mode elicitation/create's id is one the hub will not keep (`rewrite.long_id`), or None."""
        params = msg.get("params")
        eid = params.get("elicitationId") if isinstance(params, dict) else None
        if msg.get("method") != "elicitation/create" or not isinstance(eid, str):
            return None
        return long_id(eid, "elicitationId")

    def _expect(self, conn: UpstreamConnection, session: Session, upstream_eid: str) -> str:
        """A URL-mode elicitation the session was asked for: its `elicitation/complete` will reach it
        (bounded: see MAX_SESSION_ELICITATIONS, MAX_ELICITATIONS). The id the client knows."""
        visible = self._visible(conn, upstream_eid)
        key = (conn, upstream_eid)
        self._elicitations.pop(key, None)  # asked again: it is the newest
        waiting = Counter(s.id for s, _ in self._elicitations.values())
        if waiting[session.id] >= MAX_SESSION_ELICITATIONS or len(self._elicitations) >= MAX_ELICITATIONS:
            loser = session.id if waiting[session.id] >= MAX_SESSION_ELICITATIONS else waiting.most_common(1)[0][0]
            self._elicitations.pop(next(k for k, (s, _) in self._elicitations.items() if s.id == loser))
        self._elicitations[key] = (session, visible)
        return visible

    def _visible(self, conn: UpstreamConnection, upstream_eid: str) -> str:
        return f"{conn.name}:{upstream_eid}" if self.catalog.prefixed else upstream_eid

    def forget_session(self, session: Session) -> None:
        """The session ended: the completions it waited for go nowhere (and leave room for others')."""
        self._elicitations = {v: entry for v, entry in self._elicitations.items() if entry[0] is not session}

    def url_required(self, conn: UpstreamConnection, session: Session, error: dict[str, Any]) -> dict[str, Any]:
        """A -32042 error (URL elicitations required) as the client knows it: each elicitation's id
        namespaced and expected, so that its `notifications/elicitation/complete` reaches this client."""
        data = error.get("data")
        if not isinstance(data, dict) or error.get("code") != URL_ELICITATION_REQUIRED or session.ephemeral:
            return error
        asked = data.get("elicitations")
        if not isinstance(asked, list):
            return error
        named = [
            i for i, item in enumerate(asked) if isinstance(item, dict) and isinstance(item.get("elicitationId"), str)
        ]
        for i in named:  # its completion would be waited for, the id kept: the error says why it is not
            if (long := long_id(asked[i]["elicitationId"], f"elicitations[{i}].elicitationId")) is not None:
                why = f"the server's -32042 error (URL elicitations required) cannot be passed on: {long}"
                return UpstreamError(conn.name, why).to_error()
        # The session keeps only its newest MAX_SESSION_ELICITATIONS ids: of more, only the last are expected (an
        # earlier one would be pushed out by a later one). Expecting one costs a pass over the waits, and
        # expecting each of an error's 200,000 held the event loop 4 s, and every client's calls with it.
        newest: dict[str, int] = {}  # id -> where it is named last, for the newest distinct ids
        for i in reversed(named):
            if len(newest) == MAX_SESSION_ELICITATIONS:
                break
            newest.setdefault(asked[i]["elicitationId"], i)
        expected = set(newest.values())
        shown = list(asked)
        for i in named:
            eid = asked[i]["elicitationId"]
            visible = self._expect(conn, session, eid) if i in expected else self._visible(conn, eid)
            shown[i] = {**asked[i], "elicitationId": visible}
        return {**error, "data": {**data, "elicitations": shown}}

    # ------------------------------------------------------------- notifications
    def notification(self, conn: UpstreamConnection, msg: Message, call: Call | None) -> None:
        method = msg.get("method")
        raw = msg.get("params")
        params: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if method == "notifications/message":
            self._log(conn, msg, params, call)
        elif method == "notifications/resources/updated":
            uri = params.get("uri")
            if isinstance(uri, str):
                key = (conn.name, uri)  # by server and upstream URI: equal URIs of two servers never mix
                shown = {**params, "uri": self.catalog.visible_uri(conn.name, uri)}
                meta = params.get("_meta")
                if isinstance(meta, dict) and SUBSCRIPTION_ID in meta:  # the hub's own listen's id: not theirs
                    shown["_meta"] = {k: v for k, v in meta.items() if k != SUBSCRIPTION_ID}
                    if not shown["_meta"]:
                        del shown["_meta"]
                out = {**msg, "params": shown}
                for session in self.sessions:
                    if self.hears(session, conn, key) and session.access.reach.shows("resources", *key):
                        session.post(out)
                for listener in self.listeners:
                    held = listener.session
                    if self.hears(held, conn, key) and held.access.reach.shows("resources", *key):
                        listener.post(out)
        elif method == "notifications/cancelled":
            self._cancelled(conn, params)
        elif method == "notifications/elicitation/complete":
            self._elicitation_complete(conn, msg, params)
        elif method == "notifications/tasks/status":
            owner = self.tasks.owner(conn, params.get("taskId"))
            task_session = self.sessions.get(owner[0]) if owner is not None else None
            shown = self.tasks.rewrite(conn, params) if owner is not None else params  # its end noted, heard or not
            if task_session is not None and task_session.access.reach.touches(conn.name):  # its view may narrow
                task_session.post({**msg, "params": shown})
            elif owner is None and not self.tasks.hold(conn, msg):  # a task whose creating reply is still to come
                log.debug("upstream %s: a task status naming no task", conn.name)
        elif method == "notifications/progress":  # only a call's that ended: a task it made may go on under it
            found = self.tasks.progress(conn, msg)
            task_session = self.sessions.get(found[0]) if found is not None else None
            if found is not None and task_session is not None and task_session.access.reach.touches(conn.name):
                task_session.post(found[1])
        elif call is not None and isinstance(call.origin, Session):
            call.push(msg)
        elif isinstance(conn.owner, Session):
            conn.owner.post(msg)
        else:
            log.debug("upstream %s: unrouted notification %s", conn.name, method)

    def _log(self, conn: UpstreamConnection, msg: Message, params: dict[str, Any], call: Call | None) -> None:
        logger = params.get("logger")
        msg["params"] = {**params, "logger": f"{conn.label}/{logger}" if logger else conn.label}
        level = params.get("level")
        if call is not None and isinstance(call.origin, Session):
            if call.origin.wants_log(level):
                call.push(msg)
            return
        task = None if isinstance(conn.owner, Session) else self.tasks.named(conn, msg)
        if task is not None:  # a line about a task: its session's alone
            task_session = self.sessions.get(task.session_id)
            owners = [task_session] if task_session is not None else []
            msg["params"] = self.tasks.rewrite(conn, msg["params"])
        else:
            owners = [conn.owner] if isinstance(conn.owner, Session) else self._audience(conn)
        unheard = 0
        for session in owners:
            if session.initialized and session.wants_log(level) and session.access.reach.touches(conn.name):
                if session.listening:
                    session.post(msg)
                else:
                    unheard += 1  # no stream to carry it: queued, it would only pile up (and go stale)
        if unheard:
            count("unheard_logs", unheard)

    def _audience(self, conn: UpstreamConnection) -> list[Session]:
        """The sessions that may hear from (or be asked by) a connection no one session owns: every one for
        a shared connection, only its principal's for a principal's own."""
        principal = self.principal_of(conn)
        return [s for s in self.sessions if principal is None or s.principal.id == principal]

    @staticmethod
    def _withdraw(session: Session, rid: str, related: Call | None, reason: str) -> None:
        """Tell a client that a request the hub sent it needs no answer any more."""
        told = jsonrpc.notification("notifications/cancelled", {"requestId": rid, "reason": reason})
        if related is not None and not related.done:
            related.push(told)  # where the request went: the call's stream (a client may have no GET stream)
        else:
            session.post(told)

    def _cancelled(self, conn: UpstreamConnection, params: dict[str, Any]) -> None:
        """The upstream gave up on one of its requests to a client: tell that client, stop waiting."""
        rid = params.get("requestId")
        entry = self._requests.pop((id(conn), rid), None) if isinstance(rid, str | int) else None
        if entry is None:
            return
        session, rid, related = entry
        told = jsonrpc.notification("notifications/cancelled", {**params, "requestId": rid})
        if related is not None and not related.done:
            related.push(told)  # where the request went: the call's stream (a client may have no GET stream)
        else:
            session.post(told)
        pending = session.reverse.pop(rid, None)
        if pending is not None:
            pending.cancelled = True
            pending.done.set()

    def _elicitation_complete(self, conn: UpstreamConnection, msg: Message, params: dict[str, Any]) -> None:
        upstream_eid = params.get("elicitationId")
        # only the session this connection asked: another's may know the same id from a connection of its own
        entry = self._elicitations.pop((conn, upstream_eid), None) if isinstance(upstream_eid, str) else None
        if entry is not None:
            session, visible = entry
            session.post({**msg, "params": {**params, "elicitationId": visible}})
