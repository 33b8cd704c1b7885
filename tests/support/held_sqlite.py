"""Another writer's lock on a SQLite store: what `onemcp auth key create`, `onemcp mcp approve` or a second
hub on the same config directory holds while it writes, held by the test for as long as it says.

Boundary: test support. `held_sqlite(path)` takes the file's write lock (BEGIN IMMEDIATE on a connection of
its own: SQLite's locks hold between connections of one process as between processes) and yields `release`,
called by the test once the event loop did other work meanwhile (and at the end, whatever happened).
`BUSY` is the busy timeout the tests give the stores (`config.sqlite.BUSY_SECONDS`), so that a store that
waits for the lock on the event loop gives up within seconds and the test fails, instead of hanging 30 s.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY = 2.0


@contextmanager
def held_sqlite(path: Path) -> Iterator[Callable[[], None]]:
    holder = sqlite3.connect(path, isolation_level=None, timeout=BUSY)
    holder.execute("begin immediate")

    def release() -> None:
        if holder.in_transaction:
            holder.execute("rollback")

    try:
        yield release
    finally:
        release()
        holder.close()
