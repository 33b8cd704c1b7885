"""The search index: every tool of every server, ranked for a query by words and by meaning.

Owns the indexed tools (per server, replaced as a whole by `update`, embedded only where the
definition's hash is new), the vectors in memory (on disk: `cache.py`, keyed by hash and model so a
restart or a reload re-embeds only what changed), and the ranking: BM25 over
the tools' fields and cosine similarity of the transformer's vectors (`deep.py`) once every tool
has one, or, where the transformer cannot run, of the static model's (`embed.py`), fused by
reciprocal rank. A tool's vectors are moved toward the kind words of its products (`kinds.py`:
"crm, contacts, deals" for HubSpot's tools), embedded once per kind, and BM25 indexes those words
too; a request that names a product lifts that product's tools. Transformer vectors are not
computed here: `deep_batch` hands out texts still to embed, the caller encodes them where it likes
(the hub: a worker thread) and gives them back through `deep_install`; `fill_deep` does it inline.
Likewise the costly parts of a change can run elsewhere: `prepare` reads a server's tools (pure),
`install` puts them in; `settling` hands out what the next search would build first, `settle`
installs it. Does not decide who may see a tool: the caller passes `allowed`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from onemcp.search import deep, embed
from onemcp.search.actions import expanded, say_text
from onemcp.search.cache import EmbeddingCache
from onemcp.search.kinds import kind_text, products, tool_products
from onemcp.search.lexical import Bm25, Document, Postings, document, postings
from onemcp.search.text import fields as tool_fields
from onemcp.search.text import searched, words

log = logging.getLogger("onemcp.search")
RRF_K = 10.0  # reciprocal rank fusion: 1 / (k + rank); 10 beat 60 on the benchmark (bench/toolsearch)
SEMANTIC_WEIGHT = 1.0  # the static embeddings' share against BM25's 1.0, without the transformer
# Once every tool has a transformer vector: BM25 1.0, transformer 2.0, k 5. BM25 counted 0.25 until
# its terms held the everyday phrases of each tool's name words (actions.py): a request in the
# user's own words shared none with its tool, and BM25 ranked noise. With those phrases, BM25 at
# 0.75-1.5 found 5-7 more of the 160 requests about servers the transformer was not trained on than
# at the same weight without them, and 9-11 more than before (RESULTS.md, session 20). A smaller k
# lets the transformer's first place count. The static model ranks beside them (0.5) only when a
# caller passes both models: by default it is not loaded where the transformer runs (`SearchIndex`).
FUSED_RRF_K = 5.0
FUSED_LEXICAL_WEIGHT = 1.0
FUSED_STATIC_WEIGHT = 0.5
DEEP_WEIGHT = 2.0
# The request is encoded twice: as asked, and with the action words its phrases stand for
# (`actions.expanded`: "hand over PROJ-7 to Priya (assign deliver transfer recipient)"); the second
# ranks at this weight beside the first (a request with no such phrase: its one vector, again). With
# the lexicon's 768 words of session 21, on servers the transformer was never trained on, 7 more of 373
# requests in the top 5 over both server folds (fold-33 134 -> 136 of 160, fold-38 175 -> 180 of 213;
# the words alone: 135 and 175), where using only the expanded vector lost 4 on one fold: RESULTS.md,
# session 21. It costs a second encoding of a longer text: ~3 ms more a search.
EXPANDED_WEIGHT = 1.0
# A tool's embedding is moved toward its kind words ("error tracking, crash reports" for Sentry's
# tools, kinds.py) by this share: a request names the kind of product, rarely the brand. Embedded
# once per distinct kind (about one per server), not in each tool's text (that doubled the
# transformer's build time).
KIND_WEIGHT = 0.5
# A request that names a product ("on clickhouse, ...", "in todoist") lifts the tools of that product
# (kinds.py finds the names in the request and in each server): one more ranking of those tools, in
# their fused order, at this weight. The transformer does not know a brand it was not trained on,
# and BM25's server field counts for little once the transformer ranks. On servers left out of
# training it put two more of 159 requests first and moved recall@5 by none (1.0 and 2.0: one more
# in the top 5, none more first): RESULTS.md, session 11.
MENTION_WEIGHT = 0.5
CANDIDATES = 50  # each ranker's top list that is fused
MAX_QUERY = 2000  # characters of a query that are ranked, whoever asks (search_tools refuses over 1000)
# Characters of a description that are embedded: a mean of token vectors blurs with length, and
# the start of a description says what the tool does (200 beat 600 and parameters; 140 ranks as well
# as 200 within a request or two and encodes a sixth faster, 1.5-1.75 s against 1.9-2.1 s at 700
# tools: see RESULTS.md). A change here changes every vector: bump deep.MODEL_ID with it.
MAX_DESCRIPTION = 140


def _encode_query(model: deep.DeepModel, query: str) -> Any:
    """The request's two vectors (rows): as asked, and with its action words (`actions.expanded`); its
    one vector twice when it has none, or is so long that they would be cut off."""
    import numpy as np

    query = query[:MAX_QUERY]
    more = expanded(query)
    if more == query or model.fills(query):
        vector = model.encode([query])[0]
        return np.stack([vector, vector])
    return model.encode([query, more])  # one text at a time (deep.BATCH): the same vectors as alone


@dataclass(frozen=True)
class Hit:
    name: str
    server: str
    score: float


@dataclass(frozen=True)
class _Tool:
    server: str
    digest: str
    kind: str = ""  # digest of its kind words (kinds.py), "" if it has none
    products: tuple[str, ...] = ()  # the products it fronts (kinds.py)


@dataclass(frozen=True)
class _Entry:
    """One tool as `prepare` read it."""

    name: str  # its key in hits and `allowed`
    digest: str  # of its fields: what its vectors are cached by
    kind: str  # its products' kind words, "" if none
    products: tuple[str, ...]
    document: Document  # its BM25 terms
    text: str  # what is embedded (`semantic_text`)


@dataclass(frozen=True)
class Prepared:
    """A server's tools read for the index (`prepare`), to `SearchIndex.install`."""

    server: str
    entries: tuple[_Entry, ...]


@dataclass(frozen=True)
class Settled:
    """What `SearchIndex.settling`'s function built, for `settle`."""

    tools_generation: int  # the index's when the snapshot was taken (`SearchIndex.tools_generation`)
    generation: int  # (`SearchIndex.generation`)
    postings: tuple[Postings, float] | None
    names: list[str]  # the matrices' rows
    static: Any
    transformer: Any


KEEP_UNUSED = 256  # vectors of definitions no tool has any more, kept before they are dropped


def prepare(
    server: str, tools: Sequence[Mapping[str, Any]], about: str = "", keys: Sequence[str] | None = None
) -> Prepared:
    """Read a server's tools for `SearchIndex.install`: their fields, hashes, products and BM25 terms,
    about 0.2 ms a tool. Pure (touches no index), so it may run on a worker thread."""
    entries = []
    keyed = keys if keys is not None else [str(tool.get("name", "")) for tool in tools]
    fielded = searched([tool_fields(server, tool, about) for tool in tools])
    for fields, named, name in zip(fielded, tool_products(server, tools, about), keyed, strict=True):
        if not name:
            continue
        kind = kind_text(named)
        digest = hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()
        text = semantic_text(fields)
        say = say_text(fields["name"])  # the name's words in everyday phrases (actions.py): BM25 terms only
        entries.append(_Entry(name, digest, kind, tuple(named), document({**fields, "kind": kind, "say": say}), text))
    return Prepared(server, tuple(entries))


def _row(tools: Mapping[str, _Tool], vectors: Mapping[str, Any], name: str, zero: Any) -> Any:
    """Tool `name`'s row: its vector plus KIND_WEIGHT times its kind's vector, unit length."""
    import numpy as np

    tool = tools[name]
    own = vectors.get(tool.digest)
    if own is None:
        return zero
    kind = vectors.get(tool.kind)
    if kind is None:
        return own
    mixed = own + KIND_WEIGHT * kind
    return mixed / max(float(np.linalg.norm(mixed)), 1e-12)


def _matrix(tools: Mapping[str, _Tool], vectors: Mapping[str, Any], names: Sequence[str], dims: int) -> Any:
    """The rows of `names` (None for none)."""
    import numpy as np

    zero = np.zeros(dims, dtype=np.float32)
    rows = [_row(tools, vectors, name, zero) for name in names]
    return np.stack(rows) if rows else None


def _settled(
    tools_generation: int,
    generation: int,
    lexical: dict[str, Document] | None,
    tools: dict[str, _Tool],
    memory: dict[str, Any] | None,
    static_dims: int,
    vectors: dict[str, Any] | None,
) -> Settled:
    """`SearchIndex.settling`'s work, on snapshots (any thread)."""
    names = list(tools)
    return Settled(
        tools_generation,
        generation,
        None if lexical is None else postings(lexical),
        names,
        None if memory is None else _matrix(tools, memory, names, static_dims),
        None if vectors is None else _matrix(tools, vectors, names, deep.DIMS),
    )


def semantic_text(fields: Mapping[str, str]) -> str:
    """What of a tool is embedded: its name as words, title, the start of its description."""
    name = " ".join(words(fields["name"]))
    return f"{name}. {fields['title']}. {fields['description'][:MAX_DESCRIPTION]}"


class SearchIndex:
    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        model: embed.StaticModel | bool | None = True,
        transformer: deep.DeepModel | bool | None = True,
        lenders: Sequence[SearchIndex] = (),
    ) -> None:
        """`model`, `transformer`: True loads the shipped one; None or False goes without it. The static
        model is loaded for True only when the transformer is not there: once the transformer ranks, the
        static ranking adds nothing measurable (RESULTS.md) and costs ~10 MB; until it ranks (a first
        cold start: a second or two; a reload: the new tools' few milliseconds), words alone rank.
        `lenders`: indexes of the same models whose vectors this one takes rather than encode a text
        again (a session's small index of its own tools beside the hub's, `hub/own_search.py`), the
        first that has one; only read, one vector at a time, so they may change meanwhile on another
        thread."""
        self._lenders = lenders
        self.transformer = deep.load() if transformer is True else (transformer or None)
        if model is True:
            self.model = embed.load() if self.transformer is None else None
        else:
            self.model = model or None
        semantic = self.model is not None or self.transformer is not None
        self.cache = EmbeddingCache(cache_dir if semantic else None)
        self.lexical = Bm25()
        self._tools: dict[str, _Tool] = {}
        self._servers: dict[str, list[str]] = {}
        self._memory: dict[str, Any] = {}  # digest -> vector
        self._matrix: Any = None
        self._names: list[str] = []
        self.embedded = 0  # texts the static model encoded (not found in a cache)
        self._deep: dict[str, Any] = {}  # digest -> transformer vector
        self._deep_todo: dict[str, str] = {}  # digest -> text still to encode
        self._deep_matrix: Any = None
        self.tools_generation = 0  # counts changes to the tools (`settling`)
        self.generation = 0  # counts changes to the tools and to their vectors
        self.deep_embedded = 0  # texts the transformer encoded (not found in a cache)
        self._pending = (-1, 0)  # (generation, `deep_pending` then)

    @property
    def semantic(self) -> bool:
        return self.model is not None or self.transformer is not None

    def __len__(self) -> int:
        return len(self._tools)

    def update(
        self, server: str, tools: Sequence[Mapping[str, Any]], about: str = "", keys: Sequence[str] | None = None
    ) -> None:
        """Replace `server`'s tools; only definitions whose hash is new are embedded. `keys`: what each
        tool is known by in hits and `allowed` (default: its name; the hub's are unique where names
        are not: one name on several servers or template instances). `prepare` then `install`."""
        self.install(prepare(server, tools, about, keys))

    def install(self, prepared: Prepared) -> None:
        """Replace a server's tools by those `prepare` read (cheap: the costly part was `prepare`)."""
        server = prepared.server
        self._drop(server)  # (its vectors stay: most of its definitions come back in a moment)
        pending: dict[str, str] = {}  # digest -> text to embed
        names: list[str] = []
        for entry in prepared.entries:
            if entry.name in self._tools:
                continue
            self._borrow(entry.digest)
            self.lexical.add(entry.name, entry.document)
            kind = self._kind_of(entry.kind, pending) if entry.kind else ""
            self._tools[entry.name] = _Tool(server, entry.digest, kind, entry.products)
            names.append(entry.name)
            if self.model is not None and entry.digest not in self._memory:
                pending[entry.digest] = entry.text
            if self.transformer is not None and entry.digest not in self._deep:
                self._deep_todo[entry.digest] = entry.text
        self._servers[server] = names
        if pending:
            self._embed(pending)
        if self._deep_todo:
            self._deep_from_cache()
        self._changed()

    def _changed(self) -> None:
        """The tools or their vectors changed: what searches build from them is built again."""
        self._matrix = self._deep_matrix = None
        self.tools_generation += 1
        self.generation += 1
        self._forget_unused()

    def _forget_unused(self) -> None:
        """Vectors of definitions no tool has any more (a tool changed, a server left) are dropped once
        they outnumber the live ones: a server whose tools keep changing must not grow the index."""
        held = max(len(self._memory), len(self._deep))
        if held <= 2 * len(self._tools) + KEEP_UNUSED:
            return  # a few kept: a definition that comes back (a restart, a reload) needs no encoding
        live = {tool.digest for tool in self._tools.values()} | {tool.kind for tool in self._tools.values()}
        for vectors in (self._memory, self._deep):
            for digest in [d for d in vectors if d not in live]:
                del vectors[digest]

    def _kind_of(self, kind: str, pending: dict[str, str]) -> str:
        """The digest of `kind` (words); its vectors are embedded like a tool's text, once per kind."""
        digest = hashlib.sha256(b"kind\0" + kind.encode()).hexdigest()
        self._borrow(digest)
        if self.model is not None and digest not in self._memory:
            pending[digest] = kind
        if self.transformer is not None and digest not in self._deep:
            self._deep_todo[digest] = kind
        return digest

    def _borrow(self, digest: str) -> None:
        """Take the lenders' vectors of `digest` that this index lacks (of lenders of the same models)."""
        for lender in self._lenders:
            static = self.model is not None and self.model is lender.model
            transformer = self.transformer is not None and self.transformer is lender.transformer
            for mine, theirs, same in ((self._memory, lender._memory, static), (self._deep, lender._deep, transformer)):
                if same and digest not in mine and (vector := theirs.get(digest)) is not None:
                    mine[digest] = vector

    def vectors_held(self) -> int:
        """Vectors held of the model that holds most (the live tools', and a few no tool has any more)."""
        return max(len(self._memory), len(self._deep))

    def keep(self, other: SearchIndex, limit: int, besides: SearchIndex) -> None:
        """Hold `other`'s vectors (of these models) that `besides` lacks, newest last, at most `limit` of
        each model (the oldest dropped): an index of no tools, a lender of vectors texts had."""
        for mine, theirs, others, same in (
            (self._memory, other._memory, besides._memory, self.model is not None and self.model is other.model),
            (
                self._deep,
                other._deep,
                besides._deep,
                self.transformer is not None and self.transformer is other.transformer,
            ),
        ):
            if not same:
                continue
            for digest, vector in theirs.items():
                if digest not in others:
                    mine.pop(digest, None)  # (now the newest)
                    mine[digest] = vector
            for digest in list(mine)[: max(0, len(mine) - limit)]:
                del mine[digest]
        self._pending = (-1, 0)  # (its vectors changed, not its generation)

    def _embed(self, pending: dict[str, str]) -> None:
        import numpy as np

        assert self.model is not None
        keys = {digest: f"{embed.MODEL_ID}:{digest}" for digest in pending}
        cached = self.cache.get(list(keys.values()), self.model.dims)
        missing = [d for d in pending if keys[d] not in cached]
        for digest in pending:
            if keys[digest] in cached:
                self._memory[digest] = np.frombuffer(cached[keys[digest]], dtype=np.float32)
        if missing:
            vectors = self.model.encode([pending[d] for d in missing])
            self.embedded += len(missing)
            fresh = {}
            for digest, vector in zip(missing, vectors, strict=True):
                self._memory[digest] = vector
                fresh[keys[digest]] = vector.astype(np.float32).tobytes()
            self.cache.put(fresh)

    def _deep_from_cache(self) -> None:
        import numpy as np

        keys = {digest: f"{deep.MODEL_ID}:{digest}" for digest in self._deep_todo}
        cached = self.cache.get(list(keys.values()), deep.DIMS)
        for digest, key in keys.items():
            if key in cached:
                self._deep[digest] = np.frombuffer(cached[key], dtype=np.float32)
                del self._deep_todo[digest]

    # ------------------------------------------------------------------ transformer vectors
    def deep_pending(self) -> int:
        """Texts still without a transformer vector: tools of the index, and their kinds (counted once a
        generation: every search asks, through `deep_ready`, and a count walks every tool)."""
        if self.transformer is None:
            return 0
        if self._pending[0] != self.generation:
            self._pending = (self.generation, self._count_pending())
        return self._pending[1]

    def _count_pending(self) -> int:
        kinds = {tool.kind for tool in self._tools.values() if tool.kind and tool.kind not in self._deep}
        return len(kinds) + sum(1 for tool in self._tools.values() if tool.digest not in self._deep)

    @property
    def deep_ready(self) -> bool:
        """Does the transformer rank searches now (every indexed tool has its vector)?"""
        return self.transformer is not None and bool(self._tools) and self.deep_pending() == 0

    def deep_batch(self, size: int = 16) -> list[tuple[str, str]]:
        """Up to `size` (digest, text) pairs still to encode, of tools that are indexed now."""
        live = {tool.digest for tool in self._tools.values()} | {tool.kind for tool in self._tools.values()}
        for digest in [d for d in self._deep_todo if d not in live]:
            del self._deep_todo[digest]  # its tool left before it was encoded
        return list(self._deep_todo.items())[:size]

    def deep_install(self, digests: Sequence[str], vectors: Any) -> None:
        """Vectors the caller encoded for `deep_batch`'s texts: kept, and cached on disk."""
        import numpy as np

        fresh = {}
        for digest, vector in zip(digests, vectors, strict=True):
            self._deep_todo.pop(digest, None)
            self._deep[digest] = np.asarray(vector, dtype=np.float32)
            fresh[f"{deep.MODEL_ID}:{digest}"] = self._deep[digest].tobytes()
        self.deep_embedded += len(fresh)
        self.cache.put(fresh)
        self._deep_matrix = None
        self.generation += 1

    def fill_deep(self) -> None:
        """Encode every pending text here and now (the CLI's and the benchmark's way)."""
        assert self.transformer is not None
        while batch := self.deep_batch(256):
            self.deep_install([d for d, _ in batch], deep.encode_spread(self.transformer, [t for _, t in batch]))
        deep.release_memory()

    def remove(self, server: str) -> None:
        self._drop(server)
        self._changed()

    def _drop(self, server: str) -> None:
        for name in self._servers.pop(server, []):
            self._tools.pop(name, None)
            self.lexical.remove(name)

    # ------------------------------------------------------------------ what searches build first
    def settling(self) -> Callable[[], Settled] | None:
        """The work the next search would do first after a change (BM25's postings, the vector
        matrices: ~10-30 ms at 1,000 tools), as a function to run on another thread; None when
        there is none. Call it where the index changes (it snapshots the state there), and give the
        function's result to `settle` there too."""
        lexical = None if self.lexical.built else self.lexical.snapshot()
        static = self.model is not None and self._matrix is None
        transformer = self.transformer is not None and self._deep_matrix is None and self.deep_ready
        if lexical is None and not static and not transformer:
            return None
        tools = dict(self._tools)
        memory = dict(self._memory) if static else None
        vectors = dict(self._deep) if transformer else None
        dims = self.model.dims if self.model is not None else 0
        generations = (self.tools_generation, self.generation)
        return functools.partial(_settled, *generations, lexical, tools, memory, dims, vectors)

    def settle(self, settled: Settled) -> None:
        """Install what `settling`'s function built, unless the index changed since (then a search
        builds it, or a later `settling`)."""
        if settled.tools_generation != self.tools_generation:
            return
        if settled.postings is not None:  # new vectors meanwhile do not change the words
            self.lexical.adopt(settled.postings)
        if settled.generation != self.generation:
            return
        if settled.static is not None or settled.transformer is not None:
            # nothing changed since the snapshot: a matrix kept meanwhile has the same rows, in this order
            self._names = settled.names
            if settled.static is not None:
                self._matrix = settled.static
            if settled.transformer is not None:
                self._deep_matrix = settled.transformer

    def _semantic_matrix(self) -> Any:
        if self._matrix is None:
            self._names = list(self._tools)
            assert self.model is not None
            self._matrix = _matrix(self._tools, self._memory, self._names, self.model.dims)
            self._deep_matrix = None  # rows in the same order as the names
        return self._matrix

    def _transformer_matrix(self) -> Any:
        """The transformer's vectors in `_names` order, or None until every tool has one."""
        if self._deep_matrix is None and self.deep_ready:
            self._deep_matrix = _matrix(self._tools, self._deep, self._names, deep.DIMS)
        return self._deep_matrix

    def query_encoder(self) -> Callable[[str], Any] | None:
        """What encodes a query for `search(vector=)` while the transformer ranks (else None): the costly
        part of a search, about 2 ms a vector, 4-5 ms for the two of `_encode_query`. It holds the model
        alone, not the index, so it may run on a worker thread while the index changes; ask for it where
        the index is changed (the event loop)."""
        if self.transformer is None or not self.deep_ready:
            return None
        return functools.partial(_encode_query, self.transformer)

    def search(
        self, query: str, *, limit: int = 5, allowed: Callable[[str], bool] | None = None, vector: Any = None
    ) -> list[Hit]:
        """The best `limit` tools for `query` among those `allowed` (None: all). `vector`: the query's
        transformer vectors (`query_encoder`'s two rows) if the caller computed them; else they are
        encoded here."""
        query = query[:MAX_QUERY]
        fused: dict[str, float] = {}
        lexical = self.lexical.scores(query)
        ranked = sorted((n for n in lexical if allowed is None or allowed(n)), key=lambda n: -lexical[n])
        deep_ready = self.deep_ready  # the same fusion for all three rankings: one decision
        words_weight = FUSED_LEXICAL_WEIGHT if deep_ready else 1.0
        k = FUSED_RRF_K if deep_ready else RRF_K
        for rank, name in enumerate(ranked[:CANDIDATES]):
            fused[name] = fused.get(name, 0.0) + words_weight / (k + rank)
        if self._tools and (self.model is not None or self.transformer is not None):
            matrix = self._semantic_matrix() if self.model is not None else None
            if matrix is None:
                self._names = list(self._tools)
            deep_matrix = self._transformer_matrix() if self.transformer is not None else None
            if deep_matrix is not None:
                import numpy as np

                assert self.transformer is not None
                if vector is None:
                    vector = _encode_query(self.transformer, query)
                rows = np.atleast_2d(vector)  # one vector (a caller's own) ranks twice, as a request with no phrase
                # one product per vector: a matrix times a transposed pair took ~2.8 ms, two of these ~0.03 ms
                if np.array_equal(rows[0], rows[-1]):  # no action words: one ranking, both weights
                    self._fuse(fused, deep_matrix @ rows[0], DEEP_WEIGHT + EXPANDED_WEIGHT, k, allowed)
                else:
                    self._fuse(fused, deep_matrix @ rows[0], DEEP_WEIGHT, k, allowed)
                    self._fuse(fused, deep_matrix @ rows[-1], EXPANDED_WEIGHT, k, allowed)
            if self.model is not None and matrix is not None:
                weight = FUSED_STATIC_WEIGHT if deep_ready else SEMANTIC_WEIGHT
                self._fuse(fused, matrix @ self.model.encode([query])[0], weight, k, allowed)
        named = set(products(query)) if MENTION_WEIGHT else set()
        if named:
            mentioned = [n for n in fused if named.intersection(self._tools[n].products)]
            mentioned.sort(key=lambda n: -fused[n])
            for rank, name in enumerate(mentioned):
                fused[name] += MENTION_WEIGHT / (k + rank)
        best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return [Hit(name, self._tools[name].server, score) for name, score in best]

    def _fuse(
        self,
        fused: dict[str, float],
        similarity: Any,
        weight: float,
        k: float,
        allowed: Callable[[str], bool] | None,
    ) -> None:
        """Add one embedding ranking's reciprocal ranks (its best CANDIDATES allowed tools) to `fused`."""
        import numpy as np

        taken = 0
        for i in np.argsort(-similarity):
            name = self._names[int(i)]
            if allowed is not None and not allowed(name):
                continue
            fused[name] = fused.get(name, 0.0) + weight / (k + taken)
            taken += 1
            if taken >= CANDIDATES:
                break
