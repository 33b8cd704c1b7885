"""Merging capability objects from several servers into the one the hub advertises."""

from __future__ import annotations

from typing import Any


def merge_capabilities(caps: list[dict[str, Any]]) -> dict[str, Any]:
    """The union of capability objects (nested objects merged key by key)."""
    out: dict[str, Any] = {}
    for cap in caps:
        for key, value in cap.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge_capabilities([out[key], value])
            else:
                out.setdefault(key, value)
    return out
