"""What a tool's name says it does, in the words people use for it.

A request says "put my half-done work aside", the tool is `git_stash`; "give PROJ-7 to Priya",
`jira_assign_issue`; "remember that Alice works at Acme", `add_observations`. Owns the shipped
lexicon (`data/actions.toml`: words that occur in tool names, each with everyday phrases for it;
written from general knowledge, not from the benchmark's requests) and `say_text`, the phrases
of a tool's name words, which the index adds to the tool's BM25 terms, and `expanded`, a request
with the words whose phrases it uses ("hand over PROJ-7 to Priya (assign deliver transfer
recipient)"), which the index encodes as a second query vector. Pure functions over the loaded
file; no state. Does not rank (`index`).
"""

from __future__ import annotations

import functools
import logging
import re
import tomllib

from onemcp.search.embed import DATA
from onemcp.search.text import words

log = logging.getLogger("onemcp.search")
ACTIONS_FILE = DATA / "actions.toml"
MAX_PHRASE = 4  # words of the longest phrase looked for in a request (a few phrases are longer)
_TOKEN = re.compile(r"[a-z0-9]+")


@functools.cache
def lexicon() -> dict[str, str]:
    """word -> its phrases; empty when the file is missing or damaged."""
    try:
        with ACTIONS_FILE.open("rb") as file:
            data = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        log.warning("tool search without action words: %s", exc)
        return {}
    return {word: entry["say"] for word, entry in data.items() if isinstance(entry, dict) and "say" in entry}


def _entry(word: str, known: dict[str, str]) -> str | None:
    """The lexicon's word for `word`: itself, or its singular (`issues`, `entities`, `branches`)."""
    for candidate in (
        word,
        word[:-3] + "y" if word.endswith("ies") else "",
        word[:-2] if word.endswith("es") else "",
        word[:-1] if word.endswith("s") else "",
    ):
        if candidate and candidate in known:
            return candidate
    return None


def phrases_of(word: str) -> list[str]:
    """The lexicon's phrases for `word` (or its singular), in the file's order; empty if it has none."""
    known = lexicon()
    entry = _entry(word, known)
    return [phrase.strip() for phrase in known[entry].split(",") if phrase.strip()] if entry else []


def say_text(name: str) -> str:
    """The everyday phrases of the words of a tool's name (`git_stash` -> "put aside, shelve, ...")."""
    known = lexicon()
    found = [entry for word in words(name) if (entry := _entry(word, known)) is not None]
    return "; ".join(known[entry] for entry in dict.fromkeys(found))


@functools.cache
def _phrases() -> dict[str, tuple[str, ...]]:
    """phrase (its words joined by one space) -> the lexicon words it is a phrase of, sorted.
    Keyed by one string, not a tuple of word strings: the table stays in memory for the hub's
    life, and the hub's RSS grew by 1.5 MB for its 6,717 phrases this way against 3.1 MB with
    tuples (after `malloc_trim`, at 688 tools; live objects 1.0 MB against 1.7 MB)."""
    found: dict[str, set[str]] = {}
    for word in lexicon():
        for phrase in phrases_of(word):
            key = " ".join(_TOKEN.findall(phrase.lower()))
            if key:
                found.setdefault(key, set()).add(word)
    return {key: tuple(sorted(words)) for key, words in found.items()}


def said_words(query: str) -> list[str]:
    """The lexicon words whose phrases `query` uses, in the order it uses them, without those it
    already says: "put aside my edits" -> place, set, write ("put"), reserve, stash ("put aside").
    Every phrase of one to MAX_PHRASE words that occurs in it, word for word, counts: a word of many
    senses brings them all, and the ranking, not this, sorts them out."""
    phrases = _phrases()
    tokens = _TOKEN.findall(query.lower())
    present = set(tokens)
    out: dict[str, None] = {}
    for start in range(len(tokens)):
        for size in range(1, min(MAX_PHRASE, len(tokens) - start) + 1):
            for word in phrases.get(" ".join(tokens[start : start + size]), ()):
                if word not in present:
                    out[word] = None
    return list(out)


def expanded(query: str) -> str:
    """`query` with the lexicon words its phrases stand for, in brackets (itself if none)."""
    said = said_words(query)
    return f"{query} ({' '.join(said)})" if said else query
