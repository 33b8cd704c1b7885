"""The relay between replicas over a real redis-server: sends, broadcasts, asks, shared secrets, and failing fast."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from onemcp.config import redis_link
from onemcp.hub.relay import RedisRelay, RelayError
from support.services import NEEDS_REDIS, free_port

pytestmark = [
    pytest.mark.anyio,
    NEEDS_REDIS,
]
DEADLINE = 20.0


class Inbox:
    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.arrived = anyio.Event()

    async def __call__(self, doc: dict[str, Any]) -> None:
        self.docs.append(doc)
        self.arrived.set()

    async def next(self) -> dict[str, Any]:
        await self.arrived.wait()
        self.arrived = anyio.Event()
        return self.docs.pop(0)


@asynccontextmanager
async def running(relay: RedisRelay) -> AsyncIterator[RedisRelay]:
    async with anyio.create_task_group() as tg:
        await tg.start(relay.run)
        try:
            yield relay
        finally:
            tg.cancel_scope.cancel()


async def test_a_message_reaches_the_replica_named_and_a_broadcast_every_other(redis_url: str) -> None:
    a_in, b_in = Inbox(), Inbox()
    a, b = RedisRelay(redis_url, "aaaa"), RedisRelay(redis_url, "bbbb")
    a.on_message, b.on_message = a_in, b_in
    with anyio.fail_after(DEADLINE):
        async with running(a), running(b):
            assert a.up and b.up
            assert b.send("aaaa", {"k": "push", "n": 1})
            doc = await a_in.next()
            assert doc == {"k": "push", "n": 1, "from": "bbbb"}
            assert a.broadcast({"k": "stream", "n": 2})
            doc = await b_in.next()
            assert doc["n"] == 2 and doc["from"] == "aaaa"
            assert b.send("bbbb", {"k": "self", "n": 3})  # its own channel: what it sent itself is not heard
            assert a.send("bbbb", {"k": "push", "n": 4})
            doc = await b_in.next()
            assert doc["n"] == 4, doc
            assert not a_in.docs  # a heard neither its broadcast nor b's message to b


async def test_an_ask_gets_the_answer_of_the_replica_asked(redis_url: str) -> None:
    b = RedisRelay(redis_url, "bbbb")

    async def answering(doc: dict[str, Any]) -> None:
        b.answer(doc, {"reply": doc["n"] * 2})

    b.on_message = answering
    a = RedisRelay(redis_url, "aaaa")
    with anyio.fail_after(DEADLINE):
        async with running(a), running(b):
            answers = []
            async with anyio.create_task_group() as tg:

                async def ask(n: int) -> None:
                    answers.append((n, (await a.ask("bbbb", {"k": "resume", "n": n}, 10))["reply"]))

                for n in range(5):
                    tg.start_soon(ask, n)
            assert sorted(answers) == [(n, 2 * n) for n in range(5)]  # each ask got its own answer


async def test_telling_all_waits_for_each_replica_that_heard_and_no_longer_than_its_patience(redis_url: str) -> None:
    """`tell_all` returns once every other replica has answered (0 missing), and at its patience with those
    that did not counted (one that hears but never answers: 1 missing); alone, at once."""
    a, b, c = (RedisRelay(redis_url, tag) for tag in ("aaaa", "bbbb", "cccc"))
    a.on_message = Inbox()
    b.on_message = lambda doc: _answer(b, doc)
    c.on_message = lambda doc: _answer(c, doc)
    with anyio.fail_after(DEADLINE):
        async with running(a):
            assert await a.tell_all({"k": "ended"}, 600) == 0  # no other replica: nothing to wait for
            async with running(b), running(c):
                assert await a.tell_all({"k": "ended"}, 600) == 0
                c.on_message = Inbox()  # hears, does not answer
                assert await a.tell_all({"k": "ended"}, 0.2) == 1
            assert a._waiting == {}


async def test_telling_all_while_the_breaker_skips_redis_still_broadcasts(redis_url: str) -> None:
    """After a Redis failure (any user's: the breaker is shared) `tell_all` cannot publish at once; its word
    goes as a broadcast did before it (a DELETE's end was lost: other replicas served their copies)."""
    a, b, b_in = RedisRelay(redis_url, "aaaa"), RedisRelay(redis_url, "bbbb"), Inbox()
    b.on_message = b_in

    def failing() -> None:
        raise OSError("Redis failed")

    with anyio.fail_after(DEADLINE):
        async with running(a), running(b):
            with pytest.raises(OSError):
                redis_link.breaker(redis_url).run(failing)  # open now: Redis is skipped a while
            assert await a.tell_all({"k": "ended", "sid": "s1"}, 600) == 0
            assert (await b_in.next())["sid"] == "s1"


async def test_asking_a_replica_that_is_not_there_fails_at_once(redis_url: str) -> None:
    a = RedisRelay(redis_url, "aaaa")
    with anyio.fail_after(DEADLINE):
        async with running(a):
            with pytest.raises(RelayError, match="replica zzzz is gone"):
                await a.ask("zzzz", {"k": "resume"}, 600)


async def test_an_ask_fails_when_the_replica_asked_goes_away_before_answering(redis_url: str) -> None:
    b = RedisRelay(redis_url, "bbbb")
    asked = anyio.Event()

    async def silent(doc: dict[str, Any]) -> None:
        asked.set()

    b.on_message = silent
    a = RedisRelay(redis_url, "aaaa")
    with anyio.fail_after(DEADLINE):
        async with running(a):
            async with anyio.create_task_group() as tg:
                scope = anyio.CancelScope()

                async def replica_b() -> None:
                    with scope:
                        async with running(b):
                            await anyio.sleep_forever()

                tg.start_soon(replica_b)
                with anyio.fail_after(5):
                    while not b.up:
                        await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline

                async def stop_b_once_asked() -> None:
                    await asked.wait()
                    scope.cancel()  # b stops (as a killed replica would) without answering

                tg.start_soon(stop_b_once_asked)
                with pytest.raises(RelayError, match="replica bbbb went away before it answered"):
                    await a.ask("bbbb", {"k": "resume"}, 600)


async def test_a_message_nobody_hears_comes_back_to_its_sender(redis_url: str) -> None:
    a = RedisRelay(redis_url, "aaaa")
    missed = anyio.Event()
    with anyio.fail_after(DEADLINE):
        async with running(a):
            assert a.send("nobody", {"k": "push"}, missed=missed.set)
            await missed.wait()


async def test_replicas_share_one_secret(redis_url: str) -> None:
    a, b = RedisRelay(redis_url, "aaaa"), RedisRelay(redis_url, "bbbb")
    with anyio.fail_after(DEADLINE):
        async with running(a), running(b):
            one, two = await a.shared_secret("requestState"), await b.shared_secret("requestState")
            assert one is not None and len(one) == 32 and one == two
            assert await a.shared_secret("other") != one


async def test_without_redis_nothing_crosses_and_asks_fail_clearly() -> None:
    a = RedisRelay(f"redis://127.0.0.1:{free_port()}/0", "aaaa")  # nothing listens there
    with anyio.fail_after(DEADLINE):
        async with running(a):  # starts anyway: a hub must not wait for Redis
            assert not a.up
            assert not a.send("bbbb", {"k": "push"})
            assert not a.broadcast({"k": "stream"})
            with pytest.raises(RelayError, match="no connection to Redis"):
                await a.ask("bbbb", {"k": "resume"}, 600)
            assert await a.shared_secret("requestState") is None


async def test_after_redis_fails_an_ask_fails_at_once_until_the_pause_is_over(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay's commands were not behind the Redis link's breaker, with a 5 s deadline: on a hung Redis
    every ask (a 2026-07-28 retry resumed on another replica) waited its 5 s, one after another."""
    import redis.asyncio as aredis
    from redis.exceptions import TimeoutError as RedisTimeout

    from onemcp.config import redis_link

    published: list[str] = []
    publish = aredis.Redis.publish

    async def hung(self: Any, channel: str, data: bytes) -> int:
        published.append(channel)
        raise RedisTimeout("Timeout reading from Redis")

    a, b = RedisRelay(redis_url, "aaaa"), RedisRelay(redis_url, "bbbb")
    with anyio.fail_after(DEADLINE):
        async with running(a), running(b):
            monkeypatch.setattr(aredis.Redis, "publish", hung)
            with pytest.raises(RelayError, match="Timeout reading"):
                await a.ask("bbbb", {"k": "resume"}, 600)
            with pytest.raises(RelayError, match="failed in the last few seconds"):
                await a.ask("bbbb", {"k": "resume"}, 600)  # not asked: the breaker is open
            assert published == ["onemcp:replica:bbbb"]
            monkeypatch.setattr(aredis.Redis, "publish", publish)
            later = redis_link.breaker(redis_url).clock() + 60
            redis_link.breaker(redis_url).clock = lambda: later  # the pause is over: Redis is asked again
            b.on_message = lambda doc: _answer(b, doc)
            assert (await a.ask("bbbb", {"k": "resume"}, 600))["ok"] is True


async def _answer(relay: RedisRelay, doc: dict[str, Any]) -> None:
    relay.answer(doc, {"ok": True})
