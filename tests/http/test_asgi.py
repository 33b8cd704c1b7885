"""asgi.unless_disconnected: a request's work, cancelled when its client goes away, with no task left behind."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import anyio
import pytest

from onemcp.http import asgi

pytestmark = pytest.mark.anyio
DEADLINE = 5.0


def _watchers() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "_watch"}  # type: ignore[union-attr]


async def test_work_answered_before_the_watch_starts_makes_no_watcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """Most calls are answered within WATCH_AFTER: they make no watcher task (5-10 us a request)."""
    monkeypatch.setattr(asgi, "WATCH_AFTER", 3600.0)
    gone = anyio.Event()

    async def receive() -> MutableMapping[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def work() -> str:
        for _ in range(3):  # a few turns of the loop, as a forwarded call takes
            await anyio.lowlevel.checkpoint()
        assert not _watchers()
        return "reply"

    with anyio.fail_after(DEADLINE):
        assert await asgi.unless_disconnected(receive, work) == "reply"
    assert not _watchers()


async def test_work_that_runs_on_gets_its_watcher_which_ends_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgi, "WATCH_AFTER", 0.0)
    gone = anyio.Event()

    async def receive() -> MutableMapping[str, Any]:
        await gone.wait()  # a client that stays: receive waits (as uvicorn's does after the body)
        return {"type": "http.disconnect"}

    async def work() -> str:
        while not _watchers():  # made once the work has run WATCH_AFTER
            await anyio.lowlevel.checkpoint()
        return "reply"

    with anyio.fail_after(DEADLINE):
        assert await asgi.unless_disconnected(receive, work) == "reply"
        while _watchers():  # cancelled on the way out: gone at the next turn of the loop
            await anyio.lowlevel.checkpoint()


async def test_a_client_that_goes_away_cancels_the_work() -> None:
    """Gone before the watcher starts (WATCH_AFTER as shipped): it is noticed once it does."""
    gone = anyio.Event()
    cancelled = anyio.Event()

    async def receive() -> MutableMapping[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def work() -> str:
        gone.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        return "never"

    with anyio.fail_after(DEADLINE):
        assert await asgi.unless_disconnected(receive, work) is None
        assert cancelled.is_set()
        while _watchers():
            await anyio.lowlevel.checkpoint()


async def test_other_messages_are_not_a_disconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgi, "WATCH_AFTER", 0.0)
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    done = anyio.Event()

    async def receive() -> MutableMapping[str, Any]:
        if messages:
            return messages.pop()
        await done.wait()
        return {"type": "http.disconnect"}

    async def work() -> str:
        while messages:
            await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        return "reply"

    with anyio.fail_after(DEADLINE):
        assert await asgi.unless_disconnected(receive, work) == "reply"
