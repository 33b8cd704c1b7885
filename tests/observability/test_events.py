"""The event bus: nothing for nobody, bounded queues for watchers, log lines only while watched."""

from __future__ import annotations

import logging

import anyio
import pytest

from onemcp.observability.events import FAILURES, MAX_FIELD, QUEUE, EventBus

pytestmark = pytest.mark.anyio


async def test_watchers_get_events_and_recent_history() -> None:
    bus = EventBus()
    assert not bus.active
    bus.publish("call", server="a")  # nobody watching: kept as history only
    with bus.watch() as events:
        assert bus.active
        bus.publish("state", server="a", state="ready")
        first, second = await events.receive(), await events.receive()
        assert (first["kind"], second["kind"]) == ("call", "state") and second["id"] > first["id"]
    assert not bus.active


async def test_a_slow_watcher_loses_its_newest_and_counts_them() -> None:
    bus = EventBus()
    with bus.watch():
        for i in range(QUEUE + 10):
            bus.publish("call", n=i)
    assert bus.dropped == 10


async def test_log_lines_only_while_watched() -> None:
    bus = EventBus()
    logger = logging.getLogger("onemcp.test-events")
    logger.setLevel(logging.INFO)
    with bus.watch() as events:
        logger.info("hello %s", "there")
        with anyio.fail_after(5):
            event = await events.receive()
        assert event["kind"] == "log" and event["message"] == "hello there"
    logger.info("not watched")
    assert [e for e in bus.recent if e.get("message") == "not watched"] == []


async def test_payloads_turned_off_are_not_replayed_to_a_new_watcher() -> None:
    bus = EventBus()
    bus.with_payloads = True
    bus.publish("call", server="a", arguments={"password": "hunter2"})
    bus.with_payloads = False
    bus.publish("call", server="a")
    with bus.watch() as events:
        replayed = [await events.receive(), await events.receive()]
    assert [e["kind"] for e in replayed] == ["call", "call"]
    assert all("arguments" not in e for e in replayed) and "hunter2" not in repr(list(bus.recent))


async def test_failed_calls_are_kept_bounded_and_scrubbed_whoever_watches() -> None:
    """`failures` holds the last FAILURES failed calls, watched or not: no arguments, text scrubbed and cut."""
    bus = EventBus()
    bus.with_payloads = True
    bus.publish("call", server="a", tool="ok", outcome="ok")
    token = "omk_abcdefgh_" + "x" * 32
    bus.publish("call", server="a", tool=f"t {token} " + "y" * 1000, outcome="error", arguments={"p": "hunter2"})
    (kept,) = bus.failures
    assert kept["outcome"] == "error" and "arguments" not in kept and "hunter2" not in repr(kept)
    assert token not in kept["tool"] and kept["tool"].endswith(" characters)")
    assert len(kept["tool"]) < MAX_FIELD + 30
    for i in range(FAILURES + 5):
        bus.publish("call", server="a", tool=f"t{i}", outcome="timeout")
    assert len(bus.failures) == FAILURES and bus.failures[-1]["tool"] == f"t{FAILURES + 4}"
    assert bus.watchers == 0
    with bus.watch(), bus.watch():
        assert bus.watchers == 2
