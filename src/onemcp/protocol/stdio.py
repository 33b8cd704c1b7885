"""This process's own stdin/stdout as a line reader and a line writer, for newline-delimited JSON-RPC.

Owns the blocking-pipe plumbing that `serve --transport stdio` and `proxy` share: each read and
write runs in a worker thread (pipes cannot be awaited portably), a read blocked on an idle pipe
is abandoned on cancellation so shutdown is never held up, and every write is flushed at once.
Also how such a session ends other than by end of input: `Input.stop()` ends the reading as EOF
does, and `until_terminated` calls it on SIGTERM or SIGHUP (what a client, a supervisor or a closing
terminal sends), so a signal takes the same graceful path (in-flight requests answered, upstreams
or the hub session closed) instead of killing the process. Serialising writes and framing
messages is the caller's.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from anyio.abc import TaskStatus

from onemcp.protocol.jsonrpc import RequestId, request_id

ReadLine = Callable[[], Awaitable[bytes]]  # b"" at end of input
Write = Callable[[bytes], Awaitable[None]]


DRAIN_CHUNK = 1 << 20  # an oversize line's rest is read (and dropped) this much at a time


class LineTooLong(ValueError):
    """A line longer than the reader's limit: it was read to its end and dropped, never held. `id`: the
    request's, when the line's first bytes give it (`jsonrpc.request_id`): its client waits on that id."""

    def __init__(self, message: str, rid: RequestId | None = None) -> None:
        super().__init__(message)
        self.id = rid


def std_streams(limit: int | None = None) -> tuple[ReadLine, Write]:
    """stdin's lines (each at most `limit` bytes: a longer one raises LineTooLong) and stdout."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    def read_bounded() -> bytes:
        line = stdin.readline(-1 if limit is None else limit + 1)
        if limit is None or len(line) <= limit or line.endswith(b"\n"):
            return line
        size, rid = len(line), request_id(line)
        while (rest := stdin.readline(DRAIN_CHUNK)) and not rest.endswith(b"\n"):
            size += len(rest)
        raise LineTooLong(f"a message of {size + len(rest)} bytes or more; at most {limit} are read", rid)

    async def read_line() -> bytes:
        return await anyio.to_thread.run_sync(read_bounded, abandon_on_cancel=True)

    def write_flush(data: bytes) -> None:
        stdout.write(data)
        stdout.flush()

    async def write(data: bytes) -> None:
        await anyio.to_thread.run_sync(write_flush, data)

    return read_line, write


async def each_line(
    read_line: ReadLine, refuse: Callable[[str, RequestId | None], Awaitable[None]]
) -> AsyncIterator[bytes]:
    """The non-blank lines until end of input; a line over the limit is `refuse`d (with why, under its
    request's id when its head gives one: else its client would wait for an answer forever), not read."""
    while True:
        try:
            line = await read_line()
        except LineTooLong as exc:
            await refuse(str(exc), exc.id)
            continue
        if not line:
            return
        if line.strip():
            yield line


class Input:
    """A line reader that `stop()` ends as end of input does: a read blocked on the pipe is abandoned
    (a line that arrives after `stop()` is not read)."""

    def __init__(self, read_line: ReadLine) -> None:
        self._read_line = read_line
        self._stopped = False
        self._reading: anyio.CancelScope | None = None  # made in the event loop, by the read

    def stop(self) -> None:
        self._stopped = True
        if self._reading is not None:
            self._reading.cancel()

    async def __call__(self) -> bytes:
        if not self._stopped:
            with anyio.CancelScope() as self._reading:
                return await self._read_line()
        return b""


TERMINATING = (signal.SIGTERM, signal.SIGHUP) if os.name == "posix" else ()


async def until_terminated(run: Callable[[], Awaitable[None]], stop: Callable[[], None]) -> int | None:
    """`run()` a stdio session, with SIGTERM and SIGHUP as its graceful end: the first calls `stop`
    (the session ends as at end of input), a second cancels `run` (no more waiting). Returns the exit
    status a signal calls for (128 + its number, as a shell reports it), else None."""
    signalled: list[int] = []
    async with anyio.create_task_group() as tg:

        async def watch(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            with anyio.open_signal_receiver(*TERMINATING) as signals:
                task_status.started()
                async for signum in signals:
                    if signalled:
                        tg.cancel_scope.cancel()
                        return
                    signalled.append(int(signum))
                    stop()

        if TERMINATING:  # not posix: the default actions stay
            await tg.start(watch)
        await run()
        tg.cancel_scope.cancel()
    return 128 + signalled[0] if signalled else None
