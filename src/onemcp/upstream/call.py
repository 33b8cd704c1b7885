"""One forwarded request in flight: the mailbox between an upstream reader and a downstream writer.

The upstream side pushes related messages (progress, logs, server requests) and finally
the response; the downstream side receives them in order. Related messages are bounded in
number and in bytes (oldest kept, newest dropped and counted when a slow client falls behind);
the final response, and the requests (and their cancellations) a call waits on, are never
dropped: those are bounded where they are made (maxPendingClientRequests).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from onemcp.observability.limits import hit
from onemcp.protocol import jsonrpc
from onemcp.protocol.jsonrpc import Message, RequestId

MAX_RELATED = 256
# ... and their bytes (serialised): each may be up to maxResponseBytes, and 256 progress messages
# of 2 MiB for a client that does not read had made one call hold half a gigabyte.
MAX_RELATED_BYTES = 16 * 1024 * 1024


def _kept(msg: Message) -> bool:
    """Must this related message reach the client whatever it costs? A request the call waits on
    (its answer would never come), and the cancellation of one (the client would go on asking)."""
    return "id" in msg or msg.get("method") == "notifications/cancelled"


class Requester(Protocol):
    """Who a call is made for, or who owns an isolated connection: a downstream session. The
    upstream side only tells requesters apart; what they are is the hub's business."""

    id: str


CANCELLED: Message = {"cancelled": True}
"""What a call is finished with when nobody is to be answered any more (the client cancelled it, or its
session ended): the downstream request ends without a reply, at once."""


@dataclass(eq=False, slots=True)
class Call:
    server: str
    hub_id: int
    downstream_id: RequestId | None
    timeout: float
    progress_token: Any = None  # the downstream's own token, restored on the way back
    origin: Requester | None = None  # who asked: the downstream session (opaque here)
    method: str = ""
    request: Message = field(default_factory=dict)  # as sent upstream (a bridge retries it)
    broken: bool = False  # finished by the hub because the upstream could not carry it
    parked: bool = False  # waiting for a modern client to come back with input (bridge)
    _queue: deque[tuple[Message, int]] = field(default_factory=deque)  # with each one's size
    held: int = 0  # bytes of the related messages queued
    _final: Message | None = None
    _wake: anyio.Event | None = None  # created only when the receiver has to wait

    @property
    def done(self) -> bool:
        return self._final is not None

    def push(self, msg: Message) -> None:
        if self._final is not None:
            return
        try:
            size = len(jsonrpc.dumps(msg))
        except (TypeError, ValueError):
            size = 0  # it fails, and says so, where it is written
        over = len(self._queue) >= MAX_RELATED or self.held + size > MAX_RELATED_BYTES
        if self._queue and over and not _kept(msg):
            why = f"{len(self._queue)} messages, {self.held} bytes queued for a slow client"
            hit("related_messages", "a call to %s: %s, dropped %s", self.server, why, msg.get("method"))
            return
        self._queue.append((msg, size))
        self.held += size
        if self._wake is not None:
            self._wake.set()

    def finish(self, msg: Message) -> None:
        if self._final is None:
            self._final = msg
            if self._wake is not None:
                self._wake.set()

    async def receive(self) -> tuple[Message, bool]:
        """The next message for the downstream, and whether it is the final response."""
        while True:
            if self._queue:
                msg, size = self._queue.popleft()
                self.held -= size
                return msg, False
            if self._final is not None:
                return self._final, True
            self._wake = anyio.Event()
            await self._wake.wait()
            self._wake = None

    async def result(self) -> Message:
        """Wait for the final response, discarding related messages."""
        while True:
            msg, final = await self.receive()
            if final:
                return msg
