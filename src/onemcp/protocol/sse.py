"""Server-Sent Events framing, both ways: encode events for clients, decode upstream streams."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

log = logging.getLogger("onemcp.sse")


@dataclass(slots=True)
class Event:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


def encode(data: bytes, *, event: str | None = None, event_id: str | None = None) -> bytes:
    """One SSE event; `data` is a single-line JSON document (orjson never emits newlines)."""
    head = b""
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


class Decoder:
    """Incremental decoder: feed bytes as they arrive, get the completed events."""

    __slots__ = ("_data", "_ev", "_pending")

    def __init__(self) -> None:
        self._pending = b""
        self._ev = Event()
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        self._pending += chunk
        if b"\n" not in chunk:
            return []
        *complete, self._pending = self._pending.split(b"\n")
        out: list[Event] = []
        for raw in complete:
            ev = self.line(raw.decode("utf-8", errors="replace"))
            if ev is not None:
                out.append(ev)
        return out

    def line(self, raw: str) -> Event | None:
        """Take one line (without its newline); returns an event when the line ends one."""
        line = raw.rstrip("\r\n")
        if not line:
            ev, data = self._ev, self._data
            self._ev, self._data = Event(), []
            if data or ev.event != "message" or ev.id is not None:
                ev.data = "\n".join(data)
                return ev
            return None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._ev.event = value or "message"
        elif name == "id":
            self._ev.id = value
        elif name == "retry" and value.isdigit():
            self._ev.retry = int(value)
        return None

    def close(self) -> Event | None:
        """At the end of the stream: a last event that had data but no blank line after it."""
        if self._pending:
            self.line(self._pending.decode("utf-8", errors="replace"))
            self._pending = b""
        if self._data:
            return self.line("")
        return None


async def decode(lines: AsyncIterable[str]) -> AsyncIterator[Event]:
    """Events from a stream of text lines."""
    decoder = Decoder()
    async for raw in lines:
        ev = decoder.line(raw)
        if ev is not None:
            yield ev
    last = decoder.close()
    if last is not None:
        yield last


def message(ev: Event) -> dict[str, Any] | None:
    """The JSON-RPC message an event carries; None for priming (data-less) or non-JSON events."""
    if not ev.data.strip():
        return None  # priming events carry only an id
    try:
        msg = orjson.loads(ev.data)
    except orjson.JSONDecodeError:
        log.warning("dropped an SSE event that is not JSON: %.80s", ev.data)
        return None
    return msg if isinstance(msg, dict) else None
