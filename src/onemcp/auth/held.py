"""What one principal holds open: its HTTP requests being answered, and of them its streams.

Owns the per-principal counts behind `maxRequestsPerPrincipal` and `maxStreamsPerPrincipal`: every
request to an MCP entry (`/mcp`, `/sse`, `/messages`) and to the admin API is counted here from the
moment its principal is admitted until it is answered (a stream: until it ends), so one principal
(one API key, one OAuth client; every anonymous client is the same one) cannot hold every connection
of the hub (`maxConnections`) and leave the others a 503. A stream is a `GET` (a session's stream on
`/mcp`, a legacy `/sse` stream, the admin event stream) or a 2026-07-28 `subscriptions/listen`: it
may stay open for as long as its client likes, so it has its own, smaller bound. Counts are per
process (each replica counts its own connections, as `maxConnections` does). Does not own who the
principal is (the gate) nor the connections themselves (http/server.py).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from onemcp.auth.principal import Principal
from onemcp.config.model import Limits
from onemcp.http.server import connection_cap
from onemcp.observability.limits import hit
from onemcp.protocol.errors import LimitReached

MIN_REQUESTS = 16  # the default per-principal request cap never goes below this (a tiny fd limit)
# A refusal's headers: try again later, on a new connection (the refused one is closed once answered, so
# a principal at its cap does not keep the connections it was refused on: keep-alive would hold them)
REFUSAL_HEADERS = [(b"retry-after", b"5"), (b"connection", b"close")]


def request_cap(limits: Limits) -> int:
    """Requests one principal may have open at once: the configured cap, else a quarter of the
    connections the hub takes (at least 16), so one principal leaves the others three quarters."""
    if limits.max_requests_per_principal is not None:
        return limits.max_requests_per_principal
    return max(MIN_REQUESTS, connection_cap(limits) // 4)


class Held:
    """Open requests and streams per principal id (a Counter each: an id at 0 is forgotten)."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.streams: Counter[str] = Counter()
        self._cap: tuple[Limits, int] | None = None  # the request cap of the limits in force (no getrlimit a request)

    def take(
        self, principal: Principal, limits: Limits, *, stream: bool, refusable: bool = True
    ) -> LimitReached | None:
        """Count one more open request (a stream: also one more stream) of `principal`, or the
        refusal (429) when it already holds its cap; nothing is counted then. Not `refusable`: one
        that may not be a request (a legacy POST may carry a response or a notification, which a
        client at its cap must still send: its answer to a sampling request, a cancellation) is
        counted whatever; `over` refuses it once it is known to be a request."""
        key = principal.id
        if stream and self.streams[key] >= (cap := limits.max_streams_per_principal):
            hit("streams_per_principal", "principal %s has %d streams open: refused another", key, cap)
            why = f"too many open streams for this client identity (limit {cap}); close one first"
            return LimitReached("streams_per_principal", why, 429)
        if refusable and (refusal := self._over(key, self._request_cap(limits), self.requests[key] + 1)) is not None:
            return refusal
        self.requests[key] += 1
        if stream:
            self.streams[key] += 1
        return None

    def over(self, principal: Principal, limits: Limits) -> LimitReached | None:
        """The refusal of a request `take` counted as not refusable, if its principal holds more than its cap."""
        return self._over(principal.id, self._request_cap(limits), self.requests[principal.id])

    def _request_cap(self, limits: Limits) -> int:
        if self._cap is None or self._cap[0] is not limits:  # a reload makes new limits
            self._cap = (limits, request_cap(limits))
        return self._cap[1]

    @staticmethod
    def _over(key: str, cap: int, held: int) -> LimitReached | None:
        if held <= cap:
            return None
        hit("requests_per_principal", "principal %s has %d requests open: refused another", key, cap)
        why = f"too many open requests for this client identity (limit {cap}); try again later"
        return LimitReached("requests_per_principal", why, 429)

    def give_back(self, principal: Principal, *, stream: bool) -> None:
        """The request (stream) `take` counted was answered (ended)."""
        key = principal.id
        self._less(self.requests, key)
        if stream:
            self._less(self.streams, key)

    @contextlib.contextmanager
    def holding(
        self, principal: Principal, limits: Limits, *, stream: bool, refusable: bool = True
    ) -> Iterator[LimitReached | None]:
        """`take` for the block, given back after it; yields the refusal (then nothing was counted)."""
        refusal = self.take(principal, limits, stream=stream, refusable=refusable)
        try:
            yield refusal
        finally:
            if refusal is None:
                self.give_back(principal, stream=stream)

    @staticmethod
    def _less(counts: Counter[str], key: str) -> None:
        counts[key] -= 1
        if counts[key] <= 0:
            del counts[key]
