"""The downstream Streamable HTTP endpoint at /mcp (legacy era: sessions, GET stream).

Owns the wire rules of transports.mdx 2025-11-25: status codes, session and version
headers, JSON or SSE replies (SSE only once a related message must go out before the
reply), the standalone GET stream, DELETE. Hands meaning to the hub.
"""

from __future__ import annotations

import contextlib
import logging
from functools import partial

import anyio

from onemcp.auth.access import LEGACY_HTTP, refused
from onemcp.auth.gate import Gate
from onemcp.auth.held import REFUSAL_HEADERS
from onemcp.auth.principal import Principal
from onemcp.downstream import requester
from onemcp.downstream.exchange import answer, forbidden_scope
from onemcp.downstream.modern import ModernEndpoint, supported_error
from onemcp.http import asgi
from onemcp.http.asgi import Receive, Scope, Send, error_body
from onemcp.hub.core import Hub
from onemcp.hub.followed import FollowedStreams
from onemcp.hub.replay import OutStream, replica_of
from onemcp.hub.session import Session
from onemcp.observability.limits import hit
from onemcp.protocol import jsonrpc, sse
from onemcp.protocol.errors import INVALID_REQUEST, HubError, LimitReached, refusal_status
from onemcp.protocol.jsonrpc import Message
from onemcp.protocol.versions import LEGACY_VERSIONS, MODERN_VERSIONS

log = logging.getLogger("onemcp.downstream")
KEEPALIVE = 15.0
NOT_JSON = "Unsupported Media Type: the body must be application/json (UTF-8)"
RETRY_LATER = [(b"retry-after", b"5")]


async def stream_outbox(session: Session, receive: Receive, send: Send, stream: OutStream | None = None) -> None:
    """Copy the session's queued messages to an open SSE response until either side ends.

    With `stream`, events are numbered and kept for replay (Streamable HTTP); without it
    they are plain (the legacy HTTP+SSE transport has no resumption).
    """
    outbox = session.outbox
    if outbox is None:  # the session ended meanwhile
        with contextlib.suppress(OSError):
            await asgi.end_stream(send)
        return
    async with anyio.create_task_group() as tg:
        tg.start_soon(asgi.until_disconnect, receive, tg.cancel_scope)
        try:
            while True:
                with anyio.move_on_after(KEEPALIVE) as idle:
                    msg = await outbox.receive()
                if idle.cancelled_caught:
                    session.touch()
                    await asgi.sse_chunk(send, b": keepalive\n\n")
                    continue
                data = stream.add(msg) if stream is not None else sse.encode(jsonrpc.dumps(msg), event="message")
                await asgi.sse_chunk(send, data)
                del msg, data  # not held while the stream waits: one 20 MB log line held 40 MB per listening session
        except (anyio.EndOfStream, anyio.ClosedResourceError, OSError):
            pass
        tg.cancel_scope.cancel()
    with contextlib.suppress(OSError):
        await asgi.end_stream(send)


async def follow(session: Session, stream: OutStream, after: int, receive: Receive, send: Send) -> None:
    """Replay a reply stream's events after `after`, then carry on until its reply went out."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(asgi.until_disconnect, receive, tg.cancel_scope)
        position = after
        while True:
            waiter = stream.waiter()
            for event in stream.after(position):
                await asgi.sse_chunk(send, event)
            position = stream.seq
            if stream.done:
                break
            with anyio.move_on_after(KEEPALIVE) as idle:
                await waiter.wait()
            if idle.cancelled_caught:
                session.touch()
                await asgi.sse_chunk(send, b": keepalive\n\n")
        tg.cancel_scope.cancel()
    with contextlib.suppress(OSError):
        await asgi.end_stream(send)


async def follow_elsewhere(
    followed: FollowedStreams, holder: str, session: Session, last: str, receive: Receive, send: Send
) -> str:
    """Replay (and carry on) a stream replica `holder` holds, relayed from there (`hub.followed`): its outcome;
    "broken" when the client went away."""
    outcome = "broken"
    async with anyio.create_task_group() as tg:
        tg.start_soon(asgi.until_disconnect, receive, tg.cancel_scope)
        with contextlib.suppress(OSError):
            outcome = await followed.follow(holder, session, last, partial(asgi.sse_chunk, send))
        tg.cancel_scope.cancel()
    return outcome


# a request of neither era (curl, a hand-written client): how to be one
NO_SESSION = (
    "Bad Request: missing Mcp-Session-Id header: send initialize first and this header with the id it answers"
    " (2025-11-25), or MCP-Protocol-Version: 2026-07-28 and the request's _meta (stateless, no session)"
)


class StreamableHttpEndpoint:
    def __init__(self, hub: Hub, gate: Gate) -> None:
        self.hub = hub
        self.gate = gate
        self.modern = ModernEndpoint(hub, gate)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, principal: Principal) -> None:
        method = scope["method"]
        if method == "POST":
            await self._post(scope, receive, send, principal)
        elif (asgi.header(scope, b"mcp-protocol-version") or "").strip() in MODERN_VERSIONS:
            text = "Method not allowed: 2026-07-28 uses POST only"
            await asgi.send_json(send, 405, error_body(INVALID_REQUEST, text), [(b"allow", b"POST")])
        elif method == "GET":
            await self._get(scope, receive, send, principal)
        elif method == "DELETE":
            await self._delete(scope, send, principal)
        else:
            await asgi.send_json(
                send, 405, error_body(INVALID_REQUEST, "Method not allowed"), [(b"allow", b"GET, POST, DELETE")]
            )

    async def _session(self, scope: Scope, send: Send, principal: Principal) -> Session | None:
        """The request's session; None when there is none (and the 400 or 404 was sent).

        A session belongs to the principal that made it: to anyone else it does not exist.
        """
        sid = asgi.header(scope, b"mcp-session-id")
        if sid is None:
            await asgi.send_json(send, 400, error_body(INVALID_REQUEST, NO_SESSION))
            return None
        session = self.hub.find_session(sid)
        if session is not None and session.transport != "streamable-http":
            session = None  # an /sse or stdio session is not this endpoint's to serve or end
        if session is not None and session.principal.key != principal.key:
            refused(principal, LEGACY_HTTP, "session", sid[:8], "the session of another principal")
            session = None
        elif session is None:
            try:  # saved before a restart of the hub, or made on another replica
                session = await self.hub.revive_session(sid, principal)
            except LimitReached as exc:  # it exists, but there is no room for it here now
                await asgi.send_json(send, exc.status, jsonrpc.error(None, exc.to_error()), RETRY_LATER)
                return None
        if session is None:
            text = "Session not found (it ended or expired); initialize a new one"
            await asgi.send_json(send, 404, error_body(INVALID_REQUEST, text))
            return None
        other = requester.other_view(scope, session.access.query)
        if other is not None:  # a session's view is chosen once, at initialize: never served another silently
            await asgi.send_json(send, 400, error_body(INVALID_REQUEST, other))
            return None
        session.touch()
        return session

    async def _post(self, scope: Scope, receive: Receive, send: Send, principal: Principal) -> None:
        takes_json, takes_sse = asgi.accepted(scope)
        if not (takes_json or takes_sse):
            await asgi.send_json(
                send, 406, error_body(INVALID_REQUEST, "Not Acceptable: accept application/json and text/event-stream")
            )
            return
        if not asgi.json_body(scope):
            await asgi.send_json(send, 415, error_body(INVALID_REQUEST, NOT_JSON))
            return
        msg = await asgi.read_message(scope, receive, send, self.hub.config.hub.max_body_bytes)
        if msg is None:
            return
        version = asgi.header(scope, b"mcp-protocol-version")
        if version is not None:
            version = version.strip()
            if version in MODERN_VERSIONS:
                await self.modern.post(scope, receive, send, msg, version, principal)
                return
            if version not in LEGACY_VERSIONS:
                await asgi.send_json(send, 400, supported_error(version, msg.get("id")))
                return
        method = msg.get("method")
        is_request = method is not None and "id" in msg
        if method == "initialize" and is_request:
            await self._initialize(scope, msg, send, principal)
            return
        session = await self._session(scope, send, principal)
        if session is None:
            return
        if is_request and (refusal := self.gate.held.over(principal, self.hub.limits)) is not None:
            await asgi.send_json(send, refusal.status, jsonrpc.error(msg["id"], refusal.to_error()), REFUSAL_HEADERS)
            return
        if not is_request:
            if method is None:
                self.hub.on_client_response(session, msg)
            else:
                try:
                    await self.hub.on_client_notification(session, msg)
                except HubError as exc:
                    log.info("client notification %s failed: %s", method, exc)
            await asgi.send_empty(send, 202)
            return
        await self._request(scope, session, msg, takes_sse, send, sse_only=not takes_json)

    async def _initialize(self, scope: Scope, msg: Message, send: Send, principal: Principal) -> None:
        params = msg.get("params")
        try:
            access = await requester.decide(self.hub, scope, principal, LEGACY_HTTP)
        except requester.Refused as exc:
            error = {"code": INVALID_REQUEST, "message": exc.message}
            await asgi.send_json(send, exc.status, jsonrpc.error(msg["id"], error))
            return
        try:
            session = self.hub.create_session("streamable-http", access)
        except LimitReached as exc:
            await asgi.send_json(send, exc.status, jsonrpc.error(msg["id"], exc.to_error()), RETRY_LATER)
            return
        try:
            result = await self.hub.initialize(session, params if isinstance(params, dict) else {})
        except HubError as exc:  # a template that does not render for the client's context
            self.hub.end_session(session.id)
            await asgi.send_json(send, 400, jsonrpc.error(msg["id"], exc.to_error()))
            return
        reply = jsonrpc.dumps(jsonrpc.result(msg["id"], result))
        await asgi.send_result(send, scope, reply, [(b"mcp-session-id", session.id.encode())])

    async def _request(
        self, scope: Scope, session: Session, msg: Message, can_stream: bool, send: Send, *, sse_only: bool = False
    ) -> None:
        # The reply is JSON unless something related must go out first (or the client takes only
        # SSE); then it is a resumable SSE stream. A client that drops it can GET it back with
        # Last-Event-ID (the call is not cancelled: writes to a gone client are dropped, events are kept).
        stream: OutStream | None = None

        async def opened() -> OutStream:
            nonlocal stream
            if stream is None:
                stream = session.streams.open("p")
                await asgi.start_sse(send)
                await asgi.sse_chunk(send, stream.priming())
            return stream

        async def emit(related: Message) -> None:
            if not can_stream:  # JSON only: on the GET stream, if the client reads one (requests wait for one)
                if "id" in related or session.listening:
                    session.post(related)
                return
            await asgi.sse_chunk(send, (await opened()).add(related))

        reply = await answer(self.hub, session, msg, emit, bounded=False)  # the exchange's end is app.py's
        if sse_only and reply is not None and (isinstance(reply, bytes) or forbidden_scope(reply) is None):
            await opened()  # the reply in the one type the client takes (a 403 challenge stays one)
        if stream is not None:
            if reply is not None:
                await asgi.sse_chunk(send, stream.add(reply))
            stream.finish()
            await asgi.end_stream(send)
        elif reply is None and not can_stream:
            await asgi.send_empty(send, 202)  # cancelled: never answered (and the client takes no stream)
        elif reply is None:
            await asgi.start_sse(send)  # cancelled: the stream ends without a reply
            await asgi.end_stream(send)
        elif isinstance(reply, bytes):
            await asgi.send_bytes(send, 200, reply)
        elif (needed := forbidden_scope(reply)) is not None:
            await self.gate.forbid(scope, send, needed, reply)
        elif (status := refusal_status(reply)) is not None:  # an instance it needs may not start
            await asgi.send_json(send, status, reply, RETRY_LATER)
        else:
            await asgi.send_json(send, 200, reply)

    async def _get(self, scope: Scope, receive: Receive, send: Send, principal: Principal) -> None:
        if not asgi.header(scope, b"accept") or not asgi.accepted(scope)[1]:
            await asgi.send_json(
                send, 406, error_body(INVALID_REQUEST, "Not Acceptable: the GET stream needs Accept: text/event-stream")
            )
            return
        if asgi.header(scope, b"mcp-session-id") is None:
            # 405, as 2026-07-28 answers any GET: a client that probes for a stream before it initializes
            # takes it as "no stream here" (the Vercel AI SDK), one that tries HTTP+SSE first moves on to
            # Streamable HTTP (mcp-remote's sse-first); a 400 was an error to both.
            text = (
                "Method not allowed: a GET stream belongs to a session (send its Mcp-Session-Id);"
                " the legacy HTTP+SSE transport is at /sse"
            )
            await asgi.send_json(send, 405, error_body(INVALID_REQUEST, text), [(b"allow", b"POST")])
            return
        session = await self._session(scope, send, principal)
        if session is None:
            return
        cap = self.hub.limits.max_streams_per_session
        if session.streams_open >= cap:
            hit("streams_per_session", "session %s has %d GET streams open: refused another", session.id[:8], cap)
            text = f"Conflict: this session already has {cap} GET stream(s) open (maxStreamsPerSession)"
            await asgi.send_json(send, 409, error_body(INVALID_REQUEST, text))
            return
        session.stream_opened()
        try:
            await self._stream(session, asgi.header(scope, b"last-event-id"), receive, send)
        finally:
            session.stream_closed()

    async def _stream(self, session: Session, last: str | None, receive: Receive, send: Send) -> None:
        found = session.streams.find(last) if last else None
        await asgi.start_sse(send)
        replicas, holder = self.hub.replicas, replica_of(last or "")
        if found is None and last and replicas is not None and holder not in ("", replicas.tag):
            outcome = await follow_elsewhere(replicas.followed, holder, session, last, receive, send)
            if outcome == "broken" or (outcome == "done" and not last.startswith("g")):
                with contextlib.suppress(OSError):
                    await asgi.end_stream(send)
                return  # (a GET stream replayed from there: this replica's own carries on)
        if found is not None:
            stream, after = found
            if not stream.id.startswith("g"):
                await follow(session, stream, after, receive, send)
                return
            for event in stream.after(after):
                await asgi.sse_chunk(send, event)
        else:
            stream = session.streams.open("g")
            await asgi.sse_chunk(send, stream.priming())
        await stream_outbox(session, receive, send, stream)

    async def _delete(self, scope: Scope, send: Send, principal: Principal) -> None:
        session = await self._session(scope, send, principal)
        if session is None:
            return
        self.hub.end_session(session.id)
        await self.hub.saved.flush()  # its end in Redis before the answer: no replica revives it after
        if self.hub.replicas is not None:  # nor serves the copy it holds (it does not read the record)
            await self.hub.replicas.ended_everywhere(session.id)
        await asgi.send_empty(send, 200)
