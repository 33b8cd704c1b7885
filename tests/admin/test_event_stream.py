"""The event stream's framing: SSE ids that a reconnecting watcher resumes after, and keep-alives.

In-process: `serve` on a bare bus with a recording ASGI `send` (no hub, no sockets). A watcher that
reconnected was replayed the whole recent history again, so the console and the TUI showed every
recent call twice, then three times (hunt s28 F3); an idle stream had nothing to keep a proxy from
timing it out.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import anyio
import orjson
import pytest

from onemcp.admin import event_stream
from onemcp.admin.routing import Request
from onemcp.auth.held import Held
from onemcp.auth.principal import Principal
from onemcp.config.model import Limits
from onemcp.observability.events import EventBus

pytestmark = pytest.mark.anyio


def request(last_event_id: str | None, gone: anyio.Event) -> Request:
    headers = [] if last_event_id is None else [(b"last-event-id", last_event_id.encode())]

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    return Request({"type": "http", "headers": headers}, receive, Principal("anonymous", frozenset()), {})


async def watch(bus: EventBus, last_event_id: str | None, until: str) -> list[tuple[str | None, str]]:
    """(id, data or comment) of each SSE block the stream sent, until one contains `until`."""
    blocks: list[tuple[str | None, str]] = []
    gone = anyio.Event()

    async def send(message: MutableMapping[str, Any]) -> None:
        for block in message.get("body", b"").decode().split("\n\n"):
            if not block:
                continue
            lines = block.split("\n")
            sid = next((line[4:] for line in lines if line.startswith("id: ")), None)
            blocks.append((sid, next(line for line in lines if line.startswith(("data: ", ":")))))
            if until in block:
                gone.set()

    with anyio.fail_after(10):
        await event_stream.serve(bus, request(last_event_id, gone), send, Held(), Limits())
    return blocks


def test_a_last_event_id_of_this_process_resumes_after_it() -> None:
    bus = EventBus()
    assert event_stream.resume_after(bus, f"{bus.epoch}:7") == 7
    for other in (None, "", "7", f"{bus.epoch}:x", f"{bus.epoch}:-1", "cafe0000:7", f"{bus.epoch}:²"):
        assert event_stream.resume_after(bus, other) == 0, other


async def test_events_carry_ids_and_a_reconnect_is_replayed_only_what_it_missed() -> None:
    bus = EventBus()
    for n in range(3):
        bus.publish("log", level="info", logger="t", message=f"m{n}")
    first = await watch(bus, None, "m2")
    assert [sid for sid, _ in first] == [f"{bus.epoch}:{n}" for n in (1, 2, 3)]
    assert orjson.loads(first[0][1][6:])["message"] == "m0"
    bus.publish("log", level="info", logger="t", message="m3")
    again = await watch(bus, first[-1][0], "m3")  # what the console sends when it reconnects
    assert [orjson.loads(data[6:])["message"] for _, data in again] == ["m3"]
    restarted = await watch(bus, "0badcafe:3", "m3")  # ids of another process (the hub restarted): all recent
    assert len(restarted) == 4


async def test_an_idle_stream_gets_keep_alive_comments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_stream, "KEEPALIVE", 0.01)
    assert await watch(EventBus(), None, ": keep-alive") == [(None, ": keep-alive")]


async def test_a_stream_over_its_principals_stream_cap_is_429_and_others_still_watch() -> None:
    bus, held, limits = EventBus(), Held(), Limits.model_validate({"maxStreamsPerPrincipal": 1})
    me = Principal("anonymous", frozenset())
    assert held.take(me, limits, stream=True) is None  # one stream of this principal is open
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    with anyio.fail_after(10):
        await event_stream.serve(bus, request(None, anyio.Event()), send, held, limits)
    assert sent[0]["status"] == 429
    body = orjson.loads(sent[1]["body"])
    assert body["limit"] == "streams_per_principal" and "limit 1" in body["error"], body
    assert held.streams["anonymous"] == 1  # the refused one was not counted
