"""The 2026-07-28 ("modern") era on /mcp: stateless requests, validated one by one.

Owns what this era adds on HTTP: the `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` and
`Mcp-Param-*` headers checked against the body, the spec's HTTP statuses for its errors (and the
403 step-up), request-scoped progress and logs as an SSE reply, closing the reply stream as
cancellation, and a `subscriptions/listen` feed as a stream. What a modern request means
whatever its wire (its `_meta` envelope, the one-request `Session` it runs in, `server/discover`,
`resultType` / `ttlMs` / `cacheScope` and the hub's `serverInfo` on every result) is
`stateless.py`'s, shared with the stdio entry. Routing is the hub's, as for legacy clients.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from onemcp.auth.access import MODERN_HTTP
from onemcp.auth.gate import Gate
from onemcp.auth.principal import Principal
from onemcp.downstream import requester, stateless
from onemcp.downstream.exchange import forbidden_scope
from onemcp.downstream.listen import serve_listener
from onemcp.downstream.stateless import MODERN_METHODS, ModernRequests, supported_error
from onemcp.http import asgi
from onemcp.http.asgi import Receive, Scope, Send
from onemcp.hub.core import Hub
from onemcp.hub.session import Session
from onemcp.protocol import headers as mcp_headers
from onemcp.protocol import jsonrpc, sse
from onemcp.protocol.errors import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MISSING_CLIENT_CAPABILITY,
    UNSUPPORTED_VERSION,
    HubError,
    echo,
    refusal_status,
)
from onemcp.protocol.jsonrpc import Message
from onemcp.protocol.meta import PROTOCOL_VERSION

log = logging.getLogger("onemcp.downstream")
__all__ = ["MODERN_METHODS", "ModernEndpoint", "error_status", "header_value", "supported_error"]


def header_value(raw: str | None) -> str | None:
    """A header value as the spec encodes it: trimmed, `=?base64?...?=` for non-ASCII."""
    if raw is None:
        return None
    value = raw.strip()
    if value.startswith("=?base64?") and value.endswith("?="):
        try:
            return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
    return value


# A JSON-RPC error's HTTP status in the 2026-07-28 era (what clients tell errors apart by).
ERROR_STATUS = {-32700: 400, -32600: 400, -32602: 400, -32601: 404, HEADER_MISMATCH: 400,
                MISSING_CLIENT_CAPABILITY: 400, UNSUPPORTED_VERSION: 400}  # fmt: skip


def error_status(reply: Message) -> int:
    err = reply.get("error")
    code = err.get("code") if isinstance(err, dict) else None
    if not isinstance(code, int):
        return 200
    return ERROR_STATUS.get(code) or refusal_status(reply) or 200


class ModernEndpoint:
    def __init__(self, hub: Hub, gate: Gate) -> None:
        self.hub = hub
        self.gate = gate
        self.requests = ModernRequests(hub, "modern")

    # ---------------------------------------------------------------- validation
    async def post(
        self, scope: Scope, receive: Receive, send: Send, msg: Message, version: str, principal: Principal
    ) -> None:
        rid = msg.get("id")
        method = msg.get("method")

        async def reject(status: int, code: int, text: str, data: Any = None) -> None:
            self.hub.metrics.answered_error(method, code)  # as a 2025-11-25 request's refusal is
            err: dict[str, Any] = {"code": code, "message": text}
            if data is not None:
                err["data"] = data
            await asgi.send_json(send, status, jsonrpc.error(rid, err))

        if method is None:
            await reject(400, -32600, "Invalid Request: clients do not send responses in 2026-07-28")
            return
        if (asgi.header(scope, b"mcp-method") or "").strip() != method:  # plain: only names and params take base64
            why = f"Mcp-Method header does not match the body's method {echo(repr(method))}"  # the caller's text
            await reject(400, HEADER_MISMATCH, why)
            return
        if "id" not in msg:
            await asgi.send_empty(send, 202)  # no client notification means anything on HTTP
            return
        params = msg.get("params")
        try:
            meta = stateless.envelope(params)
        except HubError as exc:
            await reject(400, exc.code, exc.message)
            return
        assert isinstance(params, dict)
        if meta[PROTOCOL_VERSION] != version:
            await reject(400, HEADER_MISMATCH, "MCP-Protocol-Version header does not match params._meta")
            return
        try:
            stateless.check_method(method)
        except HubError as exc:
            await reject(404, exc.code, exc.message)
            return
        if method == "subscriptions/listen" and not asgi.accepted(scope)[1]:
            await reject(406, INVALID_REQUEST, "Not Acceptable: subscriptions/listen answers on a text/event-stream")
            return
        field = mcp_headers.NAMED.get(method)
        if field is not None and header_value(asgi.header(scope, b"mcp-name")) != params.get(field):
            await reject(400, HEADER_MISMATCH, f"Mcp-Name header does not match params.{field}")
            return
        try:
            stateless.check_params(params)
        except HubError as exc:
            await reject(400, exc.code, exc.message)
            return
        try:
            access = await requester.decide(self.hub, scope, principal, MODERN_HTTP)
        except requester.Refused as exc:
            await reject(exc.status, INVALID_PARAMS, exc.message)
            return
        try:
            session = self.requests.session(access, meta)
        except HubError as exc:  # a template that does not render for the client's context
            await reject(400, INVALID_PARAMS, exc.message)
            return
        if method == "tools/call":
            problem = await self._param_headers_problem(scope, params, session)
            if problem is not None:
                await reject(400, HEADER_MISMATCH, problem)
                return
        await self._dispatch(scope, session, msg, method, params, receive, send)

    # ------------------------------------------------------------------ methods
    async def _dispatch(
        self,
        scope: Scope,
        session: Session,
        msg: Message,
        method: str,
        params: dict[str, Any],
        receive: Receive,
        send: Send,
    ) -> None:
        rid = msg["id"]
        if method == "subscriptions/listen":
            # a listen stream stays open: it ends when its credential does (a call is answered whatever)
            await self._listen(session, rid, params, self.gate.guarded(scope, session.principal, receive), send)
        elif self.requests.is_local(method):
            reply = await self.requests.local(session, rid, method, params)
            if isinstance(reply, bytes) or "error" not in reply:
                await asgi.send_result(send, scope, reply if isinstance(reply, bytes) else jsonrpc.dumps(reply))
            else:  # an error has its status, as a routed request's does (one status per error code)
                await asgi.send_json(send, error_status(reply), reply)
        else:
            await self._call(scope, session, msg, receive, send)

    async def _param_headers_problem(self, scope: Scope, params: dict[str, Any], session: Session) -> str | None:
        """Check the `Mcp-Param-*` headers against the arguments they mirror (x-mcp-header).

        Only for a tool the requester reaches: of any other, nothing is said (routing says "not found").
        In search exposure its tools/list showed only the meta-tools, so a client that mirrors what its
        list annotates (the official SDKs) sends no header for a tool it found by search: a missing one
        is not required there (`call_tool` carries the same arguments with none); a header sent is checked.
        """
        annotated = self.hub.tool_headers(str(params.get("name")), session)
        if not annotated:
            return None
        view = self.hub.events.views.of(session)
        await self.hub.exposure.ready_to_count([(session.access, view)])
        listed = self.hub.exposure.mode(session.access, view) == "full"
        arguments = params.get("arguments")
        arguments = arguments if isinstance(arguments, dict) else {}
        for prop, header in annotated.items():
            raw = asgi.header(scope, f"mcp-param-{header.lower()}".encode())
            value = arguments.get(prop)
            if value is None:
                if raw is not None:
                    return f"Mcp-Param-{header} is set but argument {prop!r} is absent"
                continue
            if raw is None and not listed:
                continue
            if raw is None:
                return f"Mcp-Param-{header} is missing for argument {prop!r}"
            shown = header_value(raw)
            if mcp_headers.render_param(value) is not None and (
                shown is None or not mcp_headers.matches_param(value, shown)
            ):
                return f"Mcp-Param-{header} does not match argument {prop!r}"
        return None

    async def _call(self, scope: Scope, session: Session, msg: Message, receive: Receive, send: Send) -> None:
        """A routed request. Closing its reply stream cancels it (upstream too). Progress and logs
        go first on an SSE stream, when the client takes one (a JSON-only client gets the reply alone);
        a client that takes only SSE gets the reply on one too."""
        streaming = False
        takes_json, takes_sse = asgi.accepted(scope)

        async def emit(related: Message) -> None:
            nonlocal streaming
            if not takes_sse:
                return  # nowhere to put it: 2026-07-28 has no other stream for a request's notifications
            if not streaming:
                await asgi.start_sse(send)
                streaming = True
            await asgi.sse_chunk(send, sse.encode(jsonrpc.dumps(related), event="message"))

        # an HTTP exchange: app.py ends it, so no bound of its own
        reply = await asgi.unless_disconnected(receive, lambda: self.requests.routed(session, msg, emit, bounded=False))
        if reply is None:
            return  # the client closed the stream: cancelled, nothing more is sent
        if not streaming and not takes_json and forbidden_scope(reply) is None:
            await asgi.start_sse(send)
            streaming = True
        if streaming:
            await asgi.sse_chunk(send, sse.encode(jsonrpc.dumps(reply), event="message"))
            await asgi.end_stream(send)
        elif (needed := forbidden_scope(reply)) is not None:
            await self.gate.forbid(scope, send, needed, reply)
        else:
            await asgi.send_json(send, error_status(reply), reply)

    async def _listen(self, session: Session, rid: Any, params: dict[str, Any], receive: Receive, send: Send) -> None:
        try:
            listener = await self.requests.listener(session, rid, params)
        except HubError as exc:
            self.hub.metrics.answered_error("subscriptions/listen", exc.code)
            refused = jsonrpc.error(rid, exc.to_error())
            await asgi.send_json(send, error_status(refused), refused)
            return
        await serve_listener(self.hub, listener, receive, send, self.hub.server_info())
