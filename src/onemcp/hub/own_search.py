"""Tool search over a session's view of the catalog: its own connections' tools beside the hub's index.

A session (or principal) whose own connection to a server lists tools of its own sees a copy of the
catalog with them (`hub/own_lists.py`). The hub's search index holds the catalog's tools, never a
view's, and is not rebuilt per session: a view gets a small index of the tools of its own servers
alone (`Catalog.own_tools`), built on a worker thread with the hub index's models and the vectors it
or an earlier view's index already had (by definition hash, the last `MAX_KEPT`: a tool that only the
session's connection lists is encoded once, not each time its view is made again), kept as long as
the view is (weakly: a view is rebuilt whenever the catalog or its own lists change). A search
asks both, the hub's without those servers' tools, and merges the hits by their fused score. Owns
the entries of a catalog as search reads them (`ToolEntries`) and those small indexes; does not own
the hub's index (`hub/exposure.py`) nor decide who sees what (`Access`, through `allowed`).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from onemcp.catalog.catalog import Catalog, Item
from onemcp.catalog.reach import Reach
from onemcp.protocol.names import shown_as
from onemcp.search import meta

if TYPE_CHECKING:
    from onemcp.search.index import Hit, SearchIndex

MAX_SEEN = 256  # requesters' sets of visible tools kept per catalog (one per distinct reach and server searched)
MAX_KEPT = 4096  # vectors of views' own tools kept (per model) for the next views' indexes (~6 MB of the transformer's)


def entry_key(server: str, visible: str) -> str:
    """What the index knows one catalog entry by: a visible name can be several servers' (template
    instances, prefixMode never), and each requester sees the one its reach selects."""
    return f"{server}\0{visible}"


@dataclass(frozen=True)
class ToolEntries:
    """Every tool entry of a catalog (hidden ones included), grouped for an index and looked up by key."""

    of: list[tuple[Item, str, str, str]]  # the catalog's entries these were built from (rebuilt when replaced)
    by_server: dict[str, list[Item]]  # server -> its entries' definitions, as listed
    keys: dict[str, list[str]]  # server -> its entries' keys, in the same order
    definitions: dict[str, Item]  # key -> definition as listed
    owners: dict[str, tuple[str, str, str]]  # key -> (server, upstream name, visible name)
    placed: set[str]  # the first entry's key of each name (without instances: what all see), no meta names
    seen: dict[tuple[Reach, str | None], frozenset[str]]  # (reach, server) -> the keys it sees (`allowed`)
    server_tokens: dict[str, int] = field(default_factory=dict)  # server -> tokens of its tools (once asked)


def tool_entries(catalog: Catalog) -> ToolEntries:
    """`catalog`'s tool entries as search reads them."""
    tools = catalog.entries("tools")
    made = ToolEntries(tools, {}, {}, {}, {}, set(), {})
    for item, server, original, visible in tools:
        key = entry_key(server, visible)
        made.by_server.setdefault(server, []).append(item)
        made.keys.setdefault(server, []).append(key)
        made.definitions[key] = item
        made.owners[key] = (server, original, visible)
    for item, server, _ in catalog.placed("tools"):  # the first entry of each name
        if (visible := str(item.get("name"))) not in meta.NAMES:
            made.placed.add(entry_key(server, visible))
    return made


def allowed(catalog: Catalog, entries: ToolEntries, reach: Reach, server: str | None) -> frozenset[str]:
    """The entries (by key) a requester with `reach` sees in its full list of `catalog`, of `server` if
    given: of the entries with one visible name, the first within reach, as its list shows; never a
    meta-tool's name (the meta-tool's). Kept per reach in `entries` (made again with the catalog)."""
    found = entries.seen.get((reach, server))
    if found is None:
        if reach.everything and not catalog.has_instances:
            found = frozenset(k for k in entries.placed if server is None or shown_as(entries.owners[k][0]) == server)
        else:
            seen_as = functools.partial(catalog.seen_as, "tools", reach=reach)
            found = frozenset(
                key
                for key, (owner, original, visible) in entries.owners.items()
                if visible not in meta.NAMES
                and (server is None or shown_as(owner) == server)
                and seen_as(visible) == (owner, original)
            )
        if len(entries.seen) >= MAX_SEEN:
            entries.seen.clear()  # many distinct principals: rebuild on demand rather than grow
        entries.seen[(reach, server)] = found
    return found


@dataclass(eq=False)
class _View:
    entries: ToolEntries
    index: SearchIndex | None = None  # of the view's own servers' tools (`OwnSearch.index`)
    deep: bool = False  # whether that index ranks with the transformer


class OwnSearch:
    """The entries and small indexes of sessions' views of the catalog, each kept as long as its view."""

    def __init__(self, identity: Callable[[str], str]) -> None:
        self._identity = identity  # server -> the name and title it reports (the index reads products in it)
        self._views: weakref.WeakKeyDictionary[Catalog, _View] = weakref.WeakKeyDictionary()
        self._kept: SearchIndex | None = None  # of no tools: vectors views' own tools had, by definition hash

    def _view(self, catalog: Catalog) -> _View:
        view = self._views.get(catalog)
        if view is None:
            view = self._views[catalog] = _View(tool_entries(catalog))
        return view

    def report(self) -> dict[str, int]:
        """For /health: the views' small indexes alive now, the tools they hold, the vectors kept for the
        next ones (a walk over the live views: no counting, no encoding)."""
        indexes = [view.index for view in list(self._views.values()) if view.index is not None]
        kept = 0 if self._kept is None else self._kept.vectors_held()
        return {"indexes": len(indexes), "tools": sum(len(index) for index in indexes), "keptVectors": kept}

    def entries(self, catalog: Catalog) -> ToolEntries:
        """A view's tool entries (made once per view)."""
        return self._view(catalog).entries

    async def index(self, catalog: Catalog, lender: SearchIndex, deep: bool) -> SearchIndex:
        """The index of `catalog`'s own servers' tools, ranking with the transformer when `deep` (and
        the hub index has one): built on a worker thread with `lender`'s models the first time, and
        again if `deep` changed (the hub's index began or stopped ranking with it). A definition is
        encoded only if neither `lender` nor an earlier view's index had its vectors (kept by hash,
        `MAX_KEPT`): a view made again after a change elsewhere encodes nothing."""
        view = self._view(catalog)
        if view.index is not None and view.deep == deep:
            return view.index
        entries, own = view.entries, sorted(catalog.own_tools)
        servers = [(s, entries.by_server.get(s, []), self._identity(s), entries.keys.get(s, [])) for s in own]
        transformer = lender.transformer if deep else None
        kept = self._kept
        if kept is None or kept.model is not lender.model or kept.transformer is not lender.transformer:
            from onemcp.search.index import SearchIndex

            kept = self._kept = SearchIndex(None, model=lender.model or False, transformer=lender.transformer or False)
        with anyio.CancelScope(shield=True):  # a caller giving up does not waste the build
            built = await anyio.to_thread.run_sync(_built, (lender, kept), transformer, servers)
        kept.keep(built, MAX_KEPT, besides=lender)
        view.index, view.deep = built, deep
        return built


def _built(
    lenders: tuple[SearchIndex, SearchIndex], transformer: Any, servers: list[tuple[str, list[Item], str, list[str]]]
) -> SearchIndex:
    """A small index of these servers' tools (on a worker thread: nothing else holds it yet), every
    vector its `lenders` lack encoded here."""
    from onemcp.search.index import SearchIndex

    index = SearchIndex(None, model=lenders[0].model, transformer=transformer, lenders=lenders)
    for server, items, about, keys in servers:
        index.update(server, items, about=about, keys=keys)
    if transformer is not None:
        while batch := index.deep_batch(64):
            index.deep_install([digest for digest, _ in batch], transformer.encode([text for _, text in batch]))
    if (work := index.settling()) is not None:
        index.settle(work())
    return index


def merged(first: list[Hit], second: list[Hit], limit: int) -> list[Hit]:
    """Two indexes' hits as one ranking, by their fused score (then key, as one index orders ties)."""
    return sorted([*first, *second], key=lambda hit: (-hit.score, hit.name))[:limit]
