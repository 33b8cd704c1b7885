"""Which server named a web address: routing for `http(s)://` resource URIs, which the hub shows unprefixed.

Owns two facts routing needs besides the lists: which server last named a web URI in a result the hub
passed on (a resource link or an embedded resource in a tool result or a prompt, a `resources/read`
content), remembered per reach (what one requester sees: its view) in a bounded LRU; and how specific a
resource template is, so that a catch-all (`https://{+rest}`) never takes an address a more specific
template (a literal host) matches. Does not own the lists (`catalog.py` holds them) nor the results
(`hub/forward.py` tells it what a result named).
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterable

from onemcp.catalog.reach import Reach
from onemcp.protocol.names import is_web

PER_SERVER = 1024  # web URIs remembered per server and reach (the most recently named kept)
REACHES = 64  # reaches remembered (the most recently used kept); URIs are kept as 16-byte digests


def _digest(uri: str) -> bytes:
    """A URI as remembered: a presigned address may be kilobytes long, its digest is 16 bytes."""
    return hashlib.blake2b(uri.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class NamedUris:
    """reach -> server -> web URI -> when it named it last. Each server's memory is bounded on its own (LRU),
    so a server that names thousands of addresses forgets its own, never another's; reaches are LRU too."""

    def __init__(self, per_server: int = PER_SERVER, reaches: int = REACHES) -> None:
        self.per_server = per_server
        self.reaches = reaches
        self._by_reach: OrderedDict[Reach, dict[str, OrderedDict[bytes, int]]] = OrderedDict()
        self._clock = 0  # counts namings: the latest naming of a URI wins

    def note(self, reach: Reach, server: str, uris: Iterable[str]) -> None:
        """`server`'s result, passed to a requester of `reach`, named these URIs (those not web are skipped)."""
        web = [uri for uri in uris if is_web(uri)]
        if not web:
            return
        servers = self._by_reach.get(reach)
        if servers is None:
            servers = self._by_reach[reach] = {}
            while len(self._by_reach) > self.reaches:
                self._by_reach.popitem(last=False)
        else:
            self._by_reach.move_to_end(reach)
        named = servers.setdefault(server, OrderedDict())
        for uri in web:
            key = _digest(uri)
            self._clock += 1
            named[key] = self._clock
            named.move_to_end(key)
        while len(named) > self.per_server:
            named.popitem(last=False)

    def server_of(self, reach: Reach, uri: str) -> str | None:
        """The server whose result last named `uri` to a requester of `reach` (None: none remembered)."""
        servers = self._by_reach.get(reach)
        if servers is None or not is_web(uri):
            return None
        key = _digest(uri)
        when = {server: named[key] for server, named in servers.items() if key in named}
        return max(when, key=when.__getitem__) if when else None

    def forget(self, server: str) -> None:
        """A server went (removed from the config): what it named routes by the lists again."""
        for servers in self._by_reach.values():
            servers.pop(server, None)


_HIERARCHICAL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)")


def specificity(template: str) -> tuple[int, int]:
    """How specific a template is, lower first: (0 a literal scheme and host, 1 a variable host, 2 a
    variable scheme; then the longer literal text before its first expression first)."""
    literal = len(template.partition("{")[0])
    m = _HIERARCHICAL.match(template)
    if m is None:
        return (2 if template.startswith("{") or ":" not in template.partition("{")[0] else 0), -literal
    return (1 if "{" in m.group(2) else 0), -literal


def most_specific(matches: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """Of the templates (server, URI, template) that match a URI, the (server, URI) of the most specific
    kind only (a template whose host is a variable never takes a URI a literal host's template matches),
    the more specific first, then in config order."""
    if not matches:
        return []
    ranked = sorted(matches, key=lambda m: specificity(m[2]))  # stable: config order within a rank
    best = specificity(ranked[0][2])[0]
    return [(server, uri) for server, uri, template in ranked if specificity(template)[0] == best]
