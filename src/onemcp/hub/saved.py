"""Sessions that survive a restart: what a legacy session needs to go on, in a store outside the process.

Owns the two stores behind one interface (`SessionRecords`): the embedded default, one SQLite file
(`sessions.db` beside mcp.json, owner-only), and Redis (`onemcp.sessionStore: "redis://..."`),
which hub replicas share so any of them continues any session. Per session id, a JSON record
of what the session was made with and has since changed (the principal it belongs to, the entry
and view it came through, its template context, protocol version, client info and capabilities,
log level, resource subscriptions) and when it was last seen. Written when one of those changes
and, for the last-seen times, in one batch per expiry round; never on the call path. A record
older than the idle timeout is not revived and is purged. The hub rebuilds a `Session` from a
record (`revival.py`); this module only stores and reads. Does not store credentials.

A shared store (`shared`: Redis) outlives any one process's copy of a session: a replica that forgets
its copy leaves the record to its TTL, and only the session's end deletes it. An ended session's record
becomes a tombstone for the idle timeout, which a save does not overwrite (a replica that has not yet
heard of the end cannot write the session back). A replica that did not hear of an end (its pub/sub
link was down) finds its copies' tombstones in one batched read (`ended`) once the link is back, and per
expiry round, and forgets them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from onemcp.config import redis_link
from onemcp.config.model import REDIS_SCHEMES
from onemcp.config.sqlite import Writer
from onemcp.config.writer import OrderedWriter

log = logging.getLogger("onemcp.sessions")
Write = tuple[str | None, bool, Callable[[], None]]  # (its session, for a record's write; an end?; the write)
FILE = "sessions.db"
SCHEMA = "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, seen REAL, doc TEXT)"
REDIS_PREFIX = "onemcp:session:"
FLUSH_LIMIT = 5.0  # seconds `flush` (and closing) waits for the writes before it, at most
RESEND_EVERY = 1.0  # seconds between tries of the writes Redis missed (skipped at once while the breaker is open)
ENDED = b"ended"  # an ended session's record in Redis, for the idle timeout (a tombstone)
# a record is written unless its session ended (atomically: the end may come from another replica)
SAVE_UNLESS_ENDED = """
if redis.call('get', KEYS[1]) == ARGV[3] then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


class SessionRecords(Protocol):
    @property
    def enabled(self) -> bool: ...
    @property
    def shared(self) -> bool: ...  # other processes (replicas) read and write the same records
    def save(self, session_id: str, doc: dict[str, Any]) -> None: ...
    def seen(self, session_ids: Iterable[str]) -> None: ...
    async def load(self, session_id: str, idle_timeout: float) -> dict[str, Any] | None: ...
    async def ended(self, session_ids: list[str]) -> set[str] | None: ...  # those ended (None: cannot say now)
    async def flush(self) -> None: ...
    def delete(self, session_id: str) -> None: ...
    def purge(self, idle_timeout: float) -> None: ...
    def close(self) -> None: ...


class SavedSessions:
    """Records in `sessions.db`: written by the file's writer thread (`config.sqlite.Writer`: a CLI or a
    second hub holding its lock never stalls the event loop), read on the loop (WAL: a read never waits
    for a writer) once the writes made before it are done."""

    def __init__(self, directory: Path | None) -> None:
        self._path = directory / FILE if directory is not None else None
        self._broken = directory is not None and directory.exists() and not directory.is_dir()
        self._reader: sqlite3.Connection | None = None
        self._writer = Writer(self._path, SCHEMA, "session records", log) if self._path and not self._broken else None
        self._written = False  # a write was handed to the writer (which makes the file)

    def _write(self, job: Callable[[sqlite3.Connection], object], create: bool = False) -> None:
        """`job` on the writer thread; only a save makes the file (a hub nobody used writes none)."""
        if self._writer is None or not (create or self._written or self._exists()):
            return
        self._written = True
        self._writer.put(job)

    def _exists(self) -> bool:
        return self._path is not None and self._path.exists()

    def _read(self) -> sqlite3.Connection | None:
        if self._reader is None and self._writer is not None and self._exists():
            try:
                self._reader = sqlite3.connect(self._path or "", isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                log.warning("sessions cannot be revived: cannot read %s: %s", self._path, exc)
        return self._reader

    @property
    def enabled(self) -> bool:
        return self._writer is not None

    @property
    def shared(self) -> bool:
        return False  # one hub's: its copy of a session is the session

    def save(self, session_id: str, doc: dict[str, Any]) -> None:
        row = (session_id, time.time(), json.dumps(doc))
        self._write(lambda db: db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?)", row), create=True)

    def seen(self, session_ids: Iterable[str]) -> None:
        """These sessions were used lately (one transaction for all)."""
        now = time.time()
        rows = [(now, sid) for sid in session_ids]

        def touch(db: sqlite3.Connection) -> None:
            with db:
                db.execute("BEGIN")
                db.executemany("UPDATE sessions SET seen = ? WHERE id = ?", rows)

        self._write(touch)

    async def flush(self) -> None:
        """Nothing to wait for: no other process reads these records while this hub runs (one HTTP hub per
        config directory); `load` waits for the writes before it, `close` for those still queued."""

    async def load(self, session_id: str, idle_timeout: float) -> dict[str, Any] | None:
        """The record of a session seen within `idle_timeout` seconds, else None."""
        if self._writer is not None:  # a record written a moment ago is read back (waited for off the loop)
            await self._writer.flush(FLUSH_LIMIT)
        db = self._read()
        if db is None:
            return None
        try:
            rows = db.execute("SELECT seen, doc FROM sessions WHERE id = ?", (session_id,)).fetchall()
        except sqlite3.Error:
            return None
        if not rows or time.time() - float(rows[0][0]) > idle_timeout:
            return None
        try:
            doc = json.loads(rows[0][1])
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    async def ended(self, session_ids: list[str]) -> set[str] | None:
        return set()  # one hub's: a session it ended is no longer here

    def delete(self, session_id: str) -> None:
        self._write(lambda db: db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)))

    def purge(self, idle_timeout: float) -> None:
        cutoff = time.time() - idle_timeout
        self._write(lambda db: db.execute("DELETE FROM sessions WHERE seen < ?", (cutoff,)))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close(FLUSH_LIMIT)
        if self._reader is not None:
            with contextlib.suppress(sqlite3.Error):
                self._reader.close()
            self._reader = None


class RedisSessions:
    """Session records in Redis, shared by every replica; Redis expires a record after the idle timeout.

    Never on the event loop: a record is read on a worker thread, and writes (save, last-seen times,
    delete) go, in the order they were made, to one writer thread; `flush` waits for those made so far.
    All go through the Redis link's breaker: after a failure Redis is skipped for a few seconds (a
    session is then not revived), so a Redis that does not answer never costs a call, and a dead one
    costs one request its 1 s deadline, not each. A record's write (a save or an end) that Redis missed
    is kept, the latest per session, and written again once Redis answers (tried every
    `RESEND_EVERY` seconds, and before any later write): a session made while Redis failed reaches the
    other replicas after all, and one ended meanwhile is not revived from its old record (here, not
    from the moment it ended; elsewhere, the replicas told of the end write its tombstone too). Last-seen
    times are not kept (the next expiry round writes them again).
    """

    MAX_PENDING = 10_000  # writes waiting for the writer thread, or kept for Redis; beyond, dropped

    def __init__(self, url: str, idle_timeout: float) -> None:
        self.idle_timeout = idle_timeout
        self._errors = redis_link.errors()
        self._redis: Any = redis_link.client(url)
        self.breaker = redis_link.breaker(url)
        self._writes = RecordWrites(self)
        # session id -> (an end?, its record's write) that Redis missed, to write again once it answers
        self._unsent: dict[str, tuple[bool, Callable[[], None]]] = {}
        self._unsent_lock = threading.Lock()
        self._ending: set[str] = set()  # sessions ended whose tombstone is not in Redis yet: not revived

    @property
    def enabled(self) -> bool:
        return True

    @property
    def shared(self) -> bool:
        return True

    def _ttl(self) -> int:
        return max(1, int(self.idle_timeout + 0.999))

    def _write(self, job: Write) -> None:
        self._writes.put(job)

    def _do(self, job: Write) -> None:
        """On the writer thread: a write, through the breaker; what Redis missed, again once it answers."""
        sid, ended, work = job
        if sid is not None:
            with self._unsent_lock:
                self._unsent.pop(sid, None)  # this write of its record supersedes one Redis missed
        if self._run(work):
            self._written(sid, ended)
            self._resend()
        elif sid is not None:
            self._keep(sid, ended, work)

    def _last_try(self) -> None:
        """The writer thread ends (closing): a last try of what Redis missed."""
        self._resend()
        if self._unsent:
            log.warning("%d session records not written to Redis: it failed until the end", len(self._unsent))

    def _written(self, sid: str | None, ended: bool) -> None:
        if ended and sid is not None:
            with self._unsent_lock:
                self._ending.discard(sid)

    def _run(self, work: Callable[[], None]) -> bool:
        try:
            self.breaker.run(work)
        except redis_link.RedisSkipped:
            return False  # Redis failed a moment ago (and that was said)
        except self._errors as exc:
            log.warning("session records not written to Redis (kept, to write when it answers): %s", exc)
            return False
        except Exception:  # the writer thread's boundary: said, not kept (it would fail again), the writes go on
            log.exception("a session record not written to Redis: an internal error")
        return True

    def _keep(self, sid: str, ended: bool, work: Callable[[], None]) -> None:
        with self._unsent_lock:
            if len(self._unsent) >= self.MAX_PENDING:
                dropped = next(iter(self._unsent))
                del self._unsent[dropped]
                self._ending.discard(dropped)
                log.warning("session %s's record not written to Redis: too many wait for it", dropped[:8])
            self._unsent[sid] = (ended, work)

    def _resend(self) -> None:
        """The writes Redis missed, in order, until one fails again (the rest wait for the next try)."""
        while self._unsent:
            with self._unsent_lock:
                sid, (ended, work) = next(iter(self._unsent.items()))
            if not self._run(work):
                return
            self._written(sid, ended)
            with self._unsent_lock:
                if sid in self._unsent and self._unsent[sid][1] is work:
                    del self._unsent[sid]

    def save(self, session_id: str, doc: dict[str, Any]) -> None:
        data = json.dumps(doc)
        key = REDIS_PREFIX + session_id
        self._write((session_id, False, lambda: self._redis.eval(SAVE_UNLESS_ENDED, 1, key, data, self._ttl(), ENDED)))

    def seen(self, session_ids: Iterable[str]) -> None:
        keys = [REDIS_PREFIX + sid for sid in session_ids]

        def expire() -> None:
            with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.expire(key, self._ttl())
                pipe.execute()

        self._write((None, False, expire))

    async def flush(self) -> None:
        """Wait until the writes made so far are done (or dropped), and those Redis missed tried again,
        `FLUSH_LIMIT` seconds at most: what is answered next (an initialize, a DELETE) may send the client
        to another replica, which reads them."""
        if not await self._writes.flush(FLUSH_LIMIT):
            log.warning("session records not in Redis after %g s: other replicas may not see them yet", FLUSH_LIMIT)

    async def load(self, session_id: str, idle_timeout: float) -> dict[str, Any] | None:
        with self._unsent_lock:
            if session_id in self._ending:
                return None  # it ended (its tombstone is on its way to Redis): its old record does not count
        try:
            raw = await self.breaker.call(self._redis.get, REDIS_PREFIX + session_id)
        except self._errors as exc:
            if not isinstance(exc, redis_link.RedisSkipped):  # (a skip was said when Redis failed)
                log.warning("session %s not read from Redis: %s", session_id[:8], exc)
            return None
        if raw is None or raw == ENDED:
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    async def ended(self, session_ids: list[str]) -> set[str] | None:
        """Of `session_ids`, those whose record is a tombstone (ended through another replica): one MGET
        on a worker thread, through the breaker; None while Redis cannot say (asked again later)."""
        if not session_ids:
            return set()
        try:
            raws = await self.breaker.call(self._redis.mget, [REDIS_PREFIX + sid for sid in session_ids])
        except self._errors as exc:
            if not isinstance(exc, redis_link.RedisSkipped):
                log.warning("ended sessions not read from Redis: %s", exc)
            return None
        return {sid for sid, raw in zip(session_ids, raws, strict=False) if raw == ENDED}

    def delete(self, session_id: str) -> None:
        """The session ended: its record becomes a tombstone that expires after the idle timeout."""
        with self._unsent_lock:
            if len(self._ending) < self.MAX_PENDING:
                self._ending.add(session_id)
        self._write((session_id, True, lambda: self._redis.set(REDIS_PREFIX + session_id, ENDED, ex=self._ttl())))

    def purge(self, idle_timeout: float) -> None:
        self.idle_timeout = idle_timeout  # Redis expires records itself

    def close(self) -> None:
        self._writes.close(FLUSH_LIMIT)
        with contextlib.suppress(*self._errors):
            self._redis.close()


class RecordWrites(OrderedWriter[Write]):
    """`RedisSessions`' writer thread: its writes in the order made, and the writes Redis missed (kept by the
    store, the latest per session) tried again every `RESEND_EVERY` seconds, before a flush is answered, and
    once more as it ends."""

    retry_every = RESEND_EVERY

    def __init__(self, store: RedisSessions) -> None:
        super().__init__("onemcp-session-writes", "a session record", "Redis", log, store.MAX_PENDING)
        self.store = store

    def do(self, job: Write) -> None:
        self.store._do(job)

    def kept(self) -> bool:
        return bool(self.store._unsent)

    def retry(self) -> None:
        self.store._resend()

    def finish(self) -> None:
        self.store._last_try()


def open_store(setting: str | None, directory: Path | None, idle_timeout: float) -> SessionRecords:
    """The store `onemcp.sessionStore` names: "sqlite" (default: beside the config), "off", or a redis:// URL."""
    if setting == "off":
        return SavedSessions(None)
    if setting is not None and setting.startswith(REDIS_SCHEMES):
        return RedisSessions(setting, idle_timeout)
    return SavedSessions(directory)
