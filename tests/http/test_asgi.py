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


async def test_the_work_is_answered_and_its_watcher_ends_with_it() -> None:
    gone = anyio.Event()

    async def receive() -> MutableMapping[str, Any]:
        await gone.wait()  # a client that stays: receive waits (as uvicorn's does after the body)
        return {"type": "http.disconnect"}

    async def work() -> str:
        assert len(_watchers()) == 1
        return "reply"

    with anyio.fail_after(DEADLINE):
        assert await asgi.unless_disconnected(receive, work) == "reply"
        while _watchers():  # cancelled on the way out: gone at the next turn of the loop
            await anyio.lowlevel.checkpoint()


async def test_a_client_that_goes_away_cancels_the_work() -> None:
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


async def test_other_messages_are_not_a_disconnect() -> None:
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
