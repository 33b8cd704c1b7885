"""Server-Sent Events framing, both ways: encode events for clients, decode upstream streams."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from onemcp.protocol import jsonrpc

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


class TooLarge(Exception):
    """An event, or a line that has not ended, grew past the decoder's limit; what it held is dropped."""

    def __init__(self, limit: int, events: list[Event]) -> None:
        super().__init__(f"an SSE event exceeded {limit} bytes")
        self.limit = limit
        self.events = events  # the events the same chunk completed before it


BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark: a stream may begin with it


class Decoder:
    """Incremental decoder: feed bytes as they arrive, get the completed events.

    Linear in the bytes fed: an unfinished line is kept as a list of pieces (joined once, when
    it ends) and only new bytes are searched for line ends. With a `limit`, the bytes held for
    one event (its lines so far, and the unfinished one) never pass it: `feed` raises TooLarge
    instead, and the stream should then be dropped (the decoder is mid-event).
    """

    __slots__ = ("_cr", "_data", "_ev", "_held", "_line", "_line_size", "_started", "limit")

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self._line: list[bytes] = []  # the unfinished last line, in the pieces it came in
        self._line_size = 0
        self._held = 0  # bytes of the current event's completed lines
        self._ev = Event()
        self._data: list[str] = []
        self._started = False  # a stream's first bytes may carry a byte order mark, which is dropped
        self._cr = False  # the last chunk ended with CR: a LF opening the next one ends no second line

    def feed(self, chunk: bytes) -> list[Event]:
        if not self._started:
            chunk = self._line.pop() + chunk if self._line else chunk  # a mark's first bytes, held
            if len(chunk) < len(BOM) and BOM.startswith(chunk):
                if chunk:
                    self._line.append(chunk)
                return []
            self._started = True
            chunk = chunk.removeprefix(BOM)
        if not chunk:
            return []  # nothing read (and a CR before it still waits for its LF)
        if self._cr or b"\r" in chunk:  # CR LF, and CR alone, end lines too (the SSE spec's three)
            if self._cr and chunk.startswith(b"\n"):
                chunk = chunk[1:]
            self._cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        parts = chunk.split(b"\n")
        tail = parts.pop()
        if parts and self._line:
            self._line.append(parts[0])
            parts[0] = b"".join(self._line)
            self._line, self._line_size = [], 0
        out: list[Event] = []
        for raw in parts:
            if raw in (b"", b"\r"):
                self._held = 0  # the event ends
            elif not raw.startswith(b":"):  # comments are not held
                self._held += len(raw)
                self._check(0, out)
            ev = self.line(raw.decode("utf-8", errors="replace"))
            if ev is not None:
                out.append(ev)
        if tail:
            self._check(self._line_size + len(tail), out)
            self._line.append(tail)
            self._line_size += len(tail)
        return out

    def _check(self, pending: int, done: list[Event]) -> None:
        if self.limit is not None and self._held + pending > self.limit:
            self._line, self._line_size, self._held = [], 0, 0
            self._ev, self._data = Event(), []
            raise TooLarge(self.limit, done)

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
        if self._line:
            self.line(b"".join(self._line).decode("utf-8", errors="replace"))
            self._line, self._line_size = [], 0
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
        msg = jsonrpc.loads(ev.data)
    except orjson.JSONDecodeError:
        log.warning("dropped an SSE event that is not JSON: %.80s", ev.data)
        return None
    return msg if isinstance(msg, dict) else None
