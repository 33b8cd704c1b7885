"""The embedding cache on disk: a tool text's hash -> its vector, in a SQLite file.

Owns the file (`embeddings.sqlite3` in the search cache directory), its modes (write-ahead log,
synced at checkpoints) and what is trusted from it: a row of the wrong length or with a value that
is not finite is left out, so that text is encoded again and its row replaced. Never waits long on
a file another process holds (LOCK_WAIT), never fails a search: a cache that cannot be opened,
read or written is logged once per kind and the index works from memory. Keys are made by the
index (hash and model); this module does not know what they mean.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger("onemcp.search")
LOCK_WAIT = 0.05  # seconds the embedding cache waits for a lock another process holds


def _finite(vector: bytes) -> bool:
    """Are the float32 values all finite? A NaN or an infinity would keep that tool out of every ranking."""
    import numpy as np

    return bool(np.isfinite(np.frombuffer(vector, dtype=np.float32)).all())


class EmbeddingCache:
    """hash -> vector, in a SQLite file (None: memory only)."""

    def __init__(self, directory: Path | None) -> None:
        self._db: sqlite3.Connection | None = None
        self._warned: set[str] = set()
        if directory is None:
            return
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # read and written on the event loop: a file another process holds locked is skipped at
            # once (vectors encoded again, or not kept), never waited on for sqlite's default 5 s
            # opened where the index is built (a worker thread, in the hub), used where it is kept: one at a time
            self._db = sqlite3.connect(
                directory / "embeddings.sqlite3", isolation_level=None, timeout=LOCK_WAIT, check_same_thread=False
            )
            self._db.execute("PRAGMA cache_size = -256")  # KiB: vectors are read once, kept in memory above
            with contextlib.suppress(sqlite3.Error):  # a read-only file keeps its mode, and is still read
                # a write-ahead log, synced at checkpoints only: a batch's commit on the loop takes ~0.2 ms,
                # not a 10-25 ms fsync; a crash loses at most the last vectors (encoded again), never the file
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        except (OSError, sqlite3.Error) as exc:
            log.warning("tool search: no embedding cache on disk (%s): %s", directory, exc)
            self._db = None

    def get(self, keys: Sequence[str], dims: int) -> dict[str, bytes]:
        """The cached vectors of `keys` that are `dims` float32 values (a row of another length, from
        a damaged or foreign file, is left out: that text is encoded again and its row replaced)."""
        if self._db is None or not keys:
            return {}
        found: dict[str, bytes] = {}
        damaged = 0
        try:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk)
                for key, vector in rows:
                    if isinstance(vector, bytes) and len(vector) == 4 * dims and _finite(vector):
                        found[str(key)] = vector
                    else:
                        damaged += 1
        except sqlite3.Error as exc:
            self._warn("unreadable", exc)
        if damaged:
            self._warn("damaged", f"{damaged} vector(s) of the wrong size or not finite, encoded again")
        return found

    def put(self, items: Mapping[str, bytes]) -> None:
        if self._db is None or not items:
            return
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", list(items.items()))
        except sqlite3.Error as exc:
            self._warn("not written", exc)

    def _warn(self, what: str, why: object) -> None:
        """Log a cache problem once per kind (a locked or read-only file fails every batch alike)."""
        if what not in self._warned:
            self._warned.add(what)
            log.warning("tool search: embedding cache %s: %s", what, why)

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
