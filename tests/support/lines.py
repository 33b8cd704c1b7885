"""A client's end of a `StdioServer` in memory: what the client writes (`send`) and what the server wrote
(`lines`, parsed), with a wait until the written lines satisfy a test (`until`). Use it as a context manager;
`close` is the client's end of input."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import TracebackType
from typing import Any

import anyio


class Lines:
    def __init__(self, buffer: int = 64) -> None:
        self._to_hub, self._from_client = anyio.create_memory_object_stream[bytes](buffer)
        self.lines: list[dict[str, Any]] = []
        self._wrote = anyio.Event()

    async def read_line(self) -> bytes:
        try:
            return await self._from_client.receive()
        except anyio.EndOfStream:
            return b""

    async def write(self, data: bytes) -> None:
        self.lines.append(json.loads(data))
        self._wrote.set()
        self._wrote = anyio.Event()

    async def send(self, msg: dict[str, Any]) -> None:
        await self._to_hub.send(json.dumps(msg).encode() + b"\n")

    def replies(self, rid: object) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("id") == rid]

    async def until(self, done: Callable[[], bool]) -> None:
        while not done():
            await self._wrote.wait()

    def close(self) -> None:
        self._to_hub.close()

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._to_hub.close()
        self._from_client.close()
