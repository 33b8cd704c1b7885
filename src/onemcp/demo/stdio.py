"""stdio transport of the demo/fixture servers: newline-delimited JSON; exits cleanly on stdin EOF."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import Awaitable, Callable

import orjson

from onemcp.demo.kit import EOF_GRACE_SECONDS, MAX_LINE_BYTES, PARSE_ERROR, JsonObject, McpServer, error_message
from onemcp.demo.peer import Connection

# --- stdio transport -------------------------------------------------------------------------------------


def _is_pipe(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _WriteProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.lost = False

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.can_write.set()


class StdoutWriter:
    """Writes whole JSON lines to stdout: non-blocking on pipes, plain ``os.write`` otherwise."""

    def __init__(self) -> None:
        self._transport: asyncio.WriteTransport | None = None
        self._protocol: _WriteProtocol | None = None
        self.broken = False

    async def open(self) -> None:
        if _is_pipe(1):
            loop = asyncio.get_running_loop()
            self._transport, self._protocol = await loop.connect_write_pipe(_WriteProtocol, sys.stdout)

    async def send(self, message: JsonObject) -> None:
        data = orjson.dumps(message) + b"\n"
        if self.broken:
            return
        if self._transport is None or self._protocol is None:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view) :]
            except OSError:
                self.broken = True
            return
        if self._protocol.lost or self._transport.is_closing():
            self.broken = True
            return
        self._transport.write(data)
        await self._protocol.can_write.wait()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def _stdin_lines() -> Callable[[], Awaitable[bytes]]:
    """A ``readline`` for stdin: asyncio pipe reader when possible, a thread otherwise (tty, file)."""
    if _is_pipe(0):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        return reader.readline
    stdin = sys.stdin.buffer

    async def readline() -> bytes:
        return await asyncio.to_thread(stdin.readline)

    return readline


async def serve_stdio(server: McpServer) -> None:
    """Serve one client over stdin/stdout until stdin reaches EOF."""
    writer = StdoutWriter()
    await writer.open()
    readline = await _stdin_lines()
    connection = Connection(server, writer.send)
    try:
        while True:
            try:
                line = await readline()
            except ValueError:  # longer than MAX_LINE_BYTES; the reader has discarded it
                await writer.send(error_message(None, PARSE_ERROR, "Parse error: message too long"))
                continue
            if not line:
                break
            line = line.strip()
            if not line:
                continue
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                await writer.send(error_message(None, PARSE_ERROR, "Parse error"))
                continue
            await connection.receive(message)
    finally:
        await connection.close(grace=EOF_GRACE_SECONDS)
        writer.close()


def run(server: McpServer) -> None:
    """Blocking entry point for a stdio server process."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_stdio(server))
