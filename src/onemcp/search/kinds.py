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
from typing import Any

from onemcp.search.embed import DATA

log = logging.getLogger("onemcp.search")
KINDS_FILE = DATA / "kinds.toml"
_WORD = re.compile(r"[a-z0-9]+")
SHARE = 0.3  # a product named in this share of a server's tool texts (and in two at least) is its own
MOST = 3  # products per server, at most


@functools.cache
def gazetteer() -> dict[tuple[str, ...], tuple[str, str]]:
    """Name (as words) -> (product, kind); empty when the file is missing or damaged."""
    try:
        with KINDS_FILE.open("rb") as file:
            data = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        log.warning("tool search without product kinds: %s", exc)
        return {}
    out: dict[tuple[str, ...], tuple[str, str]] = {}
    for product, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
            continue
        for name in entry.get("names", []):
            key = tuple(_WORD.findall(str(name).lower()))
            if key:
                out[key] = (product, entry["kind"])
    return out


def products(text: str) -> list[str]:
    """The products `text` names, in order of first mention (each once)."""
    table = gazetteer()
    if not table:
        return []
    longest = max(len(key) for key in table)
    tokens = _WORD.findall(text.lower())
    found: list[str] = []
    i = 0
    while i < len(tokens):
        for size in range(min(longest, len(tokens) - i), 0, -1):
            hit = table.get(tuple(tokens[i : i + size]))
            if hit is not None:
                if hit[0] not in found:
                    found.append(hit[0])
                i += size
                break
        else:
            i += 1
    return found


def server_products(server: str, tools: Sequence[Mapping[str, Any]], about: str = "") -> list[str]:
    """A server's products: named by it (its name, `about`), then those most of its tools name."""
    own = products(f"{server.replace('-', ' ').replace('_', ' ')} {about}")
    counts: Counter[str] = Counter()
    for tool in tools:
        counts.update(set(products(f"{tool.get('name', '')} {tool.get('description') or ''}")))
    enough = max(2.0, SHARE * len(tools))
    common = [p for p, n in counts.most_common() if n >= enough and p not in own]
    return [*own, *common][:MOST]


def kind_text(names: Iterable[str]) -> str:
    """The kind words of `names` (products), joined."""
    kinds = {product: kind for product, kind in gazetteer().values()}
    return "; ".join(kinds[n] for n in names if n in kinds)
