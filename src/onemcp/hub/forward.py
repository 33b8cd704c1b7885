"""Driving one forwarded call to its end: what comes before the reply, the reply, and its record.

Owns the life of a call once it is routed: related messages go to the caller's `emit`, server->client
requests are bridged between the eras (parked for a modern client, asked live of a legacy one), the
per-server deadline cancels upstream too, and the reply is made the client's (task ids through the
`TaskRouter`, the rest by `hub/rewrite.py`). Records each call's outcome: metrics, the audit line,
and what it says about the upstream's health. Also drives another replica's request to its reply
(`answer_for_replica`). Does not choose where a call goes (`hub/dispatch.py`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from onemcp.catalog.catalog import Catalog
from onemcp.config.model import HubSettings
from onemcp.hub import bridge, rewrite
from onemcp.hub.session import ReversePending, Session
from onemcp.hub.tasks import TaskRouter
from onemcp.observability.events import PAYLOAD, EventBus, payload
from onemcp.observability.metrics import Metrics
from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import (
    INTERNAL_ERROR,
    URL_ELICITATION_REQUIRED,
    HubError,
    SessionEnded,
    UpstreamError,
    UpstreamTimeout,
)
from onemcp.protocol.jsonrpc import Message
from onemcp.protocol.names import shown_as
from onemcp.upstream.call import CANCELLED, RELIST_WAIT, SESSION_ENDED, Call
from onemcp.upstream.connection import UpstreamConnection
from onemcp.upstream.pool import Pool

audit = logging.getLogger("onemcp.audit")
log = logging.getLogger("onemcp.hub")
Emit = Callable[[Message], Awaitable[None]]
JSON_KINDS: dict[type, str] = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
JSON_KINDS[type(None)] = "null"


class Forwarder:
    def __init__(
        self,
        catalog: Catalog,
        pool: Pool,
        tasks: TaskRouter,
        parking: bridge.Parking,
        metrics: Metrics,
        settings: Callable[[], HubSettings],
        bus: EventBus | None = None,
        announced: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.bus = bus if bus is not None else EventBus()  # the live event stream (console, TUI)
        self.pool = pool
        self.catalog = catalog
        self.tasks = tasks
        self.parking = parking
        self.metrics = metrics
        self._settings = settings
        self.announced = announced  # returns once the list_changed announced until now have gone out
        # a -32042 error as the client knows it (the reverse path expects its elicitations' completion)
        self.url_required: Callable[[UpstreamConnection, Session, dict[str, Any]], dict[str, Any]] = (
            lambda conn, session, error: error
        )

    def _answered(self, conn: UpstreamConnection) -> None:
        """A client's call was answered on `conn`: its lists that expire are stale now (the call may have changed
        them), and so are the shared connections' (every replica) when `conn` is another one to that server (a
        session's or a principal's own, a dual-era server's legacy-era companion): over HTTP it is the same
        server, and a stdio one's list may come from what the call changed (files, a database)."""
        conn.fresh.answered += 1
        slot = self.pool.slots.get(conn.name)
        if slot is not None and not self.pool.is_current(conn):
            for member in slot.members:
                member.conn.fresh.answered += 1

    async def complete(self, session: Session, conn: UpstreamConnection, call: Call, emit: Emit) -> Message | None:
        """Drive a forwarded call to its end: related messages to `emit`, then the reply.

        Returns None when the client cancelled (a cancelled request is never answered).
        The per-server deadline cancels upstream too.
        """
        rounds = 0
        parked = False
        started = time.perf_counter()
        sent = time.monotonic()  # the call is on its way: what the upstream answers from now shows it alive
        outcome = "cancelled"
        # `timeout` bounds the server's silence on the call: each message it sends about the call (progress,
        # a log line, a question for the client) starts it again, up to `maxTotalTimeout` since it was sent
        longest = max(call.timeout, conn.config.max_total_timeout)
        ceiling = anyio.current_time() + longest
        # ... but a tasks/result waits, silent, for its task to end (which is what tasks are for): only that bound
        quiet = longest if call.method == "tasks/result" else call.timeout
        try:
            with anyio.move_on_after(quiet) as deadline:
                while True:
                    msg, final = await call.receive()
                    if not final:
                        deadline.deadline = min(anyio.current_time() + quiet, ceiling)
                        pending = self._input_request(session, msg)
                        if pending is not None:
                            # a legacy upstream asks a modern client: park, answer input_required
                            parked = True
                            outcome = "ok"
                            return self.parking.park(conn, call, msg, pending, session.principal.key)
                        await emit(msg)
                        del msg  # not held while the call waits: one 60 MB progress message each held 8 calls 480 MB
                        continue
                    if msg is CANCELLED:
                        return None
                    self._answered(conn)
                    if call.relisted and self.announced is not None:  # the list_changed it caused goes first
                        with anyio.move_on_after(RELIST_WAIT):
                            await self.announced()
                    if msg.get("error") is SESSION_ENDED:  # its session ended: cancelled, and told so
                        return msg
                    outcome = "error" if "error" in msg else "tool_error" if _tool_error(msg) else "ok"
                    needed = bridge.input_required(msg)
                    if needed is not None and not session.ephemeral:
                        unreadable = rewrite.envelope_problem(call.method, needed)
                        if unreadable is not None:  # nothing to ask the client: said as to a modern one
                            msg = self.for_client(session, conn, call.method, msg, unreadable, call=call)
                            outcome = "error" if "error" in msg else "tool_error"
                            return msg
                        if rounds == bridge.MAX_ROUNDS:
                            why = f"{call.method} still asked for input after {rounds} rounds of answers"
                            return jsonrpc.error(call.downstream_id, UpstreamError(conn.name, why).to_error())
                    if needed is not None and not session.ephemeral:
                        # a modern upstream asks a legacy client: ask live, then retry upstream
                        rounds += 1
                        asked = await bridge.ask_for_call(session, conn, call, emit, needed.get("inputRequests"))
                        if asked is None:  # the client cancelled its request meanwhile: never answered
                            return None
                        call = await conn.begin(bridge.retry_request(call, needed, asked), origin=session)
                        session.in_flight[call.downstream_id] = (conn, call)  # type: ignore[index]
                        deadline.deadline = min(anyio.current_time() + call.timeout, ceiling)  # asked again
                        continue
                    msg = self.for_client(session, conn, call.method, msg, call=call)
                    if outcome == "ok" and "error" in msg:  # a result no client could read, answered as an error
                        outcome = "error"
                    elif outcome == "ok" and _tool_error(msg):  # ... or made a tool error
                        outcome = "tool_error"
                    return msg
            silent = anyio.current_time() < ceiling  # else it ran into maxTotalTimeout, talking all along
            why = f"timed out after {quiet:g}s" if silent else f"still running at maxTotalTimeout ({longest:g}s)"
            conn.abandon(call, why)
            outcome = "timeout"
            err = UpstreamTimeout(conn.name, f"{call.method} {why}")
            return jsonrpc.error(call.downstream_id, err.to_error())
        except HubError as exc:  # answered with this error (a client that refused the upstream's question...)
            outcome = "cancelled" if isinstance(exc, SessionEnded) else "error"  # (as a SESSION_ENDED reply)
            raise
        finally:
            self._record(session, conn, call, outcome, started, sent)
            if not call.done and not parked:
                if outcome != "timeout":
                    conn.abandon(call, "the client went away")
                # nobody reads it now: a question withdrawn from the client, said for it (or said from now on),
                # goes to the session's stream
                call.finish(CANCELLED)
                for told in call.unread():
                    if told.get("method") == "notifications/cancelled":
                        session.post(told)
            session.in_flight.pop(call.downstream_id, None)  # type: ignore[arg-type]
            session.touch()  # its end is the session's last use: idle from here, not from the request

    def _record(
        self, session: Session, conn: UpstreamConnection, call: Call, outcome: str, started: float, sent: float
    ) -> None:
        elapsed = time.perf_counter() - started
        # a template's instances count as the template: one series per configured name, however many ran
        self.metrics.observe(call.method, shown_as(conn.name), outcome, elapsed)
        if self.bus.active or outcome != "ok":  # a success nobody watches: nothing more on the call path
            self._publish(session, conn, call, outcome, elapsed)
        if audit.isEnabledFor(logging.INFO) and call.method == "tools/call":
            tool = call.request.get("params", {}).get("name")
            audit.info(
                "call principal=%s server=%s tool=%s outcome=%s ms=%.1f",
                session.principal.id,
                conn.name,
                tool,
                outcome,
                elapsed * 1000,
            )
        if outcome != "cancelled" and conn.owner is None:
            if outcome == "timeout" or call.broken:
                self.pool.judge(conn, sent)  # may say more about the call than about the upstream
            else:
                self.pool.record(conn, ok=True)

    def _publish(self, session: Session, conn: UpstreamConnection, call: Call, outcome: str, elapsed: float) -> None:
        params = call.request.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        fields: dict[str, Any] = {}
        if self.bus.with_payloads and isinstance(params, dict):
            fields[PAYLOAD] = payload(params.get("arguments"))
        self.bus.publish(
            "call",
            method=call.method,
            server=conn.name,
            tool=name if isinstance(name, str) else None,
            principal=session.principal.id,
            entry=session.access.entry,
            outcome=outcome,
            ms=round(elapsed * 1000, 2),
            **fields,
        )

    @staticmethod
    def _input_request(session: Session, msg: Message) -> ReversePending | None:
        """The pending server->client request in `msg`, when it is one for a modern client."""
        if not session.ephemeral or "id" not in msg or "method" not in msg:
            return None
        return session.reverse.get(str(msg["id"]))

    def for_client(
        self,
        session: Session,
        conn: UpstreamConnection,
        method: str,
        msg: Message,
        unreadable: str | None = None,
        *,
        call: Call | None = None,
    ) -> Message:
        """The reply with the task ids, URIs, envelope and error codes the client knows; one no client could
        read (`unreadable` says why, when the caller found it) answered as an error that says why. `call`: the
        call it answers (a task it made keeps the call's progress token)."""
        server = conn.name
        why = jsonrpc.malformed_response(msg) if "error" in msg else None
        if why is not None:  # no client could read it either
            err = UpstreamError(server, f"the server answered {method} with {why}: {msg['error']!r:.200}")
            return jsonrpc.error(msg.get("id"), err.to_error())
        msg = rewrite.for_client(
            msg,
            method,
            visible_uri=functools.partial(self.catalog.visible_uri, server) if self.catalog.prefixed else None,
            client_modern=session.ephemeral,
            upstream_modern=conn.era == "modern",
            max_result_bytes=self._settings().max_result_bytes,
            asked_uri=_asked_uri(call) if method == "resources/read" else None,
        )
        result = msg.get("result")
        if not isinstance(result, dict):
            error = msg.get("error")
            if isinstance(error, dict) and error.get("code") == URL_ELICITATION_REQUIRED:
                if session.ephemeral:  # a code 2026-07-28 forbids: its way to ask instead
                    return self.parking.ask_urls(session, msg)
                msg["error"] = self.url_required(conn, session, error)
            if "error" in msg:
                return msg
            # no client could read it: said once, clearly, rather than passed on as it came
            sent = JSON_KINDS.get(type(result), "something else") if "result" in msg else "no result"
            err = UpstreamError(server, f"the server answered {method} with {sent}, not a result object")
            return jsonrpc.error(msg.get("id"), err.to_error())
        tool_result = method in rewrite.TOOL_RESULTS and "task" not in result
        problem = unreadable
        if problem is None and session.ephemeral and result.get("resultType", "complete") != "complete":
            problem = rewrite.envelope_problem(method, result)
        if problem is None and method in rewrite.CHECKED_REPLIES:
            problem = rewrite.reply_problem(method, result)
        elif problem is None and method == "tools/call" and "task" in result:  # a task handle
            problem = rewrite.task_problem(result["task"], "task.")
        if problem is not None and not tool_result:
            # no error field of its own: a client that validates it would fail without saying why
            log.warning("upstream %s: a %s result a strict client rejects: %s", server, method, problem)
            err = UpstreamError(server, f"the server answered {method} with a result a client cannot read: {problem}")
            return jsonrpc.error(msg.get("id"), err.to_error())
        if problem is None and tool_result:
            problem = rewrite.tool_result_problem(result, legacy=not session.ephemeral)
        if problem is not None:
            # a client that validates it would fail the call without saying why: a tool error says it
            log.warning("upstream %s: a %s result a strict client rejects: %s", server, method, problem)
            text = f"[{shown_as(server)}] the server's tool result cannot be read: {problem}"
            msg["result"] = {"content": [{"type": "text", "text": text}], "isError": True}
        elif method == "tools/call" and "task" in result:
            progress = (
                (call.hub_id, call.progress_token) if call is not None and call.progress_token is not None else None
            )
            for early in self.tasks.record(conn, session.id, result, progress):  # sent before this reply: held till now
                session.post(early)
        elif method.startswith("tasks/"):
            msg["result"] = self.tasks.rewrite(conn, result, result=method == "tasks/result")
        if problem is None:  # a web address it named is read from it, not from whichever template matches
            self.catalog.named.note(session.access.reach, server, rewrite.named_uris(method, msg["result"]))
        return msg


def _tool_error(msg: Message) -> bool:
    """A tool's result with `isError`: the call reached the tool, which failed (a success on the wire)."""
    result = msg.get("result")
    return isinstance(result, dict) and result.get("isError") is True


Dispatch = Callable[[Session, Message], Awaitable[Message | bytes | tuple[UpstreamConnection, Call]]]
Complete = Callable[[Session, UpstreamConnection, Call, Emit], Awaitable[Message | None]]


async def answer_for_replica(dispatch: Dispatch, complete: Complete, session: Session, msg: Message) -> Message:
    """Another replica's request (resuming a call parked here, or tasks/* of a task made here), driven
    to its reply by the hub's `dispatch` and `complete`; its progress and logs are not carried.

    The replicas' own boundary: what would reach a client as an error is sent back as one.
    """
    rid = msg.get("id")
    try:
        outcome = await dispatch(session, msg)
        if isinstance(outcome, tuple):
            conn, call = outcome
            reply = await complete(session, conn, call, _nowhere)
            if reply is None:
                return jsonrpc.error(rid, {"code": -32800, "message": "Request cancelled"})
            return reply
        return jsonrpc.loads(outcome) if isinstance(outcome, bytes) else outcome
    except HubError as exc:
        return jsonrpc.error(rid, exc.to_error())
    except Exception:
        log.exception("internal error while resuming %s for another replica", msg.get("method"))
        why = "Internal error in onemcp (see the hub's log)"
        return jsonrpc.error(rid, {"code": INTERNAL_ERROR, "message": why})


async def _nowhere(msg: Message) -> None:
    """Where a call resumed for another replica sends its progress and logs."""


def _asked_uri(call: Call | None) -> str | None:
    """The upstream URI the call's request named (as it was sent upstream), if it names one."""
    params = call.request.get("params") if call is not None else None
    uri = params.get("uri") if isinstance(params, dict) else None
    return uri if isinstance(uri, str) else None
