"""One forwarded request in flight: the mailbox between an upstream reader and a downstream writer.

The upstream side pushes related messages (progress, logs, server requests) and finally
the response; the downstream side receives them in order. A response waits (at most `RELIST_WAIT`)
for the lists the server said had changed while the call was in flight to be read again. Related messages are bounded in
number and in bytes, per call and over all calls (oldest kept, newest dropped and counted when a
slow client falls behind); the final response, and the requests (and their cancellations) a call
waits on, are never dropped: those are bounded where they are made (maxPendingClientRequests).
"""

from __future__ import annotations

import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from onemcp.observability.limits import hit
from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import SessionEnded
from onemcp.protocol.jsonrpc import Message, RequestId

MAX_RELATED = 256
# ... and their bytes (serialised): each may be up to maxResponseBytes, and 256 progress messages
# of 2 MiB for a client that does not read had made one call hold half a gigabyte.
MAX_RELATED_BYTES = 16 * 1024 * 1024
# ... and all calls' together (this process): without it, many calls each under their own bound (a
# client need only make calls and not read their progress) could still hold gigabytes. As for the
# sessions' outbound queues: past it only a call holding more than its share (the budget over the
# calls holding any) loses messages, so calls that are not read cannot starve those that are; twice
# the budget, every call does.
RELATED_TOTAL_BYTES = 256 * 1024 * 1024
# The longest a response waits for a list the server said changed during the call to be read again.
RELIST_WAIT = 5.0


class Charge:
    """The bytes one call has queued, as charged to `RelatedBytes`."""

    __slots__ = ("bytes",)

    def __init__(self) -> None:
        self.bytes = 0


class RelatedBytes:
    """The bytes of related messages queued in every call of this process (against RELATED_TOTAL_BYTES).

    A call's reader gives back what it takes; a call dropped with messages still queued (its client
    went away, its deadline passed) gives back the rest as it is freed, so what is charged is what
    live calls hold."""

    used = 0
    holders = 0  # calls with something queued

    @classmethod
    def change(cls, charge: Charge, delta: int) -> None:
        before = charge.bytes
        charge.bytes += delta
        cls.used += delta
        cls.holders += (charge.bytes > 0) - (before > 0)

    @classmethod
    def release(cls, charge: Charge) -> None:
        cls.change(charge, -charge.bytes)


def _kept(msg: Message) -> bool:
    """Must this related message reach the client whatever it costs? A request the call waits on
    (its answer would never come), and the cancellation of one (the client would go on asking)."""
    return "id" in msg or msg.get("method") == "notifications/cancelled"


class Requester(Protocol):
    """Who a call is made for, or who owns an isolated connection: a downstream session. The
    upstream side only tells requesters apart; what they are is the hub's business."""

    id: str


CANCELLED: Message = {"cancelled": True}
"""What a call is finished with when nobody is to be answered any more (the client cancelled it): the
downstream request ends without a reply, at once."""

SESSION_ENDED: dict[str, Any] = SessionEnded(
    "the session ended while this request was in flight (it was cancelled upstream)"
).to_error()
"""The error a call is finished with when its session ends under it (a DELETE, another replica's end of
it): its request is still open and is answered at once, not left to the client's own timeout."""


@dataclass(eq=False, slots=True, weakref_slot=True)
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
    _charge: Charge | None = None  # the bytes queued (made with the first one)
    _final: Message | None = None
    _wake: anyio.Event | None = None  # created only when the receiver has to wait
    after: list[anyio.Event] = field(default_factory=list)  # lists being read again: answered once done
    relisted: bool = False  # its answer waited for lists read again (the hub announces them before it)

    @property
    def done(self) -> bool:
        return self._final is not None

    @property
    def held(self) -> int:
        """Bytes of the related messages queued."""
        return self._charge.bytes if self._charge is not None else 0

    def push(self, msg: Message) -> None:
        if self._final is not None:
            return
        try:
            size = len(jsonrpc.dumps(msg))
        except (TypeError, ValueError):
            size = 0  # it fails, and says so, where it is written
        if not _kept(msg) and (why := self._full(size)) is not None:
            hit("related_messages", "a call to %s: %s, dropped %s", self.server, why, msg.get("method"))
            return
        self._queue.append((msg, size))
        if self._charge is None:
            self._charge = Charge()
            weakref.finalize(self, RelatedBytes.release, self._charge)  # what a dropped call still holds
        RelatedBytes.change(self._charge, size)
        if self._wake is not None:
            self._wake.set()

    def _full(self, size: int) -> str | None:
        """Why `size` more bytes may not be queued now (None: they may; a message alone may, below twice
        the budget of all calls)."""
        held = self.held
        if self._queue and (len(self._queue) >= MAX_RELATED or held + size > MAX_RELATED_BYTES):
            return f"{len(self._queue)} messages, {held} bytes queued for a slow client"
        used = RelatedBytes.used
        if not used or used + size <= RELATED_TOTAL_BYTES:
            return None
        if used + size > 2 * RELATED_TOTAL_BYTES:
            return f"all calls' related messages over {2 * RELATED_TOTAL_BYTES} bytes together"
        share = RELATED_TOTAL_BYTES // (RelatedBytes.holders + (held == 0))
        if held and held + size > share:  # past the budget: those over their share pay
            return f"all calls' related messages over {RELATED_TOTAL_BYTES} bytes, this one over its share ({share})"
        return None

    def finish(self, msg: Message) -> None:
        if self._final is None:
            self._final = msg
            if self._wake is not None:
                self._wake.set()

    def unread(self) -> list[Message]:
        """The related messages queued and never taken (the call was given up on); the queue is emptied."""
        left = [msg for msg, _ in self._queue]
        self._queue.clear()
        if self._charge is not None:
            RelatedBytes.release(self._charge)
        return left

    def wait_for(self, readings: list[anyio.Event]) -> None:
        """Answer only once these lists' readings are done (each once, however often announced; those
        done already are forgotten: a server that keeps changing a list during a long call)."""
        self.after = [e for e in self.after if not e.is_set()]
        self.after += [r for r in readings if r not in self.after]

    async def receive(self) -> tuple[Message, bool]:
        """The next message for the downstream, and whether it is the final response."""
        while True:
            if self._queue:
                msg, size = self._queue.popleft()
                if self._charge is not None:
                    RelatedBytes.change(self._charge, -size)
                return msg, False
            if self._final is not None:
                if self.after and self._final is not CANCELLED:  # a cancelled call ends at once
                    self.relisted = True
                    with anyio.move_on_after(RELIST_WAIT):
                        for relisted in self.after:
                            await relisted.wait()
                    self.after.clear()
                if self._final is not CANCELLED:  # answered under the id asked now: a call resumed after it was
                    self._final["id"] = self.downstream_id  # parked (bridge) may have ended before, under the first
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
