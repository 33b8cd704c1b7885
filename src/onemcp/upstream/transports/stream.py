"""An HTTP upstream's event streams: one GET (or a legacy SSE server's POST) read as it arrives.

Owns the exchange of a long-lived event stream (a Streamable HTTP server's standalone GET stream and
the GETs that resume a request's reply stream, a legacy HTTP+SSE server's stream and the POSTs to its
endpoint): its events handed on as they come, the limit on one event (`maxResponseBytes`: TooLarge),
and, when the answer is not a stream, why, in the one-line form every non-2xx answer takes
(`http_status.error_text`: the status, its reason, the page's words). Does not own reopening or
resuming a stream, nor what its events say (`http.py`, `sse.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from onemcp.config.model import MAX_RESPONSE_BYTES
from onemcp.observability.limits import hit
from onemcp.protocol import sse
from onemcp.upstream.transports.h1 import H1Exchange, UpstreamHttpError
from onemcp.upstream.transports.http_status import ERROR_BODY_MAX, error_text


class TooLarge(UpstreamHttpError):
    """One message from the upstream passed its maxResponseBytes: its exchange stops reading."""


def too_large(upstream: str, limit: int) -> TooLarge:
    """Count a refused message and make the error that ends its exchange (and drops its connection)."""
    hit("response_bytes", "upstream %s sent a message over %d bytes", upstream, limit)
    return TooLarge(f"response exceeded maxResponseBytes ({limit} bytes)")


def feed(decoder: sse.Decoder, chunk: bytes, on_event: Callable[[sse.Event], object], upstream: str) -> None:
    """Decode `chunk` and hand its events on; TooLarge once an event passes the decoder's limit."""
    try:
        events = decoder.feed(chunk)
    except sse.TooLarge as exc:
        for ev in exc.events:
            on_event(ev)
        raise too_large(upstream, exc.limit) from None
    for ev in events:
        on_event(ev)


class StreamExchange(H1Exchange):
    """A long-lived event stream: events delivered as they come; an answer that is not one, its `error`
    (a non-2xx answer's once its body, the start of it, was read: a proxy's error page says why)."""

    def __init__(
        self,
        on_event: Any,
        limit: int = MAX_RESPONSE_BYTES,
        upstream: str = "?",
        still: Callable[[], bool] | None = None,
    ) -> None:
        self.on_event = on_event
        self.still = still  # is its request still wanted (a resume of a call not abandoned)? `wanted`
        self.decoder = sse.Decoder(limit)
        self.upstream = upstream
        self.status = 0
        self.content_type = ""
        self.body = bytearray()  # a non-2xx answer's, up to ERROR_BODY_MAX
        self.error: str | None = None
        self.refused: TooLarge | None = None  # an event passed the limit: the stream was dropped
        self.challenge: str | None = None  # WWW-Authenticate of a 401/403
        self.nonce: str | None = None  # and its DPoP-Nonce
        self.done = anyio.Event()
        self.conn: Any = None  # a resumed reply stream's connection (to close it if its call is abandoned)

    def wanted(self) -> bool:
        return self.still is None or self.still()

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.content_type = headers.get("content-type", "")
        if status in (401, 403):
            self.challenge = headers.get("www-authenticate")
            self.nonce = headers.get("dpop-nonce")
        if status < 300 and not self.content_type.startswith("text/event-stream"):
            self.error = f"HTTP {status}, content-type {headers.get('content-type')!r}"

    def on_body(self, chunk: bytes) -> None:
        if self.status >= 300:
            self.body += chunk[: max(ERROR_BODY_MAX - len(self.body), 0)]
        elif self.error is None:
            feed(self.decoder, chunk, self.on_event, self.upstream)

    def on_end(self) -> None:
        self._refused()
        self.done.set()

    def on_error(self, error: UpstreamHttpError) -> None:
        self._refused()
        self.error = self.error or str(error)
        if isinstance(error, TooLarge):
            self.refused = error
        self.done.set()

    def _refused(self) -> None:
        if self.status >= 300 and self.error is None:  # the same one line as a POST's (`error_text`)
            self.error = error_text(self.status, bytes(self.body), self.content_type)
