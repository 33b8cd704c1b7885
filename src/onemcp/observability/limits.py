"""Limit hits: one process-wide count per limit, and warnings about them that cannot flood the log.

Every place that refuses or drops something because a limit in `onemcp.limits` was reached
calls `hit(name, ...)`: the count is exported as `onemcp_limit_hits{limit=name}` and a warning
is written at most once per `interval` seconds per name, saying how many were suppressed since
(a flood of hits costs a counter increment each, not a log line each). Names are a fixed,
documented set (docs/server-behaviour.md, "Limits"), so the label set stays bounded.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily

log = logging.getLogger("onemcp.limits")

NAMES = frozenset(
    {
        "header_bytes",  # request line + headers over maxHeaderBytes (431)
        "header_count",  # more headers than maxHeaderCount (431)
        "header_timeout",  # headers not complete within headerTimeout (408, closed)
        "body_timeout",  # body not complete within bodyTimeout (408)
        "send_timeout",  # a client that took none of a response for sendTimeout: closed
        "unsent_bytes",  # over maxUnsentBytes of replies unread, all clients together: the largest holder closed
        "body_bytes",  # body over maxBodyBytes (413)
        "connections",  # over maxConnections (503, closed)
        "sessions",  # over maxSessions (503)
        "sessions_per_principal",  # over maxSessionsPerPrincipal (429)
        "streams_per_session",  # over maxStreamsPerSession (409)
        "requests_per_principal",  # one principal's open requests over maxRequestsPerPrincipal (429)
        "streams_per_principal",  # one principal's open streams over maxStreamsPerPrincipal (429)
        "own_connections",  # a server at maxOwnConnections, none idle: the call refused (503)
        "own_connections_per_principal",  # one principal's at maxOwnConnectionsPerPrincipal: its stalest idle closed
        "file_descriptors",  # no fd left for a socket to an HTTP upstream (EMFILE): the call refused (-32000)
        "queued_messages",  # a session's queue full: message dropped
        "related_messages",  # a call's progress/log over 256 or 16 MiB (all calls': 256 MiB, fairly): dropped
        "calls_per_session",  # an /sse (429) or stdio session with MAX_CALLS calls in flight: refused
        "unheard_logs",  # a log line for a Streamable HTTP session with no GET stream open: not queued
        "pending_client_requests",  # over maxPendingClientRequests(PerSession): upstream told at once
        "response_bytes",  # an upstream message over maxResponseBytes
        "log_lines",  # a server's stderr lines (over 100 a second) or ignored messages (over 10) not logged
        "subscriptions_per_session",  # over maxSubscriptionsPerSession (a JSON-RPC error; listen: not honoured)
        "list_items",  # an upstream's list over 10,000 items or maxResponseBytes in all: cut
        "list_item_bytes",  # one entry of an upstream's list over maxListItemBytes: withheld (warned once)
        "upstream_messages",  # a server over maxMessagesPerSecond (not replies to the hub): its reading paused
        "list_refreshes",  # a server that keeps changing a list: read again only after a pause (up to 30 s)
        "tool_pins",  # a server's tool pins over 20,000: the oldest of tools it no longer lists forgotten
        "bad_framing",  # a request the HTTP layer refuses (501 transfer coding, absolute-form target)
        "unconfirmed_credentials",  # a key or OAuth token not confirmed in Redis within auth.redisOutageGrace (503)
        "template_instances",  # a new template instance over maxInstances (429) or maxTemplateInstances (503)
    }
)


class _Hits:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.interval = 10.0
        self._last_warned: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def hit(self, name: str, message: str, *args: object) -> None:
        """Count one hit of limit `name`; warn (`message % args`) unless one was written lately."""
        assert name in NAMES, name
        self.counts[name] += 1
        now = time.monotonic()
        last = self._last_warned.get(name)
        if last is not None and now - last < self.interval:
            self._suppressed[name] += 1
            return
        self._last_warned[name] = now
        suppressed = self._suppressed.pop(name, 0)
        tail = f" ({suppressed} more like it since the last warning)" if suppressed else ""
        log.warning("limit %s: " + message + "%s", name, *args, tail)

    def count(self, name: str, n: int = 1) -> None:
        """Count `n` hits of a limit whose hits are expected in normal use (no warning)."""
        assert name in NAMES, name
        self.counts[name] += n

    def metrics(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "onemcp_limit_hits", "Requests refused or messages dropped because a limit was reached", labels=["limit"]
        )
        for name in sorted(NAMES):
            family.add_metric([name], self.counts[name])
        yield family


HITS = _Hits()
hit = HITS.hit
count = HITS.count
