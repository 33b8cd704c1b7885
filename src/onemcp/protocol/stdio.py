"""This process's own stdin/stdout as a line reader and a line writer, for newline-delimited JSON-RPC.

Owns the blocking-pipe plumbing that `serve --transport stdio` and `proxy` share: each read and
write runs in a worker thread (pipes cannot be awaited portably), a read blocked on an idle pipe
is abandoned on cancellation so shutdown is never held up, and every write is flushed at once.
Serialising writes and framing messages is the caller's.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio

ReadLine = Callable[[], Awaitable[bytes]]  # b"" at end of input
Write = Callable[[bytes], Awaitable[None]]


DRAIN_CHUNK = 1 << 20  # an oversize line's rest is read (and dropped) this much at a time


class LineTooLong(ValueError):
    """A line longer than the reader's limit: it was read to its end and dropped, never held."""


def std_streams(limit: int | None = None) -> tuple[ReadLine, Write]:
    """stdin's lines (each at most `limit` bytes: a longer one raises LineTooLong) and stdout."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    def read_bounded() -> bytes:
        line = stdin.readline(-1 if limit is None else limit + 1)
        if limit is None or len(line) <= limit or line.endswith(b"\n"):
            return line
        size = len(line)
        while (rest := stdin.readline(DRAIN_CHUNK)) and not rest.endswith(b"\n"):
            size += len(rest)
        raise LineTooLong(f"a message of {size + len(rest)} bytes or more; at most {limit} are read")

    async def read_line() -> bytes:
        return await anyio.to_thread.run_sync(read_bounded, abandon_on_cancel=True)

    def write_flush(data: bytes) -> None:
        stdout.write(data)
        stdout.flush()

    async def write(data: bytes) -> None:
        await anyio.to_thread.run_sync(write_flush, data)

    return read_line, write


async def each_line(read_line: ReadLine, refuse: Callable[[str], Awaitable[None]]) -> AsyncIterator[bytes]:
    """The non-blank lines until end of input; a line over the limit is `refuse`d (with why), not read."""
    while True:
        try:
            line = await read_line()
        except LineTooLong as exc:
            await refuse(str(exc))
            continue
        if not line:
            return
        if line.strip():
            yield line
