"""The live event stream: calls, state changes and log lines, for whoever is watching (console, TUI, API).

Owns the watchers (each a bounded queue: a slow watcher loses its newest events, counted, and
never slows a call) and publishing. Publishing costs one attribute read when nobody watches
(`EventBus.active`), so the call path is unchanged without watchers; a failed call is published
whether or not anyone watches, and its event (without arguments, its text scrubbed and cut) is kept
in `failures`, a ring of the last FAILURES, for the admin API's `recentErrors`. Log lines reach the bus
through a handler that is attached only while someone watches. Never carries a call's arguments
or results unless the operator turned `withPayloads` on (and then at most `MAX_PAYLOAD` bytes of them:
`payload`); turning it off drops the arguments from the history kept, so no later watcher is handed
them. Does not know HTTP (`admin` serves it).
"""

from __future__ import annotations

import collections
import itertools
import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from onemcp.observability.redact import REDACTOR

Event = dict[str, Any]
QUEUE = 1024  # events held for one watcher
RECENT = 200  # events kept for a watcher that just arrived
PAYLOAD = "arguments"  # the field of a `call` event that only `withPayloads` adds
MAX_PAYLOAD = 16 * 1024  # bytes of a call's arguments (serialised) a `call` event carries
FAILURES = 100  # failed calls kept whether or not anyone watches (the admin API's `recentErrors`)
MAX_FIELD = 256  # characters kept of a failure's text field (a tool name, a principal), then its length


def payload(arguments: object) -> object:
    """A call's arguments as its `call` event carries them: as sent up to MAX_PAYLOAD bytes (serialised), else
    their size and their first MAX_PAYLOAD bytes as text. The history and each watcher's queue hold events
    (1,224 of them): whole, any client's 4 MiB arguments held 5 GB for a watcher that did not read."""
    try:
        data = orjson.dumps(arguments)
    except TypeError:  # not JSON (a caller in-process): nothing to show
        return None
    if len(data) <= MAX_PAYLOAD:
        return arguments
    return {"truncated": True, "bytes": len(data), "start": data[:MAX_PAYLOAD].decode(errors="ignore")}


class EventBus:
    def __init__(self) -> None:
        self._watchers: set[MemoryObjectSendStream[Event]] = set()
        self._ids = itertools.count(1)
        self.epoch = secrets.token_hex(4)  # this process's: event ids count again from 1 after a restart
        self.recent: collections.deque[Event] = collections.deque(maxlen=RECENT)
        self.failures: collections.deque[Event] = collections.deque(maxlen=FAILURES)
        self.dropped = 0
        self._with_payloads = False
        self._handler = _LogHandler(self)

    @property
    def with_payloads(self) -> bool:
        """Do `call` events carry the call's arguments? (Off by default.)"""
        return self._with_payloads

    @with_payloads.setter
    def with_payloads(self, on: bool) -> None:
        self._with_payloads = on
        if not on:  # what was captured while on is not replayed to whoever watches next
            for event in self.recent:
                event.pop(PAYLOAD, None)

    @property
    def active(self) -> bool:
        """Is anyone watching? (Publishers check this first: nothing is built for nobody.)"""
        return bool(self._watchers)

    @property
    def watchers(self) -> int:
        """How many watch now."""
        return len(self._watchers)

    def publish(self, kind: str, **fields: Any) -> None:
        event: Event = {"id": next(self._ids), "at": round(time.time(), 3), "kind": kind, **fields}
        self.recent.append(event)
        if kind == "call" and fields.get("outcome", "ok") != "ok":
            self.failures.append({k: _kept(v) for k, v in event.items() if k != PAYLOAD})
        for watcher in list(self._watchers):
            try:
                watcher.send_nowait(event)
            except anyio.WouldBlock:
                self.dropped += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._watchers.discard(watcher)

    @contextmanager
    def watch(self, after: int = 0) -> Iterator[MemoryObjectReceiveStream[Event]]:
        """A stream of the events from now on (the recent ones after id `after` first), while inside."""
        send, receive = anyio.create_memory_object_stream[Event](QUEUE)
        for event in [e for e in self.recent if e["id"] > after][-QUEUE // 2 :]:
            send.send_nowait(event)
        if not self._watchers:
            logging.getLogger("onemcp").addHandler(self._handler)
        self._watchers.add(send)
        try:
            yield receive
        finally:
            self._watchers.discard(send)
            send.close()
            receive.close()
            if not self._watchers:
                logging.getLogger("onemcp").removeHandler(self._handler)


def _kept(value: object) -> object:
    """A field of a kept failure: text scrubbed of secrets (as the log is) and cut to MAX_FIELD."""
    return REDACTOR.shown(value, MAX_FIELD) if isinstance(value, str) else value


class _LogHandler(logging.Handler):
    """Log lines of `onemcp.*` (info and above) onto the bus, while someone watches."""

    def __init__(self, bus: EventBus) -> None:
        super().__init__(logging.INFO)
        self.bus = bus

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break the caller
            message = str(record.msg)
        shown = REDACTOR.shown(message)  # this handler sits above the root's, whose filter it would miss
        self.bus.publish("log", level=record.levelname.lower(), logger=record.name, message=shown[:2000])
