"""Opening the hub's SQLite stores (API keys, OAuth grants, upstream credentials) for many writers.

Owns the one way a store file is opened: created private (0600) before the first byte, WAL
journal, a busy timeout so a writer waits for another instead of failing, and a set-up (the
journal switch and the schema) retried while another process holds the file. The CLI and a
running hub, or two CLI commands at once on a fresh config dir, both write the same files:
SQLite answers "database is locked" at once in the set-up steps, where the busy handler does
not apply (switching the journal mode, a schema read racing a schema write), so those are
retried here up to `BUSY_SECONDS`. Does not own any schema: each store passes its own.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import time
from pathlib import Path

BUSY_SECONDS = 30.0


def open_store(path: Path | str, schema: str = "", *, wal: bool = True) -> sqlite3.Connection:
    """A connection (autocommit, usable from any thread) with `schema` applied; ":memory:" works too."""
    memory = str(path) == ":memory:"
    if not memory:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            with contextlib.suppress(FileExistsError):  # another process made it just now
                os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # private from the first byte
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        db = sqlite3.connect(str(path), timeout=BUSY_SECONDS, check_same_thread=False, isolation_level=None)
        try:
            db.execute(f"pragma busy_timeout={int(BUSY_SECONDS * 1000)}")
            if wal and not memory:
                db.execute("pragma journal_mode=wal")
                db.execute("pragma synchronous=normal")
            if schema:
                db.executescript(schema)
            return db
        except sqlite3.OperationalError as exc:
            db.close()
            if not _busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))  # another writer is setting up the same file


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text
