"""Server-sent events of an MCP stream turned into JSON-RPC messages (Streamable HTTP and HTTP+SSE alike).

Owns one stream's reading: each `message` event's JSON handed to `deliver` (with the request the
stream answers, if any), events that are not JSON logged and dropped, and what a resume needs (the
last event id, the server's `retry`) and whether the awaited reply came. Does not own the decoding
of the event stream (protocol/sse.py) nor the exchange carrying it (http.py, sse.py).
"""

from __future__ import annotations

from typing import Any

import orjson

from onemcp.protocol import jsonrpc, sse
from onemcp.upstream.transports.base import Deliver, ServerLog


class EventSink:
    """Turns SSE events into messages for `deliver`; remembers where a stream may be resumed."""

    def __init__(self, deliver: Deliver, related: Any, log: ServerLog, source: str = "the upstream") -> None:
        self.deliver = deliver
        self.source = source  # who sends the events, as errors name it
        self.related = related
        self.log = log
        self.last_id: str | None = None  # the last event id seen (Last-Event-ID to resume after)
        self.retry_ms: int | None = None  # how long the server asked to wait before reconnecting
        self.answered = False  # the response to `related` came

    def __call__(self, ev: sse.Event) -> None:
        if ev.id is not None:
            self.last_id = ev.id
        if ev.retry is not None:
            self.retry_ms = ev.retry
        if ev.event != "message" or not ev.data:
            return
        try:
            msg = jsonrpc.load_bounded(ev.data, self.source)
        except orjson.JSONDecodeError:
            self.log.ignored("non-JSON SSE event ignored: %.200r", ev.data)
            return
        except jsonrpc.TooDeep as exc:
            self.log.ignored("an SSE event was ignored: it %s", exc)
            return
        if isinstance(msg, dict):
            if self.related is not None and msg.get("id") == self.related and "method" not in msg:
                self.answered = True
            self.deliver(msg, self.related)
