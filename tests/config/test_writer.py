"""The ordered writer thread both store writers share: the order kept, a failing write said and the next
done, past its limit a write dropped and said, `flush` and `close` waiting for what was put before them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import anyio
import anyio.to_thread
import pytest

from onemcp.config.writer import OrderedWriter

pytestmark = pytest.mark.anyio
log = logging.getLogger("onemcp.test.writer")


class Calls(OrderedWriter[Callable[[], object]]):
    """Each write a callable, called on the writer's thread."""

    def __init__(self, limit: int = 100) -> None:
        super().__init__("onemcp-test-writer", "a test write", "the test", log, limit)
        self.finished = 0

    def do(self, job: Callable[[], object]) -> None:
        job()

    def finish(self) -> None:
        self.finished += 1


def broken() -> None:
    raise TypeError("a bug")


def test_writes_are_done_in_order_and_one_that_raises_is_said(caplog: pytest.LogCaptureFixture) -> None:
    writer, done, names = Calls(), list[int](), set[str]()

    def write(n: int) -> Callable[[], None]:
        def job() -> None:
            done.append(n)
            names.add(threading.current_thread().name)

        return job

    with caplog.at_level(logging.WARNING, logger=log.name):
        for job in (write(1), broken, write(2), write(3)):
            writer.put(job)
        assert writer.close(30)
    assert done == [1, 2, 3] and names == {"onemcp-test-writer"} and writer.finished == 1
    assert "a test write not written to the test: an internal error" in caplog.text and "TypeError" in caplog.text


async def test_flush_and_close_wait_for_what_was_put_before_them(caplog: pytest.LogCaptureFixture) -> None:
    writer = Calls(limit=2)
    assert await writer.flush(0) and writer.close(0)  # nothing ever put: no thread, nothing to wait for
    started, release = threading.Event(), threading.Event()
    done: list[int] = []

    def slow() -> None:
        started.set()
        release.wait(30)
        done.append(1)

    writer.put(slow)
    await anyio.to_thread.run_sync(started.wait, 30)
    assert not await writer.flush(0.01)  # still writing (its marker waits in the queue: 1 of 2)
    with caplog.at_level(logging.WARNING, logger=log.name):
        writer.put(lambda: done.append(2))
        writer.put(lambda: done.append(3))  # the queue is full: dropped, said
    assert "a test write not written to the test: 2 writes already wait" in caplog.text
    assert not writer.close(0.01)  # the slow write still holds the thread: left to it
    release.set()
    with anyio.fail_after(30):
        while writer.finished == 0:
            await anyio.sleep(0.001)  # allowed-sleep: polling with a deadline (the thread ends on its own)
    assert done == [1, 2]


async def test_a_write_put_after_a_close_that_timed_out_waits_its_turn_behind_the_old_thread() -> None:
    """`close` gave up on a thread still writing (another process's lock); a write put after it starts a
    thread of its own, which begins once the old one is done. It shared the old thread's queue: the new
    thread took the old one's queued writes alongside it (two at once), and its stop marker."""
    writer = Calls()
    started, release = threading.Event(), threading.Event()
    done: list[str] = []
    concurrent: list[str] = []
    busy = threading.Lock()

    def write(name: str, hold: bool = False) -> Callable[[], None]:
        def job() -> None:
            if not busy.acquire(blocking=False):
                concurrent.append(name)
                busy.acquire()
            try:
                if hold:
                    started.set()
                    release.wait(30)
                done.append(name)
            finally:
                busy.release()

        return job

    writer.put(write("old 1", hold=True))
    writer.put(write("old 2"))
    await anyio.to_thread.run_sync(started.wait, 30)
    assert not writer.close(0.01)  # the first still holds the old thread
    writer.put(write("new 1"))
    writer.put(write("new 2"))
    release.set()
    with anyio.fail_after(30):
        while len(done) < 4 or writer.finished < 1:
            await anyio.sleep(0.001)  # allowed-sleep: polling with a deadline (the old thread ends on its own)
    assert done == ["old 1", "old 2", "new 1", "new 2"] and concurrent == []
    assert await writer.flush(30)  # the new thread runs on: it took no stop marker of the old one's
    assert writer.close(30) and writer.finished == 2


async def test_flush_with_nothing_outstanding_asks_no_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush on a path asked often (/health waits for the authorization links written so far) costs a
    worker thread only while a write is outstanding."""
    writer = Calls()
    writer.put(lambda: None)
    assert await writer.flush(30)

    async def no_thread(*args: object, **kwargs: object) -> bool:
        raise AssertionError("a worker thread asked for with nothing to wait for")

    monkeypatch.setattr(anyio.to_thread, "run_sync", no_thread)
    assert await writer.flush(30)
    writer.close(30)


class Keeping(Calls):
    """Keeps the writes its store missed (they raise `OSError` while `down` is set), to do them again."""

    retry_every = 0.01

    def __init__(self) -> None:
        super().__init__()
        self.down = threading.Event()
        self.missed: list[Callable[[], object]] = []

    def do(self, job: Callable[[], object]) -> None:
        self.missed.append(job)
        self.retry()

    def kept(self) -> bool:
        return bool(self.missed)

    def retry(self) -> None:
        while self.missed and not self.down.is_set():
            self.missed.pop(0)()


async def test_kept_writes_are_tried_again_while_idle_and_before_a_flush_is_answered() -> None:
    """The session records' writer (hub.saved) keeps what Redis missed: with nothing outstanding, a flush
    still waits for a try of those (the store may answer again), and the thread tries them while idle."""
    writer, done = Keeping(), list[int]()
    writer.down.set()
    writer.put(lambda: done.append(1))
    assert await writer.flush(30) and done == [] and writer.kept()  # tried: the store is down
    writer.down.clear()
    assert await writer.flush(30) and done == [1]  # nothing outstanding, one kept: tried before the answer
    writer.down.set()
    landed = threading.Event()

    def second() -> None:
        done.append(2)
        landed.set()

    writer.put(second)
    assert await writer.flush(30) and done == [1]
    writer.down.clear()
    assert await anyio.to_thread.run_sync(landed.wait, 30)  # no write, no flush: the idle thread's try
    assert done == [1, 2] and not writer.kept()
    assert writer.close(30)
