"""Opening the hub's SQLite stores (API keys, OAuth grants, upstream credentials) for many writers.

Owns the one way a store file is opened: created private (0600) before the first byte, WAL
journal, a busy timeout so a writer waits for another instead of failing, and a set-up (the
journal switch and the schema) retried while another process holds the file. The CLI and a
running hub, or two CLI commands at once on a fresh config dir, both write the same files:
SQLite answers "database is locked" at once in the set-up steps, where the busy handler does
not apply (switching the journal mode, a schema read racing a schema write), so those are
retried here up to `BUSY_SECONDS`. Does not own any schema: each store passes its own.

Also owns `Writer`: writes nobody waits for (pins, saved sessions), done by one thread per file so
that a write waiting for another process's lock never stalls the hub's event loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from onemcp.config.writer import OrderedWriter

BUSY_SECONDS = 30.0
CLOSE_WAIT = 5.0  # seconds closing a `Writer` waits for the writes still queued


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


Job = Callable[[sqlite3.Connection], object]


class Writer(OrderedWriter[Job]):
    """Writes nobody waits for, to one store file, off the event loop: done in the order they were put
    (`put`: a callable given the connection) by one thread with a connection of its own, opened there.

    A write waits for another process's write lock (the CLI, a second hub on the config directory) up
    to `BUSY_SECONDS` on that thread, never on the event loop, and one writer per file keeps the order.
    A write that fails is logged (with `what`) and the next goes on; past `limit` waiting, one is dropped
    and said. `flush` waits (off the loop) for the writes put so far; `close` for those still waiting,
    up to `wait` seconds, then leaves them to the thread (a daemon: the process may end first).
    """

    def __init__(self, path: Path, schema: str, what: str, log: logging.Logger, limit: int = 10_000) -> None:
        super().__init__(f"onemcp-sqlite-{path.name}", what, str(path), log, limit)
        self.path, self.schema = path, schema
        self._mine = threading.local()  # the writer thread's connection (`db`): each thread its own

    def do(self, job: Job) -> None:
        try:
            db: sqlite3.Connection | None = getattr(self._mine, "db", None)
            if db is None:
                db = self._mine.db = open_store(self.path, self.schema)
            job(db)
        except (OSError, sqlite3.Error) as exc:
            self.log.warning("%s not written to %s: %s", self.what, self.path, exc)

    def finish(self) -> None:
        db: sqlite3.Connection | None = getattr(self._mine, "db", None)
        self._mine.db = None
        if db is not None:
            db.close()

    async def flush(self, wait: float = CLOSE_WAIT) -> bool:
        return await super().flush(wait)

    def close(self, wait: float = CLOSE_WAIT) -> bool:
        """Finish the writes still waiting (up to `wait` seconds), then close the connection."""
        closed = super().close(wait)
        if not closed:
            self.log.warning("%s: writes to %s still wait for its lock; left to finish", self.what, self.path)
        return closed
