"""subscriptions/listen (2026-07-28): a modern client's opt-in feed of change notifications.

Owns one listen stream: what the client asked for and what the hub honours, the
acknowledgement that comes first, tagging every notification with the listen request's
id as `subscriptionId`, the upstream resource subscriptions it holds while open, and the
graceful end when the hub stops (the listen request's `complete` result, then the end of the
stream, so the client knows it was not a network failure).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from onemcp.http import asgi
from onemcp.http.asgi import Receive, Send
from onemcp.hub.session import Session
from onemcp.observability.limits import hit
from onemcp.protocol import jsonrpc, sse
from onemcp.protocol.errors import HubError
from onemcp.protocol.jsonrpc import Message, RequestId
from onemcp.upstream.era import PREFIX

if TYPE_CHECKING:
    from onemcp.hub.core import Hub

log = logging.getLogger("onemcp.downstream")
SUBSCRIPTION_ID = PREFIX + "subscriptionId"
SERVER_INFO = PREFIX + "serverInfo"
KEEPALIVE = 15.0
QUEUE = 256
# filter flag -> the list_changed notification it opts in to
FLAGS = {
    "toolsListChanged": "notifications/tools/list_changed",
    "promptsListChanged": "notifications/prompts/list_changed",
    "resourcesListChanged": "notifications/resources/list_changed",
}


@dataclass(eq=False)
class Listener:
    sub_id: RequestId
    methods: set[str]
    session: Session  # holds the visible URIs of its resource subscriptions
    honored: dict[str, Any]
    uris: list[str] = field(default_factory=list)
    server_info: dict[str, Any] = field(default_factory=dict)
    _send: MemoryObjectSendStream[Message] | None = None
    inbox: MemoryObjectReceiveStream[Message] | None = None

    def __post_init__(self) -> None:
        self._send, self.inbox = anyio.create_memory_object_stream[Message](QUEUE)

    @classmethod
    def create(cls, sub_id: RequestId, wanted: dict[str, Any], hub: Hub, session: Session) -> Listener:
        honored: dict[str, Any] = {}
        methods = set()
        for flag, method in FLAGS.items():
            if wanted.get(flag) is True:
                honored[flag] = True
                methods.add(method)
        uris: list[str] = []
        asked = wanted.get("resourceSubscriptions")
        if isinstance(asked, list):
            cap = hub.config.hub.limits.max_subscriptions_per_session
            for uri in asked:
                if len(uris) >= cap:
                    hit("subscriptions_per_session", "a listen stream asked for more than %d subscriptions", cap)
                    break  # the rest is not honoured (the acknowledgement says which are)
                if isinstance(uri, str) and uri not in uris and hub.can_subscribe(session, uri):
                    uris.append(uri)
            honored["resourceSubscriptions"] = uris
        return cls(sub_id, methods, session, honored, uris)

    def post(self, msg: Message) -> None:
        params = msg.get("params")
        params = params if isinstance(params, dict) else {}
        meta = params.get("_meta")
        tagged = {
            **msg,
            "params": {**params, "_meta": {**(meta if isinstance(meta, dict) else {}), SUBSCRIPTION_ID: self.sub_id}},
        }
        if self._send is not None:
            try:
                self._send.send_nowait(tagged)
            except anyio.WouldBlock:
                hit("queued_messages", "listen stream %s: queue full, dropped %s", self.sub_id, msg.get("method"))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    def close(self) -> None:
        if self._send is not None:
            self._send.close()

    def finish(self) -> None:
        """End the stream gracefully: the listen request's result goes out after what is queued."""
        if self._send is None:
            return
        meta = {SUBSCRIPTION_ID: self.sub_id, SERVER_INFO: self.server_info}
        with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._send.send_nowait(jsonrpc.result(self.sub_id, {"resultType": "complete", "_meta": meta}))
        self._send.close()


async def serve_listener(
    hub: Hub, listener: Listener, receive: Receive, send: Send, server_info: dict[str, Any]
) -> None:
    """Acknowledge, then stream notifications until the client goes away or the hub finishes it."""
    listener.server_info = server_info
    for uri in listener.uris:
        try:
            await hub.subscribe(listener.session, uri)
        except HubError as exc:
            log.info("listen: subscribing %s failed: %s", uri, exc)
    hub.listeners.add(listener)
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
        hub.listeners.discard(listener)
        listener.close()
        with anyio.CancelScope(shield=True):
            for uri in listener.uris:
                with contextlib.suppress(HubError):
                    await hub.unsubscribe(listener.session, uri)
    with contextlib.suppress(OSError):
        await asgi.end_stream(send)
