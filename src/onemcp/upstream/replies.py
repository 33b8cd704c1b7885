"""Replies to an upstream's requests that hold nothing (pings, refusals): one bounded queue, one writer.

Owns the queue and its single writer task, so that a flood of pings or of refused requests from
an upstream costs a queue entry each, not a task each; beyond `MAX_QUEUED_REPLIES` the upstream
is not reading what it is sent, and a reply is dropped rather than held. Does not own the wire
(`respond` writes) or deciding what to answer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

from anyio.abc import TaskGroup

from onemcp.protocol.jsonrpc import Message, RequestId

MAX_QUEUED_REPLIES = 4096  # pings and refusals waiting to be written to one upstream (~0.5 KB each)


class ReplyQueue:
    def __init__(
        self, respond: Callable[[RequestId, Message], Awaitable[None]], tg: Callable[[], TaskGroup | None]
    ) -> None:
        self._respond = respond
        self._tg = tg  # the connection's task group while it runs
        self._queue: deque[tuple[RequestId, Message]] = deque()
        self._writing = False

    def put(self, upstream_id: RequestId, reply: Message) -> None:
        tg = self._tg()
        if tg is None or len(self._queue) >= MAX_QUEUED_REPLIES:
            return
        self._queue.append((upstream_id, reply))
        if not self._writing:
            self._writing = True
            tg.start_soon(self._write)

    async def _write(self) -> None:
        try:
            while self._queue:
                await self._respond(*self._queue.popleft())
        finally:
            self._writing = False
