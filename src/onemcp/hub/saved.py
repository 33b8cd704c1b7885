"""Sessions that survive a restart: what a legacy session needs to go on, saved beside the config.

Owns one SQLite file (`sessions.db` beside mcp.json, owner-only): per session id, a JSON record
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
from typing import Any

log = logging.getLogger("onemcp.sessions")
FILE = "sessions.db"


class SavedSessions:
    def __init__(self, directory: Path | None) -> None:
        self._db: sqlite3.Connection | None = None
        if directory is None:
            return
        path = directory / FILE
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, seen REAL, doc TEXT)")
        except (OSError, sqlite3.Error) as exc:
            log.warning("sessions will not survive a restart: cannot use %s: %s", path, exc)
            self._db = None

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def save(self, session_id: str, doc: dict[str, Any]) -> None:
        if self._db is None:
            return
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?)", (session_id, time.time(), json.dumps(doc))
            )
        except sqlite3.Error as exc:
            log.warning("session %s not saved: %s", session_id[:8], exc)

    def seen(self, session_ids: Iterable[str]) -> None:
        """These sessions were used lately (one transaction for all)."""
        if self._db is None:
            return
        now = time.time()
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("UPDATE sessions SET seen = ? WHERE id = ?", [(now, sid) for sid in session_ids])
        except sqlite3.Error as exc:
            log.warning("session times not saved: %s", exc)

    def load(self, session_id: str, idle_timeout: float) -> dict[str, Any] | None:
        """The record of a session seen within `idle_timeout` seconds, else None."""
        if self._db is None:
            return None
        try:
            row = self._db.execute("SELECT seen, doc FROM sessions WHERE id = ?", (session_id,)).fetchone()
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
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    def purge(self, idle_timeout: float) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("DELETE FROM sessions WHERE seen < ?", (time.time() - idle_timeout,))

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
