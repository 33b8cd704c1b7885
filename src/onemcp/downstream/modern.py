"""The 2026-07-28 ("modern") era on /mcp: stateless requests, validated one by one.

Owns what differs from the legacy era on the wire: per-request `_meta` (protocol version,
client capabilities, client info, log level), the `Mcp-Method` / `Mcp-Name` headers, the
spec's error codes and statuses, `server/discover`, `resultType` / `ttlMs` / `cacheScope`
and the hub's `serverInfo` on every result, request-scoped progress and logs, closing the
reply stream as cancellation, and `subscriptions/listen`. Routing is the hub's, as for
legacy clients: a modern request runs in a one-request `Session`.
"""

from __future__ import annotations

import base64
import itertools
import logging
from typing import Any

import anyio
import orjson

from onemcp.auth.access import MODERN_HTTP, Access
from onemcp.auth.gate import Gate
from onemcp.auth.principal import Principal
from onemcp.downstream import requester
from onemcp.downstream.exchange import answer, forbidden_scope
from onemcp.downstream.listen import serve_listener
from onemcp.http import asgi
from onemcp.http.asgi import Receive, Scope, Send
from onemcp.hub.core import Hub
from onemcp.hub.listeners import Listener
from onemcp.hub.session import Session
from onemcp.protocol import headers as mcp_headers
from onemcp.protocol import jsonrpc, sse
from onemcp.protocol.errors import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    MISSING_CLIENT_CAPABILITY,
    UNSUPPORTED_VERSION,
    HubError,
)
from onemcp.protocol.jsonrpc import Message
from onemcp.protocol.meta import CLIENT_CAPABILITIES, CLIENT_INFO, LOG_LEVEL, PROTOCOL_VERSION, SERVER_INFO
from onemcp.protocol.methods import KIND_BY_METHOD, LOG_LEVELS
from onemcp.protocol.versions import LEGACY_VERSIONS, MODERN_VERSIONS

log = logging.getLogger("onemcp.downstream")


MODERN_METHODS = frozenset(
    {
        "server/discover",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "subscriptions/listen",
    }
)
CACHED = frozenset({*KIND_BY_METHOD, "resources/read"})
TTL_MS = 0
CACHE_SCOPE = "private"  # what a client sees may depend on who it is (views, auth)


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


def supported_error(requested: str, rid: Any = None) -> Message:
    return jsonrpc.error(
        rid,
        {
            "code": UNSUPPORTED_VERSION,
            "message": f"Unsupported protocol version: {requested}",
            "data": {"supported": [*MODERN_VERSIONS, *LEGACY_VERSIONS], "requested": requested},
        },
    )


# A JSON-RPC error's HTTP status in the 2026-07-28 era (what clients tell errors apart by).
ERROR_STATUS = {-32700: 400, -32600: 400, -32602: 400, -32601: 404, HEADER_MISMATCH: 400,
                MISSING_CLIENT_CAPABILITY: 400, UNSUPPORTED_VERSION: 400}  # fmt: skip


def error_status(reply: Message) -> int:
    err = reply.get("error")
    code = err.get("code") if isinstance(err, dict) else None
    return ERROR_STATUS.get(code, 200) if isinstance(code, int) else 200


class ModernEndpoint:
    def __init__(self, hub: Hub, gate: Gate) -> None:
        self.hub = hub
        self.gate = gate
        self._ids = itertools.count(1)
        info = orjson.dumps(hub.server_info())
        self._list_suffix = (
            f',"resultType":"complete","ttlMs":{TTL_MS},"cacheScope":"{CACHE_SCOPE}","_meta":{{"{SERVER_INFO}":'.encode()
            + info
            + b"}}"
        )

    # ---------------------------------------------------------------- validation
    async def post(
        self, scope: Scope, receive: Receive, send: Send, msg: Message, version: str, principal: Principal
    ) -> None:
        rid = msg.get("id")
        method = msg.get("method")

        async def reject(status: int, code: int, text: str, data: Any = None) -> None:
            err: dict[str, Any] = {"code": code, "message": text}
            if data is not None:
                err["data"] = data
            await asgi.send_json(send, status, jsonrpc.error(rid, err))

        if method is None:
            await reject(400, -32600, "Invalid Request: clients do not send responses in 2026-07-28")
            return
        if header_value(asgi.header(scope, b"mcp-method")) != method:
            await reject(400, HEADER_MISMATCH, f"Mcp-Method header does not match the body's method {method!r}")
            return
        if "id" not in msg:
            await asgi.send_empty(send, 202)  # no client notification means anything on HTTP
            return
        params = msg.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        if not isinstance(params, dict) or not isinstance(meta, dict):
            await reject(400, INVALID_PARAMS, f"params._meta must be an object carrying {PROTOCOL_VERSION}")
            return
        body_version = meta.get(PROTOCOL_VERSION)
        if not isinstance(body_version, str) or not isinstance(meta.get(CLIENT_CAPABILITIES), dict):
            await reject(400, INVALID_PARAMS, f"params._meta needs {PROTOCOL_VERSION} and {CLIENT_CAPABILITIES}")
            return
        if body_version != version:
            await reject(400, HEADER_MISMATCH, "MCP-Protocol-Version header does not match params._meta")
            return
        if method not in MODERN_METHODS:
            await reject(404, METHOD_NOT_FOUND, f"Method not found: {method}")
            return
        field = mcp_headers.NAMED.get(method)
        if field is not None and header_value(asgi.header(scope, b"mcp-name")) != params.get(field):
            await reject(400, HEADER_MISMATCH, f"Mcp-Name header does not match params.{field}")
            return
        responses = params.get("inputResponses", {})
        if not isinstance(responses, dict) or not all(isinstance(r, dict) for r in responses.values()):
            # the hub validates what it may have to answer itself (a legacy upstream never sees it)
            await reject(400, INVALID_PARAMS, "params.inputResponses must map each input request's key to an object")
            return
        level = meta.get(LOG_LEVEL)
        if level is not None and level not in LOG_LEVELS:
            await reject(400, INVALID_PARAMS, f"{LOG_LEVEL} must be one of {', '.join(LOG_LEVELS)}")
            return
        info = meta.get(CLIENT_INFO)
        try:
            access = requester.decide(self.hub, scope, principal, MODERN_HTTP)
        except requester.Refused as exc:
            await reject(exc.status, INVALID_PARAMS, exc.message)
            return
        if method == "tools/call":
            problem = self._param_headers_problem(scope, params, access)
            if problem is not None:
                await reject(400, HEADER_MISMATCH, problem)
                return
        session = Session(
            access=access,
            id=f"modern-{next(self._ids)}",
            transport="modern",
            protocol_version=version,
            client_capabilities=meta[CLIENT_CAPABILITIES],
            client_info=info if isinstance(info, dict) else {},
            initialized=True,
            log_level=level,
            ephemeral=True,
        )
        try:
            self.hub.bind_templates(session)
        except HubError as exc:  # a template that does not render for the client's context
            await reject(400, INVALID_PARAMS, exc.message)
            return
        if method == "subscriptions/listen":
            self.hub.remember_lists(session)
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
        if method == "server/discover":
            await asgi.send_json(send, 200, jsonrpc.result(rid, await self.discover(session)))
            return
        kind = KIND_BY_METHOD.get(method)
        if kind is not None:
            if params.get("cursor") is not None:
                err = {"code": INVALID_PARAMS, "message": "Invalid cursor: this hub returns complete lists in one page"}
                await asgi.send_json(send, 200, jsonrpc.error(rid, err))
                return
            body = await self.hub.list_result(kind, session.access)
            await asgi.send_bytes(send, 200, jsonrpc.splice_result(rid, body[:-1] + self._list_suffix))
            return
        if method == "subscriptions/listen":
            await self._listen(session, rid, params, receive, send)
            return
        await self._call(scope, session, msg, method, receive, send)

    def _param_headers_problem(self, scope: Scope, params: dict[str, Any], access: Access) -> str | None:
        """Check the `Mcp-Param-*` headers against the arguments they mirror (x-mcp-header).

        Only for a tool the requester reaches: of any other, nothing is said (routing says "not found").
        """
        annotated = self.hub.tool_headers(str(params.get("name")), access)
        arguments = params.get("arguments")
        arguments = arguments if isinstance(arguments, dict) else {}
        for prop, header in annotated.items():
            raw = asgi.header(scope, f"mcp-param-{header.lower()}".encode())
            value = arguments.get(prop)
            if value is None:
                if raw is not None:
                    return f"Mcp-Param-{header} is set but argument {prop!r} is absent"
                continue
            expected = mcp_headers.render_param(value)
            if raw is None:
                return f"Mcp-Param-{header} is missing for argument {prop!r}"
            if expected is not None and header_value(raw) != expected:
                return f"Mcp-Param-{header} does not match argument {prop!r}"
        return None

    async def discover(self, session: Session) -> dict[str, Any]:
        await self.hub.exposure.ready_to_count([session.access])  # its instructions may rest on a count
        caps = self.hub.capabilities(session.access)
        caps.pop("tasks", None)  # an extension in 2026-07-28, not served to modern clients yet
        return {
            "resultType": "complete",
            "supportedVersions": [*MODERN_VERSIONS, *LEGACY_VERSIONS],
            "capabilities": caps,
            "instructions": self.hub.instructions(session.access),
            "ttlMs": TTL_MS,
            "cacheScope": CACHE_SCOPE,
            "_meta": {SERVER_INFO: self.hub.server_info()},
        }

    def decorate(self, method: str, reply: Message) -> Message:
        result = reply.get("result")
        if isinstance(result, dict):
            result.setdefault("resultType", "complete")
            meta = result.get("_meta")
            result["_meta"] = {**(meta if isinstance(meta, dict) else {}), SERVER_INFO: self.hub.server_info()}
            if method in CACHED:
                result.setdefault("ttlMs", TTL_MS)
                result.setdefault("cacheScope", CACHE_SCOPE)
        return reply

    async def _call(
        self, scope: Scope, session: Session, msg: Message, method: str, receive: Receive, send: Send
    ) -> None:
        """A routed request. Closing its reply stream cancels it (upstream too)."""
        streaming = False

        async def emit(related: Message) -> None:
            nonlocal streaming
            if related.get("method") not in ("notifications/progress", "notifications/message"):
                return  # a modern reply stream carries only progress and logs
            if not streaming:
                await asgi.start_sse(send)
                streaming = True
            await asgi.sse_chunk(send, sse.encode(jsonrpc.dumps(related), event="message"))

        gone = object()
        reply: Message | bytes | object | None = gone
        async with anyio.create_task_group() as tg:
            tg.start_soon(asgi.until_disconnect, receive, tg.cancel_scope)
            reply = await answer(self.hub, session, msg, emit)
            tg.cancel_scope.cancel()
        if reply is gone:
            return  # the client closed the stream: cancelled, nothing more is sent
        if reply is None:
            reply = jsonrpc.error(msg["id"], {"code": -32800, "message": "Request cancelled"})
        if isinstance(reply, bytes):
            reply = jsonrpc.loads(reply)
        assert isinstance(reply, dict)
        reply = self.decorate(method, reply)
        if streaming:
            await asgi.sse_chunk(send, sse.encode(jsonrpc.dumps(reply), event="message"))
            await asgi.end_stream(send)
        elif (needed := forbidden_scope(reply)) is not None:
            await self.gate.forbid(scope, send, needed, reply)
        else:
            await asgi.send_json(send, error_status(reply), reply)

    async def _listen(self, session: Session, rid: Any, params: dict[str, Any], receive: Receive, send: Send) -> None:
        wanted = params.get("notifications")
        if not isinstance(wanted, dict):
            err = {"code": INVALID_PARAMS, "message": "subscriptions/listen needs params.notifications"}
            await asgi.send_json(send, 200, jsonrpc.error(rid, err))
            return
        listener = Listener.create(
            rid, wanted, session, self.hub.can_subscribe, self.hub.limits.max_subscriptions_per_session
        )
        await serve_listener(self.hub, listener, receive, send, self.hub.server_info())
