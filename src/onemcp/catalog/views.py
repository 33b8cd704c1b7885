"""Views: the subset of servers a client sees, picked per connection with URL query selectors.

`/mcp?tags=a,b` (servers with any of the tags), `/mcp?filter=<expr>` (see `filters`),
`/mcp?preset=<name>` (a saved filter from presets.json beside mcp.json). At most one
selector; a view applies to every list and to routing (a name outside it is unknown).
`/mcp?exposure=full|search|auto` (with or without a selector) asks how its tools are shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

from onemcp.config.filters import AnyOf, FilterError, Node, Tag, parse, tags_named
from onemcp.config.model import EXPOSURES, Exposure, HubConfig
from onemcp.protocol.errors import echo

SELECTORS = ("tags", "filter", "preset")
PARAMETERS = (*SELECTORS, "exposure")  # what an MCP endpoint's query string may hold


class ViewError(ValueError):
    """A selector that cannot be used (HTTP 400)."""


class UnknownPreset(ViewError):
    """A preset not known here (with replicas, it may have been made through another one a moment ago)."""


@dataclass(frozen=True)
class View:
    selector: str  # "tags" | "filter" | "preset"
    value: str
    node: Node

    @property
    def preset(self) -> str | None:
        return self.value if self.selector == "preset" else None

    def servers(self, tags: Mapping[str, list[str]]) -> frozenset[str]:
        """The servers (by name) this view lets through, given each server's tags."""
        return frozenset(name for name, own in tags.items() if self.node.matches(frozenset(own)))


def check_query(query: bytes | str) -> None:
    """Refuse a query string with a parameter no MCP endpoint takes (ViewError): a misspelt selector
    (`?tag=red`) would otherwise select every tool, failing open."""
    text = query.decode("latin-1") if isinstance(query, bytes) else query
    unknown = sorted(set(parse_qs(text, keep_blank_values=True)) - set(PARAMETERS)) if text else []
    if unknown:  # quoted: `?=x` has a parameter with no name
        raise ViewError(
            f"unknown query parameter(s): {echo(', '.join(map(repr, unknown)))}; "
            f"the MCP endpoint takes {', '.join(PARAMETERS)}"
        )


def known_tags(config: HubConfig) -> frozenset[str] | None:
    """The tags a view may name: its servers' and templates' (None: any, as a template renders its own)."""
    tags = {t for s in config.servers.values() for t in s.tags}
    tags |= {t for tpl in config.templates.values() for t in tpl.tags}
    return None if any("{" in t for t in tags) else frozenset(tags)


def from_query(query: bytes | str, presets: Mapping[str, str], known: frozenset[str] | None = None) -> View | None:
    """The view a request's query string selects, or None for everything. A `tags` or `filter` that
    names a tag no server has (`known`) is a ViewError: a typo would otherwise be an empty view."""
    text = query.decode("latin-1") if isinstance(query, bytes) else query
    if not text:
        return None
    found = {k: _one(k, v) for k, v in parse_qs(text, keep_blank_values=True).items() if k in SELECTORS}
    if not found:
        return None
    if len(found) > 1:
        raise ViewError(f"conflicting view selectors: {', '.join(sorted(found))}; use one of tags, filter, preset")
    selector, value = next(iter(found.items()))
    if not value.strip():  # an empty selector would otherwise select everything: never fail open
        raise ViewError(f"{selector}= needs a value")
    try:
        if selector == "tags":
            names = [t.strip() for t in value.split(",") if t.strip()]
            if not names:
                raise ViewError("tags= needs at least one tag")
            node: Node = AnyOf(tuple(Tag(n) for n in names)) if len(names) > 1 else Tag(names[0])
        elif selector == "filter":
            node = parse(value)
        else:
            expr = presets.get(value)
            if expr is None:
                # preset names are no secret: a view only narrows what the caller's scopes reach, and any caller
                # admitted to /mcp may select any preset (the CLI's `preset` commands list them so too)
                listed = f"; presets: {', '.join(sorted(presets))}" if presets else "; this hub has no presets"
                raise UnknownPreset(f"unknown preset {echo(repr(value))}{listed}")
            node = parse(expr)
    except FilterError as exc:
        raise ViewError(f"invalid {selector}: {exc}{_plus_hint(selector, text)}") from None
    unknown = sorted(tags_named(node) - known) if known is not None and selector != "preset" else []
    if unknown:
        shown = ", ".join(sorted(known or ())) or "none"
        raise ViewError(f"no server has the tag(s) {', '.join(map(repr, unknown))}; the tags in use: {shown}")
    return View(selector, value, node)


def _plus_hint(selector: str, query: str) -> str:
    """A `+` (the filter's `and`) written into a URL as it is reads as a space: `?filter=dev+prod` is
    `dev prod`, and its error named a `prod` the user never wrote apart. Say so."""
    raw = [part.partition("=")[2] for part in query.split("&") if part.partition("=")[0] == selector]
    return " (a '+' in a URL's query is a space: write 'and', or %2B for '+')" if any("+" in r for r in raw) else ""


def exposure_from_query(query: bytes | str) -> Exposure | None:
    """The tool exposure a request's query string asks for (None: the preset's or the hub's)."""
    text = query.decode("latin-1") if isinstance(query, bytes) else query
    values = parse_qs(text, keep_blank_values=True).get("exposure") if text else None
    if not values:
        return None
    value = _one("exposure", values)
    for known in EXPOSURES:
        if value == known:
            return known
    raise ViewError(f"unknown exposure {echo(repr(value))}; expected one of {', '.join(EXPOSURES)}")


def _one(name: str, values: list[str]) -> str:
    """The one value of a selector given once (twice, which would win is a guess: a 400)."""
    if len(values) > 1:
        raise ViewError(f"{name}= is given {len(values)} times; give it once")
    return values[0]


def preset_view(name: str, presets: Mapping[str, str]) -> View:
    """The view of a preset as it is defined now (ViewError when it no longer exists)."""
    expr = presets.get(name)
    if expr is None:
        raise UnknownPreset(f"unknown preset {name!r}")
    try:
        return View("preset", name, parse(expr))
    except FilterError as exc:
        raise ViewError(f"preset {name!r}: {exc}") from None
