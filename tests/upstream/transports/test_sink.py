"""One MCP event stream read into messages (sink.py): what a server's events cost the hub."""

from __future__ import annotations

import pytest

from onemcp.observability.limits import HITS
from onemcp.protocol import sse
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream.transports.base import IGNORED_PER_SECOND, ServerLog
from onemcp.upstream.transports.sink import EventSink


def test_a_flood_of_events_that_are_not_json_writes_a_few_warnings_not_one_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Hunt B (limits): an SSE stream (legacy SSE or Streamable HTTP) of 100,000 non-JSON events wrote
    100,000 warnings and held the hub's event loop 8.7 s: every other client's calls waited."""
    got: list[Message] = []
    sink = EventSink(lambda msg, related: got.append(msg), None, ServerLog("s"))
    before = HITS.counts["log_lines"]
    for n in range(10_000):
        sink(sse.Event(data=f"not json {n}"))
    sink(sse.Event(data='{"jsonrpc": "2.0", "method": "a"}'))
    assert got == [{"jsonrpc": "2.0", "method": "a"}]
    warned = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert 0 < len(warned) <= 5 * (IGNORED_PER_SECOND + 1)
    assert HITS.counts["log_lines"] - before >= 10_000 - len(warned)
