"""What of a tool definition is searched, and how text becomes words.

Owns the searchable text of a tool (its name split into words, title, description, parameter
names and descriptions, its server) and the word rules both rankers share: lowercase, split
snake_case / camelCase / kebab-case / dotted names, drop a short list of stopwords, and strip
common English suffixes so "files", "filed" and "filing" meet. Pure functions, no state.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"[A-Za-z0-9]+")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "please",
        "so",
        "some",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "this",
        "to",
        "up",
        "us",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)
MAX_PARAM_TEXT = 400  # characters of parameter descriptions a tool contributes
# Characters of the rest a tool contributes, each field cut to its start. A description is searched
# as text, not held as it was: unbounded, one tool's 20 MB of distinct words held the hub 800 MB of
# terms and postings (BM25 keeps every distinct word). The bounds are above every tool of the 7,545
# in bench/toolsearch/data (the longest description is 13,086 characters, the longest parameter
# names 3,526), so real rankings do not change; the tool itself is listed whole.
MAX_NAME_TEXT = 1024  # of its name, and as much of its title
MAX_DESCRIPTION_TEXT = 16384
MAX_PARAM_NAMES_TEXT = 4096
# Characters of searchable text one server's tools contribute together. Past it each tool is searched
# by an equal share (at least MIN_TOOL_TEXT): 10,000 tools of 5,000 characters of distinct words
# (55 MB, under maxResponseBytes and the 10,000 items a list keeps) grew the hub to 3 GB. The
# largest real server's descriptions are 157,193 characters (mailchimp's 227 tools), and the
# words of all 7,545 tools are 10,690.
MAX_SERVER_TEXT = 1024 * 1024
MIN_TOOL_TEXT = 256
SHARED = ("name", "title", "description", "params")  # what a tool's share is spent on, in this order


def words(text: str) -> list[str]:
    """Lowercased words of `text`, identifiers split (`getFileInfo` -> get, file, info)."""
    out: list[str] = []
    for raw in _WORD.findall(_CAMEL.sub(" ", text)):
        out.append(raw.lower())
    return out


def stem(word: str) -> str:
    """A light suffix strip (no dictionary): enough for plurals and verb forms to meet."""
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith(("ies", "ied")) and len(word) > 4:
        return word[:-3] + "y"
    for suffix in ("ations", "ation", "ings", "ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # running -> run
            break
    else:
        if word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")):
            word = word[:-2]
        elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
            word = word[:-1]
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def terms(text: str) -> list[str]:
    """The lexical terms of `text`: words without stopwords, stemmed."""
    return [stem(w) for w in words(text) if w not in STOPWORDS]


def fields(server: str, tool: Mapping[str, Any], about: str = "") -> dict[str, str]:
    """The searchable fields of a tool: name, title, description, params, server."""
    name = str(tool.get("name", ""))
    schema = tool.get("inputSchema")
    props = schema.get("properties") if isinstance(schema, dict) else None
    names: list[str] = []
    described: list[str] = []
    if isinstance(props, dict):
        for key, spec in props.items():
            names.append(str(key))
            if isinstance(spec, dict) and isinstance(spec.get("description"), str):
                described.append(spec["description"])
    annotations = tool.get("annotations")
    title = tool.get("title") or (annotations.get("title") if isinstance(annotations, dict) else None) or ""
    return {
        "name": name[:MAX_NAME_TEXT],
        "title": str(title)[:MAX_NAME_TEXT],
        "description": str(tool.get("description") or "")[:MAX_DESCRIPTION_TEXT],
        "params": " ".join(names)[:MAX_PARAM_NAMES_TEXT] + " " + " ".join(described)[:MAX_PARAM_TEXT],
        "server": f"{server} {about}".strip(),
    }


def searched(server_fields: list[dict[str, str]]) -> list[dict[str, str]]:
    """One server's tools' `fields` within `MAX_SERVER_TEXT` together: unchanged if they fit, else each
    cut to an equal share, spent on its name first, then title, description and parameters."""
    if sum(len(f[key]) for f in server_fields for key in SHARED) <= MAX_SERVER_TEXT:
        return server_fields
    share = max(MIN_TOOL_TEXT, MAX_SERVER_TEXT // len(server_fields))
    out = []
    for f in server_fields:
        cut, left = dict(f), share
        for key in SHARED:
            cut[key] = f[key][:left]
            left -= len(cut[key])
        out.append(cut)
    return out
