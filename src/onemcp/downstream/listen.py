"""subscriptions/listen (2026-07-28) on the wire: a modern client's opt-in feed of change notifications.

Owns serving one listen feed: the acknowledgement that comes first, then the notifications, as
SSE on /mcp until the client goes away or the hub finishes it, or as stdio lines until the
client cancels the listen request or the hub finishes it. What the feed asked for and its queue
are the hub's `Listener`; the hub holds its resource subscriptions while it is open.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from onemcp.http import asgi
from onemcp.http.asgi import Receive, Send
from onemcp.hub.core import Hub
from onemcp.hub.listeners import Listener
from onemcp.protocol import jsonrpc, sse
from onemcp.protocol.jsonrpc import Message

KEEPALIVE = 15.0


@contextlib.asynccontextmanager
async def held(
    hub: Hub, listener: Listener, server_info: dict[str, Any]
) -> AsyncIterator[MemoryObjectReceiveStream[Message]]:
    """The listener's feed while it is open: the acknowledgement first, then what the hub posts to it. Its
    subscriptions go when it ends, also when it ends (a stdio client's cancellation) while they are asked:
    those already taken were held for a listen that was gone."""
    listener.server_info = server_info
    try:
        await hub.add_listener(listener)
        ack = jsonrpc.notification("notifications/subscriptions/acknowledged", {"notifications": listener.honored})
        listener.post(ack)
        assert listener.inbox is not None
        yield listener.inbox
    finally:
        await hub.remove_listener(listener)


async def serve_listener(
    hub: Hub, listener: Listener, receive: Receive, send: Send, server_info: dict[str, Any]
) -> None:
    """Acknowledge, then stream notifications until the client goes away or the hub finishes it."""
    async with held(hub, listener, server_info) as inbox:
        await asgi.start_sse(send)
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
    with contextlib.suppress(OSError):
        await asgi.end_stream(send)


async def relay_listener(
    hub: Hub, listener: Listener, server_info: dict[str, Any], write: Callable[[Message], Awaitable[None]]
) -> None:
    """Acknowledge, then write each notification (and, when the hub finishes it, the listen request's
    result) until then or until the caller is cancelled: the feed of a client on a message stream."""
    async with held(hub, listener, server_info) as inbox:
        with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError):
            async for msg in inbox:
                await write(msg)
