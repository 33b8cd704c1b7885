"""Downstream sessions (legacy era): identity, what the client declared, and its outbound queue.

Owns per-client state that spans requests: the session id, negotiated version, client
capabilities, log level, resource subscriptions, in-flight calls (for cancellation), the
hub's own pending requests to the client, and the queue behind its GET (or /sse) stream.
Does not own HTTP: the endpoint reads and writes the wire.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from onemcp.auth.access import Access
from onemcp.auth.principal import Principal
from onemcp.config.model import HubSettings, Limits
from onemcp.hub.own_lists import OwnLists
from onemcp.hub.replay import RETRY_MS, ReplayBudget, StreamStore
from onemcp.observability.limits import hit
from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import InvalidParams, LimitReached
from onemcp.protocol.jsonrpc import Message, RequestId
from onemcp.protocol.methods import LOG_LEVELS
from onemcp.upstream.call import SESSION_ENDED, Call
from onemcp.upstream.connection import UpstreamConnection

log = logging.getLogger("onemcp.session")
OUTBOX_SIZE = 1024
# Bytes (serialised) the outbox may hold besides its count: a message may be megabytes, and a
# client that opens a stream and never reads it must not make the hub hold 1,024 of them.
OUTBOX_BYTES = 16 * 1024 * 1024
# ... and all sessions' outboxes together: without it, many sessions each under their own bound
# (a client needs only open GET streams it never reads) could still hold gigabytes. Past it only a
# session holding more than its share (the budget over the sessions holding any) loses messages, so
# sessions that never read cannot starve those that do; twice the budget refuses everyone.
OUTBOX_TOTAL_BYTES = 256 * 1024 * 1024


class QueuedBytes:
    """The bytes queued in every session's outbox of this process (against OUTBOX_TOTAL_BYTES). A
    message queued for many sessions (a broadcast log line, a list_changed) is one object in
    memory: it is charged here once, however many queues hold it."""

    used = 0
    holders = 0  # sessions with something queued
    _shared: dict[int, tuple[Message, int, int]] = {}  # id(message) -> (message, size, queues holding it)

    @classmethod
    def size(cls, msg: Message) -> int:
        """Its serialised size (known without serialising again while a queue holds it)."""
        entry = cls._shared.get(id(msg))
        return entry[1] if entry is not None and entry[0] is msg else len(jsonrpc.dumps(msg))

    @classmethod
    def holds(cls, msg: Message) -> bool:
        """Is this very message queued (for some session) already?"""
        entry = cls._shared.get(id(msg))
        return entry is not None and entry[0] is msg

    @classmethod
    def charge(cls, msg: Message, size: int) -> None:
        entry = cls._shared.get(id(msg))
        if entry is not None and entry[0] is msg:
            cls._shared[id(msg)] = (msg, entry[1], entry[2] + 1)
        else:
            cls._shared[id(msg)] = (msg, size, 1)
            cls.used += size

    @classmethod
    def release(cls, msg: Message) -> None:
        entry = cls._shared.get(id(msg))
        if entry is None or entry[0] is not msg:
            return
        if entry[2] > 1:
            cls._shared[id(msg)] = (msg, entry[1], entry[2] - 1)
        else:
            del cls._shared[id(msg)]
            cls.used -= entry[1]


# What a session keeps of its client's initialize (capabilities and clientInfo, serialised): real
# clients send a few hundred bytes; without a bound each session could hold a whole request body.
MAX_CLIENT_STATE = 64 * 1024
# ... and how many JSON values (objects, arrays, strings, numbers...) in them: 64 KiB of `{}`, parsed,
# take 1.5 MB as Python objects (a string, ~its length); real clients send a few dozen
MAX_CLIENT_VALUES = 1024
EVICT_IDLE = 60.0  # a session unseen this long may end to make room for its principal's new one
RECONNECT_GRACE = 60.0  # a GET stream closed this recently: its client is likely reconnecting (SDK backoff tops ~30 s)


def declaration(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The capabilities and clientInfo an initialize declares ({} for none), which the session holds
    for its life and saves: InvalidParams past MAX_CLIENT_STATE bytes, or when the fields have the
    wrong type (protocolVersion a string, as the SDKs' own servers require; the other two objects)."""
    caps, info = params.get("capabilities"), params.get("clientInfo")
    if not isinstance(params.get("protocolVersion"), str):
        raise InvalidParams("Invalid params: initialize needs protocolVersion, a string such as '2025-11-25'")
    for name, value in (("capabilities", caps), ("clientInfo", info)):
        if value is not None and not isinstance(value, dict):
            raise InvalidParams(f"Invalid params: initialize's {name} must be an object")
    check_client_state(caps, info, "capabilities and clientInfo")
    return caps if isinstance(caps, dict) else {}, info if isinstance(info, dict) else {}


SHOWN_CLIENT = ("name", "title", "version", "description", "websiteUrl")  # what reports show of a clientInfo
SHOWN_CHARS = 256  # of each


def client_shown(info: dict[str, Any]) -> dict[str, str]:
    """A client's identity as reports show it (the admin API's sessions): its strings, each cut to SHOWN_CHARS."""
    shown = {key: value for key in SHOWN_CLIENT if isinstance(value := info.get(key), str)}
    return {key: value if len(value) <= SHOWN_CHARS else value[: SHOWN_CHARS - 1] + "…" for key, value in shown.items()}


def check_client_state(caps: object, info: object, named: str) -> None:
    """InvalidParams when what a client declares of itself (`named`), kept as long as what it made lives (a
    session, a listen stream), is past MAX_CLIENT_STATE bytes or MAX_CLIENT_VALUES values."""
    kept = len(jsonrpc.dumps(caps)) + len(jsonrpc.dumps(info))
    if kept > MAX_CLIENT_STATE:
        raise InvalidParams(f"Invalid params: {named} take {kept} bytes; the hub keeps at most {MAX_CLIENT_STATE}")
    values, todo = 0, [caps, info]
    while todo:
        value = todo.pop()
        values += 1
        if values > MAX_CLIENT_VALUES:
            raise InvalidParams(f"Invalid params: {named} hold more than {MAX_CLIENT_VALUES} JSON values")
        if isinstance(value, dict):
            todo.extend(value.values())
        elif isinstance(value, list):
            todo.extend(value)


class Outbox:
    """The receiving end of a session's outbox: messages in order, their bytes given back as read."""

    def __init__(self, stream: MemoryObjectReceiveStream[tuple[Message, int]], session: Session) -> None:
        self._stream = stream
        self._session = session

    def _taken(self, item: tuple[Message, int]) -> Message:
        self._session.held(-item[1])
        QueuedBytes.release(item[0])
        return item[0]

    async def receive(self) -> Message:
        return self._taken(await self._stream.receive())

    def receive_nowait(self) -> Message:
        return self._taken(self._stream.receive_nowait())

    def __aiter__(self) -> Outbox:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def queued(self) -> int:
        """Messages waiting in it."""
        return self._stream.statistics().current_buffer_used

    def close(self) -> None:
        self._stream.close()


class Elsewhere(Protocol):
    """The other hub replicas, as a session sees them (`hub.replicas`); None on a hub that runs alone."""

    @property
    def tag(self) -> str: ...  # this replica's, in the ids of the requests it sends clients

    def listening(self, session_id: str) -> bool: ...
    def carry(self, session: Session, msg: Message) -> bool: ...
    def stream(self, session: Session, opened: bool) -> None: ...


# the transport a session came in through ("modern": one 2026-07-28 request's context)
Entry = Literal["streamable-http", "sse", "stdio", "modern"]


@dataclass(eq=False)
class ReversePending:
    """A request the hub sent to this client on behalf of an upstream."""

    done: anyio.Event = field(default_factory=anyio.Event)
    reply: Message | None = None
    cancelled: bool = False  # the upstream withdrew the request
    # the connection that asked and the progressToken it gave: the client's progress on the request goes there
    progress: tuple[UpstreamConnection, RequestId] | None = None


@dataclass(eq=False)
class Session:
    id: str
    transport: Entry  # how the client reached the hub
    # who made the session, through which entry and view: what it may reach (nobody else may use it)
    access: Access
    protocol_version: str = ""
    client_capabilities: dict[str, Any] = field(default_factory=dict)
    client_info: dict[str, Any] = field(default_factory=dict)
    initialized: bool = False
    log_level: str | None = None
    # (server, upstream URI) -> the connection it is held on: None for the shared ones (`Subscriptions`)
    subscriptions: dict[tuple[str, str], UpstreamConnection | None] = field(default_factory=dict)
    in_flight: dict[RequestId, tuple[UpstreamConnection, Call]] = field(default_factory=dict)
    # requests being routed, not yet sent upstream (waiting for a server to start, say): True once cancelled
    routing: dict[RequestId, bool] = field(default_factory=dict)
    reverse: dict[str, ReversePending] = field(default_factory=dict)
    last_seen: float = field(default_factory=time.monotonic)
    closed: bool = False
    streams: StreamStore = field(default_factory=StreamStore)
    replica_pins: dict[str, int] = field(default_factory=dict)  # server -> the replica it sticks to
    seen: dict[str, int] = field(default_factory=dict)  # list kind -> hash of what it was told
    own: OwnLists = field(default_factory=OwnLists)  # its own connections' lists (its view of those servers)
    _outbox_send: MemoryObjectSendStream[tuple[Message, int]] | None = None
    _outbox: Outbox | None = None
    queued_bytes: int = 0  # of the messages in the outbox, serialised
    queued_count: int = 0  # messages put in the outbox so far (a writer that keeps order counts those it wrote)
    _reverse_count: int = 0  # requests the hub sent this client
    # A modern (2026-07-28) request's context: it lives for one request and has no stream
    # of its own, so unrelated messages have nowhere to go.
    ephemeral: bool = False
    revived: bool = False  # made again from its saved record after a restart (what was in memory is gone)
    queue_size: int = OUTBOX_SIZE  # messages the outbox holds (onemcp.limits.maxQueuedMessages)
    streams_open: int = 0  # GET streams (Streamable HTTP) reading the outbox now
    stream_ended: float | None = None  # when its last GET stream closed (the client may be reconnecting)
    elsewhere: Elsewhere | None = None  # other replicas: one of them may hold the GET stream

    @property
    def outbox(self) -> Outbox | None:
        """The queue behind the session's standalone stream: made on first use (most sessions never
        have one: an idle session stays small), never for a modern request's context."""
        if self._outbox is None and not self.ephemeral and not self.closed:
            self._outbox_send, receiving = anyio.create_memory_object_stream[tuple[Message, int]](self.queue_size)
            self._outbox = Outbox(receiving, self)
        return self._outbox

    @property
    def listening(self) -> bool:
        """Would a message posted now reach the client soon? (A Streamable HTTP session without a
        GET stream may never open one: most clients do not. One whose GET stream closed within
        RECONNECT_GRACE is taken to be reconnecting it, with Last-Event-ID: what comes meanwhile waits in
        its queue, bounded as ever.)"""
        if self.transport != "streamable-http" or self.streams_open > 0:
            return True
        if self.stream_ended is not None and time.monotonic() - self.stream_ended < RECONNECT_GRACE:
            return True
        return self.elsewhere is not None and self.elsewhere.listening(self.id)

    @property
    def principal(self) -> Principal:
        return self.access.principal

    def touch(self) -> None:
        self.last_seen = time.monotonic()

    def idle_for(self, now: float) -> float:
        """Seconds the session has gone unused: none while it is busy (a call in flight, a stream open:
        its client may write nothing for an hour while a long call reports progress), else since its
        last request, or the end of its last call or stream."""
        if self.in_flight or self.streams_open:
            return 0.0
        ended = self.stream_ended
        return now - (self.last_seen if ended is None else max(self.last_seen, ended))

    def post(self, msg: Message) -> None:
        """Queue a message for the session's standalone stream; drop (and say so) when full."""
        if self.closed or self.ephemeral:
            return
        if not self.streams_open and self.elsewhere is not None and self.elsewhere.carry(self, msg):
            return  # to the replica that holds this session's GET stream
        self.post_here(msg)

    def post_here(self, msg: Message) -> None:
        """Queue a message for this replica's GET stream of the session, whatever other replicas hold."""
        if (measured := self._measured(msg)) is None:
            return
        size, outbox = measured
        if (full := self._full(msg, size)) is not None:
            hit("queued_messages", "session %s: %s, dropped %s", self.id[:8], full, msg.get("method"))
            return
        try:
            outbox.send_nowait((msg, size))
            self.queued_count += 1
            self.held(size)
            QueuedBytes.charge(msg, size)
        except anyio.WouldBlock:
            hit("queued_messages", "session %s: outbound queue full, dropped %s", self.id[:8], msg.get("method"))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    async def deliver(self, msg: Message) -> None:
        """Queue a message that must not be lost (a reply, or a request a call waits on): it waits
        for room in the queue's count while the client reads, and is never refused for bytes (what
        may wait so is bounded by the calls in flight; the reply is held by its call anyway)."""
        if (measured := self._measured(msg)) is None:
            return
        size, outbox = measured
        self.held(size)  # charged from now: the reader gives it back when it takes it
        QueuedBytes.charge(msg, size)
        sent = False
        try:
            await outbox.send((msg, size))
            self.queued_count += 1
            sent = True
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            if not sent:  # never queued
                QueuedBytes.release(msg)
                if not self.closed:  # (close() gave back all this session had charged)
                    self.held(-size)

    def _measured(self, msg: Message) -> tuple[int, MemoryObjectSendStream[tuple[Message, int]]] | None:
        """The message's size and the queue to put it in, or None: the session is closed, or the
        message cannot be serialised."""
        if self.closed or self.outbox is None or self._outbox_send is None:
            return None
        try:
            return QueuedBytes.size(msg), self._outbox_send
        except (TypeError, ValueError):
            log.warning("session %s: a message that cannot be serialised was dropped", self.id[:8])
            return None

    def held(self, delta: int) -> None:
        """`delta` more bytes queued for this session (negative: taken or given back)."""
        before = self.queued_bytes
        self.queued_bytes += delta
        QueuedBytes.holders += (self.queued_bytes > 0) - (before > 0)

    def _full(self, msg: Message, size: int) -> str | None:
        """Why `size` more bytes may not be queued now (None: they may; a message alone always may)."""
        if self.queued_bytes and self.queued_bytes + size > OUTBOX_BYTES:
            return f"outbound queue over {OUTBOX_BYTES} bytes"
        if QueuedBytes.holds(msg):
            return None  # held already for other sessions: queuing it here costs nothing more
        if not QueuedBytes.used or QueuedBytes.used + size <= OUTBOX_TOTAL_BYTES:
            return None
        if QueuedBytes.used + size > 2 * OUTBOX_TOTAL_BYTES:
            return f"all sessions' outbound queues over {2 * OUTBOX_TOTAL_BYTES} bytes together"
        share = OUTBOX_TOTAL_BYTES // (QueuedBytes.holders + (self.queued_bytes == 0))
        if self.queued_bytes and self.queued_bytes + size > share:  # past the budget: those over their share pay
            return f"all sessions' outbound queues over {OUTBOX_TOTAL_BYTES} bytes, this one over its share ({share})"
        return None

    def take_queued(self) -> list[Message]:
        """What waits in the outbox for a GET stream, taken out (for a stream opened on another replica)."""
        taken: list[Message] = []
        if self._outbox is not None and not self.closed:
            while True:
                try:
                    taken.append(self._outbox.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    return taken
        return taken

    def wants_log(self, level: object) -> bool:
        if self.log_level is None:
            return not self.ephemeral  # modern clients get logs only when they ask for a level
        try:
            return LOG_LEVELS.index(str(level)) >= LOG_LEVELS.index(self.log_level)
        except ValueError:
            return True

    def new_reverse_id(self) -> str:
        self._reverse_count += 1
        if self.elsewhere is not None:  # unique across replicas, and the answer finds its way back
            return f"onemcp-{self.elsewhere.tag}-{self._reverse_count}"
        return f"onemcp-{self._reverse_count}"

    def stream_opened(self) -> None:
        self.streams_open += 1
        if self.streams_open == 1 and self.elsewhere is not None:
            self.elsewhere.stream(self, True)

    def stream_closed(self) -> None:
        self.streams_open -= 1
        if self.streams_open == 0:
            self.stream_ended = time.monotonic()
            if self.elsewhere is not None:
                self.elsewhere.stream(self, False)

    def end_streams(self) -> None:
        """The hub is stopping: its streams send what is queued, then end (a message posted later goes nowhere)."""
        if self._outbox_send is not None:
            self._outbox_send.close()

    def close(self) -> None:
        self.closed = True
        for conn, call in list(self.in_flight.values()):
            conn.abandon(call, "session closed")
            # its request ends now, with an error that says why, not at the upstream's deadline or the client's
            call.finish(jsonrpc.error(call.downstream_id, SESSION_ENDED))
        self.in_flight.clear()
        for pending in self.reverse.values():
            pending.done.set()
        if self._outbox is not None:
            while True:  # what was queued is dropped and given back (deliveries waiting too: they end)
                try:
                    self._outbox.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
        if self._outbox_send is not None:
            self._outbox_send.close()
        if self._outbox is not None:
            self._outbox.close()  # a reader still on it gets ClosedResourceError
        self.held(-self.queued_bytes)  # what deliveries still waiting had charged
        self.streams.close()  # what it kept for replay no longer counts against the hub's budget


class SessionStore:
    """Live sessions by id, with idle expiry and caps (hub-wide and per principal).

    At the hub-wide cap a new session is refused (`LimitReached`): live ones are never evicted to
    make room, so a flood of sessions cannot push out the sessions of others. At a principal's cap
    its own stalest session unseen for EVICT_IDLE seconds (no stream open, no call in flight) makes
    room; only when it has none is the new one refused. (Without auth every client is one principal:
    a refusal would lock every client out until sessions expired.)

    A session leaves in one of two ways, and `on_remove` is told which: it *ends* (its client's DELETE,
    a dropped /sse stream, a failed initialize: `remove`), or this process *forgets* its copy (idle
    expiry, eviction, another replica's end: `forget`), which, with replicas, may be live elsewhere.
    With replicas the caps count this process's copies: a copy unseen here for EVICT_IDLE seconds
    makes room as above, and forgetting it costs its session nothing (the next request for it here
    revives it from the shared record).
    """

    def __init__(
        self,
        idle_timeout: float,
        limits: Limits,
        on_remove: Callable[[Session, bool], None] | None = None,
        stream_retry: float = RETRY_MS / 1000,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.limits = limits  # replaced on reload
        self.retry_ms = round(stream_retry * 1000)  # `streamRetry`, as its streams' `retry:` gives it
        self.on_remove = on_remove
        self.elsewhere: Elsewhere | None = None  # the other replicas, when there are
        self._sessions: dict[str, Session] = {}
        self._per_principal: Counter[str] = Counter()
        self.replay = ReplayBudget()  # the bytes all its sessions keep for replay, together

    def create(self, transport: Entry, access: Access, session_id: str | None = None) -> Session:
        key = access.principal.id
        if len(self._sessions) >= self.limits.max_sessions:
            self.expire_idle()
        cap = self.limits.max_sessions
        if len(self._sessions) >= cap:
            hit("sessions", "%d sessions live (maxSessions): refused a new one", cap)
            raise LimitReached("sessions", f"too many sessions (limit {cap}); try again later", 503)
        cap = self.limits.max_sessions_per_principal
        if self._per_principal[key] >= cap:
            self._evict_stalest(key)
        if self._per_principal[key] >= cap:
            hit("sessions_per_principal", "principal %s has %d sessions: refused a new one", access.principal.id, cap)
            raise LimitReached(
                "sessions_per_principal",
                f"too many sessions for this client identity (limit {cap}); end unused sessions (DELETE) first",
                429,
            )
        session = Session(
            id=session_id or secrets.token_hex(16),
            transport=transport,
            access=access,
            queue_size=self.limits.max_queued_messages,
            streams=StreamStore(self.replay, self.retry_ms, self.elsewhere.tag if self.elsewhere is not None else ""),
        )
        if transport == "streamable-http":
            session.elsewhere = self.elsewhere
        self._sessions[session.id] = session
        self._per_principal[key] += 1
        return session

    def configure(self, settings: HubSettings) -> None:
        """A reload's settings, for the sessions made from now on (and the idle expiry of all)."""
        self.idle_timeout = settings.session_idle_timeout
        self.limits = settings.limits
        self.retry_ms = round(settings.stream_retry * 1000)

    def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.idle_for(time.monotonic()) > self.idle_timeout:
            self.forget(session_id)
            return None
        return session

    def remove(self, session_id: str) -> Session | None:
        """The session ends (its client ended it, or it cannot go on): everywhere."""
        return self._drop(session_id, ended=True)

    def forget(self, session_id: str) -> Session | None:
        """This process's copy of the session goes (idle here, evicted, or ended on another replica)."""
        return self._drop(session_id, ended=False)

    def _drop(self, session_id: str, *, ended: bool) -> Session | None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            key = session.principal.id
            self._per_principal[key] -= 1
            if self._per_principal[key] <= 0:
                del self._per_principal[key]
            session.close()
            if self.on_remove is not None:
                self.on_remove(session, ended)
        return session

    def close_all(self) -> None:
        """The hub stops: close every session (nothing is announced; their streams end)."""
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()
        self._per_principal.clear()

    def _evict_stalest(self, key: str) -> None:
        """Room for one more of principal `key`'s sessions: its stalest idle one ends, if any is."""
        now = time.monotonic()
        idle = [
            s
            for s in self._sessions.values()
            if s.principal.id == key and not s.streams_open and not s.in_flight and now - s.last_seen >= EVICT_IDLE
        ]
        if idle:
            stalest = min(idle, key=lambda s: s.last_seen)
            hit("sessions_per_principal", "principal %s at its session cap: ended its stalest idle session", key)
            self.forget(stalest.id)

    def expire_idle(self) -> int:
        now = time.monotonic()
        stale = [sid for sid, s in self._sessions.items() if s.idle_for(now) > self.idle_timeout]
        for sid in stale:
            self.forget(sid)
        return len(stale)

    def used_since(self, since: float) -> list[Session]:
        """The sessions used since `since` (monotonic), or using the hub now (a call in flight, a stream
        open): the ones whose saved record's last-seen time moves on (an idle copy's does not)."""
        return [s for s in self._sessions.values() if s.last_seen >= since or s.in_flight or s.streams_open]

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)
