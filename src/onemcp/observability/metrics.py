"""Prometheus metrics: what the hub counts on the hot path, and what it reads at scrape time.

Counted as it happens: forwarded requests by method, server and outcome (a tool result with
`isError` is `tool_error`), their latency, and the errors the hub answered itself. Read from
live state when scraped (no bookkeeping to drift): upstream up/down, supervisor restarts,
sessions, listen streams, config reloads. Label sets are bounded: methods outside the MCP method
list count as "other"; error codes are the hub's own few; the counted series name configured
servers and templates (a template instance's requests count under its template's name, which
the caller passes: instance names would leave series behind for every instance that ever ran),
and a server's go at the first scrape after it is gone (`serves`: a reload removed it and its
connection, its calls drained, is gone too), as a target that no longer exists does; the series
read at scrape time name the upstreams running then, and go with them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from onemcp.protocol import errors

KNOWN_METHODS = frozenset(
    {
        "tools/call", "prompts/get", "resources/read", "completion/complete", "resources/subscribe",
        "resources/unsubscribe", "tasks/get", "tasks/result", "tasks/cancel", "tasks/list",
        "tools/list", "prompts/list", "resources/list", "resources/templates/list", "initialize",
        "ping", "logging/setLevel", "server/discover", "subscriptions/listen",
    }
)  # fmt: skip
KNOWN_CODES = frozenset(v for k, v in vars(errors).items() if k.isupper() and isinstance(v, int) and v < 0)
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "onemcp_upstream_requests",
            "Requests forwarded to an upstream, by outcome (ok, error, tool_error, timeout, cancelled)",
            ["method", "server", "outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "onemcp_upstream_request_duration_seconds",
            "Time from forwarding a request to its answer (its reply, or the hub's at its deadline); a request"
            " its client cancelled has none and is not observed",
            ["method", "server"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._answered = Counter(
            "onemcp_answered_errors",
            "Requests the hub answered with an error itself, not an upstream (unknown tool, server down,"
            " scope, limit, bad params), by method and JSON-RPC error code",
            ["method", "code"],
            registry=self.registry,
        )
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}
        # whether a server (or template) name is still served: configured, or its connection not gone yet
        self.serves: Callable[[str], bool] = lambda server: True

    def answered_error(self, method: object, code: int) -> None:
        """A request the hub answered with error `code` itself: one of the hub's own codes, else "other"
        (an upstream's answer to one of the hub's requests keeps the upstream's code, which it chooses)."""
        name = method if isinstance(method, str) and method in KNOWN_METHODS else "other"
        self._answered.labels(name, str(code) if code in KNOWN_CODES else "other").inc()

    def observe(self, method: str, server: str, outcome: str, seconds: float) -> None:
        """One forwarded request to `server` (a configured server's or template's name, never an
        instance's) finished (label children are cached: this is the hot path)."""
        if method not in KNOWN_METHODS:
            method = "other"
        key = (method, server, outcome)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self._requests.labels(method, server, outcome)
        counter.inc()
        if outcome == "cancelled":  # no answer to time: the time its client waited before it gave up
            return
        hist = self._histograms.get(key[:2])
        if hist is None:
            hist = self._histograms[key[:2]] = self._latency.labels(method, server)
        hist.observe(seconds)

    def add_state(self, read: Callable[[], Iterator[Metric]]) -> None:
        """Metrics computed from live state at scrape time."""
        self.registry.register(_StateCollector(read))

    def forget_gone(self) -> None:
        """Drop the request series of the servers no longer served (`serves`)."""
        gone = {
            server for server in {key[1] for key in [*self._counters, *self._histograms]} if not self.serves(server)
        }
        for key in [key for key in self._counters if key[1] in gone]:
            self._requests.remove(*key)
            del self._counters[key]
        for pair in [pair for pair in self._histograms if pair[1] in gone]:
            self._latency.remove(*pair)
            del self._histograms[pair]

    def render(self) -> bytes:
        self.forget_gone()
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(self, read: Callable[[], Iterator[Metric]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        return self._read()


def gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def counter(name: str, doc: str, labels: list[str] | None = None) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)
