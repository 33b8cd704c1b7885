"""This process's own stdin/stdout as a line reader and a line writer, for newline-delimited JSON-RPC.

Owns the blocking-pipe plumbing that `serve --transport stdio` and `proxy` share: each read and
write runs in a worker thread (pipes cannot be awaited portably), a read blocked on an idle pipe
is abandoned on cancellation so shutdown is never held up, and every write is flushed at once.
Serialising writes and framing messages is the caller's.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

import anyio

ReadLine = Callable[[], Awaitable[bytes]]  # b"" at end of input
Write = Callable[[bytes], Awaitable[None]]


def std_streams() -> tuple[ReadLine, Write]:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    async def read_line() -> bytes:
        return await anyio.to_thread.run_sync(stdin.readline, abandon_on_cancel=True)

    def write_flush(data: bytes) -> None:
        stdout.write(data)
        stdout.flush()

    async def write(data: bytes) -> None:
        await anyio.to_thread.run_sync(write_flush, data)

    return read_line, write
