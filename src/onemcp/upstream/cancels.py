"""An upstream connection's courtesy cancels: `notifications/cancelled` for the requests the hub gave up on.

Owns: sending each in the background (whoever gave up does not wait), within CANCEL_SEND_TIMEOUT; holding
what the connection sends next for the same requester (the client whose call it was, or the hub's own) until
the cancels before it are carried (a stdio line written, an HTTP POST accepted), up to that same bound: over
HTTP each message is its own POST, and a later one overtook the cancel, so the upstream counted the cancelled
request as still running when the next one came. Another client's messages do not wait: they are not ordered
after a cancel they know nothing of, and a cancel may wait up to that bound (a Streamable HTTP one, for its
request to be taken: `http.py`). A 2026-07-28 client has no session (each request is a context of its own):
its requests are its principal's (`whose`). A message of no known requester waits for every cancel. And, once
a cancel went, failed or was given up on (it waited past that bound for a new session, say), releasing
what the transport still holds for its request (`Transport.forget`: a legacy Streamable HTTP reply
stream stayed open until the server answered or the connection ended).
Does not own: which requests are abandoned (`connection.abandon`), nor the cancellation that is no message
(a 2026-07-28 HTTP reply stream closed: the transport's `cancel`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import UpstreamError
from onemcp.protocol.jsonrpc import Message

CANCEL_SEND_TIMEOUT = 2.0
EVERY: Any = object()  # `carried` for a message of no known requester: it waits for every cancel


def whose(origin: Any) -> Any:
    """The requester a cancel orders what is sent next for: a call's session, None for the hub's own; a
    2026-07-28 request's context (`ephemeral`) lives for that one request, so its client is its principal."""
    if getattr(origin, "ephemeral", False):
        return ("principal", origin.principal.key)
    return origin


class Cancels:
    """The cancels in flight on one connection, and the gate later messages pass."""

    def __init__(self, send: Callable[[Message], Awaitable[None]], forget: Callable[[int], None]) -> None:
        self._send = send  # the connection's own send (re-initializes a session that expired)
        self._forget = forget  # the transport's: stop waiting for that request's reply
        # the cancels started and not yet carried or given up on: each one's requester and event, set when it
        # is. A send waits for those before it only: one started meanwhile (a steady flow of them) does not hold it
        self._out: dict[int, tuple[Any, anyio.Event]] = {}

    @property
    def pending(self) -> bool:
        return bool(self._out)

    def start(self, tg: TaskGroup, hub_id: int, reason: str, origin: Any = None) -> None:
        """Tell the upstream, in `tg`, that request `hub_id` (made for `origin`: a client's session, None: the
        hub's own) was cancelled; what is sent next for that origin waits for it."""
        self._out[hub_id] = (whose(origin), anyio.Event())  # (a request is abandoned once: `connection.abandon`)
        tg.start_soon(self._cancel, hub_id, reason)

    async def _cancel(self, hub_id: int, reason: str) -> None:
        note = jsonrpc.notification("notifications/cancelled", {"requestId": hub_id, "reason": reason})
        try:
            with anyio.move_on_after(CANCEL_SEND_TIMEOUT), contextlib.suppress(UpstreamError):
                await self._send(note)
        finally:
            self._forget(hub_id)  # told or not, nothing more is waited for (its stream is closed)
            if (carried := self._out.pop(hub_id, None)) is not None:
                carried[1].set()

    async def carried(self, origin: Any = EVERY) -> None:
        """Wait until the cancels started so far for `origin` (all of them: EVERY) are carried, or given up on
        (CANCEL_SEND_TIMEOUT)."""
        key = whose(origin)
        if waits := [done for who, done in self._out.values() if origin is EVERY or who == key]:
            with anyio.move_on_after(CANCEL_SEND_TIMEOUT):
                for carried in waits:
                    await carried.wait()
