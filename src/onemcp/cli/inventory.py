"""What a hub's tools are, by server, for `onemcp inspect`, `run` and the token counts.

Owns reading the hub's naming (predicted from mcp.json: prefixMode, separator, enabled servers), grouping
the listed tools by server (by their prefix; `/health` says which servers there are and their states)
and, when the names do not say their server (prefixMode never, several servers), which listed names one
server alone has (the admin API's catalog, when the caller may read it). Does not call tools nor print.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from onemcp.cli.client.rpc import HubClient, HubUnreachable
from onemcp.cli.target import Target, view_of

DEFAULT_SEPARATOR = "__"
UNATTRIBUTED = "?"  # tools whose names do not say their server (prefixMode never, several servers)
CATALOG_LIMIT = 1000  # tools the admin API gives in one answer (onemcp.admin.api.MAX_LIMIT; not imported)


class Naming:
    """How the hub names tools: the separator, whether it prefixes (None: unknown), and the enabled
    servers its config lists (None: no config read)."""

    def __init__(
        self, separator: str = DEFAULT_SEPARATOR, prefixed: bool | None = None, servers: list[str] | None = None
    ) -> None:
        self.separator = separator
        self.prefixed = prefixed
        self.servers = servers

    @classmethod
    def from_config(cls, path: Path | None) -> Naming:
        """Predicted from the hub's mcp.json (prefixMode, number of enabled servers); cheap, may be stale."""
        try:
            doc = json.loads(path.read_bytes()) if path is not None else None
        except (OSError, ValueError):
            doc = None
        if not isinstance(doc, dict):
            return cls()
        settings = doc.get("onemcp")
        hub: dict[str, Any] = settings if isinstance(settings, dict) else {}
        separator = hub.get("separator") if isinstance(hub.get("separator"), str) else DEFAULT_SEPARATOR
        groups = (doc.get("mcpServers", doc.get("servers")), doc.get("mcpTemplates"))  # a template names tools too
        entries = [entry for group in groups if isinstance(group, dict) for entry in group.items()]
        enabled = [str(k) for k, s in entries if not (isinstance(s, dict) and s.get("disabled") is True)]
        mode = hub.get("prefixMode", "conditional")
        prefixed = True if mode == "always" else False if mode == "never" else len(enabled) > 1
        return cls(separator or DEFAULT_SEPARATOR, prefixed, enabled)


class Inventory:
    """The hub's tools (as this view sees them) grouped by server."""

    def __init__(
        self,
        naming: Naming,
        tools: list[dict[str, Any]],
        servers: dict[str, dict[str, Any]],
        collisions: list[str] | None = None,
    ) -> None:
        self.naming = naming
        self.tools = tools
        self.servers = servers  # name -> its /health entry
        self.collisions = collisions or []  # /health's: "tool 'x' of 'b' hidden by 'a'"
        self.owners: dict[str, str] = {}  # names that do not say their server: the one server with that name

    def owner(self, tool_name: str) -> str | None:
        """The server a visible tool name belongs to (None when the names do not say)."""
        if self.naming.prefixed is not False:
            heads = [s for s in self.servers if tool_name.startswith(s + self.naming.separator)]
            if heads:
                return max(heads, key=len)
        if tool_name in self.owners:
            return self.owners[tool_name]
        live = [s for s, h in self.servers.items() if h.get("state") != "disabled"]
        return live[0] if len(live) == 1 else None

    def by_server(self) -> dict[str, list[dict[str, Any]]]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for tool in self.tools:
            groups.setdefault(self.owner(str(tool.get("name"))) or UNATTRIBUTED, []).append(tool)
        return groups

    def short(self, server: str, tool: dict[str, Any]) -> str:
        """The tool's name without the server prefix (what SERVER/TOOL uses)."""
        name = str(tool.get("name"))
        prefix = server + self.naming.separator
        return name[len(prefix) :] if name.startswith(prefix) and self.naming.prefixed is not False else name


def inventory(client: HubClient, target: Target, *, filtered: bool) -> Inventory:
    listed = client.request("tools/list").get("tools")
    tools = [t for t in listed if isinstance(t, dict)] if isinstance(listed, list) else []
    naming = Naming.from_config(target.config)
    try:
        health = client.health()
    except HubUnreachable:
        health = {}  # not an onemcp hub, or /health is not reachable: infer from names
    upstreams, collisions = health.get("upstreams"), health.get("collisions")
    servers: dict[str, dict[str, Any]] = {}
    templates: set[str] = set()  # names /health has only as instances: other projects' may be among them
    if isinstance(upstreams, dict):
        for key, entry in upstreams.items():
            name, at, _ = str(key).partition("@")  # a template's instance (`<template>@<hash>`) by its name
            if at:
                templates.add(name)
                if servers.get(name, {}).get("state") == "ready":
                    continue  # of several instances (projects), a ready one stands for this caller's
            servers[name] = entry if isinstance(entry, dict) else {}
    elif naming.prefixed is False and naming.servers is not None:  # the names do not say; the config does
        servers = {name: {} for name in naming.servers}
    else:
        for tool in tools:
            head, sep, _ = str(tool.get("name")).partition(naming.separator)
            if sep:
                servers.setdefault(head, {})
    inv = Inventory(naming, tools, servers, [str(c) for c in collisions] if isinstance(collisions, list) else [])
    if naming.prefixed is None:
        naming.prefixed = any(inv.owner(str(t.get("name"))) for t in tools) and len(servers) > 1
    if naming.prefixed is False and len(servers) > 1:
        inv.owners = _catalog_owners(client, inv)
    present = set(inv.by_server())
    if filtered:  # a view: keep the servers it lets through (those with tools in it)
        inv.servers = {k: v for k, v in servers.items() if k in present}
    elif UNATTRIBUTED not in present:  # a template is this caller's when its list has the template's tools
        inv.servers = {k: v for k, v in servers.items() if k not in templates or k in present}
    return inv


def health_counts(inv: Inventory, target: Target) -> bool:
    """Do /health's per-server figures stand for this listing? When the names carry no server
    (prefixMode never, several servers) and no view filters the list, they are the same tools."""
    known = all("toolTokens" in h or h.get("state") == "disabled" for h in inv.servers.values())
    return UNATTRIBUTED in inv.by_server() and not bool(view_of(target.url)) and bool(inv.servers) and known


def _catalog_owners(client: HubClient, inv: Inventory) -> dict[str, str]:
    """The server of each listed name that one server alone has, from the hub's catalog (the admin API's
    tools, which name their server; it needs the scope /health needs). A name /health reports hidden by
    another server's (a collision) is left out: which one this caller sees depends on its scopes."""
    try:
        doc = client.get_json(f"/api/v1/tools?limit={CATALOG_LIMIT}")
    except HubUnreachable:  # refused (no operator scope), or no admin API: the names cannot be told
        return {}
    listed = {str(t.get("name")) for t in inv.tools}
    found = doc.get("tools")
    owners: dict[str, str] = {}
    for tool in found if isinstance(found, list) else []:
        if not isinstance(tool, dict) or not isinstance(tool.get("server"), str):
            continue
        name, server = str(tool.get("name")), str(tool["server"]).partition("@")[0]  # an instance: its template
        collided = any(c.startswith(f"tool {name!r} of ") for c in inv.collisions)
        if name in listed and server in inv.servers and not collided:
            owners[name] = server
    return owners
