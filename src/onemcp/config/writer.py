"""One thread of its own doing writes nobody waits for, in the order they were put: the shape the SQLite
store writer (`config.sqlite.Writer`), the Redis writer (`config.redis_link.Writer`) and the session
records' writer (`hub.saved.RecordWrites`) share.

Boundary: owns the thread, the queue and its order, `flush` and `close`; not what a write is or how it
fails (a subclass's `do`, and its `finish` when the thread ends). `put` never blocks: past `limit`
waiting, the write is dropped and said. `flush` waits off the event loop for the writes put so far (for
what someone else must be able to read before an answer goes out; at once when none is outstanding);
`close` for those still waiting, up to a deadline, then leaves them to the thread (a daemon: the process
may end first), and a write put after it goes to a new thread, which begins once that one is done.
A subclass that keeps the writes its store missed, to do them again (`kept`, `retry`), has them retried
on the thread every `retry_every` seconds while it waits for writes, and before a `flush` is answered.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from typing import Generic, TypeVar

import anyio.to_thread

J = TypeVar("J")


class OrderedWriter(Generic[J]):
    """Writes (`J`, done by `do`) in the order put, on a thread named `name`; `what` and `where` say in
    a log line what was not written where."""

    retry_every = 1.0  # seconds between tries of the kept writes (`retry`) while no write comes

    def __init__(self, name: str, what: str, where: str, log: logging.Logger, limit: int) -> None:
        self.name, self.what, self.where, self.log = name, what, where, log
        self._limit = limit
        # the current thread's queue, and its stop (`close`: end once the queue is empty); each thread has its
        # own: one that `close` gave up on drains its own, and the next begins once it is done (`_run`)
        self._jobs: queue.Queue[J | threading.Event | None] = queue.Queue(limit)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._before: threading.Thread | None = None  # the thread `close` gave up on last: the next waits for it
        self._outstanding = 0  # writes put and not yet done (or dropped): `flush` waits for none when 0
        self._lock = threading.Lock()

    def do(self, job: J) -> None:
        """Write `job` on the writer's thread; what it raises is said, and the next write goes on."""
        raise NotImplementedError

    def finish(self) -> None:
        """The thread ends (`close`): let go of what `do` holds (the thread's own: a thread `close` gave up on
        may end while the next one writes)."""

    def kept(self) -> bool:
        """Whether writes the store missed are kept to be done again (`retry`); none by default."""
        return False

    def retry(self) -> None:
        """On the thread: the kept writes, again (while idle, every `retry_every` seconds, and before a `flush`
        is answered)."""

    def _retry(self) -> None:
        try:
            self.retry()
        except Exception:  # the thread's boundary, as for `do`
            self.log.exception("%s not written to %s: an internal error", self.what, self.where)

    def put(self, job: J) -> None:
        self._enqueue(job)

    def _enqueue(self, job: J | threading.Event) -> None:
        with self._lock:  # (held while put: `close` never swaps the queue between the two)
            if self._thread is None:
                before = self._before
                self._jobs, self._stop = queue.Queue(self._limit), threading.Event()
                args = (self._jobs, self._stop, before)
                self._thread = threading.Thread(target=self._run, args=args, name=self.name, daemon=True)
                self._thread.start()
            try:
                self._jobs.put_nowait(job)
            except queue.Full:
                self.log.warning("%s not written to %s: %d writes already wait", self.what, self.where, self._limit)
                return
            if not isinstance(job, threading.Event):
                self._outstanding += 1

    def _run(
        self, jobs: queue.Queue[J | threading.Event | None], stop: threading.Event, before: threading.Thread | None
    ) -> None:
        if before is not None:
            before.join()  # the writes put before `close`, first (it ends once its queue is empty)
        try:
            while not (stop.is_set() and jobs.empty()):
                try:
                    job = jobs.get(timeout=self.retry_every if self.kept() else None)
                except queue.Empty:
                    self._retry()
                    continue
                if job is None:  # (`close`'s wake-up: the loop ends once the queue is empty)
                    continue
                if isinstance(job, threading.Event):  # a `flush`: the writes before it are done, or tried again
                    if self.kept():
                        self._retry()
                    job.set()
                    continue
                try:
                    self.do(job)
                except Exception:  # the thread's boundary: said, and the next write goes on
                    self.log.exception("%s not written to %s: an internal error", self.what, self.where)
                finally:
                    with self._lock:
                        self._outstanding -= 1
        finally:
            self.finish()

    async def flush(self, wait: float) -> bool:
        """Wait, on a worker thread, up to `wait` seconds for the writes put so far (and a try of those kept);
        False if they still wait."""
        thread = self._thread
        if thread is None or not thread.is_alive() or not (self._outstanding or self.kept()):
            return True
        done = threading.Event()
        self._enqueue(done)
        return await anyio.to_thread.run_sync(done.wait, wait)

    def close(self, wait: float) -> bool:
        """Stop after the writes already put, waiting up to `wait` seconds; False if some still wait (left to
        the thread). A `put` after this starts a new thread, which begins once this one is done."""
        with self._lock:
            thread, stop, jobs, self._thread = self._thread, self._stop, self._jobs, None
            if thread is not None:
                self._before = thread
        if thread is None:
            return True
        stop.set()
        with contextlib.suppress(queue.Full):  # (full: the thread sees `stop` once it has emptied the queue)
            jobs.put_nowait(None)  # wakes a thread waiting for a write
        thread.join(wait)
        return not thread.is_alive()
