"""Tool exposure: whether a client's tools/list shows every tool or three meta-tools to search them.

Owns the decision per requester (the connection's `?exposure=`, else its preset's, else the hub's
`exposure`; `auto` is `search` when the full list the requester would see is above
`searchBudget` tokens), the tools list each mode serves, the search index kept in step with the
catalog (synced lazily, per server, before each search: what changed is re-embedded, nothing
else; the transformer's vectors of new tools computed by `run_transformer` on a worker thread,
searches ranking without them meanwhile), token counts of lists, and answering `search_tools` /
`get_tool_schema` and turning `call_tool` into the call it names. Does not decide what a
requester may reach: every result and every call goes through the same `Access` as lists and
routing do.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import orjson

from onemcp.auth.access import Access
from onemcp.catalog.catalog import Catalog, Item, shown_as
from onemcp.catalog.reach import INSTANCE_MARK, Reach
from onemcp.config.model import Exposure, HubConfig
from onemcp.protocol.errors import NotFound
from onemcp.search import meta

if TYPE_CHECKING:
    from onemcp.search.index import SearchIndex
    from onemcp.upstream.connection import UpstreamConnection

log = logging.getLogger("onemcp.search")
Mode = Literal["full", "search"]
SEARCH_LIST = orjson.dumps({"tools": meta.META_TOOLS})
MAX_COUNTED = 256  # token counts remembered (one per distinct serialised list)
SPREAD_FROM = 64  # tools waiting for the transformer from which their encoding takes every core it may


def cache_dir(config: HubConfig) -> Path | None:
    """Where the index keeps its embeddings between runs (None: nowhere)."""
    chosen = config.hub.search_cache
    if chosen is False:
        return None
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "onemcp" / "search"


def reported_name(conn: UpstreamConnection | None) -> str:
    """The name and title an upstream reported at its handshake ("" before one): the index reads
    product names in it (search/kinds.py)."""
    info = conn.server_info if conn is not None else {}
    return " ".join(str(info[key]) for key in ("name", "title") if isinstance(info.get(key), str))


def count_tokens(data: bytes | str) -> int:
    """Tokens (o200k) of a text or a serialised list, as a model would be charged for it."""
    from onemcp.search.tokens import count_tokens as count

    return count(data.decode() if isinstance(data, bytes) else data)


def release_counter() -> bool:
    """Give back the token counter's vocabulary (~64 MB) if nothing was counted for a while."""
    tokens = sys.modules.get("onemcp.search.tokens")  # never loaded: nothing to give back
    return tokens is not None and bool(tokens.release_if_idle())


class ToolExposure:
    def __init__(
        self,
        catalog: Catalog,
        config: Callable[[], HubConfig],
        presets: Callable[[], Mapping[str, str]],
        identity: Callable[[str], str] = lambda server: "",
    ):
        self.catalog = catalog
        self._identity = identity  # server -> the name and title it reports (the index reads products in it)
        self._config = config
        self._preset_exposures = presets  # preset name -> its exposure (presets without one: absent)
        self._counted: dict[bytes, int] = {}
        self._index: SearchIndex | None = None
        self._synced: list[Item] | None = None  # the catalog's tools list the index was last synced with
        self._servers: dict[str, list[Item]] = {}
        self._tools: _Tools | None = None
        self._wake: anyio.Event | None = None  # set when the index has texts for the transformer
        self._drained: anyio.Event | None = None  # set when the worker has encoded all it was woken for
        self.searches = 0

    # ------------------------------------------------------------------ who sees which list
    def asked(self, access: Access) -> Exposure:
        """The exposure a requester asked for: its connection's, else its preset's, else the hub's."""
        if access.exposure is not None:
            return access.exposure
        preset = access.view.preset if access.view is not None else None
        if preset is not None:
            chosen = self._preset_exposures().get(preset)
            if chosen in ("full", "search", "auto"):
                return chosen  # type: ignore[return-value]
        return self._config().hub.exposure

    def mode(self, access: Access) -> Mode:
        """`full` or `search` for this requester now (`auto` decided by the size of its full list)."""
        asked = self.asked(access)
        if asked != "auto":
            return asked
        full = self.catalog.result_json("tools", access.reach)
        budget = self._config().hub.search_budget
        return "search" if len(full) > budget and self.tokens(full) > budget else "full"  # a token is >= 1 byte

    def list_json(self, kind: str, access: Access) -> bytes:
        """The serialised list `access` sees: the catalog's, except tools in search mode."""
        if kind == "tools" and self.mode(access) == "search":
            return SEARCH_LIST
        return self.catalog.result_json(kind, access.reach)

    def tokens(self, data: bytes) -> int:
        """Tokens of a serialised list (remembered: lists are rebuilt only when they change)."""
        found = self._counted.get(data)
        if found is None:
            if len(self._counted) >= MAX_COUNTED:
                self._counted.clear()
            found = self._counted[data] = count_tokens(data)
        return found

    def reach_tokens(self, reach: Reach) -> int:
        """Tokens of the full tools list `reach` would get."""
        return self.tokens(self.catalog.result_json("tools", reach))

    def report(self, views: Mapping[str, Reach]) -> dict[str, Any]:
        """For /health: the default exposure, token counts of the full and search-mode lists, the index."""
        hub = self._config().hub
        index = self._index
        return {
            "exposure": hub.exposure,
            "searchBudget": hub.search_budget,
            "tokens": {
                "full": self.tokens(self.catalog.result_json("tools")),
                "search": self.tokens(SEARCH_LIST),
                "views": {name: self.reach_tokens(reach) for name, reach in views.items()},
            },
            "searches": self.searches,
            "index": None if index is None else self._index_report(index),
        }

    @staticmethod
    def _index_report(index: SearchIndex) -> dict[str, Any]:
        pending = index.deep_pending()
        transformer = "off" if index.transformer is None else "ready" if index.deep_ready else f"{pending} pending"
        return {"tools": len(index), "semantic": index.semantic, "transformer": transformer}

    def tool_tokens(self, item: Item) -> int:
        """Tokens (o200k) one tool's definition costs in a full list (not remembered: one per tool)."""
        return count_tokens(orjson.dumps(item))

    def server_tokens(self) -> dict[str, int]:
        """Tokens of each server's visible tools, as a full list would carry them."""
        return {server: self.tokens(orjson.dumps({"tools": items})) for server, items in self._by_server().items()}

    # ------------------------------------------------------------------ the meta-tools
    def handles(self, access: Access, name: object) -> bool:
        """Is a tools/call of `name` one of the meta-tools (in search mode, or no tool of that name is in reach)?"""
        if not isinstance(name, str) or name not in meta.NAMES:
            return False
        if self.mode(access) == "search":
            return True
        try:
            self.catalog.resolve_name("tools", name, access.reach)
        except NotFound:
            return True
        return False

    def call(self, access: Access, params: dict[str, Any]) -> dict[str, Any] | None:
        """A meta-tool call: its result, or None after rewriting `params` into the call `call_tool` names."""
        name = params["name"]
        arguments = params.get("arguments") or {}
        try:
            if not isinstance(arguments, dict):
                raise meta.MetaArgsError(f"{name}: 'arguments' must be an object")
            if name == meta.SEARCH:
                return self._search(access, *meta.search_args(arguments))
            if name == meta.SCHEMA:
                tool = self._tool(access, meta.name_arg(name, arguments, {"name"}))
                return meta.text_result(orjson.dumps(tool).decode())
            target = meta.name_arg(name, arguments, {"name", "arguments"})
            if target in meta.NAMES:
                raise meta.MetaArgsError(f"call_tool: {target} is called directly, not through call_tool")
            params["arguments"] = meta.call_arguments(arguments)
            params["name"] = target
            return None
        except meta.MetaArgsError as exc:
            return meta.text_result(str(exc), error=True)

    def _tool(self, access: Access, name: str) -> Item:
        """A tool's definition as listed, if `access` reaches it (else the same answer as an unknown name)."""
        try:
            self.catalog.resolve_name("tools", name, access.reach)
        except NotFound:
            raise meta.MetaArgsError(f"Tool not found: {name}; search_tools finds tools by what they do") from None
        return self._definitions()[name]

    def _search(self, access: Access, query: str, limit: int, server: str | None) -> dict[str, Any]:
        reach = access.reach
        if server is not None and (server not in self._by_server() or not reach.touches(server)):
            raise meta.MetaArgsError(f"search_tools: no server {server!r} among the tools you can use")
        index = self.index()
        allowed = self._allowed(reach, server)
        hits = index.search(query, limit=limit, allowed=allowed)
        self.searches += 1
        definitions = self._definitions()
        tools = [definitions[h.name] for h in hits if h.name in definitions]
        total = sum(1 for name in definitions if allowed is None or allowed(name))
        return meta.text_result(meta.render_hits(query, tools, total))

    def _allowed(self, reach: Reach, server: str | None) -> Callable[[str], bool] | None:
        if reach.everything and server is None and not self.catalog.has_instances:
            return None
        owners = self._owners()
        mine = {shown_as(i): i for i in reach.instances}  # template -> the instance bound to this requester

        def allowed(name: str) -> bool:
            owner = owners.get(name)
            if owner is None or (server is not None and owner[0] != server):
                return False
            if INSTANCE_MARK in owner[0]:  # indexed from one instance: the requester's own answers for it
                own = mine.get(shown_as(owner[0]))
                return own is not None and reach.shows("tools", own, owner[1])
            return reach.shows("tools", *owner)

        return allowed

    # ------------------------------------------------------------------ the index
    def index(self) -> SearchIndex:
        """The search index, in step with the catalog's tools (built on first use)."""
        if self._index is None:
            from onemcp.search.index import SearchIndex

            self._index = SearchIndex(cache_dir(self._config()))
            if not self._index.semantic:
                log.warning("tool search runs on words alone: the embedding model is not installed")
        tools = self.catalog.items("tools")
        if self._synced is not tools:
            now = self._by_server()
            for gone in set(self._servers) - set(now):
                self._index.remove(gone)
            for server, items in now.items():
                if self._servers.get(server) != items:
                    self._index.update(server, items, about=self._identity(server))
            self._servers, self._synced = now, tools
            if self._wake is not None and self._index.deep_pending():
                self._wake.set()
        return self._index

    def search_likely(self) -> bool:
        """Will some client likely search? (The hub's or a preset's exposure is `search`, or `auto` with a
        full list at least four bytes per token of budget: the index is then built before the first search.)"""
        hub = self._config().hub
        if hub.exposure == "search" or "search" in self._preset_exposures().values():
            return True
        return hub.exposure == "auto" and len(self.catalog.result_json("tools")) > 4 * hub.search_budget

    async def run_transformer(self) -> None:
        """Encode new tools for the transformer, a batch at a time on a worker thread, for as long as the hub runs."""
        from onemcp.search import deep

        self._wake, self._drained = anyio.Event(), anyio.Event()
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            index = self._index
            encoder = index.transformer if index is not None else None
            if index is not None and encoder is not None:
                # many at once (a start, a big server added): both cores; a few: one, the other serves
                workers = deep.WORKERS if index.deep_pending() >= SPREAD_FROM else 1
                while batch := index.deep_batch(16 * workers):
                    texts = [text for _, text in batch]
                    vectors = await anyio.to_thread.run_sync(deep.encode_spread, encoder, texts, workers)
                    index.deep_install([digest for digest, _ in batch], vectors)
                await anyio.to_thread.run_sync(deep.release_memory)
                log.info("tool search: the transformer ranks %d tools", len(index))
            drained, self._drained = self._drained, anyio.Event()
            drained.set()

    async def transformer_settled(self) -> None:
        """Return once every indexed tool has its transformer vector (tests wait on it, with a deadline)."""
        while self._index is not None and self._index.deep_pending() and self._drained is not None:
            await self._drained.wait()

    def _current(self) -> _Tools:
        tools = self.catalog.items("tools")
        if self._tools is None or self._tools.of is not tools:
            by_server: dict[str, list[Item]] = {}
            owners: dict[str, tuple[str, str]] = {}
            for item, server, original in self.catalog.placed("tools"):
                by_server.setdefault(server, []).append(item)
                owners[str(item.get("name"))] = (server, original)
            self._tools = _Tools(tools, by_server, {str(item.get("name")): item for item in tools}, owners)
        return self._tools

    def _by_server(self) -> dict[str, list[Item]]:
        return self._current().by_server

    def _definitions(self) -> dict[str, Item]:
        return self._current().definitions

    def _owners(self) -> dict[str, tuple[str, str]]:
        return self._current().owners


@dataclass(frozen=True)
class _Tools:
    """The catalog's visible tools, grouped for the index and looked up by hub name."""

    of: list[Item]  # the catalog's list these were built from (rebuilt when it is replaced)
    by_server: dict[str, list[Item]]
    definitions: dict[str, Item]  # hub name -> definition as listed
    owners: dict[str, tuple[str, str]]  # hub name -> (server, upstream name)
