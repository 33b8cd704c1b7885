"""Importing another app's servers into mcp.json: choose names, spot conflicts, then add.

Owns the decision for each found server (add, skip as already present, conflict, replace, or
invalid) and the renaming of names our rules reject. Pure over documents: reading app files is
`apps`, writing mcp.json is `edit`.

Rules: names are sanitised to `server_name_problem`'s rules (the rename is reported); a name
already in mcp.json with the same definition (transport, command, args, env, cwd, url,
headers) is skipped, and so is one that mcp.json has under another name (a `--prefix` import does not
copy again what an earlier import or `mcp add` brought in); with a different one it is a conflict and
left alone unless forced. Two
servers of the same app that end up with one name keep the first and number the rest. The hub's
own entry (what `--point-to-hub` wrote: the hub's URL, or `onemcp proxy` to it) is skipped: as an
upstream of itself the hub would list every tool twice, each second copy a call through itself.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from onemcp.config.edit import Document, separator_of, servers_of, validate
from onemcp.config.load import ConfigError
from onemcp.integrations.apps import DEFAULT_HUB_URL, FoundServer
from onemcp.protocol.names import server_name_problem

_NAME_MAX = 32
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
ITSELF = "this is the hub itself (--point-to-hub wrote it): importing it would list every tool twice"


class Action(StrEnum):
    ADD = "add"
    REPLACE = "replace"  # a conflict, overwritten because forced
    SKIP = "skip"  # already there with the same definition
    CONFLICT = "conflict"
    INVALID = "invalid"


@dataclass(frozen=True)
class Planned:
    found: FoundServer
    name: str
    action: Action
    reason: str = ""

    @property
    def renamed(self) -> bool:
        return self.name != self.found.name

    @property
    def writes(self) -> bool:
        return self.action in (Action.ADD, Action.REPLACE)


def sanitize(name: str, separator: str) -> str:
    """`name` changed as little as needed to satisfy `server_name_problem` under `separator`."""
    filler = next((c for c in "_-" if c not in separator), "")
    clean = re.sub(r"[^A-Za-z0-9_-]+", filler, name)
    while separator in clean:
        clean = clean.replace(separator, filler)
    ends = separator + filler
    clean = clean.strip(ends)[:_NAME_MAX].strip(ends)
    if not clean or server_name_problem(clean, separator):
        clean = "server"
    return clean


def definition(entry: Any) -> dict[str, Any]:
    """What makes two entries the same server (tags, timeouts and the disabled flag do not)."""
    if not isinstance(entry, dict):
        return {"invalid": entry}
    if entry.get("command") is not None:
        transport = "stdio"
    elif entry.get("type") == "sse":
        transport = "sse"
    else:
        transport = "http"
    return {  # compared as written (absent and empty alike): a hand-edited `"env": ["A"]` is no error here
        "transport": transport,
        "command": entry.get("command"),
        "args": entry.get("args") or [],
        "env": entry.get("env") or {},
        "cwd": entry.get("cwd"),
        "url": entry.get("url"),
        "headers": entry.get("headers") or {},
    }


def is_hub(entry: dict[str, Any], hub_urls: Collection[str]) -> bool:
    """Is this entry the hub itself: one of `hub_urls`, or `onemcp proxy` (to one of them, or with no --url:
    the hub of its config directory)?"""
    command = entry.get("command")
    if isinstance(command, str):
        args = [arg for arg in entry.get("args") or [] if isinstance(arg, str)]
        program = re.split(r"[\\/]", command)[-1].lower().removesuffix(".exe")
        if program == "onemcp" and args[:1] == ["proxy"]:
            rest = args[1:]
        elif program.startswith("python") and args[:3] == ["-m", "onemcp", "proxy"]:
            rest = args[3:]
        else:
            return False
        urls = [b for a, b in itertools.pairwise(rest) if a == "--url"]
        urls += [arg.removeprefix("--url=") for arg in rest if arg.startswith("--url=")]
        return not urls or any(same_url(url, hub_urls) for url in urls)
    url = entry.get("url")
    return isinstance(url, str) and same_url(url, hub_urls)


def same_url(url: str, hub_urls: Collection[str]) -> bool:
    """`url` names one of `hub_urls` (loopback names alike, the query, case and a final / aside)."""

    def key(text: str) -> tuple[str, str, int | None, str] | None:
        try:
            parts = urlsplit(text.strip())
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
        except ValueError:
            return None
        host = (parts.hostname or "").lower()
        return parts.scheme.lower(), "loopback" if host in _LOOPBACK else host, port, parts.path.rstrip("/")

    mine = key(url)
    return mine is not None and any(mine == key(hub) for hub in hub_urls)


def plan_import(
    found: list[FoundServer],
    doc: Document,
    *,
    env: dict[str, str],
    prefix: str = "",
    force: bool = False,
    hub_urls: Collection[str] = (DEFAULT_HUB_URL,),
) -> list[Planned]:
    """What to do with each found server. `hub_urls`: where this hub is reached (an entry naming it is skipped)."""
    separator = separator_of(doc)
    existing = servers_of(doc)
    taken: dict[str, FoundServer] = {}
    plan: list[Planned] = []
    for server in found:
        if server.entry is None:
            plan.append(Planned(server, server.name, Action.INVALID, "; ".join(server.notes) or "not a server"))
            continue
        name = sanitize(prefix + server.name, separator)
        if is_hub(server.entry, hub_urls):
            plan.append(Planned(server, name, Action.SKIP, ITSELF))
            continue
        if name in taken:
            first = taken[name]
            if definition(first.entry) == definition(server.entry):
                plan.append(Planned(server, name, Action.SKIP, f"same as {name!r} from {first.source.label}"))
                continue
            name = _numbered(name, separator, set(taken) | set(existing))
        problem = _problem(name, server.entry, separator, env)
        if problem:
            plan.append(Planned(server, name, Action.INVALID, problem))
            continue
        taken[name] = server
        twin = next((k for k, v in existing.items() if definition(v) == definition(server.entry)), None)
        if name not in existing and twin is not None:
            plan.append(Planned(server, name, Action.SKIP, f"already in mcp.json as {twin!r}, the same definition"))
        elif name not in existing:
            plan.append(Planned(server, name, Action.ADD))
        elif definition(existing[name]) == definition(server.entry):
            plan.append(Planned(server, name, Action.SKIP, "already in mcp.json with the same definition"))
        elif force:
            plan.append(Planned(server, name, Action.REPLACE, "mcp.json had a different definition"))
        else:
            plan.append(Planned(server, name, Action.CONFLICT, "mcp.json has a different server by this name"))
    return plan


def apply_plan(doc: Document, plan: list[Planned]) -> None:
    """Add (or, when forced, replace) the planned servers in `doc`, keeping everything else."""
    servers = servers_of(doc, create=True)
    for item in plan:
        if item.writes and item.found.entry is not None:
            servers[item.name] = item.found.entry


def _numbered(name: str, separator: str, taken: set[str]) -> str:
    n = 2
    while True:
        suffix = f"{'-' if '-' not in separator else '_'}{n}"
        candidate = sanitize(name[: _NAME_MAX - len(suffix)] + suffix, separator)
        if candidate not in taken:
            return candidate
        n += 1


def _problem(name: str, entry: dict[str, Any], separator: str, env: dict[str, str]) -> str | None:
    """Why this entry alone would make mcp.json fail to load, or None."""
    doc: Document = {"mcpServers": {name: entry}, "onemcp": {"separator": separator}}
    try:
        validate(doc, source="entry", env=env)
    except ConfigError as exc:
        return str(exc).removeprefix("entry: ")
    return None
