"""subscriptions/listen (2026-07-28) on the wire: a modern client's opt-in feed of change notifications.

Owns serving one listen stream: the acknowledgement that comes first, then the notifications as
SSE until the client goes away or the hub finishes it. What the stream asked for and its queue are
the hub's `Listener`; the hub holds its resource subscriptions while it is open.
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio

from onemcp.http import asgi
from onemcp.http.asgi import Receive, Send
from onemcp.hub.core import Hub
from onemcp.hub.listeners import Listener
from onemcp.protocol import jsonrpc, sse

KEEPALIVE = 15.0


async def serve_listener(
    hub: Hub, listener: Listener, receive: Receive, send: Send, server_info: dict[str, Any]
) -> None:
    """Acknowledge, then stream notifications until the client goes away or the hub finishes it."""
    listener.server_info = server_info
    await hub.add_listener(listener)
    try:
        await asgi.start_sse(send)
        ack = jsonrpc.notification("notifications/subscriptions/acknowledged", {"notifications": listener.honored})
        listener.post(ack)
        assert listener.inbox is not None
        inbox = listener.inbox

        async with anyio.create_task_group() as tg:
            tg.start_soon(asgi.until_disconnect, receive, tg.cancel_scope)
            with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError, OSError):
                while True:
                    with anyio.move_on_after(KEEPALIVE) as idle:
                        msg = await inbox.receive()
                    if idle.cancelled_caught:
                        await asgi.sse_chunk(send, b": keepalive\n\n")
                        continue
                    await asgi.sse_chunk(send, sse.encode(jsonrpc.dumps(msg), event="message"))
            tg.cancel_scope.cancel()
    finally:
        await hub.remove_listener(listener)
    with contextlib.suppress(OSError):
        await asgi.end_stream(send)
