"""The saved-session file: records by id, idle expiry, purge, owner-only, and a hub that cannot write one."""

from __future__ import annotations

import logging
import stat
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from onemcp.auth.gate import RateLimiter
from onemcp.config import sqlite as sqlite_module
from onemcp.config.redis_link import Breaker
from onemcp.hub import saved as saved_module
from onemcp.hub.saved import FILE, RedisSessions, SavedSessions
from support.held_redis import held_redis
from support.held_sqlite import BUSY, held_sqlite
from support.services import NEEDS_REDIS, redis_server

pytestmark = pytest.mark.anyio


async def test_save_load_delete_and_expiry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = SavedSessions(tmp_path)
    assert saved.enabled and not (tmp_path / FILE).exists()  # made by the first save, not before
    assert await saved.load("a" * 32, idle_timeout=60) is None and not (tmp_path / FILE).exists()
    saved.save("a" * 32, {"principal": "anonymous mcp", "logLevel": "debug"})
    assert await saved.load("a" * 32, idle_timeout=60) == {"principal": "anonymous mcp", "logLevel": "debug"}
    assert stat.S_IMODE((tmp_path / FILE).stat().st_mode) == 0o600
    assert await saved.load("b" * 32, idle_timeout=60) is None
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    assert await saved.load("a" * 32, idle_timeout=60) is None  # idle longer than the timeout: not revived
    saved.seen(["a" * 32])  # ...unless it was seen lately
    assert await saved.load("a" * 32, idle_timeout=60) is not None
    saved.delete("a" * 32)
    assert await saved.load("a" * 32, idle_timeout=60) is None
    saved.close()


async def test_purge_drops_only_the_idle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = SavedSessions(tmp_path)
    saved.save("old", {})
    later = time.time() + 100
    monkeypatch.setattr(time, "time", lambda: later)
    saved.save("new", {})
    saved.purge(idle_timeout=50)
    assert await saved.load("old", 1000) is None and await saved.load("new", 1000) == {}


async def test_without_a_usable_directory_nothing_is_saved(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    saved = SavedSessions(blocker)
    assert not saved.enabled
    saved.save("x", {})
    assert await saved.load("x", 60) is None
    assert not SavedSessions(None).enabled


async def test_a_record_written_while_another_process_holds_sessions_db_does_not_stall_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A session's record (written at `initialize`, `logging/setLevel`, a subscription; last-seen times each
    expiry round) was written on the event loop: while another process held sessions.db's lock the hub stood
    still up to 5 s for each, then dropped the record. The file's writer thread writes them now: the loop goes
    on (an unrelated request) while the write waits, and the record is there once the lock is free."""
    monkeypatch.setattr(sqlite_module, "BUSY_SECONDS", BUSY)
    saved = SavedSessions(tmp_path)
    saved.save("a" * 32, {})
    assert await saved.load("a" * 32, 60) == {}
    with held_sqlite(tmp_path / FILE) as release, caplog.at_level(logging.WARNING, logger="onemcp.sessions"):
        saved.save("b" * 32, {"principal": "anyone"})
        saved.seen(["a" * 32])
        assert await RateLimiter(60, 1).take("someone else") == 0  # the unrelated request, meanwhile
        release()
        assert await saved.load("b" * 32, 60) == {"principal": "anyone"}
    saved.close()
    assert "not" not in caplog.text


async def test_redis_records_are_read_and_written_off_the_event_loop() -> None:
    """A Redis that holds its answers: the loop goes on (an unrelated request) while a session is read
    and while its record is written; the record then comes from Redis."""
    with held_redis({"GET": b'$23\r\n{"principal": "anyone"}\r\n'}) as stub:
        store = RedisSessions(stub.url, 60)
        loaded: list[Any] = []

        async def revive() -> None:
            loaded.append(await store.load("a" * 32, 60))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(revive)
                await anyio.to_thread.run_sync(stub.received.wait)
                assert await RateLimiter(60, 1).take("someone else") == 0  # the unrelated request, meanwhile
                assert not loaded  # still waiting on Redis
                stub.release.set()
            assert loaded == [{"principal": "anyone"}]
            stub.release.clear()
            stub.received.clear()
            store.save("a" * 32, {"principal": "anyone"})  # handed to the writer thread: returns at once
            store.delete("b" * 32)
            await anyio.to_thread.run_sync(stub.received.wait)
            flushed = anyio.Event()

            async def flush() -> None:
                await store.flush()
                flushed.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(flush)
                assert await RateLimiter(60, 1).take("someone else") == 0
                assert not flushed.is_set()  # the writes wait on Redis; the loop does not
                stub.release.set()
        assert stub.commands == ["GET", "EVAL", "SET"]  # in the order they were made (the end: a tombstone)
        store.close()


async def test_a_record_write_that_fails_unexpectedly_is_said_and_the_writer_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A write raising what no Redis raises (a bug): logged with its traceback, and the writer thread goes
    on with the next writes (it died: every later record queued for nobody, each flush waited its limit)."""
    store = RedisSessions("redis://127.0.0.1:1/0", 60)  # never asked: the writes below are the test's own
    done: list[str] = []

    def broken() -> None:
        raise TypeError("not a Redis failure")

    try:
        with anyio.fail_after(20):
            store._write(("a" * 32, False, broken))
            store._write(("b" * 32, False, lambda: done.append("b")))
            await store.flush()
        assert done == ["b"]
        assert "a session record not written to Redis: an internal error" in caplog.text and "TypeError" in caplog.text
    finally:
        store.close()


async def test_after_a_redis_failure_the_next_requests_do_not_wait_on_redis() -> None:
    """A Redis that failed: for a few seconds a revive is not tried (None at once) and writes are kept,
    without asking Redis (which would hold them), then Redis is asked again."""
    with held_redis({"GET": b"-ERR down\r\n"}) as stub:
        store = RedisSessions(stub.url, 60)
        stub.release.set()
        with anyio.fail_after(20):
            assert await store.load("a" * 32, 60) is None  # Redis failed: the breaker opens
            stub.release.clear()  # from now on an asked Redis would hold its answer
            assert store.breaker.open
            for _ in range(5):
                assert await store.load("a" * 32, 60) is None  # not asked: no wait
            store.save("a" * 32, {})
            await store.flush()
        assert stub.commands == ["GET"]
        later = time.monotonic() + 60
        store.breaker.clock = lambda: later  # the pause is over: the next read asks Redis again
        stub.release.set()
        with anyio.fail_after(20):
            assert await store.load("a" * 32, 60) is None  # (failed again: the kept write waits on)
        assert [c for c in stub.commands if c != "EVAL"] == ["GET", "GET"]  # (the writer may have tried it first)
        store.close()


@NEEDS_REDIS
async def test_a_record_written_while_redis_failed_is_written_once_it_answers() -> None:
    """A session's end (and a new session's record) made while the breaker skips Redis are kept and
    written once Redis answers: the ended session is not revived from its old record, here or on
    another replica, and the new one is found there."""
    with redis_server() as url:
        now = [0.0]
        store, other = RedisSessions(url, 60), RedisSessions(url, 60)
        store.breaker = Breaker(clock=lambda: now[0])
        with anyio.fail_after(20):
            store.save("a" * 32, {"principal": "anyone"})
            await store.flush()
            assert await other.load("a" * 32, 60) == {"principal": "anyone"}
            with pytest.raises(OSError):
                store.breaker.run(_fail)  # Redis failed: writes are skipped for the pause
            store.delete("a" * 32)  # the client ended it meanwhile
            store.save("b" * 32, {"principal": "someone"})  # and another began
            await store.flush()
            assert await store.load("a" * 32, 60) is None  # not revived here, even before Redis is asked
            assert await other.load("b" * 32, 60) is None  # not written yet
            now[0] = 60.0  # the pause is over: the next write (here the flush) writes what was kept
            await store.flush()
            assert await other.load("a" * 32, 60) is None  # a tombstone: ended on every replica
            assert await other.load("b" * 32, 60) == {"principal": "someone"}
        store.close()
        other.close()


def _fail() -> None:
    raise OSError("Redis did not answer")


@NEEDS_REDIS
async def test_closing_tries_once_more_the_writes_redis_missed() -> None:
    """A hub stopping (a rolling restart) right after Redis came back lost the writes it had kept."""
    with redis_server() as url:
        now = [0.0]
        store, other = RedisSessions(url, 60), RedisSessions(url, 60)
        store.breaker = Breaker(clock=lambda: now[0])
        with anyio.fail_after(20):
            store.save("a" * 32, {"principal": "anyone"})
            await store.flush()
            with pytest.raises(OSError):
                store.breaker.run(_fail)
            store.delete("a" * 32)
            await store.flush()
            now[0] = 60.0  # Redis answers again; the hub stops before the writer tried it
            await anyio.to_thread.run_sync(store.close)
            assert await other.load("a" * 32, 60) is None
        other.close()


async def test_a_flush_whose_writes_do_not_land_in_time_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`flush` (what an initialize or a DELETE waits for before its answer) gives up after its limit, and
    says that the other replicas may not see the session's record yet."""

    store = RedisSessions("redis://127.0.0.1:1/0", 60)  # never asked: the write below is the test's own
    started, release = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(30)

    try:
        with anyio.fail_after(20):
            store._write(("a" * 32, False, slow))
            await anyio.to_thread.run_sync(started.wait, 30)
            monkeypatch.setattr(saved_module, "FLUSH_LIMIT", 0.01)
            await store.flush()
            assert "session records not in Redis after" in caplog.text
            release.set()
            caplog.clear()
            monkeypatch.setattr(saved_module, "FLUSH_LIMIT", 30.0)
            await store.flush()
            assert "not in Redis" not in caplog.text
    finally:
        release.set()
        store.close()
