"""Resumable SSE streams: numbered events kept per session so a client that drops a stream loses nothing.

Each SSE stream the hub opens for a session (a POST's reply stream, a GET stream) gets a
short id (on a replica, ending with ``@<replica>``: `hub.followed` resumes it from another); its
events get ids ``<stream>-<n>``. A client reconnects with GET and ``Last-Event-ID`` and gets the
events after that one, then the stream carries on.
Memory is bounded: at most `MAX_EVENTS` events per stream, `MAX_STREAMS` streams per
session (the oldest finished streams are forgotten first, then the oldest live reply streams, a
GET stream last; a forgotten live stream keeps only its newest event, if that is a reply or a
request) and `MAX_BYTES` of events per session (the oldest events are forgotten first: a message
may be megabytes, so counting is not enough; a live stream's newest event is kept past it only if
it is a reply or a request, which a follower must not miss: a notification was sent live), and
`TOTAL_BYTES` for all the sessions of a hub together (`ReplayBudget`: past it
the session holding the most forgets its oldest events first, so sessions that keep little keep
theirs). An event is always sent live; only what a reconnecting client could replay is bounded.
"""

from __future__ import annotations

from collections import deque

import anyio

from onemcp.protocol import jsonrpc, sse
from onemcp.protocol.jsonrpc import Message

MAX_EVENTS = 512
MAX_STREAMS = 32
MAX_BYTES = 8 * 1024 * 1024
# all sessions' events together: 8 MiB each would let 1,000 sessions of one client hold 8 GB
TOTAL_BYTES = 256 * 1024 * 1024
RETRY_MS = 5000  # the default of `onemcp.streamRetry`


class OutStream:
    """One SSE stream's numbered events."""

    def __init__(self, stream_id: str, store: StreamStore | None = None) -> None:
        self.id = stream_id
        self.seq = 0
        self.events: deque[tuple[int, bytes]] = deque()
        self.store = store  # whose byte budget the events count against
        self.done = False
        self.forgotten = False  # no longer findable: keeps only its newest event, outside any budget
        # Is the newest event one a follower must not miss (a reply or a request: it has an id)? A
        # notification is not: past the budget it is forgotten too (it was sent live), as with 8 calls
        # each after a 60 MB progress message the session held 1 GB outside its budget until they ended.
        self.pinned = False
        self._wake: anyio.Event | None = None

    def priming(self) -> bytes:
        """The first event: an id to resume from and the reconnection delay, no data."""
        retry = self.store.retry_ms if self.store is not None else RETRY_MS
        return f"id: {self.id}-0\nretry: {retry}\ndata: \n\n".encode()

    def add(self, msg: Message | bytes) -> bytes:
        self.seq += 1
        data = msg if isinstance(msg, bytes) else jsonrpc.dumps(msg)
        event = sse.encode(data, event="message", event_id=f"{self.id}-{self.seq}")
        self.pinned = isinstance(msg, bytes) or "id" in msg  # bytes: a reply, serialised upstream
        if self.forgotten:
            self.events.clear()  # nobody can resume it any more; a follower already on it reads the newest
            if not self.pinned:
                self._notify()
                return event  # outside any budget: only a reply or a request is kept for a follower
        elif len(self.events) >= MAX_EVENTS:
            self.forget_oldest()
        self.events.append((self.seq, event))
        if self.store is not None:
            self.store.retained(len(event))
        self._notify()
        return event

    def forget_oldest(self) -> None:
        _, event = self.events.popleft()
        if self.store is not None:
            self.store.held(-len(event))

    def finish(self) -> None:
        self.done = True
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    def after(self, seq: int) -> list[bytes]:
        return [event for n, event in self.events if n > seq]

    def waiter(self) -> anyio.Event:
        """An event set at the next addition or at the end (take it before reading events)."""
        if self._wake is None:
            self._wake = anyio.Event()
        return self._wake


class ReplayBudget:
    """The bytes every session of one hub keeps for replay, together (at most `limit`)."""

    def __init__(self, limit: int = TOTAL_BYTES) -> None:
        self.limit = limit
        self.bytes = 0
        self.holders: set[StreamStore] = set()  # the stores keeping any

    def over(self, adding: StreamStore) -> None:
        """Past the limit: `adding` first forgets down to its share (no search: the steady state when
        every session keeps its share), then the store keeping the most does, until within it."""
        if self.bytes <= self.limit:
            return
        adding.trim(self.limit // max(1, len(self.holders)))
        while self.bytes > self.limit:
            busiest = max(self.holders, key=lambda store: store.bytes)
            if not busiest.trim(self.limit // len(self.holders)):
                return  # only live streams' newest replies and requests are left: those are never forgotten


class StreamStore:
    """A session's resumable streams."""

    def __init__(self, budget: ReplayBudget | None = None, retry_ms: int = RETRY_MS, replica: str = "") -> None:
        self.retry_ms = retry_ms  # how long its client waits to reconnect a dropped stream (`retry:`)
        self.suffix = f"@{replica}" if replica else ""  # a replica's streams name it (`replica_of`)
        self._streams: dict[str, OutStream] = {}  # oldest first (a plain dict: every session has one)
        self._next = 0
        self.bytes = 0  # of the events kept for replay, all streams
        self.budget = budget  # the hub's, shared with its other sessions (None: this store alone)

    def held(self, delta: int) -> None:
        """`delta` more bytes kept (negative: forgotten), here and in the hub's budget."""
        before = self.bytes
        self.bytes += delta
        if self.budget is not None:
            self.budget.bytes += delta
            if self.bytes > 0 and before <= 0:
                self.budget.holders.add(self)
            elif self.bytes <= 0 < before:
                self.budget.holders.discard(self)

    def close(self) -> None:
        """The session ended: what it kept no longer counts against the hub's budget."""
        self.held(-self.bytes)
        for stream in self._streams.values():
            stream.store = None
            stream.forgotten = not stream.done  # one still written keeps only its newest event, as when forgotten
            while stream.forgotten and len(stream.events) > (1 if stream.pinned else 0):
                stream.events.popleft()
        self._streams.clear()

    def open(self, prefix: str) -> OutStream:
        self._next += 1
        stream = OutStream(f"{prefix}{self._next}{self.suffix}", self)
        self._streams[stream.id] = stream
        if len(self._streams) > MAX_STREAMS:
            self._forget(self._victim())
        return stream

    def _victim(self) -> OutStream:
        """The stream to forget: the oldest finished one, else the oldest live reply stream, else
        the oldest (a GET stream is the session's own: a client reading it may yet resume it)."""
        streams = list(self._streams.values())
        for wanted in (lambda s: s.done, lambda s: not s.id.startswith("g")):
            found = next((s for s in streams if wanted(s)), None)
            if found is not None:
                return found
        return streams[0]

    def _forget(self, old: OutStream) -> None:
        del self._streams[old.id]
        self.held(-sum(len(event) for _, event in old.events))
        old.store = None  # no longer this budget's ...
        if not old.done:  # ... and still written: it keeps its newest event only (if pinned)
            old.forgotten = True
            while len(old.events) > (1 if old.pinned else 0):
                old.events.popleft()

    def retained(self, size: int) -> None:
        """`size` more bytes are kept: forget the oldest events (oldest streams first) past MAX_BYTES,
        but not the newest event of a live stream if it is a reply or a request (`pinned`)."""
        self.held(size)
        self.trim(MAX_BYTES)
        if self.budget is not None:
            self.budget.over(self)

    def trim(self, target: int) -> bool:
        """Forget the oldest events (oldest streams first) until at most `target` bytes are kept, but not
        the newest event of a live stream if it is a reply or a request (a client following it has yet
        to read it, and its call waits on it). Forgot any?"""
        before = self.bytes
        if before <= target:
            return False  # the usual case, on every event kept: no copy of the streams
        for stream in list(self._streams.values()):
            if self.bytes <= target:
                break
            keep = 1 if stream.pinned and not stream.done else 0
            while self.bytes > target and len(stream.events) > keep:
                stream.forget_oldest()
        return self.bytes < before

    def find(self, last_event_id: str) -> tuple[OutStream, int] | None:
        """The stream a Last-Event-ID belongs to, and the position after which to replay."""
        sid, sep, seq = last_event_id.strip().rpartition("-")
        stream = self._streams.get(sid) if sep else None
        if stream is None or not (seq.isascii() and seq.isdigit()) or len(seq) > 18:  # no event count has more
            return None
        self._streams[sid] = self._streams.pop(sid)  # the newest now
        return stream, int(seq)


def replica_of(last_event_id: str) -> str:
    """The replica whose stream a Last-Event-ID names ("" when none does)."""
    stream, sep, _ = last_event_id.strip().rpartition("-")
    return stream.partition("@")[2] if sep else ""
