"""The deprecated HTTP+SSE transport (2024-11-05) for old clients: GET /sse, POST /messages.

The GET stream carries everything for its session (replies included); POSTs only say 202.
Requests are answered in tasks owned by the app's task group, so a slow call never
blocks the POST that carried it; a session has at most MAX_CALLS of them (a POST beyond is
refused: nothing else bounds them, as the 202 comes at once), and their replies wait for room in
the session's queue rather than being dropped from it. With replicas, a POST for a session whose
stream another replica holds (it announced the stream) is passed to that replica, which takes it
as its own (for the same principal only): a balancer need not send /messages where /sse went.
"""

from __future__ import annotations

import logging
from collections import Counter
from urllib.parse import parse_qs

from anyio.abc import TaskGroup

from onemcp.auth.access import SSE, refused
from onemcp.auth.principal import Principal
from onemcp.downstream import requester
from onemcp.downstream.exchange import answer
from onemcp.downstream.streamable import NOT_JSON, RETRY_LATER, stream_outbox
from onemcp.http import asgi
from onemcp.http.asgi import Receive, Scope, Send, error_body
from onemcp.hub.core import Hub
from onemcp.hub.session import Session
from onemcp.observability.limits import hit
from onemcp.protocol import jsonrpc, sse
from onemcp.protocol.errors import INVALID_REQUEST, HubError, LimitReached, echo
from onemcp.protocol.jsonrpc import Message

log = logging.getLogger("onemcp.downstream")
MAX_CALLS = 256  # requests of one /sse session being answered at once


class LegacySseEndpoint:
    def __init__(self, hub: Hub, messages_path: str = "/messages") -> None:
        self.hub = hub
        self.messages_path = messages_path
        self.tg: TaskGroup | None = None  # set by the app's lifespan
        self._calls: Counter[str] = Counter()  # session id -> its requests being answered
        if hub.replicas is not None:
            hub.replicas.sse_here = self.passed

    async def stream(self, scope: Scope, receive: Receive, send: Send, principal: Principal) -> None:
        if scope["method"] != "GET":
            await asgi.send_json(send, 405, error_body(INVALID_REQUEST, "Method not allowed"), [(b"allow", b"GET")])
            return
        try:  # decided now: /messages may come before initialize
            access = await requester.decide(self.hub, scope, principal, SSE)
        except requester.Refused as exc:
            await asgi.send_json(send, exc.status, error_body(INVALID_REQUEST, exc.message))
            return
        try:
            session = self.hub.create_session("sse", access)
        except LimitReached as exc:
            await asgi.send_json(send, exc.status, error_body(exc.code, exc.message), RETRY_LATER)
            return
        endpoint = f"{scope.get('root_path', '')}{self.messages_path}?session_id={session.id}"
        session.stream_opened()  # the session's lifeline: it is not idle while open, however busy
        if self.hub.replicas is not None:  # the others pass its client's messages here (told before the client)
            self.hub.replicas.stream(session, True)
        try:
            await self.hub.remember_lists(session)  # may count (`auto`) off the loop: in `try`, ended if cut
            await asgi.start_sse(send)
            await asgi.sse_chunk(send, sse.encode(endpoint.encode(), event="endpoint"))
            await stream_outbox(session, receive, send)
        finally:
            session.stream_closed()
            if self.hub.replicas is not None:
                self.hub.replicas.stream(session, False)
            self.hub.end_session(session.id)

    def answering(self, session_id: str) -> bool:
        """Is a request of this /sse session being answered (its reply still to go out on the stream)?"""
        return self._calls[session_id] > 0

    async def message(self, scope: Scope, receive: Receive, send: Send, principal: Principal) -> None:
        if scope["method"] != "POST":
            await asgi.send_json(send, 405, error_body(INVALID_REQUEST, "Method not allowed"), [(b"allow", b"POST")])
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        unknown = sorted(set(query) - {"session_id", "sessionId"})
        if unknown or sum(len(v) for v in query.values()) > 1:
            why = (
                f"unknown query parameter(s): {echo(', '.join(map(repr, unknown)))}"
                if unknown
                else "session_id given more than once"
            )
            await asgi.send_json(send, 400, error_body(INVALID_REQUEST, f"{why}; /messages takes session_id only"))
            return
        sid = (query.get("session_id") or query.get("sessionId") or [None])[0]
        session = found = self.hub.find_session(sid) if sid else None
        if session is not None and session.principal.key != principal.key:
            refused(principal, SSE, "session", session.id[:8], "the session of another principal")
            session = None
        replicas = self.hub.replicas
        elsewhere = found is None and sid is not None and replicas is not None and await replicas.listening_soon(sid)
        if not elsewhere and (session is None or session.transport != "sse"):
            await asgi.send_json(send, 404, error_body(INVALID_REQUEST, "Unknown or missing session_id"))
            return
        if not asgi.json_body(scope):
            await asgi.send_json(send, 415, error_body(INVALID_REQUEST, NOT_JSON))
            return
        msg = await asgi.read_message(scope, receive, send, self.hub.config.hub.max_body_bytes)
        if msg is None:
            return
        if session is None:  # its stream is on another replica: the message goes there
            assert replicas is not None and sid is not None
            if replicas.pass_sse(sid, principal, msg):
                await asgi.send_empty(send, 202)
            else:
                await asgi.send_json(send, 404, error_body(INVALID_REQUEST, "Unknown or missing session_id"))
            return
        refusal = await self._take(session, msg)
        if refusal is not None:
            await asgi.send_json(send, 429, refusal, RETRY_LATER)
            return
        await asgi.send_empty(send, 202)

    async def passed(self, sid: str, principal: str, msg: Message) -> None:
        """A message another replica was POSTed for a session whose stream is here: taken as if POSTed here."""
        session = self.hub.find_session(sid)
        if session is None or session.transport != "sse" or session.principal.key != principal:
            log.info("a message passed on for /sse session %s, not live here for its principal: dropped", sid[:8])
            return
        refusal = await self._take(session, msg)
        if refusal is not None:
            await session.deliver(refusal)

    async def _take(self, session: Session, msg: Message) -> Message | None:
        """Handle a message of the session's client; the refusal to answer, if its requests are too many."""
        session.touch()
        method = msg.get("method")
        if method is None:
            self.hub.on_client_response(session, msg)
        elif "id" not in msg:
            try:
                await self.hub.on_client_notification(session, msg)
            except HubError as exc:
                log.info("client notification %s failed: %s", method, exc)
        elif method == "initialize":
            params = msg.get("params")
            try:
                result = await self.hub.initialize(session, params if isinstance(params, dict) else {})
            except HubError as exc:  # a template that does not render for the client's context
                await session.deliver(jsonrpc.error(msg["id"], exc.to_error()))
            else:
                await session.deliver(jsonrpc.result(msg["id"], result))
        elif self.tg is not None:
            if self._calls[session.id] >= MAX_CALLS:
                hit("calls_per_session", "session %s has %d requests in flight: refused one", session.id[:8], MAX_CALLS)
                why = f"too many requests in flight on this session (limit {MAX_CALLS}); wait for replies first"
                refusal = LimitReached("calls_per_session", why, 429)
                return jsonrpc.error(msg["id"], refusal.to_error())
            self._calls[session.id] += 1
            self.tg.start_soon(self._answer, session, msg)
        return None

    async def _answer(self, session: Session, msg: Message) -> None:
        async def emit(related: Message) -> None:
            if "id" in related:  # a request the call waits on: never dropped
                await session.deliver(related)
            else:
                session.post(related)

        try:
            with self.hub.stopping.replying():  # at the end of the shutdown grace, the stream ends after it
                reply = await answer(self.hub, session, msg, emit)
                if reply is not None:
                    await session.deliver(jsonrpc.loads(reply) if isinstance(reply, bytes) else reply)
        finally:
            self._calls[session.id] -= 1
            if self._calls[session.id] <= 0:
                del self._calls[session.id]
