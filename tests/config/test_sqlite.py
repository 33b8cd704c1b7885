"""SQLite stores under concurrent writers: many processes opening and writing one fresh file at once."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
import pytest

from onemcp.auth.keys import KeyStore
from onemcp.config.sqlite import Writer

PROCESSES = 8
ROUNDS = 12


def _create_key(directory: str, start: float, results: multiprocessing.Queue[str | None]) -> None:
    while time.time() < start:  # line the processes up so they open the fresh file together
        pass
    try:
        KeyStore(Path(directory) / "keys.db").create("k", ["mcp"])
        results.put(None)
    except Exception as exc:  # the parent reports it
        results.put(repr(exc))


def test_concurrent_key_creation_on_a_fresh_config_dir_never_fails() -> None:
    """`onemcp auth key create` run several times at once on a new config dir (was ~15% 'database is locked')."""
    context = multiprocessing.get_context("fork")
    errors: list[str] = []
    created = 0
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory() as directory:
            results: multiprocessing.Queue[str | None] = context.Queue()
            start = time.time() + 0.3
            workers = [context.Process(target=_create_key, args=(directory, start, results)) for _ in range(PROCESSES)]
            for worker in workers:
                worker.start()
            outcomes = [results.get(timeout=60) for _ in workers]
            for worker in workers:
                worker.join(timeout=60)
            errors += [o for o in outcomes if o is not None]
            created += len(KeyStore(Path(directory) / "keys.db").list())
    assert errors == []
    assert created == PROCESSES * ROUNDS


def test_a_writer_writes_in_order_on_its_own_thread_and_a_failed_write_stops_none_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("onemcp.test")
    writer = Writer(tmp_path / "w.db", "create table if not exists t (n integer)", "numbers", log)
    threads: set[str] = set()

    def insert(n: int) -> Callable[[sqlite3.Connection], None]:
        def job(db: sqlite3.Connection) -> None:
            threads.add(threading.current_thread().name)
            db.execute("insert into t values (?)", (n,))

        return job

    with caplog.at_level(logging.WARNING, logger="onemcp.test"):
        writer.put(insert(1))
        writer.put(lambda db: db.execute("insert into missing values (1)"))  # fails: said, and the next goes on
        writer.put(insert(2))
        writer.close()
    assert "numbers not written to" in caplog.text and "no such table: missing" in caplog.text
    assert threads == {"onemcp-sqlite-w.db"}
    with contextlib.closing(sqlite3.connect(tmp_path / "w.db")) as db:
        assert [n for (n,) in db.execute("select n from t order by rowid")] == [1, 2]


@pytest.mark.anyio
async def test_a_write_after_a_close_that_timed_out_leaves_the_old_threads_connection_be(tmp_path: Path) -> None:
    """`close` gave up on a thread still writing (another process's lock); a write put after it starts a new
    thread. That one took the old thread's stop marker, ended at once, and closed the connection the old
    thread was writing with (one `self._db`): the held write was lost."""
    log = logging.getLogger("onemcp.test")
    writer = Writer(tmp_path / "w.db", "create table if not exists t (n integer)", "numbers", log)
    started, release = threading.Event(), threading.Event()

    def held(db: sqlite3.Connection) -> None:
        started.set()
        release.wait(30)
        db.execute("insert into t values (1)")

    writer.put(held)
    await anyio.to_thread.run_sync(started.wait, 30)
    assert not writer.close(0.01)
    writer.put(lambda db: db.execute("insert into t values (2)"))
    release.set()
    assert writer.close(30)
    with contextlib.closing(sqlite3.connect(tmp_path / "w.db")) as db:
        assert [n for (n,) in db.execute("select n from t order by rowid")] == [1, 2]
