"""Tool exposure: whether a client's tools/list shows every tool or three meta-tools to search them.

Owns the decision per requester (the connection's `?exposure=`, else its preset's, else the hub's
`exposure`; `auto` is `search` when the full list the requester would see is above
`searchBudget` tokens), the tools list each mode serves, the search index kept in step with the
catalog (synced lazily, per server, before each search: what changed is re-embedded, nothing
else; the transformer's vectors of new tools computed by `run_transformer` on a worker thread,
searches ranking without them meanwhile), token counts of lists, and answering `search_tools` /
`get_tool_schema` and turning `call_tool` into the call it names, in the catalog as the session sees
it (a view with its own connections' tools is searched with their small index, `hub/own_search.py`).
Does not decide what a requester may reach: every result and every call goes through the same
`Access` as lists and routing do.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import orjson

from onemcp.auth.access import Access
from onemcp.catalog.catalog import Catalog, Item
from onemcp.catalog.reach import Reach
from onemcp.config.model import Exposure, HubConfig
from onemcp.hub.own_search import OwnSearch, ToolEntries, allowed, entry_key, merged, tool_entries
from onemcp.protocol.errors import NotFound, echo
from onemcp.protocol.names import shown_as
from onemcp.search import meta

if TYPE_CHECKING:
    from onemcp.search.index import Prepared, SearchIndex
    from onemcp.upstream.connection import UpstreamConnection

log = logging.getLogger("onemcp.search")
Mode = Literal["full", "search"]
SEARCH_LIST = orjson.dumps({"tools": meta.META_TOOLS})
MAX_COUNTED = 256  # token counts remembered (one per distinct serialised list)
MAX_COUNTED_BYTES = 16 * 1024 * 1024  # ... and the lists they are keyed by, held at most (2,000 tools: 2.8 MB a list)
SPREAD_FROM = 64  # tools waiting for the transformer from which their encoding takes every core it may
QUERY_THREADS = 2  # worker threads that encode queries (the model runs two at once: deep.WORKERS)
SYNC_ROUNDS, REPORT_WAIT = 4, 2.0  # index syncs off the loop a search (more: in line); seconds /health waits on them
# Seconds without a query encoded after which the allocator's free pages go back (`trim_after_searches`):
# a burst of searches leaves ~8 MB of them at 700 tools (bench/toolsearch/hub_memory.py), which
# glibc keeps unless asked; one trim a burst, not one a search (the next search would fault them in again).
TRIM_AFTER = 5.0


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


async def load_counter() -> None:
    """Load the token counter's vocabulary on a worker thread unless it is in memory (about 0.4 s,
    which a count on the event loop would make every client wait)."""
    from onemcp.search import tokens

    if tokens.exact() and not tokens.loaded():
        await anyio.to_thread.run_sync(tokens.load)


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
        self._cache = cache_dir(config())  # read at start, as README says: a reload changing it waits for a restart
        self._preset_exposures = presets  # preset name -> its exposure (presets without one: absent)
        self._counted: dict[bytes, int] = {}
        self._counted_bytes = 0  # the lists held as its keys
        self._index: SearchIndex | None = None
        self._synced: list[Item] | None = None  # the catalog's tools list the index was last synced with
        self._servers: dict[str, list[Item]] = {}
        self._tools: ToolEntries | None = None
        self.own = OwnSearch(identity)  # sessions' views' own tools (`hub/own_search.py`)
        self._wake: anyio.Event | None = None  # set when the index has texts for the transformer
        self._building: anyio.Event | None = None  # while `ready_index` builds the index on a thread
        self._encoding: anyio.CapacityLimiter | None = None  # the worker threads queries are encoded on
        self._drained: anyio.Event | None = None  # set when the worker has encoded all it was woken for
        self._rewarm: anyio.Event | None = None  # set when a change may make search likely (`warming`)
        self.searches = 0
        self._encoded: anyio.Event | None = None  # set when a query was encoded (`trim_after_searches`)
        self.trim_after = TRIM_AFTER

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

    def mode(self, access: Access, catalog: Catalog | None = None) -> Mode:
        """`full` or `search` for this requester now (`auto` decided by the size of the full list it would
        get of `catalog`: the session's view of the catalog, `hub/own_lists.py`, else the catalog's)."""
        asked = self.asked(access)
        if asked != "auto":
            return asked
        full = (catalog or self.catalog).result_json("tools", access.reach)
        budget = self._config().hub.search_budget
        return "search" if len(full) > budget and self.tokens(full) > budget else "full"  # a token is >= 1 byte

    def needs_count(self, access: Access, catalog: Catalog | None = None) -> bytes | None:
        """The list whose tokens deciding `access`'s mode (in `catalog`, as `mode`) now would count, not
        counted yet (`auto`, a list over the budget in bytes, not remembered); None when none."""
        if self.asked(access) != "auto":
            return None
        full = (catalog or self.catalog).result_json("tools", access.reach)
        return full if len(full) > self._config().hub.search_budget and full not in self._counted else None

    async def ready_to_count(self, requesters: Iterable[tuple[Access, Catalog | None]]) -> None:
        """Before modes are decided for these requesters (each with the catalog as it sees it, as `mode`):
        the lists they need counted are counted off the event loop (the vocabulary loaded first,
        `load_counter`), each distinct one once (a 2.7 MB list is ~10 ms; a change seen by many views
        with their own lists was that many in line)."""
        lists = {data for access, catalog in requesters if (data := self.needs_count(access, catalog)) is not None}
        if lists:
            await load_counter()
            for data in lists:
                self._remember(data, await anyio.to_thread.run_sync(count_tokens, data))

    async def served_list(self, kind: str, access: Access, catalog: Catalog | None = None) -> bytes:
        """`list_json`, for a request: a count it needs is prepared off the event loop first."""
        if kind == "tools":
            await self.ready_to_count([(access, catalog)])
        return self.list_json(kind, access, catalog)

    def list_json(self, kind: str, access: Access, catalog: Catalog | None = None) -> bytes:
        """The serialised list `access` sees: the catalog's (or the session's view of it, `hub/own_lists.py`),
        except tools in search mode (decided on that list)."""
        if kind == "tools" and self.mode(access, catalog) == "search":
            return SEARCH_LIST
        return (catalog or self.catalog).result_json(kind, access.reach)

    def tokens(self, data: bytes) -> int:
        """Tokens of a serialised list (remembered: lists are rebuilt only when they change)."""
        found = self._counted.get(data)
        return self._remember(data, count_tokens(data)) if found is None else found

    def _remember(self, data: bytes, count: int) -> int:
        if data not in self._counted:
            if len(self._counted) >= MAX_COUNTED or self._counted_bytes + len(data) > MAX_COUNTED_BYTES:
                self._counted.clear()  # the lists are the keys: bounded by their bytes, not only their number
                self._counted_bytes = 0
            self._counted[data] = count
            self._counted_bytes += len(data)
        return count

    def reach_tokens(self, reach: Reach) -> int:
        """Tokens of the full tools list `reach` would get."""
        return self.tokens(self.catalog.result_json("tools", reach))

    def report(self, views: Mapping[str, Reach]) -> dict[str, Any]:
        """For /health: the default exposure, token counts of the catalog's full list (whole, each preset's
        view) and the search-mode list, the index, and the small indexes of sessions' own tools (their
        own lists' tokens are not counted here: a count per session)."""
        hub = self._config().hub
        index = self._index  # as `ready_to_report` left it: in step, unless the catalog keeps changing
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
            "ownIndexes": self.own.report(),
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
        """Tokens of each server's tools as a full list of it would carry them (a tool another server's
        of the same name hides from everyone's list is counted: a view of this server shows it)."""
        current = self._current()
        if len(current.server_tokens) < len(current.by_server):
            counted = {s: self.tokens(orjson.dumps({"tools": i})) for s, i in current.by_server.items()}
            current.server_tokens.update(counted)
        return current.server_tokens

    async def ready_to_report(self, views: Mapping[str, Reach]) -> None:
        """Before /health or /metrics: a list not counted yet has the vocabulary loaded off the loop first."""
        lists = [self.catalog.result_json("tools"), *(self.catalog.result_json("tools", r) for r in views.values())]
        current = self._current()
        if len(current.server_tokens) < len(current.by_server) or any(d not in self._counted for d in lists):
            await load_counter()
        if self._index is not None:  # its figures in step if that is soon (a catalog that keeps changing: not)
            with anyio.move_on_after(REPORT_WAIT):
                await self.ready_index()

    # ------------------------------------------------------------------ the meta-tools
    async def handles(self, access: Access, name: object, catalog: Catalog | None = None) -> bool:
        """Is a tools/call of `name` one of the meta-tools (in search mode, or no tool of that name is in
        reach, in `catalog`: the session's view of it)? An `auto` mode may rest on a count: prepared off
        the event loop first (`ready_to_count`)."""
        if not isinstance(name, str) or name not in meta.NAMES:
            return False
        await self.ready_to_count([(access, catalog)])
        seen = (catalog or self.catalog).seen_as("tools", name, access.reach)
        return self.mode(access, catalog) == "search" or seen is None

    async def call(
        self, access: Access, params: dict[str, Any], catalog: Catalog | None = None
    ) -> dict[str, Any] | None:
        """A meta-tool call: its result, or None after rewriting `params` into the call `call_tool` names.
        `catalog`: the session's view of the catalog (`hub/own_lists.py`), which it searches and describes."""
        name = params["name"]
        arguments = params.get("arguments")
        arguments = {} if arguments is None else arguments
        try:
            if not isinstance(arguments, dict):
                raise meta.MetaArgsError(f"{name}: 'arguments' must be an object")
            if name == meta.SEARCH:
                return await self._search(access, *meta.search_args(arguments), catalog=catalog or self.catalog)
            if name == meta.SCHEMA:
                tool = self._tool(access, meta.name_arg(name, arguments, {"name"}), catalog or self.catalog)
                return meta.text_result(orjson.dumps(tool).decode())
            target = meta.name_arg(name, arguments, {"name", "arguments"})
            if target in meta.NAMES:
                raise meta.MetaArgsError(f"call_tool: {target} is called directly, not through call_tool")
            params["arguments"] = meta.call_arguments(arguments)
            params["name"] = target
            return None
        except meta.MetaArgsError as exc:
            return meta.text_result(str(exc), error=True)

    @staticmethod
    def unknown(exc: NotFound) -> dict[str, Any]:
        """call_tool's answer for a name its caller does not reach (as get_tool_schema's: a tool error)."""
        return meta.unreached(exc.message, withheld=isinstance(exc.data, dict) and exc.data.get("withheld") is True)

    def _tool(self, access: Access, name: str, catalog: Catalog) -> Item:
        """A tool's definition as `access`'s list of `catalog` shows it (else the same answer as an unknown name)."""
        seen = None if name in meta.NAMES else catalog.seen_as("tools", name, access.reach)
        definition = None if seen is None else self._entries(catalog).definitions.get(entry_key(seen[0], name))
        if definition is None:  # a meta-tool's name is the meta-tool's here: an upstream tool of that name is not
            withheld = None if name in meta.NAMES else catalog.withheld_error(name, access.reach)
            if withheld is not None:  # as a call of it says: changed since approved
                raise meta.MetaArgsError(withheld.message)
            raise meta.MetaArgsError(f"Tool not found: {echo(name)}; search_tools finds tools by what they do")
        return definition

    async def _search(
        self, access: Access, query: str, limit: int, server: str | None, catalog: Catalog
    ) -> dict[str, Any]:
        reach = access.reach
        by_server = self._entries(catalog).by_server
        if server is not None and not any(shown_as(s) == server and reach.touches(s) for s in by_server):
            config = self._config()
            if (server in config.servers or server in config.templates) and reach.touches(server):
                why = "lists no tools now (it may be starting, disabled or failing: /health says which)"
                raise meta.MetaArgsError(f"search_tools: server {echo(repr(server))} {why}")
            raise meta.MetaArgsError(f"search_tools: no server {echo(repr(server))} among the tools you can use")
        if catalog is not self.catalog and catalog.own_tools:  # its own connections' tools too
            tools, total = await self._search_view(query, limit, reach, server, catalog)
        else:
            vector = await self.query_vector(query)
            tools, total = self.find(query, limit, self._allowed(reach, server), vector)  # the catalog as it is now
        self.searches += 1
        return meta.text_result(meta.render_hits(query, [item for item, _ in tools], total, server))

    async def query_vector(self, query: str) -> Any:
        """The query's transformer vectors for `find`, encoded on a worker thread (most of a search's few
        ms: the loop serves other requests meanwhile); None while the transformer does not rank."""
        encode = (await self.ready_index()).query_encoder()
        if encode is None:
            return None
        if self._encoding is None:  # a flood of searches waits here, not in the threads everything else shares
            self._encoding = anyio.CapacityLimiter(QUERY_THREADS)
        vector = await anyio.to_thread.run_sync(encode, query, limiter=self._encoding)
        if self._encoded is not None:
            self._encoded.set()
        await self.ready_index()  # a change meanwhile is read off the loop too, not by `find`
        return vector

    async def _search_view(
        self, query: str, limit: int, reach: Reach, server: str | None, catalog: Catalog
    ) -> tuple[list[tuple[Item, str]], int]:
        """`find` in a session's view: its own servers' tools in their small index, the rest in the hub's."""
        deep = (await self.ready_index()).query_encoder() is not None
        own = await self.own.index(catalog, self.index(), deep)
        vector = await self.query_vector(query)
        if (vector is not None) != deep:  # the hub's index began or stopped ranking with the transformer meanwhile
            own = await self.own.index(catalog, self.index(), vector is not None)
        entries = self._entries(catalog)
        seen = allowed(catalog, entries, reach, server)
        hub = frozenset(key for key in seen if entries.owners[key][0] not in catalog.own_tools)
        hits = merged(
            self.index().search(query, limit=limit, allowed=hub.__contains__, vector=vector),
            own.search(query, limit=limit, allowed=seen.__contains__, vector=vector),
            limit,
        )
        return [(entries.definitions[h.name], entries.owners[h.name][0]) for h in hits], len(seen)

    def find(
        self, query: str, limit: int, allowed: frozenset[str], vector: Any = None
    ) -> tuple[list[tuple[Item, str]], int]:
        """The best `limit` tools for `query` among the entries (keys) in `allowed`, each with its
        server, and how many `allowed` holds. `vector`: the query's, if already encoded."""
        hits = self.index().search(query, limit=limit, allowed=allowed.__contains__, vector=vector)
        current = self._current()
        return [(current.definitions[h.name], current.owners[h.name][0]) for h in hits], len(allowed)

    def _allowed(self, reach: Reach, server: str | None) -> frozenset[str]:
        """The catalog's entries (by key) a requester with `reach` sees in its full list, of `server` if
        given (`own_search.allowed`), kept per reach until the catalog changes."""
        return allowed(self.catalog, self._current(), reach, server)

    def placed_allowed(self, server: str | None) -> frozenset[str]:
        """The first entry of each name (template instances' included), of `server` if given: what the
        operator's tool list shows (admin API)."""
        current = self._current()
        return frozenset(k for k in current.placed if server is None or current.owners[k][0] == server)

    # ------------------------------------------------------------------ the index
    def index(self) -> SearchIndex:
        """The search index, in step with the catalog's tools, changed here and now if it is not (on
        the event loop: `ready_index` reads the changed servers' tools on a worker thread instead)."""
        if self._index is None:
            self._index = _new_index(self._cache)
        if self._synced is not self.catalog.items("tools"):
            gone, changed, now, tools = self._changes()
            self._install(gone, _prepared(changed), now, tools)
        return self._index

    def _changes(self) -> tuple[set[str], list[tuple[str, list[Item], str, list[str]]], dict[str, list[Item]], Any]:
        """What the index lacks now: the servers gone, the changed servers' (server, tools, identity,
        keys) for `prepare`, and what to remember once installed (the tools by server, the list)."""
        tools = self.catalog.items("tools")
        now, keys = self._by_server(), self._current().keys
        changed = [(s, items, self._identity(s), keys[s]) for s, items in now.items() if self._servers.get(s) != items]
        return set(self._servers) - set(now), changed, now, tools

    def _install(self, gone: set[str], prepared: list[Prepared], now: dict[str, list[Item]], tools: Any) -> None:
        assert self._index is not None
        for server in gone:
            self._index.remove(server)
        for ready in prepared:
            self._index.install(ready)
        self._servers, self._synced = now, tools
        if self._wake is not None and self._index.deep_pending():
            self._wake.set()

    async def ready_index(self) -> SearchIndex:
        """`index()` with the costly parts on worker threads while the event loop serves on (callers
        meanwhile wait): the first build (loading the models, indexing every tool: about 0.4 s at
        1,000 tools), reading the tools of servers that changed since (about 0.2 ms a tool), and
        what a search builds first after a change (BM25's postings, the vector matrices)."""
        if self._index is None:
            if self._building is None:
                self._building = anyio.Event()
                try:
                    tools = self.catalog.items("tools")
                    now, keys = self._by_server(), self._current().keys
                    snapshot = [(s, items, self._identity(s), keys[s]) for s, items in now.items()]
                    with anyio.CancelScope(shield=True):  # a caller giving up does not waste the build
                        built = await anyio.to_thread.run_sync(_built_index, self._cache, snapshot)
                    if self._index is None:  # else built in line meanwhile (a caller that could not wait)
                        self._index, self._servers, self._synced = built, now, tools
                        if self._wake is not None and built.deep_pending():
                            self._wake.set()  # the transformer's vectors, on the worker
                    else:
                        built.cache.close()
                finally:
                    self._building.set()
                    self._building = None
            else:
                await self._building.wait()
                if self._index is None:  # that build failed: this caller tries (and says why, if it fails too)
                    return await self.ready_index()
        for _ in range(SYNC_ROUNDS):  # changed since: read on a worker thread
            if self._synced is self.catalog.items("tools"):
                break
            if self._building is not None:
                await self._building.wait()  # one change at a time; then look again
                continue
            self._building = anyio.Event()
            try:
                gone, changed, now, tools = self._changes()
                with anyio.CancelScope(shield=True):
                    prepared = await anyio.to_thread.run_sync(_prepared, changed)
                self._install(gone, prepared, now, tools)
            finally:
                self._building.set()
                self._building = None
        await self._settle()
        return self.index()  # in step with anything that changed in the last instant (or all along)

    async def _settle(self) -> None:
        """Build what the next search would build first (BM25's postings, the vector matrices: 10-30 ms
        at 1,000 tools) on a worker thread."""
        if self._index is not None and (work := self._index.settling()) is not None:
            self._index.settle(await anyio.to_thread.run_sync(work))

    async def warm(self) -> None:
        """Build the index now if clients are likely to search (the hub calls it once every server was
        tried). A failure is logged, not raised: the hub serves on, and the first search tries again."""
        if self.search_likely():
            try:
                await self.ready_index()
            except Exception:  # the top of a background task: logged with its traceback
                log.exception("tool search: the index could not be built ahead of the first search")

    def rewarm(self) -> None:
        """Views or exposures changed (a reload, new presets): `warming` builds the index now if
        clients became likely to search."""
        if self._rewarm is not None:
            self._rewarm.set()

    async def warming(self) -> None:
        """`warm` now (every server was tried), and again after each `rewarm`, for as long as the hub runs."""
        while True:
            self._rewarm = anyio.Event()
            await self.warm()
            await self._rewarm.wait()

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
                try:
                    while batch := index.deep_batch(16 * workers):
                        texts = [text for _, text in batch]
                        vectors = await anyio.to_thread.run_sync(deep.encode_spread, encoder, texts, workers)
                        index.deep_install([digest for digest, _ in batch], vectors)
                except Exception:  # the top of a background task: search goes on by words, the hub serves on
                    log.exception("tool search: the transformer failed; searches rank by words from now on")
                    index.transformer = None
                await anyio.to_thread.run_sync(deep.release_memory)
                if index.transformer is not None:
                    log.info("tool search: the transformer ranks %d tools", len(index))
                    await self._settle()  # the new vectors' matrix, before a search needs it
            drained, self._drained = self._drained, anyio.Event()
            drained.set()

    async def trim_after_searches(self) -> None:
        """Give the allocator's free pages back (`deep.release_memory`) once no query was encoded for
        `trim_after` seconds after a search, for as long as the hub runs: the transformer's runs free
        their activations to glibc, which keeps the pages (RSS +8 MB after 300 searches at 700 tools,
        for good) unless asked."""
        from onemcp.search import deep

        self._encoded = anyio.Event()
        while True:
            await self._encoded.wait()
            while self._encoded.is_set():  # until a quiet spell
                self._encoded = anyio.Event()
                await anyio.sleep(self.trim_after)
            await anyio.to_thread.run_sync(deep.release_memory)

    async def transformer_settled(self) -> None:
        """Return once every indexed tool has its transformer vector (tests wait on it, with a deadline)."""
        while self._index is not None and self._index.deep_pending() and self._drained is not None:
            await self._drained.wait()

    def _current(self) -> ToolEntries:
        tools = self.catalog.entries("tools")
        if self._tools is None or self._tools.of is not tools:
            self._tools = tool_entries(self.catalog)
        return self._tools

    def _entries(self, catalog: Catalog) -> ToolEntries:
        """The tool entries of the catalog, or of a session's view of it (kept with the view)."""
        return self._current() if catalog is self.catalog else self.own.entries(catalog)

    def _by_server(self) -> dict[str, list[Item]]:
        return self._current().by_server


def _new_index(directory: Path | None) -> SearchIndex:
    from onemcp.search.index import SearchIndex

    index = SearchIndex(directory)
    if not index.semantic:
        log.warning("tool search runs on words alone: the embedding model is not installed")
    return index


def _built_index(directory: Path | None, servers: list[tuple[str, list[Item], str, list[str]]]) -> SearchIndex:
    """A new index of these servers' tools (on a worker thread: nothing else holds it yet)."""
    index = _new_index(directory)
    for server, items, about, keys in servers:
        index.update(server, items, about=about, keys=keys)
    if (work := index.settling()) is not None:
        index.settle(work())
    return index


def _prepared(changed: list[tuple[str, list[Item], str, list[str]]]) -> list[Prepared]:
    """`prepare` for each changed server (on a worker thread: it reads only its arguments)."""
    from onemcp.search.index import prepare

    return [prepare(*args) for args in changed]
