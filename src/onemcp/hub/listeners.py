"""One 2026-07-28 `subscriptions/listen` stream as the hub holds it: what it asked, what is honoured.

Owns what the client asked for and what the hub honours, tagging every notification with the
listen request's id as `subscriptionId`, its bounded queue, and the graceful end when the hub
stops (the listen request's `complete` result after what is queued). The hub's reverse path
posts to it; the wire (acknowledgement, SSE, subscribing upstream) is `downstream/listen.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from onemcp.hub.session import Session
from onemcp.observability.limits import hit
from onemcp.protocol import jsonrpc
from onemcp.protocol.jsonrpc import Message, RequestId
from onemcp.protocol.meta import SERVER_INFO, SUBSCRIPTION_ID

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
    def create(
        cls,
        sub_id: RequestId,
        wanted: dict[str, Any],
        session: Session,
        can_subscribe: Callable[[Session, str], bool],
        cap: int,
    ) -> Listener:
        """The listener for a listen request: what it asked, cut to what `session` may have
        (`can_subscribe`; at most `cap` resource subscriptions)."""
        honored: dict[str, Any] = {}
        methods = set()
        for flag, method in FLAGS.items():
            if wanted.get(flag) is True:
                honored[flag] = True
                methods.add(method)
        uris: dict[str, None] = {}  # in the order asked; a set's lookup (a list's made 230k repeats take seconds)
        asked = wanted.get("resourceSubscriptions")
        if isinstance(asked, list):
            for uri in asked:
                if len(uris) >= cap:
                    hit("subscriptions_per_session", "a listen stream asked for more than %d subscriptions", cap)
                    break  # the rest is not honoured (the acknowledgement says which are)
                if isinstance(uri, str) and uri not in uris and can_subscribe(session, uri):
                    uris[uri] = None
            honored["resourceSubscriptions"] = list(uris)
        return cls(sub_id, methods, session, honored, list(uris))

    def keep(self, held: list[str]) -> None:
        """Only `held` of its resource subscriptions were taken upstream: the acknowledgement names those alone
        (it reports what the server agreed to honour) and the end of the listen releases those alone."""
        self.uris = held
        if "resourceSubscriptions" in self.honored:
            self.honored["resourceSubscriptions"] = list(held)

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
        if self.inbox is not None:
            self.inbox.close()

    def finish(self) -> None:
        """End the stream gracefully: the listen request's result goes out after what is queued."""
        if self._send is None:
            return
        meta = {SUBSCRIPTION_ID: self.sub_id, SERVER_INFO: self.server_info}
        with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._send.send_nowait(jsonrpc.result(self.sub_id, {"resultType": "complete", "_meta": meta}))
        self._send.close()
