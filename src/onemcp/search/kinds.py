"""What kind of product a server fronts, in the words people use for it.

A request names the kind of product, not the brand: "the crash tracker" means Sentry's tools,
"our CRM" HubSpot's. Owns the shipped gazetteer (`data/kinds.toml`: well-known products, the
names they go by, and plain words for what they are; written from general knowledge, not from
the benchmark's requests) and finding the products of a server: named in its server name or the
name it reports, or in the names and descriptions of a good share of its tools. Pure functions
over the loaded file; no state. Does not rank (`index`).
"""

from __future__ import annotations

import functools
import logging
import re
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from onemcp.search.embed import DATA

log = logging.getLogger("onemcp.search")
KINDS_FILE = DATA / "kinds.toml"
_WORD = re.compile(r"[a-z0-9]+")
SHARE = 0.3  # a product named in this share of a server's tool texts (and in two at least) is its own
MOST = 3  # products per server, and per tool, at most


class Gazetteer(NamedTuple):
    names: dict[tuple[str, ...], str]  # name (as words) -> product
    starts: dict[str, list[int]]  # first word of a name -> the names' lengths in words, longest first
    kinds: dict[str, str]  # product -> its kind words


@functools.cache
def gazetteer() -> Gazetteer:
    """The shipped gazetteer; empty when the file is missing or damaged."""
    names: dict[tuple[str, ...], str] = {}
    kinds: dict[str, str] = {}
    try:
        with KINDS_FILE.open("rb") as file:
            data = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        log.warning("tool search without product kinds: %s", exc)
        data = {}
    for product, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
            continue
        kinds[product] = entry["kind"]
        for name in entry.get("names", []):
            key = tuple(_WORD.findall(str(name).lower()))
            if key:
                names[key] = product
    starts: dict[str, set[int]] = {}
    for key in names:
        starts.setdefault(key[0], set()).add(len(key))
    return Gazetteer(names, {word: sorted(sizes, reverse=True) for word, sizes in starts.items()}, kinds)


def products(text: str) -> list[str]:
    """The products `text` names, in order of first mention (each once), longest name first."""
    names, starts, _ = gazetteer()
    tokens = _WORD.findall(text.lower())
    found: list[str] = []
    i = 0
    while i < len(tokens):
        step = 1
        for size in starts.get(tokens[i], ()):
            product = names.get(tuple(tokens[i : i + size]))
            if product is not None:
                if product not in found:
                    found.append(product)
                step = size
                break
        i += step
    return found


def server_products(server: str, tools: Sequence[Mapping[str, Any]], about: str = "") -> list[str]:
    """A server's products: named by it (its name, `about`), then those most of its tools name."""
    own = products(f"{server} {about}")
    counts: Counter[str] = Counter()
    for tool in tools:
        counts.update(set(products(f"{tool.get('name', '')} {tool.get('description') or ''}")))
    enough = max(2.0, SHARE * len(tools))
    common = [p for p, n in counts.most_common() if n >= enough and p not in own]
    return [*own, *common][:MOST]


def kind_text(names: Iterable[str]) -> str:
    """The kind words of `names` (products), joined."""
    kinds = gazetteer().kinds
    return "; ".join(kinds[n] for n in names if n in kinds)


def tool_products(server: str, tools: Sequence[Mapping[str, Any]], about: str = "") -> list[list[str]]:
    """The products of each of `tools`: those its own name names, then its server's (MOST at most)."""
    own = server_products(server, tools, about)
    out = []
    for tool in tools:
        named = [p for p in products(str(tool.get("name", ""))) if p not in own]  # cloudflare__r2_get_object
        out.append([*named, *own][:MOST])
    return out


def tool_kinds(server: str, tools: Sequence[Mapping[str, Any]], about: str = "") -> list[str]:
    """The kind words of each of `tools` ("" for none): the products its own name names, then its server's."""
    return [kind_text(names) for names in tool_products(server, tools, about)]
