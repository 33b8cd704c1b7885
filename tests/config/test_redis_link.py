"""The Redis link's breaker: open after a failure for its pause, then one probe at a time; a cancelled
wait or another error does not open it; one breaker per URL."""

from __future__ import annotations

import anyio
import anyio.to_thread
import pytest

from onemcp.config import redis_link
from onemcp.config.redis_link import Breaker, RedisSkipped

pytestmark = pytest.mark.anyio


def fail() -> None:
    raise ConnectionError("refused")


async def test_a_failure_opens_the_breaker_for_its_pause_then_one_call_probes() -> None:
    now = [0.0]
    breaker = Breaker(pause=5, clock=lambda: now[0])
    assert await breaker.call(lambda: 1) == 1 and not breaker.open
    with pytest.raises(ConnectionError):
        await breaker.call(fail)
    assert breaker.open
    with pytest.raises(RedisSkipped):
        await breaker.call(lambda: 1)
    with pytest.raises(RedisSkipped):
        breaker.run(lambda: 1)
    now[0] = 6.0
    probing = anyio.Event()
    answer = anyio.Event()

    def probe() -> int:
        anyio.from_thread.run_sync(probing.set)
        anyio.from_thread.run(answer.wait)
        return 2

    async with anyio.create_task_group() as tg:
        tg.start_soon(breaker.call, probe)
        await probing.wait()
        with pytest.raises(RedisSkipped):  # one probe at a time: the others still skip
            await breaker.call(lambda: 1)
        answer.set()
    assert not breaker.open and await breaker.call(lambda: 3) == 3  # the probe succeeded: closed


async def test_a_failed_probe_opens_it_again_and_other_errors_do_not() -> None:
    now = [0.0]
    breaker = Breaker(pause=5, clock=lambda: now[0])
    with pytest.raises(ValueError):
        breaker.run(lambda: int("x"))  # not Redis failing
    assert not breaker.open
    with pytest.raises(ConnectionError):
        breaker.run(fail)
    now[0] = 5.0
    with pytest.raises(ConnectionError):
        breaker.run(fail)  # the probe failed
    now[0] = 9.0
    assert breaker.open  # for another pause from then


def test_one_breaker_per_redis() -> None:
    assert redis_link.breaker("redis://a:1/0") is redis_link.breaker("redis://a:1/0")
    assert redis_link.breaker("redis://a:1/0") is not redis_link.breaker("redis://b:1/0")


def test_a_writer_writes_in_order_and_drops_while_redis_failed() -> None:
    done: list[int] = []
    now = [0.0]
    writer = redis_link.Writer(Breaker(pause=5, clock=lambda: now[0]), "a test write")
    writer.put(lambda: done.append(1))
    writer.put(fail)  # Redis fails: the breaker opens
    writer.put(lambda: done.append(2))  # skipped: dropped
    writer.close()
    now[0] = 6.0
    writer.put(lambda: done.append(3))  # (a new thread after close)
    writer.close()
    assert done == [1, 3]


def test_a_writer_says_a_write_that_fails_unexpectedly_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    """A write raising what no Redis raises (a bug) is logged with its traceback; the writer thread
    lives on (it died: every later write queued for nobody, the warnings said only 'writes wait')."""
    done: list[int] = []
    writer = redis_link.Writer(Breaker(), "a test write")

    def broken() -> None:
        raise TypeError("not a Redis failure")

    writer.put(broken)
    writer.put(lambda: done.append(1))
    writer.close()
    assert done == [1]
    assert "a test write not written to Redis: an internal error" in caplog.text and "TypeError" in caplog.text


async def test_an_asyncio_command_goes_through_the_breaker_too() -> None:
    now = [0.0]
    breaker = Breaker(pause=5, clock=lambda: now[0])
    asked: list[str] = []

    async def command(answer: str) -> str:
        asked.append(answer)
        if answer == "fail":
            raise ConnectionError("refused")
        return answer

    assert await breaker.attempt(command, "one") == "one"
    with pytest.raises(ConnectionError):
        await breaker.attempt(command, "fail")
    with pytest.raises(RedisSkipped):
        await breaker.attempt(command, "two")  # not asked
    now[0] = 6.0
    assert await breaker.attempt(command, "three") == "three" and not breaker.open
    assert asked == ["one", "fail", "three"]
