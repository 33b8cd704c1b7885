"""CORS for the MCP endpoints: which browser pages on another origin may call the hub and read its answers.

Only the origins `onemcp.allowedOrigins` lists by name get CORS headers: the request's own Origin is
echoed when it is one of them, never another (no reflection of whatever a page sends), and never `*`
("*" in allowedOrigins lets any Origin through the DNS-rebinding check, it does not open CORS).
Loopback origins pass the Origin check without being listed; a browser page on one still needs it
listed to read an answer. No `Access-Control-Allow-Credentials`: MCP clients send their token in
`Authorization`, which a page's fetch sends without cookies. The admin API gets none (docs/deployment.md).
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

from onemcp.http.asgi import Send

METHODS = b"POST, GET, DELETE"
# what MCP clients send, both eras: 2026-07-28 adds Mcp-Method, Mcp-Name and one Mcp-Param-* per x-mcp-header
REQUEST_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "mcp-protocol-version",
    "mcp-session-id",
)
PARAM = re.compile(r"mcp-param-[a-z0-9!#$%&'*+.^_`|~-]{1,100}")  # a header name (RFC 9110 token), lower-cased
PARAMS_ALLOWED = 32  # Mcp-Param-* names one preflight may ask for
EXPOSED = b"mcp-session-id, mcp-protocol-version, www-authenticate, retry-after"
MAX_AGE = b"600"
VARY = (b"vary", b"origin")
PUBLIC_PREFLIGHT = [  # public metadata (the protected-resource document): any page may read it
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET"),
    (b"access-control-allow-headers", b"mcp-protocol-version"),
    (b"access-control-max-age", MAX_AGE),
]
PUBLIC = PUBLIC_PREFLIGHT[:1]


def listed(allowed_origins: list[str]) -> frozenset[str]:
    """The origins CORS answers: those named in allowedOrigins, normalized as the guard compares them."""
    return frozenset(o.strip().rstrip("/").lower() for o in allowed_origins if o.strip() != "*")


def matches(origins: frozenset[str], origin: str | None) -> bool:
    return origin is not None and origin.strip().rstrip("/").lower() in origins


def response_headers(origin: str) -> list[tuple[bytes, bytes]]:
    """What an MCP answer to a listed `origin` carries."""
    return [
        (b"access-control-allow-origin", origin.strip().encode("latin-1")),
        VARY,
        (b"access-control-expose-headers", EXPOSED),
    ]


def preflight_headers(requested: str | None) -> list[tuple[bytes, bytes]]:
    """What an OPTIONS preflight from a listed origin is answered, beside `response_headers`: the methods
    and headers MCP uses, and the `Mcp-Param-*` names the page asked for (per tool: no fixed list holds them)."""
    asked = [h.strip().lower() for h in (requested or "").split(",")]
    params = sorted({h for h in asked if PARAM.fullmatch(h)})[:PARAMS_ALLOWED]
    allowed = ", ".join((*REQUEST_HEADERS, *params)).encode("latin-1")
    return [
        (b"access-control-allow-methods", METHODS),
        (b"access-control-allow-headers", allowed),
        (b"access-control-max-age", MAX_AGE),
    ]


def adding(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    """`send`, with `headers` added to the response's head."""

    async def sending(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        await send(message)

    return sending
