"""Upstream protocol eras: the request envelope each era needs.

Legacy upstreams (handshake era) get plain params: the modern envelope keys are removed
from `_meta` so a legacy server never sees them. Modern upstreams (2026-07-28) get the
envelope on every request: the downstream client's protocol version, capabilities, client
info and log level (never the hub's own in their place), or the hub's own for the hub's
own requests (lists, listen).
(The `Mcp-*` headers are protocol/headers.py.)
"""

from __future__ import annotations

from typing import Any

from onemcp import __version__
from onemcp.protocol.capabilities import PASSED_EXTENSIONS
from onemcp.protocol.jsonrpc import Message
from onemcp.protocol.meta import CLIENT_CAPABILITIES, CLIENT_INFO, ENVELOPE, LOG_LEVEL, PROTOCOL_VERSION, SERVER_INFO

MODERN = "2026-07-28"
# What the hub declares when it asks for itself: it never takes input-required requests.
HUB_MODERN_CAPABILITIES: dict[str, Any] = {}
# What the hub tells legacy upstreams it can do on a shared connection: it forwards these to clients that can.
HUB_CLIENT_CAPABILITIES: dict[str, Any] = {"roots": {"listChanged": True}, "sampling": {}}
HUB_CLIENT_CAPABILITIES["elicitation"] = {"form": {}, "url": {}}
LEGACY_DEFAULT_LEVEL = "debug"  # the log level of a legacy client that set none: every line


def legacy_capabilities(owner: Any) -> dict[str, Any]:
    """The client capabilities a legacy `initialize` declares: on a session's own connection (`owner`),
    what that session declared of those the hub forwards, as it wrote them (`sampling.tools`, or no
    `roots`: a server offers what its client can take, as it would directly), and of the extensions it
    passes (MCP Apps); on a shared one, all it forwards."""
    mine = getattr(owner, "client_capabilities", None)
    if not isinstance(mine, dict):
        return HUB_CLIENT_CAPABILITIES
    declared = {kind: mine[kind] for kind in HUB_CLIENT_CAPABILITIES if isinstance(mine.get(kind), dict)}
    extensions = mine.get("extensions")
    if isinstance(extensions, dict) and (passed := {k: extensions[k] for k in PASSED_EXTENSIONS if k in extensions}):
        declared["extensions"] = passed
    return declared


def hub_envelope() -> dict[str, Any]:
    return {
        PROTOCOL_VERSION: MODERN,
        CLIENT_CAPABILITIES: HUB_MODERN_CAPABILITIES,
        CLIENT_INFO: {"name": "onemcp", "version": __version__},
    }


def stamp(msg: Message, era: str, client: Any) -> None:
    """Give a request the `_meta` its upstream's era expects (in place).

    `client` is the downstream session the request is made for (None: the hub's own).
    """
    params = msg.get("params")
    if params is None:
        params = msg["params"] = {}
    if not isinstance(params, dict):
        return
    meta = params.get("_meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    if era == "modern":
        if client is None:
            meta.update(hub_envelope())
        elif not getattr(client, "ephemeral", False):
            # A legacy client: carry what it declared at initialize.
            meta[PROTOCOL_VERSION] = MODERN
            meta[CLIENT_CAPABILITIES] = client.client_capabilities
            meta[CLIENT_INFO] = client.client_info or {"name": "unknown", "version": "0"}
            # one that set no level wants every line, as the server sends it over a handshake: a
            # 2026-07-28 server sends a request only the lines it opts in to
            meta[LOG_LEVEL] = client.log_level or LEGACY_DEFAULT_LEVEL
        # a modern client's own envelope passes through unchanged
    else:
        for key in ENVELOPE:
            meta.pop(key, None)
    if meta:
        params["_meta"] = meta
    else:
        params.pop("_meta", None)


# What a 2026-07-28 result carries that a legacy client does not know (it must not tell the eras apart)
MODERN_RESULT_FIELDS = ("resultType", "ttlMs", "cacheScope")
MODERN_RESULT_META = (SERVER_INFO,)


def legacy_result(result: dict[str, Any]) -> None:
    """Take the 2026-07-28 envelope off a modern upstream's result, for a legacy client (in place)."""
    for key in MODERN_RESULT_FIELDS:
        result.pop(key, None)
    meta = result.get("_meta")
    if isinstance(meta, dict) and any(key in meta for key in MODERN_RESULT_META):
        meta = {k: v for k, v in meta.items() if k not in MODERN_RESULT_META}
        if meta:
            result["_meta"] = meta
        else:
            del result["_meta"]
