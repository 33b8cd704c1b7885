"""Merging capability objects from several servers into the one the hub advertises."""

from __future__ import annotations

from typing import Any

import orjson


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
# An extension's settings larger than this (serialised) are not passed on: the extension is advertised
# with none (`{}`). Every client's `initialize` and `server/discover` carries them: a server's 5 MB made
# each one 5 MB.
MAX_EXTENSION_SETTINGS = 16 * 1024
# What a server's `tasks` capability may say (2025-11-25 `ServerCapabilities.tasks`), and so what the hub
# routes: nothing else of it is advertised, and each as `{}` (the spec gives them no content).
TASK_CAPABILITIES = (("list",), ("cancel",), ("requests", "tools", "call"))


def _tasks(caps: Any) -> dict[str, Any]:
    """The parts of a server's `tasks` capability the hub routes (`TASK_CAPABILITIES`)."""
    out: dict[str, Any] = {}
    for path in TASK_CAPABILITIES:
        found: Any = caps
        for key in path:
            found = found.get(key) if isinstance(found, dict) else None
        if isinstance(found, dict):
            into = out
            for key in path[:-1]:
                into = into.setdefault(key, {})
            into[path[-1]] = {}
    return out


def _settings(value: Any) -> Any:
    """An extension's settings as passed on: as they came, or none when they are too large."""
    if isinstance(value, dict) and len(orjson.dumps(value)) > MAX_EXTENSION_SETTINGS:
        return {}
    return value


def advertised(upstreams: list[dict[str, Any]]) -> dict[str, Any]:
    """The hub's own capabilities, given its ready upstreams' (`upstreams`): the lists always (it relays
    their list_changed) and logging; resource subscriptions, completions, tasks (what of them it routes) and
    the extensions of PASSED_EXTENSIONS (their settings bounded) when some upstream has them."""
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
    tasks = [_tasks(c["tasks"]) for c in upstreams if isinstance(c.get("tasks"), dict)]
    if tasks:
        caps["tasks"] = merge_capabilities(tasks)
    extensions = [c["extensions"] for c in upstreams if isinstance(c.get("extensions"), dict)]
    passed = merge_capabilities([{k: _settings(v) for k, v in e.items() if k in PASSED_EXTENSIONS} for e in extensions])
    if passed:
        caps["extensions"] = passed
    return caps
