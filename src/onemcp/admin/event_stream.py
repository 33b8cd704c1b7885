"""`GET /api/v1/events`: the event bus as server-sent events, resumable and kept alive.

Owns the stream's framing: each event goes out with an SSE id, `EPOCH:N` (EPOCH names the hub
process, N is the bus's event id), so a watcher that reconnects with `Last-Event-ID` is replayed
only what it has not seen (everything recent if the hub restarted meanwhile: the ids count again).
An idle stream gets a comment every `KEEPALIVE` seconds, so a proxy's read timeout does not cut
it. Counts each stream as one of its principal's (`auth.held`). Does not decide who may watch (`admin.api` routes
it) nor what an event holds (`observability.events`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import orjson

from onemcp.admin.routing import Request
from onemcp.auth.held import REFUSAL_HEADERS, Held
from onemcp.config.model import Limits
from onemcp.http import asgi
from onemcp.http.asgi import Send
from onemcp.observability.events import EventBus
from onemcp.protocol import sse

KEEPALIVE = 15.0  # seconds of quiet after which the stream gets a comment
BATCH = 256  # events that queued meanwhile go out in one write, at most this many


def resume_after(bus: EventBus, last_event_id: str | None) -> int:
    """The bus id after which to replay, from a `Last-Event-ID` (0: all recent; another process's id is no id here)."""
    epoch, _, seen = (last_event_id or "").strip().partition(":")
    return int(seen) if epoch == bus.epoch and seen.isascii() and seen.isdigit() else 0


async def serve(bus: EventBus, request: Request, send: Send, held: Held, limits: Limits) -> None:
    """The stream, counted as one of its principal's (maxStreamsPerPrincipal: 429 beyond)."""
    with held.holding(request.principal, limits, stream=True) as refusal:
        if refusal is not None:
            body = {"error": refusal.message, "limit": refusal.limit}
            await asgi.send_json(send, refusal.status, body, REFUSAL_HEADERS)
            return
        await _serve(bus, request, send)


async def _serve(bus: EventBus, request: Request, send: Send) -> None:
    after = resume_after(bus, asgi.header(request.scope, b"last-event-id"))
    await asgi.start_sse(send)
    with bus.watch(after) as events:
        async with anyio.create_task_group() as tg:

            async def pump() -> None:
                while True:
                    event: dict[str, Any] | None = None
                    with anyio.move_on_after(KEEPALIVE):  # only the wait: never a write cut short
                        event = await events.receive()
                    if event is None:
                        await asgi.sse_chunk(send, b": keep-alive\n\n")
                        continue
                    batch = [event]
                    while len(batch) < BATCH:
                        try:
                            batch.append(events.receive_nowait())
                        except anyio.WouldBlock:
                            break
                    chunk = b"".join(
                        sse.encode(orjson.dumps(e), event=str(e["kind"]), event_id=f"{bus.epoch}:{e['id']}")
                        for e in batch
                    )
                    await asgi.sse_chunk(send, chunk)

            async def run_pump() -> None:
                with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError):
                    await pump()
                tg.cancel_scope.cancel()  # the bus closed this watcher: the stream ends

            tg.start_soon(run_pump)
            await asgi.until_disconnect(request.receive, tg.cancel_scope)
            tg.cancel_scope.cancel()
    with contextlib.suppress(OSError, asgi.ClientGone):  # ended here (its credential did): said so
        await asgi.end_stream(send)
