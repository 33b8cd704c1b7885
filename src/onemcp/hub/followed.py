"""Streams resumed on another replica than the one holding them: the events the client missed, relayed from
there, and (a reply stream) the rest of the stream as it is written, until its reply went out.

A stream's id names the replica that holds it (`<kind><n>@<replica>`, `replay.StreamStore`), so a
`Last-Event-ID` that reaches another replica says where its events are. The replica reached (the follower)
asks the holder (`follow`); the holder sends the events after the one named, in numbered batches, then, for
a reply stream still written, each new event as it comes, a heartbeat after HEARTBEAT seconds of quiet,
until the stream ends, the follower says its client went away (`unfollow`), or nobody hears a batch (the
follower is gone). The follower ends its client's stream on a gap in the numbering or after
SILENCE seconds without a batch (Redis lost), or at once when the holder is no longer subscribed (gone,
checked every CHECK_EVERY seconds of quiet): the client resumes again, with the last id
it got. A GET stream's events are replayed, and the follower's own GET stream carries on (new ids, this
replica's). Only a copy of the same session, with the same principal, may follow a stream.

Does not own the wire to Redis (`relay`) nor the streams and their events (`replay`), nor the HTTP response.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from onemcp.hub.relay import RedisRelay
from onemcp.hub.replay import OutStream
from onemcp.hub.session import Session, SessionStore

log = logging.getLogger("onemcp.replicas")
HEARTBEAT = 10.0  # seconds of quiet after which the holder says it is still there
SILENCE = 2 * HEARTBEAT + 5.0  # seconds without a batch after which the follower gives up
CHECK_EVERY = 2.0  # seconds without a batch after which the follower checks that the holder is still there
FIRST_WORD = 5.0  # seconds the follower waits for the holder's first batch (then: as if it knew no such stream)
BATCH_BYTES = 256 * 1024  # events per batch (Redis cuts off a subscriber past 8 MiB of pub/sub output in a minute)
QUEUED = 256  # batches waiting for a slow client; past it the follower gives up (the client resumes again)
Outcome = Literal["unknown", "done", "broken"]


class FollowedStreams:
    def __init__(self, relay: RedisRelay, sessions: SessionStore) -> None:
        self.relay = relay
        self.sessions = sessions
        self._following: dict[str, MemoryObjectSendStream[dict[str, Any]]] = {}  # follow id -> its batches
        self._serving: dict[tuple[str, str], anyio.CancelScope] = {}  # (follower, follow id) -> its relay

    # ------------------------------------------------------------------ the follower
    async def follow(
        self, holder: str, session: Session, last: str, write: Callable[[bytes], Awaitable[None]]
    ) -> Outcome:
        """`write` the events of replica `holder`'s stream after `last` (a Last-Event-ID) as they come:
        "unknown" (nothing written: the holder has no such stream of this session, or cannot be asked),
        "done" (all of it was written: a reply stream's reply, a GET stream's events until now) or
        "broken" (part of it: the client resumes again)."""
        fid = secrets.token_hex(8)
        batches, received = anyio.create_memory_object_stream[dict[str, Any]](QUEUED)
        self._following[fid] = batches

        def missed() -> None:  # nobody heard the ask: the holder is gone
            with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                batches.send_nowait({"n": 0, "end": "unknown"})

        asked = {"k": "follow", "fid": fid, "sid": session.id, "principal": session.principal.key, "last": last}
        expected, outcome = 0, "broken"
        try:
            if not self.relay.send(holder, asked, missed=missed):
                return "unknown"
            quiet = 0.0  # seconds without a batch
            while True:
                batch: dict[str, Any] | None = None
                with anyio.move_on_after(CHECK_EVERY):  # (the wait only: a slow client's write is not cut)
                    batch = await received.receive()
                if batch is None:
                    quiet += CHECK_EVERY
                    if quiet < (FIRST_WORD if expected == 0 else SILENCE) and await self.relay.present(holder):
                        continue
                    log.info("replica %s: %s sent nothing of a stream for a while: ended", self.relay.tag, holder)
                    return "unknown" if expected == 0 else "broken"
                quiet = 0.0
                if batch.get("n") != expected:
                    log.info("replica %s: a batch of %s's stream missing: ended", self.relay.tag, holder)
                    return "broken"
                expected += 1
                events, end = batch.get("events"), batch.get("end")
                if end == "unknown" and expected == 1:
                    outcome = "unknown"
                    return "unknown"
                session.touch()
                if isinstance(events, list) and events:
                    for event in events:
                        await write(str(event).encode())
                else:
                    await write(b": keepalive\n\n")
                if end == "done":
                    outcome = "done"
                    return "done"
        finally:
            del self._following[fid]
            batches.close()
            received.close()
            if outcome == "broken" and expected > 0:  # the holder relays it still: stop it
                self.relay.send(holder, {"k": "unfollow", "fid": fid})

    def batch(self, doc: dict[str, Any]) -> None:
        """A batch from the holder of a stream followed here."""
        batches = self._following.get(str(doc.get("fid")))
        if batches is None:
            return  # that follow ended
        try:
            batches.send_nowait(doc)
        except anyio.WouldBlock:  # a client that reads too slowly: the gap ends its stream
            batches.close()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    # ------------------------------------------------------------------ the holder
    async def serve(self, doc: dict[str, Any]) -> None:
        """A follower's ask: relay the stream it names, if this replica holds it for that session's principal."""
        follower, fid = str(doc.get("from")), str(doc.get("fid"))
        sid, last = doc.get("sid"), doc.get("last")
        session = self.sessions.get(sid) if isinstance(sid, str) else None
        found = None
        if session is not None and session.principal.key == doc.get("principal") and isinstance(last, str):
            found = session.streams.find(last)
        if found is None:
            self.relay.send(follower, {"k": "events", "fid": fid, "n": 0, "events": [], "end": "unknown"})
            return
        stream, position = found
        with anyio.CancelScope() as scope:
            self._serving[(follower, fid)] = scope
            try:
                await self._relay(stream, position, follower, fid, scope)
            finally:
                self._serving.pop((follower, fid), None)

    async def _relay(self, stream: OutStream, position: int, follower: str, fid: str, scope: anyio.CancelScope) -> None:
        n = 0

        def send(events: list[bytes], end: str | None = None) -> None:
            nonlocal n
            doc: dict[str, Any] = {"k": "events", "fid": fid, "n": n, "events": [e.decode() for e in events]}
            if end is not None:
                doc["end"] = end
            n += 1
            if not self.relay.send(follower, doc, missed=scope.cancel):  # not even queued: Redis is away
                scope.cancel()

        while True:
            waiter = stream.waiter()
            events, position = stream.after(position), stream.seq
            final = stream.done or stream.id.startswith("g")  # a GET stream: replayed, then the follower's own
            while len(events) > 1 and sum(map(len, events)) > BATCH_BYTES:
                size, cut = 0, 0
                while cut < len(events) - 1 and size + len(events[cut]) <= BATCH_BYTES:
                    size += len(events[cut])
                    cut += 1
                send(events[: max(cut, 1)])
                events = events[max(cut, 1) :]
            if final:
                send(events, "done")
                return
            if events:
                send(events)
            with anyio.move_on_after(HEARTBEAT) as idle:
                await waiter.wait()
            if idle.cancelled_caught:
                send([])

    def unfollow(self, doc: dict[str, Any]) -> None:
        """A follower's client went away: stop relaying its stream."""
        scope = self._serving.get((str(doc.get("from")), str(doc.get("fid"))))
        if scope is not None:
            scope.cancel()
