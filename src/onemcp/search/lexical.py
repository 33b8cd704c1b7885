"""BM25 over tool fields: each field's terms counted with its own weight.

Owns the term statistics of the indexed tools and scoring a query against them (Okapi BM25,
k1 1.2, b 0.75, term frequencies weighted per field: a word of the name counts more than a
word of a parameter's description). Tools are added and removed one by one; the postings are
rebuilt lazily, on the first search after a change, or ahead of it on another thread (`postings`
over a `snapshot`, then `adopt`). A tool's terms can be counted on any thread (`document`): the
costly part of adding it. Does not embed or fuse (`index`).
"""

from __future__ import annotations

import math
import sys
from array import array
from collections import Counter, defaultdict
from collections.abc import Mapping

from onemcp.search.text import terms

FIELD_WEIGHTS = {"name": 3.0, "title": 2.0, "description": 1.0, "params": 0.6, "server": 1.5, "kind": 1.0, "say": 1.0}
K1, B = 1.2, 0.75


# one tool's terms, their weighted tfs, and its length: flat, not a Counter per tool (half the memory)
Document = tuple[tuple[str, ...], "array[float]", float]
# term -> (names, weighted tfs): two flat sequences, not a tuple per posting (a third of the memory)
Postings = dict[str, tuple[list[str], "array[float]"]]


def document(fields: Mapping[str, str]) -> Document:
    """A tool's weighted term counts (pure: any thread)."""
    tf: Counter[str] = Counter()
    for field, text in fields.items():
        weight = FIELD_WEIGHTS.get(field, 1.0)
        for term in terms(text):
            tf[sys.intern(term)] += weight  # type: ignore[assignment]  # one string per term, shared
    return (tuple(tf), array("d", tf.values()), sum(tf.values()) or 1.0)


def postings(docs: Mapping[str, Document]) -> tuple[Postings, float]:
    """The postings of these documents and their average length (pure: any thread)."""
    built: Postings = defaultdict(lambda: ([], array("d")))
    for name, (doc_terms, tfs, _) in docs.items():
        for term, count in zip(doc_terms, tfs, strict=True):
            names, counts = built[term]
            names.append(name)
            counts.append(count)
    return dict(built), sum(length for _, _, length in docs.values()) / max(1, len(docs))


class Bm25:
    def __init__(self) -> None:
        self._docs: dict[str, Document] = {}
        self._postings: Postings | None = None
        self._average = 1.0

    def add(self, name: str, doc: Document) -> None:
        """Index a tool by its `document`."""
        self._docs[name] = doc
        self._postings = None

    def remove(self, name: str) -> None:
        if self._docs.pop(name, None) is not None:
            self._postings = None

    @property
    def built(self) -> bool:
        """Are the postings in step with the documents (no build before the next search)?"""
        return self._postings is not None

    def snapshot(self) -> dict[str, Document]:
        """The documents as they are now, for `postings` on another thread."""
        return dict(self._docs)

    def adopt(self, built: tuple[Postings, float]) -> None:
        """Postings `postings` built from a `snapshot` (the caller checks that nothing changed since)."""
        self._postings, self._average = built

    def _build(self) -> Postings:
        self.adopt(postings(self._docs))
        assert self._postings is not None
        return self._postings

    def scores(self, query: str) -> dict[str, float]:
        """BM25 score of every tool sharing a term with `query` (others: absent, i.e. 0)."""
        postings = self._postings if self._postings is not None else self._build()
        n = len(self._docs)
        out: dict[str, float] = defaultdict(float)
        for term in set(terms(query)):
            hits = postings.get(term)
            if not hits:
                continue
            names, counts = hits
            idf = math.log(1 + (n - len(names) + 0.5) / (len(names) + 0.5))
            for name, count in zip(names, counts, strict=True):
                length = self._docs[name][2]
                out[name] += idf * count * (K1 + 1) / (count + K1 * (1 - B + B * length / self._average))
        return out
