"""Protocol versions and eras: which versions the hub speaks, and how to pick one.

Legacy (handshake) versions negotiate in `initialize`; the modern era (2026-07-28) is
chosen per request by the MCP-Protocol-Version header. The hub's downstream currently
serves the legacy era; `era_of` is the seam the modern era plugs into.
"""

from __future__ import annotations

from typing import Literal

Era = Literal["legacy", "modern"]

LEGACY_VERSIONS: tuple[str, ...] = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS: tuple[str, ...] = ("2026-07-28",)
LATEST_LEGACY = "2025-11-25"
# Spec: a request without the header whose version cannot be inferred is 2025-03-26.
DEFAULT_HEADER_VERSION = "2025-03-26"


def negotiate(requested: object) -> str:
    """The version the hub answers `initialize` with."""
    if isinstance(requested, str) and requested in LEGACY_VERSIONS:
        return requested
    return LATEST_LEGACY


def era_of(version: str) -> Era | None:
    if version in LEGACY_VERSIONS:
        return "legacy"
    if version in MODERN_VERSIONS:
        return "modern"
    return None
