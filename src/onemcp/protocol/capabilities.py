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


# Extensions the hub serves by forwarding what it forwards anyway (MCP Apps: tools and `ui://` resources).
# Another (the tasks extension, a vendor's) may bring methods of its own, which the hub answers -32601.
PASSED_EXTENSIONS = ("io.modelcontextprotocol/ui",)


def advertised(upstreams: list[dict[str, Any]]) -> dict[str, Any]:
    """The hub's own capabilities, given its ready upstreams' (`upstreams`): the lists always (it relays
    their list_changed) and logging; resource subscriptions, completions, tasks and the extensions of
    PASSED_EXTENSIONS when some upstream has them."""
    caps: dict[str, Any] = {
        "tools": {"listChanged": True},
        "prompts": {"listChanged": True},
        "resources": {"listChanged": True},
        "logging": {},
    }
    if any(isinstance(c.get("resources"), dict) and c["resources"].get("subscribe") for c in upstreams):
        caps["resources"]["subscribe"] = True
    if any("completions" in c for c in upstreams):
        caps["completions"] = {}
    tasks = [c["tasks"] for c in upstreams if isinstance(c.get("tasks"), dict)]
    if tasks:
        caps["tasks"] = merge_capabilities(tasks)
    extensions = [c["extensions"] for c in upstreams if isinstance(c.get("extensions"), dict)]
    passed = merge_capabilities([{k: v for k, v in e.items() if k in PASSED_EXTENSIONS} for e in extensions])
    if passed:
        caps["extensions"] = passed
    return caps
