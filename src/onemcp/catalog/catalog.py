"""The aggregated inventory: per-upstream cached lists, merged into client-visible lists.

Owns: the cached tools/prompts/resources/templates of every upstream, the client-visible
names and URIs, the reverse maps used for routing, collision reports, and the serialised
list results (built once per change, spliced into every list response). Does not own:
talking to upstreams (the connection fills it) or deciding who to notify (the hub does,
from what `update` reports as changed).
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson

from onemcp.catalog import repair
from onemcp.catalog.named import NamedUris, most_specific
from onemcp.catalog.reach import EVERYTHING, Reach
from onemcp.config.model import MAX_LIST_ITEM_BYTES, HubConfig, ServerConfig
from onemcp.observability.limits import count
from onemcp.protocol.errors import URI_DATA, NotFound, echo
from onemcp.protocol.methods import KINDS
from onemcp.protocol.names import INSTANCE_MARK, NameCodec, PrefixMode, is_web, shown_as

Item = dict[str, Any]
log = logging.getLogger("onemcp.catalog")


@dataclass(frozen=True)
class Overrides:
    """A server's tool rules from its config: which tools show, under which name and text."""

    disabled: frozenset[str] = frozenset()
    enabled: frozenset[str] | None = None  # when set, only these
    aliases: Mapping[str, str] = field(default_factory=dict)  # upstream name -> shown name
    descriptions: Mapping[str, str] = field(default_factory=dict)

    def exposes(self, name: str) -> bool:
        return name not in self.disabled and (self.enabled is None or name in self.enabled)

    def unmatched(self, names: set[str]) -> list[str]:
        """The rules that name a tool not in `names` (a typo, or a tool the server dropped), as config keys."""
        named = {
            "disabledTools": self.disabled,
            "enabledTools": self.enabled or (),
            "toolAliases": self.aliases,
            "toolDescriptions": self.descriptions,
        }
        return [f"{key}: {tool}" for key, tools in named.items() for tool in sorted(set(tools) - names)]


MAX_FILTERED = 256  # filtered lists kept per kind (one per distinct reach in use)


@dataclass
class _View:
    """One merged list: visible items, reverse map, and the serialised result."""

    items: list[Item] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)  # the server of each item
    originals: list[str] = field(default_factory=list)  # each item's upstream name or URI
    reverse: dict[str, tuple[str, str]] = field(default_factory=dict)  # visible -> the item shown to all
    # every item, hidden ones included (prefixMode never: one name, several servers), in config order;
    # a reach that does not include the first server of a name sees the next one it includes
    entries: list[tuple[Item, str, str, str]] = field(default_factory=list)  # (item, server, original, visible)
    candidates: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # visible -> (server, original)...
    result_json: bytes = b""
    # the serialised list as seen by each reach in use
    filtered: dict[Reach, bytes] = field(default_factory=dict)


def _template_regex(template: str) -> re.Pattern[str]:
    """A matcher for RFC 6570 templates good enough for routing (levels 1-2, query forms)."""
    out: list[str] = []
    pos = 0
    for m in re.finditer(r"\{([^}]*)\}", template):
        out.append(re.escape(template[pos : m.start()]))
        expr = m.group(1)
        if expr.startswith(("+", "#")):
            out.append(".*")
        elif expr.startswith(("?", "&")):
            out.append(r"(?:[?&].*)?")
        else:
            out.append("[^/?#]*")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out) + r"\Z")


class Catalog:
    """Aggregates upstream lists into one inventory with deterministic order."""

    def __init__(self, codec: NameCodec, mode: PrefixMode) -> None:
        self.codec = codec
        self.mode = mode
        self._order: list[str] = []
        self._placed: frozenset[str] = frozenset()  # the servers of `_order`
        self._names: set[str] = set()  # the prefixes in use: servers' and templates' names
        self.has_instances = False  # then no requester sees the whole list
        self._overrides: dict[str, Overrides] = {}
        self._lists: dict[str, dict[str, list[Item]]] = {}
        self._views: dict[str, _View] = {}
        self._templates: list[tuple[re.Pattern[str], str, str]] = []
        self.collisions: dict[str, list[str]] = {}
        self.repairs: dict[str, dict[str, repair.Report]] = {}  # server -> kind -> entries mended or withheld
        self.withheld: dict[str, set[str]] = {}  # server -> tools its pins withhold (hub/pins.py), for a clear error
        self.unmatched: dict[str, list[str]] = {}  # server -> its tool rules that name no tool it lists
        self.max_item_bytes = MAX_LIST_ITEM_BYTES  # onemcp.limits.maxListItemBytes: a larger entry is withheld
        self.version = 0  # counts rebuilds: a copy made by `overlaid` is stale once it moved on
        self.own_tools: frozenset[str] = frozenset()  # a copy's servers whose tools are its own (`overlaid`)
        self.forgotten: Callable[[str], None] = lambda server: None  # told when a server's lists go (its pins')
        self.named = NamedUris()  # web URIs results named, by server (shared with the copies `overlaid` makes)

    # ----------------------------------------------------------------- configuration
    @property
    def prefixed(self) -> bool:
        if self.mode is PrefixMode.ALWAYS:
            return True
        if self.mode is PrefixMode.NEVER:
            return False
        return len(self._names) > 1

    def set_servers(
        self, enabled: Iterable[str], overrides: Mapping[str, Overrides] | None = None, templates: Iterable[str] = ()
    ) -> set[str]:
        """Set the enabled servers (config order, then running template instances), their tool
        overrides, and the template names (they count for prefixing before any instance runs);
        returns the kinds that changed."""
        self._order = list(enabled)
        self._placed = frozenset(self._order)
        self._overrides = dict(overrides or {})
        self._names = {shown_as(server) for server in self._order} | set(templates)
        self.has_instances = any(INSTANCE_MARK in server for server in self._order)
        for gone in {*self._lists, *self.repairs, *self.withheld} - set(self._order):
            self._forget(gone)
            self.withheld.pop(gone, None)
            self.named.forget(gone)  # not when it only stopped: what it named is still its to answer
        return self._rebuild(set(KINDS))

    # ----------------------------------------------------------------------- updates
    def update(self, server: str, kind: str, items: list[Item]) -> bool:
        """Replace one server's list; True when the client-visible list changed."""
        items, report = self.repaired(kind, items)
        repairs = self.repairs.setdefault(server, {})
        if report.as_json() is not None and report != repairs.get(kind):
            log.warning("upstream %s: %s a strict client rejects or too large: %s", server, kind, report.as_json())
            if report.oversized:
                count("list_item_bytes", len(report.oversized))
        repairs[kind] = report
        per = self._lists.setdefault(server, {})
        if per.get(kind) == items:
            return False
        per[kind] = items
        return bool(self._rebuild({kind}))

    def repaired(self, kind: str, items: list[Item]) -> tuple[list[Item], repair.Report]:
        """One of a server's lists as clients are shown it: mended, its bad or too large entries withheld."""
        if kind == "tools":
            return repair.tools(items, self.max_item_bytes)
        return repair.entries(kind, items, self.max_item_bytes)

    def drop(self, server: str) -> set[str]:
        """Forget a server's lists (it stopped or failed); returns the changed kinds."""
        per = self._forget(server)
        if not per:
            return set()
        return self._rebuild({k for k, v in per.items() if v})

    def _forget(self, server: str) -> dict[str, list[Item]] | None:
        """What is kept of a server's lists goes with them (a server removed, an instance stopped, or one
        that stopped or failed); its lists, if there were any."""
        self.repairs.pop(server, None)
        self.forgotten(server)
        return self._lists.pop(server, None)

    def overlaid(
        self,
        own: Mapping[str, Mapping[str, list[Item]]],
        reports: Mapping[str, Mapping[str, repair.Report]] | None = None,
    ) -> Catalog:
        """A copy whose lists of the servers in `own` (those the catalog holds lists of) are replaced by
        `own`'s kinds, and their repair reports by `reports`' (what those connections withheld: a call to
        it is refused saying so): one session's view, through its own connections to them. The same rules,
        names and order apply; the copy is read only (it is rebuilt from the catalog when that changes)."""
        other = copy.copy(self)
        other._lists = {
            server: {**kinds, **own[server]} if server in own else kinds for server, kinds in self._lists.items()
        }
        other.repairs = {
            server: {**kinds, **(reports or {}).get(server, {})} if server in own else kinds
            for server, kinds in self.repairs.items()
        } | {server: dict(kinds) for server, kinds in (reports or {}).items() if server not in self.repairs}
        other._views, other.collisions, other.unmatched = {}, {}, dict(self.unmatched)
        owned = {server for server, kinds in own.items() if "tools" in kinds and server in self._lists}
        other.own_tools = self.own_tools | owned
        other._rebuild(set(KINDS), check=False)
        return other

    def _rebuild(self, kinds: set[str], check: bool = True) -> set[str]:
        self.version += 1
        changed: set[str] = set()
        for kind in kinds:
            view = self._build(kind)
            old = self._views.get(kind)
            if old is None or old.result_json != view.result_json:
                changed.add(kind)
            self._views[kind] = view
        if "tools" in kinds and check:
            self._check_rules()
        if "resourceTemplates" in kinds:
            self._templates = [
                (_template_regex(str(t.get("uriTemplate", ""))), server, str(t.get("uriTemplate", "")))
                for server in self._order
                for t in self._lists.get(server, {}).get("resourceTemplates", [])
            ]
        return changed

    def _check_rules(self) -> None:
        """Note (and log, once per change) each server's tool rules that name no tool it lists."""
        before, self.unmatched = self.unmatched, {}
        for server in self._order:
            tools, rules = self._lists.get(server, {}).get("tools"), self._overrides.get(server)
            found = rules.unmatched({str(t.get("name", "")) for t in tools}) if tools is not None and rules else []
            if found and found != before.get(server):
                log.warning("upstream %s: tool rules name no tool it lists: %s", server, "; ".join(found))
            self.unmatched[server] = found

    def _build(self, kind: str) -> _View:
        view = _View()
        prefixed = self.prefixed
        uri_key = {"resources": "uri", "resourceTemplates": "uriTemplate"}.get(kind)
        collisions = self.collisions.setdefault(kind, [])
        collisions.clear()
        for server in self._order:
            rules = self._overrides.get(server) if kind == "tools" else None
            prefix = shown_as(server)
            listed = self._lists.get(server, {}).get(kind, [])
            plain = set() if uri_key is not None else self._plain_names(prefix, listed, rules)
            for item in listed:
                if uri_key is not None:
                    original = str(item.get(uri_key, ""))
                    visible = self.codec.uri(prefix, original, prefixed=prefixed)
                else:
                    original = str(item.get("name", ""))
                    shown = original
                    if rules is not None:
                        if not rules.exposes(original):
                            continue
                        shown = rules.aliases.get(original, original)
                    visible = self.codec.name(prefix, shown, prefixed=prefixed)
                    taken = visible in plain or view.reverse.get(visible, ("",))[0] == server
                    if taken and not self.codec.plain(prefix, shown, prefixed=prefixed):
                        # sanitised into a name another tool of this server has: a digest tells them apart
                        visible = self.codec.hashed(prefix, shown, prefixed=prefixed)
                if visible != original:
                    item = {**item, (uri_key or "name"): visible}
                if kind == "tools" and prefixed and isinstance(item.get("_meta"), dict):
                    item = {**item, "_meta": _ui_uris(item["_meta"], partial(self.codec.uri, prefix, prefixed=True))}
                if rules is not None and original in rules.descriptions:
                    item = {**item, "description": rules.descriptions[original]}
                view.entries.append((item, server, original, visible))
                view.candidates.setdefault(visible, []).append((server, original))
                if visible in view.reverse:
                    owner = view.reverse[visible][0]
                    if owner == server or shown_as(owner) != prefix:  # two instances of a template: no collision
                        collisions.append(f"{kind[:-1]} {visible!r} of {server!r} hidden by {owner!r}")
                    continue
                view.reverse[visible] = (server, original)
                view.items.append(item)
                view.owners.append(server)
                view.originals.append(original)
        view.result_json = orjson.dumps({kind: view.items})
        return view

    def _plain_names(self, prefix: str, listed: list[dict[str, Any]], rules: Overrides | None) -> set[str]:
        """The names of a server's list shown as they are (nothing sanitised): they keep their name."""
        plain = set()
        for item in listed:
            shown = str(item.get("name", ""))
            if rules is not None and not rules.exposes(shown):
                continue  # hidden: its name is nobody's
            shown = rules.aliases.get(shown, shown) if rules is not None else shown
            if self.codec.plain(prefix, shown, prefixed=self.prefixed):
                plain.add(self.codec.name(prefix, shown, prefixed=self.prefixed))
        return plain

    # ----------------------------------------------------------------------- queries
    def result_json(self, kind: str, reach: Reach = EVERYTHING) -> bytes:
        """The serialised list result, whole or as one requester's reach sees it."""
        view = self._views.get(kind)
        if view is None:
            return orjson.dumps({kind: []})
        if reach.everything and not self.has_instances:
            return view.result_json
        cached = view.filtered.get(reach)
        if cached is None:
            if len(view.filtered) >= MAX_FILTERED:
                view.filtered.clear()  # many distinct principals: rebuild on demand rather than grow
            items, taken = [], set()
            for item, owner, original, visible in view.entries:
                if visible not in taken and reach.shows(kind, owner, original):
                    taken.add(visible)
                    items.append(item)
            cached = view.filtered[reach] = orjson.dumps({kind: items})
        return cached

    def items(self, kind: str) -> list[Item]:
        view = self._views.get(kind)
        return view.items if view is not None else []

    def placed(self, kind: str) -> list[tuple[Item, str, str]]:
        """Each visible item with its server and upstream name or URI, in list order."""
        view = self._views.get(kind)
        return list(zip(view.items, view.owners, view.originals, strict=True)) if view is not None else []

    def entries(self, kind: str) -> list[tuple[Item, str, str, str]]:
        """Every item with its server, upstream name and visible name, those a name shared with an
        earlier server hides included (a requester who does not reach that server sees them), in
        config order. The list is replaced, never changed, when the catalog changes."""
        view = self._views.get(kind)
        return view.entries if view is not None else []

    def seen_as(self, kind: str, visible: str, reach: Reach) -> tuple[str, str] | None:
        """(server, upstream name) of the item `reach` sees under a visible tool or prompt name (the
        first server that has it within reach, as its list shows), or None when it sees none."""
        view = self._views.get(kind)
        found = view.candidates.get(visible, ()) if view is not None else ()
        return next((c for c in found if reach.shows(kind, *c)), None)

    def counts(self, server: str) -> dict[str, int]:
        per = self._lists.get(server, {})
        return {kind: len(per.get(kind, [])) for kind in KINDS}

    def shown_counts(self, reach: Reach, kinds: tuple[str, ...] = ("tools", "prompts")) -> dict[str, dict[str, int]]:
        """server -> kind -> how many of its items `reach`'s lists show (rules and scopes applied)."""
        out: dict[str, dict[str, int]] = {}
        for kind in kinds:
            taken: set[str] = set()
            for _, owner, original, visible in self.entries(kind):
                if visible not in taken and reach.shows(kind, owner, original):
                    taken.add(visible)
                    per = out.setdefault(owner, dict.fromkeys(kinds, 0))
                    per[kind] += 1
        return out

    def serves(self, server: str) -> bool:
        """Is `server` one whose lists the catalog serves (enabled, or a running instance)?"""
        return server in self._placed

    def has_lists(self, server: str) -> bool:
        """Does the catalog hold lists of `server` now (it is ready)?"""
        return server in self._lists

    def withheld_error(self, visible: str, reach: Reach) -> NotFound | None:
        """The error for a tool `reach` would see but its pin withholds (None: not such a tool)."""
        return self._withheld("tools", visible, reach) if self.withheld else None

    def _oversized(self, kind: str, visible: str, reach: Reach) -> NotFound | None:
        """The error for a tool or prompt withheld for its size (`maxListItemBytes`), if `visible` is one that
        `reach` would see (else the caller says "not found", as for a pin's)."""
        for server, reports in self.repairs.items():
            report = reports.get(kind)
            if report is None or not report.oversized or server not in self._placed:
                continue
            rules = self._overrides.get(server) if kind == "tools" else None
            for name in report.oversized:
                if rules is not None and not rules.exposes(name):
                    continue
                shown = rules.aliases.get(name, name) if rules is not None else name
                if self.codec.name(shown_as(server), shown, prefixed=self.prefixed) == visible and reach.shows(
                    kind, server, name
                ):
                    what = "Tool" if kind == "tools" else "Prompt"
                    return NotFound(
                        f"{what} withheld: {visible}: {report.withheld[name]}; an operator may raise"
                        " onemcp.limits.maxListItemBytes",
                        data={"withheld": True},
                    )
        return None

    def _withheld(self, kind: str, visible: str, reach: Reach) -> NotFound | None:
        """The error for a tool withheld by its pin (its definition changed, not approved), if `visible` is
        one that `reach` would see (else the caller says "not found": nothing about other servers leaks)."""
        if kind != "tools":
            return None
        for server, tools in self.withheld.items():
            rules = self._overrides.get(server)
            for tool in tools:
                shown = rules.aliases.get(tool, tool) if rules is not None else tool
                if (
                    server in self._order
                    and self.codec.name(shown_as(server), shown, prefixed=self.prefixed) == visible
                    and reach.shows(kind, server, tool)
                ):
                    return NotFound(
                        f"Tool withheld: {visible}: its definition changed since it was approved; an operator"
                        f" reviews and approves it with `onemcp mcp approve {shown_as(server)}/{tool}`",
                        data={"withheld": True},
                    )
        return None

    def _unlisted(self, kind: str, name: str) -> bool:
        """May the one server be asked for `name`, a tool or prompt it did not list? Not a tool its rules
        hide: disabled, outside enabledTools, or renamed (its old name is not exposed)."""
        rules = self._overrides.get(self._order[0]) if kind == "tools" else None
        return rules is None or (rules.exposes(name) and name not in rules.aliases)

    def locate_name(self, kind: str, visible: str, reach: Reach = EVERYTHING) -> tuple[str, str]:
        """(server, upstream name) of a visible tool or prompt name: of the servers that have it, the
        first within `reach`, else the first (for the caller to refuse); NotFound when none has it."""
        view = self._views.get(kind)
        found = view.candidates.get(visible) if view is not None else None
        # none within reach: maybe its pin withholds the requester's own (another instance of a template lists it)
        seen = found is not None and any(reach.shows(kind, *c) for c in found)
        if not seen and self.withheld and (withheld := self._withheld(kind, visible, reach)) is not None:
            raise withheld
        if not seen and (oversized := self._oversized(kind, visible, reach)) is not None:
            raise oversized
        if not found and not self.prefixed and len(self._order) == 1 and self._unlisted(kind, visible):
            return self._order[0], visible  # one server, names its own: it answers for names it lacks too
        if not found:
            raise missing(kind, visible)
        return next((c for c in found if reach.shows(kind, *c)), found[0])

    def resolve_name(self, kind: str, visible: str, reach: Reach = EVERYTHING) -> tuple[str, str]:
        """(server, upstream name) for a visible tool or prompt name within `reach` (else NotFound)."""
        hit = self.locate_name(kind, visible, reach)
        if not reach.shows(kind, *hit):
            raise missing(kind, visible)
        return hit

    def locate_uri(self, visible: str, reach: Reach = EVERYTHING) -> tuple[str, str]:
        """(server, upstream URI) for a visible resource URI, listed or template-matched: the first
        candidate within `reach`, else the first; NotFound when no server could have it."""
        found = self._uri_candidates(visible, reach)
        if not found:
            raise missing("resources", visible)
        return next((c for c in found if reach.shows("resources", *c)), found[0])

    def resolve_uri(self, visible: str, reach: Reach = EVERYTHING) -> tuple[str, str]:
        """(server, upstream URI) for a visible resource URI within `reach` (else NotFound)."""
        hit = self.locate_uri(visible, reach)
        if not reach.shows("resources", *hit):
            raise missing("resources", visible)
        return hit

    def _uri_candidates(self, visible: str, reach: Reach) -> list[tuple[str, str]]:
        view = self._views.get("resources")
        found = list(view.candidates.get(visible, [])) if view is not None else []
        named = self.named.server_of(reach, visible)  # web URIs only: the server whose result named it
        if named is not None and named in self._placed:
            found.append((named, visible))
        if self.prefixed and is_web(visible):
            found += self._matching(visible)
            if not found:  # a web address only a result named: the one server in reach that has resources
                with_resources = [s for s in self._order if self._lists.get(s, {}).get("resources") is not None]
                mine = [s for s in with_resources if reach.shows("resources", s, visible)]
                found += [(mine[0], visible)] if len(mine) == 1 else []
        elif self.prefixed:
            split = self.codec.split_uri(visible)
            if split is not None and split[0] in self._order and split not in found:
                found.append(split)
            elif split is not None and split[0] in self._names:
                # a template's name: the requester's own instance of it (the prefix its URIs are shown with)
                mine = [s for s in self._order if s in reach.instances and shown_as(s) == split[0]]
                found += [(server, split[1]) for server in mine if (server, split[1]) not in found]
        else:
            found += self._matching(visible)
            with_resources = [s for s in self._order if self._lists.get(s, {}).get("resources")]
            if len(self._order) == 1 or len(with_resources) == 1:
                found.append(((self._order[0] if len(self._order) == 1 else with_resources[0]), visible))
        return list(dict.fromkeys(found))

    def _matching(self, visible: str) -> list[tuple[str, str]]:
        """(server, URI) of the templates that match `visible`, the most specific kind only (`named.py`)."""
        return most_specific([(server, visible, t) for pattern, server, t in self._templates if pattern.match(visible)])

    def visible_uri(self, server: str, uri: str) -> str:
        return self.codec.uri(shown_as(server), uri, prefixed=self.prefixed)


# The keys of a tool's `_meta` that name one of its server's resources for a host to read (MCP Apps'
# `ui.resourceUri`, its older flat spelling, the OpenAI Apps SDK's template): shown as the hub shows that
# resource, or the host would ask for a URI the hub does not know. Nothing else in `_meta` is touched.
_UI_KEYS = ("ui/resourceUri", "openai/outputTemplate")


def _ui_uris(meta: dict[str, Any], show: Callable[[str], str]) -> dict[str, Any]:
    ui = meta.get("ui")
    if isinstance(ui, dict) and isinstance(ui.get("resourceUri"), str):
        meta = {**meta, "ui": {**ui, "resourceUri": show(ui["resourceUri"])}}
    for key in _UI_KEYS:
        if isinstance(meta.get(key), str):
            meta = {**meta, key: show(meta[key])}
    return meta


def missing(kind: str, visible: str) -> NotFound:
    """The error for a name or URI that is not there (or not there for this requester: the same)."""
    if kind in ("tools", "prompts"):
        return NotFound(f"{'Tool' if kind == 'tools' else 'Prompt'} not found: {echo(visible)}")
    data = {"uri": visible} if len(visible) <= URI_DATA else None  # the message says how long it was
    if kind == "resourceTemplates":
        return NotFound(f"Resource template not found: {echo(visible)}", data=data)
    return NotFound(f"Resource not found: {echo(visible)}", data=data)


def tool_rules(config: HubConfig, instances: Mapping[str, ServerConfig] | None = None) -> dict[str, Overrides]:
    """Each enabled server's (and each template instance's) tool rules, from its config."""
    servers = {**config.enabled, **(instances or {})}
    return {
        name: Overrides(
            disabled=frozenset(server.disabled_tools),
            enabled=frozenset(server.enabled_tools) if server.enabled_tools is not None else None,
            aliases=dict(server.tool_aliases),
            descriptions=dict(server.tool_descriptions),
        )
        for name, server in servers.items()
    }
