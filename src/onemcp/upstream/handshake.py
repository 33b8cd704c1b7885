"""Opening the conversation with one upstream: which era it speaks, and who it says it is.

Owns the handshake's steps and what they learn: the `server/discover` probe (2026-07-28; given half
the start-up budget unless the config pins the era, since a legacy server may never answer it), else
the legacy `initialize` and `notifications/initialized`, and reading the answer's protocol version,
capabilities, server info and instructions onto the connection. Does not own sending (the
connection's `request` and `notify`, with their ids and deadlines), when a handshake happens (at
start, and again after the upstream's session expired: the connection decides), or the fallback to
the HTTP+SSE transport when the POSTed handshake is refused.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol

import anyio

from onemcp import __version__
from onemcp.config.model import ServerConfig
from onemcp.protocol.errors import UpstreamError
from onemcp.protocol.meta import SERVER_INFO
from onemcp.protocol.names import shown_as
from onemcp.protocol.versions import LATEST_LEGACY, LEGACY_VERSIONS
from onemcp.upstream import era
from onemcp.upstream.call import Requester
from onemcp.upstream.transports.base import Transport

log = logging.getLogger("onemcp.upstream")
# What the hub keeps of a server's `serverInfo` (shown in /health, read by the instructions and tool search)
# and instructions: both were kept whole, and a server whose serverInfo was 5 MB made every /health reply 5 MB.
MAX_INFO_TEXT = 256  # characters of name, title, version (longer: cut)
MAX_INFO_DESCRIPTION = 2048  # characters of description (longer: cut)
MAX_INFO_URL = 2048  # characters of websiteUrl (longer: dropped, as a cut address leads elsewhere)
MAX_ICONS = 4
MAX_ICON_SRC = 8 * 1024  # characters of an icon's src, a data: URI maybe (longer: that icon dropped)
MAX_INSTRUCTIONS = 64 * 1024  # characters kept; shown cut to 16 KiB (hub/instructions.py)
HANDSHAKE = ("server/discover", "initialize", "notifications/initialized")  # never wait for, nor make, a new session
PROBE_SHARE = 0.5  # of the start-up timeout: a legacy server may never answer server/discover


class Greeted(Protocol):
    """What the handshake needs of its connection, and what it sets on it."""

    name: str
    config: ServerConfig
    owner: Requester | None
    transport: Transport
    era: str
    protocol_version: str | None
    capabilities: dict[str, Any]
    server_info: dict[str, Any]
    instructions: str | None

    async def request(
        self, method: str, params: dict[str, Any] | None = None, *, limit: float | None = None
    ) -> dict[str, Any]: ...
    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None: ...


async def handshake(conn: Greeted, limit: float = math.inf) -> None:
    """Find the era (probe server/discover unless told), open the conversation; `limit` per request."""
    wanted = "legacy" if conn.transport.kind == "sse" else conn.config.protocol
    if wanted != "legacy" and await _discover(conn, limit, required=wanted == "modern"):
        return
    conn.era = "legacy"
    conn.transport.protocol_version = None
    result = await conn.request(
        "initialize",
        {
            "protocolVersion": LATEST_LEGACY,
            "capabilities": era.legacy_capabilities(conn.owner),
            "clientInfo": {"name": "onemcp", "version": __version__},
        },
        limit=limit,
    )
    version = result.get("protocolVersion")
    if version not in LEGACY_VERSIONS:
        raise UpstreamError(conn.name, f"unsupported protocol version {version!r}")
    conn.protocol_version = str(version)
    conn.transport.protocol_version = conn.protocol_version
    _identity(conn, result, result.get("serverInfo"))
    await conn.notify("notifications/initialized")


async def _discover(conn: Greeted, limit: float, *, required: bool) -> bool:
    """True when the upstream speaks 2026-07-28 (it answered server/discover)."""
    conn.era = "modern"
    conn.transport.protocol_version = era.MODERN
    budget = conn.config.startup_timeout * (1.0 if required else PROBE_SHARE)
    try:
        # A dual-era stdio server picks its era from the first message it reads, so the
        # probe must not be given up on early: a slow starter would then refuse the
        # initialize that follows. Half the start-up budget, the rest for initialize.
        with anyio.fail_after(budget):
            result = await conn.request("server/discover", {}, limit=limit)
    except (UpstreamError, TimeoutError) as exc:
        if required:  # said once: "server/discover failed: <why>", never "... failed: server/discover failed: ..."
            why = str(exc).removeprefix(f"[{shown_as(conn.name)}] ").removeprefix("server/discover failed: ")
            why = why if isinstance(exc, UpstreamError) else f"no answer within {budget:g}s"
            raise UpstreamError(conn.name, f"server/discover failed: {why}") from None
        log.debug("upstream %s: not 2026-07-28 (%s); using initialize", conn.name, exc)
        return False
    versions = result.get("supportedVersions")
    if not isinstance(versions, list) or era.MODERN not in versions:
        if required:
            raise UpstreamError(conn.name, f"server/discover lists no supported version: {versions!r}")
        return False
    conn.protocol_version = era.MODERN
    meta = result.get("_meta")
    _identity(conn, result, meta.get(SERVER_INFO) if isinstance(meta, dict) else None)
    return True


def _identity(conn: Greeted, result: dict[str, Any], info: Any) -> None:
    caps = result.get("capabilities")
    conn.capabilities = caps if isinstance(caps, dict) else {}
    conn.server_info = kept_info(info)
    instructions = result.get("instructions")
    conn.instructions = instructions[:MAX_INSTRUCTIONS] if isinstance(instructions, str) else None


def kept_info(info: Any) -> dict[str, Any]:
    """What the hub keeps of a server's `serverInfo` (an Implementation): its known fields, each bounded
    (see MAX_INFO_TEXT and the others); fields it does not know are dropped."""
    if not isinstance(info, dict):
        return {}
    kept: dict[str, Any] = {}
    for key, limit in (("name", MAX_INFO_TEXT), ("title", MAX_INFO_TEXT), ("version", MAX_INFO_TEXT)):
        if isinstance(info.get(key), str):
            kept[key] = info[key][:limit]
    if isinstance(info.get("description"), str):
        kept["description"] = info["description"][:MAX_INFO_DESCRIPTION]
    if isinstance(info.get("websiteUrl"), str) and len(info["websiteUrl"]) <= MAX_INFO_URL:
        kept["websiteUrl"] = info["websiteUrl"]
    icons = info.get("icons")
    if isinstance(icons, list):
        kept["icons"] = []
        for icon in map(_kept_icon, icons):
            if icon is not None:
                kept["icons"].append(icon)
                if len(kept["icons"]) == MAX_ICONS:
                    break
    return kept


def _kept_icon(icon: Any) -> dict[str, Any] | None:
    """An Icon as the hub keeps it (src, mimeType, sizes, theme, bounded), or None: not one it can keep."""
    if not isinstance(icon, dict) or not isinstance(icon.get("src"), str) or len(icon["src"]) > MAX_ICON_SRC:
        return None
    kept: dict[str, Any] = {"src": icon["src"]}
    for key in ("mimeType", "theme"):
        if isinstance(icon.get(key), str):
            kept[key] = icon[key][:MAX_INFO_TEXT]
    sizes = icon.get("sizes")
    if isinstance(sizes, list):
        kept["sizes"] = [size[:MAX_INFO_TEXT] for size in sizes[:16] if isinstance(size, str)]
    return kept
