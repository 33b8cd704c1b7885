"""The hub's error tree, and its translation to JSON-RPC error objects.

Everything that can go wrong while serving a request is one of these; the downstream
endpoint turns them into JSON-RPC errors (or HTTP statuses) at one boundary::

    HubError                      code -32603 unless a subclass says otherwise
    ├── ProtocolError             the client sent something malformed (-32600 / -32700 / -32602)
    │   ├── ParseError            body is not JSON (-32700)
    │   ├── InvalidRequest        not a JSON-RPC 2.0 message (-32600)
    │   ├── InvalidParams         params missing or of the wrong shape (-32602)
    │   └── MethodNotFound        unknown method (-32601)
    ├── NotFound                  unknown tool / prompt / resource name (-32602)
    ├── Forbidden                 the principal's scopes do not cover it (-32003; HTTP 403)
    ├── LimitReached              a limit of onemcp.limits refuses it (-32000; HTTP 429, 503 or 409)
    ├── SessionEnded              the client's session ended with the request in flight (-32000)
    └── UpstreamError             an upstream could not serve the call (-32603, names the server)
        ├── UpstreamUnavailable   not connected: failed, stopped, starting (-32000)
        ├── UpstreamTimeout       the per-server deadline passed (-32001)
        └── UpstreamClosed        the upstream went away with the call in flight, on any transport (-32000)

Errors the upstream itself answered with are not exceptions: they are forwarded as data.
"""

from __future__ import annotations

from typing import Any

from onemcp.protocol.names import shown_as

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Implementation-defined range (-32000..-32019 in the legacy era).
UPSTREAM_UNAVAILABLE = -32000
UPSTREAM_TIMEOUT = -32001  # the SDK uses -32001 for its own request timeout too
RESOURCE_NOT_FOUND = -32002  # 2025-11-25 only
# 2026-07-28 (modern era)
HEADER_MISMATCH = -32020  # an Mcp-* header disagrees with the body
MISSING_CLIENT_CAPABILITY = -32021  # the call needs a client capability the request did not declare
UNSUPPORTED_VERSION = -32022  # MCP-Protocol-Version not supported (data.supported lists them)
URL_ELICITATION_REQUIRED = -32042  # a tool needs the user to visit URL(s) first: data.elicitations
FORBIDDEN = -32003  # the principal's scopes do not cover the call (HTTP 403, step-up)

ECHO = 200  # characters of a caller's own input (a name, a URI, a method, an id) an error message repeats
URI_DATA = 8 * 1024  # a URI an error's `data.uri` gives back whole (as long as any the hub subscribes to)


def echo(value: object, limit: int = ECHO) -> str:
    """`value` as an error message repeats it: as text, its first `limit` characters and how long it was when
    longer. A caller's 4 MiB tool name, URI or method came back whole, in its error and in the log lines
    that carry the error; the start is enough to recognise it."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class HubError(Exception):
    code: int = INTERNAL_ERROR

    def __init__(self, message: str, *, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def to_error(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


class ProtocolError(HubError):
    code = INVALID_REQUEST
    rid: str | int | None = None  # the request's id, when it was read before the message was refused


class ParseError(ProtocolError):
    code = PARSE_ERROR


class InvalidRequest(ProtocolError):
    code = INVALID_REQUEST


class InvalidParams(ProtocolError):
    code = INVALID_PARAMS


class MethodNotFound(ProtocolError):
    code = METHOD_NOT_FOUND


class NotFound(HubError):
    code = INVALID_PARAMS


class Forbidden(HubError):
    """The caller is known, but its scopes do not cover this call; `needed` is the scope."""

    code = FORBIDDEN

    def __init__(self, message: str, needed: str) -> None:
        super().__init__(message, data={"requiredScope": needed})
        self.needed = needed


class LimitReached(HubError):
    """A limit in `onemcp.limits` refuses this (`limit` names it; `status` is the HTTP answer)."""

    code = UPSTREAM_UNAVAILABLE  # -32000: the implementation-defined "server error"

    def __init__(self, limit: str, message: str, status: int) -> None:
        super().__init__(message, data={"limit": limit})
        self.limit = limit
        self.status = status


class SessionEnded(HubError):
    """The client's session ended (its DELETE, its end on another replica) while the request was in flight."""

    code = UPSTREAM_UNAVAILABLE


# The HTTP status of a request refused because a template instance it needs may not start (the
# limit's name is the error's `data.limit`): both eras answer it with this status, not 200.
INSTANCE_LIMIT_STATUS = {"maxInstances": 429, "maxTemplateInstances": 503}


def refusal_status(reply: dict[str, Any]) -> int | None:
    """The HTTP status of a JSON-RPC error reply that an instance limit refused (else None)."""
    err = reply.get("error")
    if not isinstance(err, dict) or err.get("code") != LimitReached.code or not isinstance(err.get("data"), dict):
        return None
    limit = err["data"].get("limit")
    return INSTANCE_LIMIT_STATUS.get(limit) if isinstance(limit, str) else None


class UpstreamError(HubError):
    code = INTERNAL_ERROR

    def __init__(self, server: str, message: str, *, data: Any = None) -> None:
        # labelled as clients know the server (a template instance by its template's name)
        super().__init__(f"[{shown_as(server)}] {message}", data=data)
        self.server = server


class UpstreamReplied(UpstreamError):
    """The upstream answered one of the hub's own requests with a JSON-RPC error: its code and data kept."""

    def __init__(self, server: str, method: str, error: dict[str, Any]) -> None:
        code = error.get("code")
        super().__init__(server, f"{method} failed: {error.get('message')} ({code})", data=error.get("data"))
        if isinstance(code, int) and not isinstance(code, bool):
            self.code = code


class UpstreamUnavailable(UpstreamError):
    code = UPSTREAM_UNAVAILABLE


class UpstreamTimeout(UpstreamError):
    code = UPSTREAM_TIMEOUT


class UpstreamClosed(UpstreamError):
    code = UPSTREAM_UNAVAILABLE
