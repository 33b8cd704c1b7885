"""Sessions that survive a restart: what a legacy session needs to go on, in a store outside the process.

Owns the two stores behind one interface (`SessionRecords`): the embedded default, one SQLite file
(`sessions.db` beside mcp.json, owner-only), and Redis (`onemcp.sessionStore: "redis://..."`),
which hub replicas share so any of them continues any session. Per session id, a JSON record
of what the session was made with and has since changed (the principal it belongs to, the entry
and view it came through, its template context, protocol version, client info and capabilities,
log level, resource subscriptions) and when it was last seen. Written when one of those changes
and, for the last-seen times, in one batch per expiry round; never on the call path. A record
older than the idle timeout is not revived and is purged. The hub rebuilds a `Session` from a
record (`Hub.revive_session`); this module only stores and reads. Does not store credentials.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from onemcp.config.model import REDIS_SCHEMES

log = logging.getLogger("onemcp.sessions")
FILE = "sessions.db"
REDIS_PREFIX = "onemcp:session:"


class SessionRecords(Protocol):
    @property
    def enabled(self) -> bool: ...
    def save(self, session_id: str, doc: dict[str, Any]) -> None: ...
    def seen(self, session_ids: Iterable[str]) -> None: ...
    def load(self, session_id: str, idle_timeout: float) -> dict[str, Any] | None: ...
    def delete(self, session_id: str) -> None: ...
    def purge(self, idle_timeout: float) -> None: ...
    def close(self) -> None: ...


class SavedSessions:
    def __init__(self, directory: Path | None) -> None:
        self._db: sqlite3.Connection | None = None
        self._path = directory / FILE if directory is not None else None
        self._broken = directory is not None and directory.exists() and not directory.is_dir()

    def _open(self, create: bool) -> sqlite3.Connection | None:
        """The database, opened on first use (made by the first save: a hub nobody used writes no file)."""
        if self._db is not None or self._path is None or self._broken:
            return self._db
        if not create and not self._path.exists():
            return None
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=5)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, seen REAL, doc TEXT)")
        except (OSError, sqlite3.Error) as exc:
            log.warning("sessions will not survive a restart: cannot use %s: %s", self._path, exc)
            self._broken = True
            self._db = None
        return self._db

    @property
    def enabled(self) -> bool:
        return self._path is not None and not self._broken

    def save(self, session_id: str, doc: dict[str, Any]) -> None:
        db = self._open(create=True)
        if db is None:
            return
        try:
            db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?)", (session_id, time.time(), json.dumps(doc)))
        except sqlite3.Error as exc:
            log.warning("session %s not saved: %s", session_id[:8], exc)

    def seen(self, session_ids: Iterable[str]) -> None:
        """These sessions were used lately (one transaction for all)."""
        db = self._open(create=False)
        if db is None:
            return
        now = time.time()
        try:
            with db:
                db.execute("BEGIN")
                db.executemany("UPDATE sessions SET seen = ? WHERE id = ?", [(now, sid) for sid in session_ids])
        except sqlite3.Error as exc:
            log.warning("session times not saved: %s", exc)

    def load(self, session_id: str, idle_timeout: float) -> dict[str, Any] | None:
        """The record of a session seen within `idle_timeout` seconds, else None."""
        db = self._open(create=False)
        if db is None:
            return None
        try:
            row = db.execute("SELECT seen, doc FROM sessions WHERE id = ?", (session_id,)).fetchone()
        except sqlite3.Error:
            return None
        if row is None or time.time() - float(row[0]) > idle_timeout:
            return None
        try:
            doc = json.loads(row[1])
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def delete(self, session_id: str) -> None:
        db = self._open(create=False)
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    def purge(self, idle_timeout: float) -> None:
        db = self._open(create=False)
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.execute("DELETE FROM sessions WHERE seen < ?", (time.time() - idle_timeout,))

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None


class RedisSessions:
    """Session records in Redis, shared by every replica; Redis expires a record after the idle timeout.

    Calls are short (a key each, a 1 s socket deadline) and happen only when a session is made, changes,
    or once per expiry round; a Redis that does not answer costs that session its survival, never a call.
    """

    def __init__(self, url: str, idle_timeout: float) -> None:
        import redis

        self.idle_timeout = idle_timeout
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._redis: Any = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)

    @property
    def enabled(self) -> bool:
        return True

    def _ttl(self) -> int:
        return max(1, int(self.idle_timeout + 0.999))

    def save(self, session_id: str, doc: dict[str, Any]) -> None:
        try:
            self._redis.set(REDIS_PREFIX + session_id, json.dumps(doc), ex=self._ttl())
        except self._errors as exc:
            log.warning("session %s not saved in Redis: %s", session_id[:8], exc)

    def seen(self, session_ids: Iterable[str]) -> None:
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for sid in session_ids:
                    pipe.expire(REDIS_PREFIX + sid, self._ttl())
                pipe.execute()
        except self._errors as exc:
            log.warning("session times not saved in Redis: %s", exc)

    def load(self, session_id: str, idle_timeout: float) -> dict[str, Any] | None:
        try:
            raw = self._redis.get(REDIS_PREFIX + session_id)
        except self._errors as exc:
            log.warning("session %s not read from Redis: %s", session_id[:8], exc)
            return None
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def delete(self, session_id: str) -> None:
        with contextlib.suppress(*self._errors):
            self._redis.delete(REDIS_PREFIX + session_id)

    def purge(self, idle_timeout: float) -> None:
        self.idle_timeout = idle_timeout  # Redis expires records itself

    def close(self) -> None:
        with contextlib.suppress(*self._errors):
            self._redis.close()


def open_store(setting: str | None, directory: Path | None, idle_timeout: float) -> SessionRecords:
    """The store `onemcp.sessionStore` names: "sqlite" (default: beside the config), "off", or a redis:// URL."""
    if setting == "off":
        return SavedSessions(None)
    if setting is not None and setting.startswith(REDIS_SCHEMES):
        return RedisSessions(setting, idle_timeout)
    return SavedSessions(directory)
