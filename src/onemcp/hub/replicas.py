"""What crosses hub replicas that share a Redis (`onemcp.sessionStore: "redis://..."`), and what each does with it.

Replicas behind a load balancer share legacy sessions (`saved`), but a client's GET stream, a call's
reply stream and a parked 2026-07-28 call each live in one process. Owns, on top of `relay`:

* where each session's GET stream is: the replica holding one announces it (and again every
  `ANNOUNCE_EVERY` s, for replicas that start later); others forget it `FORGET_AFTER` s after the last word;
* a session's unsolicited messages (server->client requests, logs, resource updates) posted on a
  replica without its GET stream go to the replica with it (`carry`); list_changed does not: that
  replica sees the same upstream changes itself. If nobody heard, the message stays here, and
  what waits here goes to the replica where the session's next GET stream opens;
* a client's answer to a request another replica sent it (its id names that replica) goes back there;
* a legacy /sse client's POST /messages for a session whose stream is on another replica goes there;
* a client's cancellation of a request not in flight here, and a roots change, go to every replica;
* a session's end (its client's DELETE) goes to every replica, which drops its copy (its streams end):
  after a DELETE the session is not found on any replica. A copy forgotten here (idle, evicted) is
  not announced: the session may be live elsewhere;
* a change of a session's log level or resource subscriptions goes to every replica, whose copy of
  the session (if it has one live) takes it: the level is told to its upstreams and the subscriptions
  held on them, as if the client had asked there. A replica that revives the session later reads both
  from its record;
* a `requestState` of a call parked on another replica is resumed there (`resume`), the key that signs
  requestStates being one all replicas share; tasks/get|result|cancel of a task another replica's
  call made (its id names that replica) are answered there;
* a client's `Last-Event-ID` naming a stream another replica holds: its events are relayed from there
  (`followed`);
* presets: the ones a replica loads from its presets.json after a change there are kept in Redis and
  written to every other replica's presets.json (whose own reload applies them). At start, Redis's
  win over the file; with none in Redis yet, the file's are shared.

Does not own the wire to Redis (`relay`) or what a session is (`session`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import orjson

from onemcp.auth.principal import Principal
from onemcp.config import redis_link
from onemcp.hub.bridge import Parking
from onemcp.hub.followed import FollowedStreams
from onemcp.hub.relay import RedisRelay, RelayError
from onemcp.hub.session import Session, SessionStore
from onemcp.hub.tasks import TaskRouter
from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import INTERNAL_ERROR, INVALID_PARAMS, NotFound, echo
from onemcp.protocol.jsonrpc import Message

log = logging.getLogger("onemcp.replicas")
ANNOUNCE_EVERY = 10.0
FORGET_AFTER = 30.0
STREAM_WAIT = 2.0  # a message for an /sse session not known here waits this long for the word of its stream
WAITING_MAX = 1_000  # sessions whose stream's word is awaited at once; beyond, not waited for
RESUME_TIMEOUT = 660.0  # a resumed call runs to its end on the replica that parked it
PRESETS_KEY = "onemcp:presets"
START_PATIENCE = 2 * redis_link.DEADLINE  # what the start waits for the shared secret and presets (each read: 5 s)
ENDED_WAIT = 1.0  # what a DELETE waits at most for the other replicas to drop their copies of the session
TELL_SLACK = redis_link.DEADLINE + 1.0  # and for the word of it to be published (then for their answers)
RECHECK_EVERY = 1.0  # seconds between reads of the copies' records when the link is back and Redis failed
TASK_METHODS = frozenset({"tasks/get", "tasks/result", "tasks/cancel"})
ResumeHere = Callable[[Session, Message], Awaitable[Message]]


class Replicas:
    def __init__(
        self,
        relay: RedisRelay,
        sessions: SessionStore,
        parking: Parking,
        tasks: TaskRouter,
        *,
        resume_here: ResumeHere,
        reply_here: Callable[[Session, Message], None],
        notify_here: Callable[[Session | None, Message], Awaitable[None]],
    ) -> None:
        self.relay = relay
        self.sessions = sessions
        self.parking = parking
        self._resume_here = resume_here
        self._reply_here = reply_here
        self._notify_here = notify_here
        self._local: set[str] = set()  # sessions whose GET stream is on this replica
        self._remote: dict[str, tuple[str, float]] = {}  # session id -> (replica holding its stream, until)
        self._awaited: dict[str, anyio.Event] = {}  # session id -> set when another replica announces its stream
        self._telling: dict[str, anyio.Event] = {}  # session ended here -> set once the others dropped their copies
        self.counts: Counter[str] = Counter()  # messages by direction and kind, for /health
        # presets: the reloader writes the replicas' presets to this replica's presets.json with it
        self.write_presets: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self._presets: bytes | None = None  # the presets last loaded here or taken from the others
        self._unshared = False  # those loaded here are not in Redis yet (it failed): shared when it answers
        self._presets_lock = anyio.Lock()  # presets shared and taken one at a time, in order
        # `presets_now`: one read at a time, which answers every lookup asked before it began
        self._lookup_lock = anyio.Lock()
        self._lookups_asked = self._lookups_answered = 0
        # an upstream authorized through another replica (the tokens are in Redis): take them, reconnect
        self.authorized_here: Callable[[str], None] = lambda server: None
        self.forgotten_here: Callable[[str], Awaitable[None]] | None = None  # logged out through another
        # another replica changed a session's log level or subscriptions: (session, level, subscriptions)
        self.changed_here: Callable[[Session, object, list[tuple[str, str]]], Awaitable[None]] | None = None
        # another replica's client ended a session: its record becomes a tombstone from here too (not revived)
        self.ended_here: Callable[[str], None] | None = None
        # the link is back: forget the copies of sessions ended elsewhere meanwhile (False: Redis could not say)
        self.back_here: Callable[[], Awaitable[bool]] | None = None
        # a message POSTed to another replica for an /sse session whose stream is here: (session, principal, message)
        self.sse_here: Callable[[str, str, Message], Awaitable[None]] | None = None
        self.followed = FollowedStreams(relay, sessions)  # a stream resumed here, held by another replica
        relay.on_message = self._received
        relay.on_back = self._back
        parking.tag = tasks.tag = relay.tag
        self.tasks = tasks
        sessions.elsewhere = self

    @property
    def tag(self) -> str:
        return self.relay.tag

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(self.relay.run)
            shared = settled = False
            self._unshared = False  # the file's presets, loaded before: Redis's win over them
            with anyio.move_on_after(START_PATIENCE):  # a hung Redis: the hub starts without them, and signs later
                shared = await self._share_key()
                settled = await self._settle_presets()
            task_status.started()
            while True:
                await anyio.sleep(ANNOUNCE_EVERY)
                if self.relay.up:  # Redis was away at start, or lost the secret since: sign as the others do
                    shared = await self._share_key(shared) or shared
                if not settled and self.relay.up:  # nor were the presets taken (or shared) then
                    settled = await self._settle_presets()
                elif self._unshared:  # a change made here while Redis failed: to the others now
                    self.relay.spawn(self._share_presets)
                if self._local:
                    self.relay.broadcast({"k": "streams", "sids": sorted(self._local)})
                now = time.monotonic()
                for sid in [s for s, (_, until) in self._remote.items() if until < now]:
                    del self._remote[sid]

    async def _share_key(self, shared: bool = False) -> bool:
        """Sign as every replica does (once `shared`, this replica's key goes back to a Redis that lost it)."""
        key = await self.relay.shared_secret("requestState", self.parking.key if shared else None)
        if key is not None:
            self.parking.share_key(key)
        return key is not None

    @property
    def redis(self) -> str:
        """The link to Redis: "connected"; "failing" (the pub/sub link is up, but a request to Redis
        failed in the last few seconds: its breaker is open, sessions are not revived, records not
        written, quotas counted here alone); or "unreachable" (nothing crosses replicas)."""
        if not self.relay.up:
            return "unreachable"
        return "failing" if redis_link.breaker(self.relay.url).open else "connected"

    def report(self) -> dict[str, Any]:
        """For /health: this replica, its link to the others, and what crossed."""
        now = time.monotonic()
        return {
            "replica": self.tag,
            "redis": self.redis,
            "redisBreaker": "open" if redis_link.breaker(self.relay.url).open else "closed",
            "streamsHere": len(self._local),
            "streamsElsewhere": sum(1 for _, until in self._remote.values() if until > now),
            "messages": dict(sorted(self.counts.items())),
        }

    # ------------------------------------------------------------------ what a session asks
    def listening(self, session_id: str) -> bool:
        entry = self._remote.get(session_id)
        return entry is not None and entry[1] > time.monotonic() and self.relay.up

    async def listening_soon(self, session_id: str) -> bool:
        """`listening`, waiting up to `STREAM_WAIT` for the word of the stream: the replica holding it told its
        client where to post (the /sse endpoint event) as it told the others, and the client may be faster."""
        if self.listening(session_id) or not self.relay.up:
            return self.listening(session_id)
        if len(self._awaited) >= WAITING_MAX and session_id not in self._awaited:
            return False
        heard = self._awaited.setdefault(session_id, anyio.Event())
        try:
            with anyio.move_on_after(STREAM_WAIT):
                await heard.wait()
        finally:  # (also when its POST is cancelled: the table keeps no one who waits no more)
            if self._awaited.get(session_id) is heard:
                del self._awaited[session_id]
        return self.listening(session_id)

    def carry(self, session: Session, msg: Message) -> bool:
        entry = self._remote.get(session.id)
        if entry is None or entry[1] <= time.monotonic() or not self.relay.up:
            return False
        if str(msg.get("method", "")).endswith("/list_changed"):
            return True  # the replica with the stream learns of the change from its own upstreams
        doc = {"k": "push", "sid": session.id, "msg": msg}
        self.counts["sent push"] += 1
        return self.relay.send(entry[0], doc, missed=lambda: session.post_here(msg))

    def stream(self, session: Session, opened: bool) -> None:
        if opened:
            self._local.add(session.id)
        else:
            self._local.discard(session.id)
        self.relay.broadcast({"k": "stream", "sid": session.id, "open": opened})

    def _hand_over(self, sid: str) -> None:
        """A GET stream opened on another replica: what waits here for one goes there (in order)."""
        session = self.sessions.get(sid)
        if session is None or session.streams_open:
            return
        for msg in session.take_queued():
            if not self.carry(session, msg):
                session.post_here(msg)

    # ------------------------------------------------------------------ presets
    def presets_loaded(self, presets: dict[str, Any]) -> None:
        """The presets this replica's file holds now: shared with the others unless they came from them."""
        raw = orjson.dumps(presets, option=orjson.OPT_SORT_KEYS)
        if raw == self._presets:
            return
        self._presets, self._unshared = raw, True
        self.relay.spawn(self._share_presets)  # (Redis away: shared at the next announcement after it is back)

    async def share_presets(self) -> None:
        """The presets loaded here last, in Redis now: an edit through this replica's admin API is answered
        then, and the client's next request may name them at any replica (`presets_now`)."""
        await self._share_presets()

    async def presets_now(self) -> bool:
        """The replicas' presets, read now: a request named a preset this replica does not know (made through
        another replica a moment ago, before the word of it came); True when they changed here.

        Each lookup is answered by a read begun after it was asked (so a preset in Redis before is found), one
        read at a time, and one read answers every lookup waiting for it: many requests naming unknown presets
        cost Redis one read in flight (and the next), not a read each queued behind the presets' lock."""
        before = self._presets
        self._lookups_asked += 1
        asked = self._lookups_asked
        async with self._lookup_lock:
            if self._lookups_answered < asked:  # no read begun since it was asked: one, for all asked so far
                began = self._lookups_asked
                await self._take_presets()
                self._lookups_answered = began  # (not if cancelled: the next waiting reads)
        return self._presets != before

    async def _share_presets(self) -> None:
        """The presets loaded here last, to Redis and the others (one share at a time: the latest is in Redis last)."""
        async with self._presets_lock:
            raw = self._presets
            if not self._unshared or raw is None:
                return  # an earlier share took them already
            if not await self.relay.put(PRESETS_KEY, raw):
                return  # tried again at the next announcement
            self._unshared = raw != self._presets  # changed meanwhile: the share waiting for the lock takes them
            self.counts["sent presets"] += 1
            self.relay.broadcast({"k": "presets"})

    async def _settle_presets(self) -> bool:
        """At start: take the replicas' presets, or share this replica's file's if Redis has none (the
        first replica with presets on it); False when Redis could not say (asked again later)."""
        taken = await self._take_presets()
        if taken is None:
            return False  # its file's presets must not replace the others' in Redis unseen
        if not taken and self._presets not in (None, b"{}"):
            self._unshared = True
            await self._share_presets()
        return True

    async def _take_presets(self) -> bool | None:
        """Apply the presets in Redis if they differ from this replica's; False if Redis has none, None
        if it could not be read."""
        async with self._presets_lock:  # the latest read is applied last
            try:
                raw = await self.relay.get(PRESETS_KEY)
            except RelayError:
                return None
            if raw is None:
                return False
            if self._unshared:
                return True  # a change made here is on its way to Redis: it is the latest
            if raw != self._presets and self.write_presets is not None:
                self._presets = raw
                try:
                    await self.write_presets(orjson.loads(raw))
                except Exception as exc:  # a file that cannot be written: this replica keeps its own
                    log.error("replica %s: the replicas' presets not applied: %s", self.tag, exc)
            return True

    def upstream_authorized(self, server: str) -> None:
        """An operator authorized `server` through this replica: the others take its tokens now."""
        self.relay.broadcast({"k": "authorized", "server": server})

    def upstream_forgotten(self, server: str) -> None:
        """An operator logged `server` out through this replica: the others drop its tokens too."""
        self.relay.broadcast({"k": "forgotten", "server": server})

    # ------------------------------------------------------------------ a session's end and state
    def session_ended(self, session: Session) -> None:
        """Its client ended the session through this replica: the others drop their copies (`ended_everywhere`
        waits until they have)."""
        if session.transport != "streamable-http":
            return
        self.counts["sent ended"] += 1
        told = anyio.Event()
        if self.relay.spawn(self._tell_ended, session.id, told):
            self._telling[session.id] = told

    async def _tell_ended(self, sid: str, told: anyio.Event) -> None:
        try:
            if missing := await self.relay.tell_all({"k": "ended", "sid": sid}, ENDED_WAIT):
                log.warning(
                    "replica %s: %d replica(s) did not say within %gs that they dropped session %s (ended here)",
                    self.tag,
                    missing,
                    ENDED_WAIT,
                    sid[:8],
                )
        finally:
            told.set()
            if self._telling.get(sid) is told:
                del self._telling[sid]

    async def _back(self) -> None:
        """Subscribed (again): while the link was down, the word of a session's end at another replica was not
        heard here, and a live copy is served without reading its record. The copies' records are read now
        (again every `RECHECK_EVERY` s until Redis answers, while the link stays up), not at the expiry round,
        up to a minute later; one whose record is a tombstone is forgotten."""
        while self.back_here is not None and self.relay.up:
            if await self.back_here():
                return
            await anyio.sleep(RECHECK_EVERY)  # Redis failed a moment ago (its breaker is open): asked again

    async def ended_everywhere(self, session_id: str) -> None:
        """Wait until every replica that heard of the session's end here has dropped its copy (`ENDED_WAIT` at
        most): a replica with a live copy serves it without reading the record, until the word comes. Answered
        before, a DELETE let the client's next request to such a replica be served (pub/sub is no faster than
        the client). A replica whose link is down does not hear it: it serves its copy until the link is back
        (`_back`)."""
        told = self._telling.get(session_id)
        if told is not None:
            with anyio.move_on_after(ENDED_WAIT + TELL_SLACK):  # (never run: the relay stopped as it was asked)
                await told.wait()
            if self._telling.get(session_id) is told:
                del self._telling[session_id]

    def session_changed(self, session: Session) -> None:
        """Its log level or subscriptions changed through this replica: the others' copies take the change."""
        self.counts["sent changed"] += 1
        kept = sorted(session.subscriptions)
        self.relay.broadcast({"k": "changed", "sid": session.id, "logLevel": session.log_level, "subscriptions": kept})

    async def _changed(self, sid: str, doc: dict[str, Any]) -> None:
        session = self.sessions.get(sid)
        if session is None or self.changed_here is None:
            return  # no copy here: one revived later reads the record
        kept = doc.get("subscriptions")
        keys = (
            [(str(k[0]), str(k[1])) for k in kept if isinstance(k, list) and len(k) == 2]
            if isinstance(kept, list)
            else []
        )
        await self.changed_here(session, doc.get("logLevel"), keys)

    # ------------------------------------------------------------------ what a client sends
    def client_response(self, session: Session, msg: Message) -> bool:
        """True if the answer belongs to a request another replica sent (it was sent there)."""
        rid = msg.get("id")
        owner = self._sent_by(rid) if isinstance(rid, str) and rid not in session.reverse else None
        if owner is None:
            return False
        self.counts["sent reply"] += 1
        return self.relay.send(owner, {"k": "reply", "sid": session.id, "msg": msg})

    def pass_sse(self, sid: str, principal: Principal, msg: Message) -> bool:
        """A message for an /sse session whose stream another replica announced: to that replica (False: not sent)."""
        entry = self._remote.get(sid)
        if entry is None or entry[1] <= time.monotonic():
            return False
        self.counts["sent sse"] += 1
        return self.relay.send(entry[0], {"k": "sse", "sid": sid, "principal": principal.key, "msg": msg})

    def client_notification(self, session: Session, msg: Message) -> None:
        """Before it is handled here: what other replicas must hear of it too."""
        method = msg.get("method")
        if method == "notifications/roots/list_changed":
            self.counts["sent notify"] += 1
            self.relay.broadcast({"k": "notify", "msg": msg})
        elif method == "notifications/cancelled":
            params = msg.get("params")
            rid = params.get("requestId") if isinstance(params, dict) else None
            if isinstance(rid, str | int) and rid not in session.in_flight:
                self.counts["sent notify"] += 1
                self.relay.broadcast({"k": "notify", "sid": session.id, "msg": msg})
        elif method == "notifications/progress":  # on a request another replica sent it: to that one
            params = msg.get("params")
            token = params.get("progressToken") if isinstance(params, dict) else None
            owner = self._sent_by(token) if isinstance(token, str) and token not in session.reverse else None
            if owner is not None:
                self.counts["sent notify"] += 1
                self.relay.send(owner, {"k": "notify", "sid": session.id, "msg": msg})

    def _sent_by(self, rid: str) -> str | None:
        """The replica that sent a client a request of this hub id (`Session.new_reverse_id`), if another."""
        owner = rid.split("-")[1] if rid.startswith("onemcp-") and rid.count("-") == 2 else None
        return None if owner == self.tag else owner

    def elsewhere(self, msg: Message) -> tuple[str, str] | None:
        """(kind, replica) of a request another replica answers: "resume" a call parked there (its
        requestState says where), or "task" for tasks/* of a task made there (its id says); else None."""
        params = msg.get("params")
        params = params if isinstance(params, dict) else {}
        state = params.get("requestState")
        if self.parking.owns(state):
            assert isinstance(state, str)
            owner = self.parking.replica(state)
            return ("resume", owner) if owner and owner != self.tag else None
        owner = self.tasks.made_on(params.get("taskId")) if msg.get("method") in TASK_METHODS else ""
        return ("task", owner) if owner else None

    async def resume(self, owner: str, session: Session, msg: Message, kind: str = "resume") -> Message:
        """The reply to a call parked on replica `owner`, resumed there with this request's answers (or,
        `kind` "task", to tasks/* of a task made there, for this session)."""
        asked = {"k": kind, "principal": session.principal.key, "sid": session.id, "msg": msg}
        self.counts["sent resume"] += 1
        reply = (await self.relay.ask(owner, asked, RESUME_TIMEOUT)).get("reply")
        if not isinstance(reply, dict):
            why = f"replica {owner} answered nothing"
            return jsonrpc.error(msg.get("id"), {"code": INTERNAL_ERROR, "message": why})
        return reply

    # ------------------------------------------------------------------ what other replicas send
    async def _received(self, doc: dict[str, Any]) -> None:
        kind, sender = doc.get("k"), str(doc.get("from"))
        if kind not in ("stream", "streams"):
            self.counts[f"received {kind}"] += 1
        sid, msg = doc.get("sid"), doc.get("msg")
        until = time.monotonic() + FORGET_AFTER
        if kind == "stream" and isinstance(sid, str):
            if doc.get("open"):
                self._remote[sid] = (sender, until)
                self._hand_over(sid)
                if (heard := self._awaited.pop(sid, None)) is not None:
                    heard.set()
            elif self._remote.get(sid, ("",))[0] == sender:
                del self._remote[sid]
        elif kind == "streams" and isinstance(doc.get("sids"), list):
            for one in doc["sids"]:
                if isinstance(one, str):
                    self._remote[one] = (sender, until)
        elif kind == "ended" and isinstance(sid, str):
            self.sessions.forget(sid)  # ended there: its record is gone, and its copy here with it
            if self.ended_here is not None:  # its tombstone, from here too: there, Redis may have failed
                self.ended_here(sid)
            self.relay.answer(doc, {})  # dropped: the DELETE there may be answered (`ended_everywhere`)
        elif kind == "changed" and isinstance(sid, str):
            await self._changed(sid, doc)
        elif kind == "presets":
            await self._take_presets()
        elif kind == "authorized" and isinstance(doc.get("server"), str):
            self.authorized_here(doc["server"])
        elif kind == "forgotten" and isinstance(doc.get("server"), str):
            if self.forgotten_here is not None:
                await self.forgotten_here(doc["server"])
        elif kind == "follow":
            await self.followed.serve(doc)
        elif kind == "events":
            self.followed.batch(doc)
        elif kind == "unfollow":
            self.followed.unfollow(doc)
        elif not isinstance(msg, dict):
            log.info("replica %s: a %r message from %s without a message, ignored", self.tag, kind, sender)
        elif kind == "resume":
            self.relay.answer(doc, {"reply": await self._resume(str(doc.get("principal")), msg)})
        elif kind == "task":
            self.relay.answer(doc, {"reply": await self._task(str(sid), str(doc.get("principal")), msg)})
        elif kind == "sse" and isinstance(sid, str) and self.sse_here is not None:
            await self.sse_here(sid, str(doc.get("principal")), msg)
        else:
            session = self.sessions.get(sid) if isinstance(sid, str) else None
            if kind == "push" and session is not None and session.streams_open:
                session.post_here(msg)
            elif kind == "reply" and session is not None:
                self._reply_here(session, msg)
            elif kind == "notify" and (session is not None or sid is None):
                await self._notify_here(session, msg)
            else:
                log.debug("replica %s: %r for session %s not live here, dropped", self.tag, kind, str(sid)[:8])

    async def _task(self, sid: str, principal: str, msg: Message) -> Message:
        """tasks/* another replica passed on, for a task made here: answered as the session's own request."""
        session = self.sessions.get(sid)
        if session is None or session.principal.key != principal:  # not live here: its tasks are gone
            params = msg.get("params")
            task = params.get("taskId") if isinstance(params, dict) else None
            return jsonrpc.error(msg.get("id"), NotFound(f"Task not found: {echo(task)}").to_error())
        return await self._resume_here(session, msg)

    async def _resume(self, principal: str, msg: Message) -> Message:
        params = msg.get("params")
        state = params.get("requestState") if isinstance(params, dict) else None
        session = self.parking.origin(state, principal) if isinstance(state, str) else None
        if session is None:
            why = "requestState has expired (or was already used); call again from the start"
            return jsonrpc.error(msg.get("id"), {"code": INVALID_PARAMS, "message": why})
        return await self._resume_here(session, msg)
