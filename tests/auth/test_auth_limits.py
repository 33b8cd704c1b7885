"""Quotas and the request rate counted in the replicas' Redis: asked off the event loop.

A slow Redis (a stand-in that holds its answers until the event loop releases it) must not stall the
loop: the loop goes on with other work meanwhile, and the answer then comes from Redis. Asked on the
loop, the call would block it until the 1 s socket timeout and fall back to this process's count.
Quotas and the rate over the wire are tested in tests/auth/test_gate.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
import pytest

from onemcp.auth.gate import RateLimiter
from onemcp.auth.limits import RedisQuotaBook, RedisRateLimiter
from onemcp.config.auth_settings import Quota
from support.held_redis import HeldRedis, held_redis

pytestmark = pytest.mark.anyio


async def while_held(stub: HeldRedis, call: Callable[[], Awaitable[Any]]) -> Any:
    """`call`'s answer, while the event loop does unrelated work (an in-process rate check) and only
    then lets the held Redis answer."""
    answers: list[Any] = []

    async def ask() -> None:
        answers.append(await call())

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            await anyio.to_thread.run_sync(stub.received.wait)
            assert await RateLimiter(60, 1).take("someone else") == 0  # the unrelated request
            assert not answers  # still waiting on Redis
            stub.release.set()
    return answers[0]


async def test_a_slow_redis_does_not_stall_the_loop_while_it_counts_the_request_rate() -> None:
    with held_redis({"EVALSHA": b"$3\r\n2.5\r\n"}) as stub:
        limiter = RedisRateLimiter(60, 1, stub.url, RateLimiter(60, 1))
        assert await while_held(stub, lambda: limiter.take("key:a")) == 2.5  # Redis's answer, not this process's


async def test_a_slow_redis_does_not_stall_the_loop_while_it_counts_a_quota() -> None:
    quota = Quota.model_validate({"tool": "fx/*", "calls": 2, "window": 60})
    with held_redis({"EVALSHA": b"$12\r\n9999999999.0\r\n"}) as stub:  # the oldest call: the quota is spent
        book = RedisQuotaBook([quota], stub.url)
        refused = await while_held(stub, lambda: book.charge("key:a", "fx", "echo"))
    assert refused is not None and refused.startswith("Quota exceeded for fx/echo")


async def test_after_a_redis_failure_the_rate_is_counted_here_without_asking_redis() -> None:
    """Redis failed: the request is counted in this process; so are the next ones, at once, for a few
    seconds (Redis, which would now hold its answer, is not asked)."""
    with held_redis({"EVALSHA": b"-ERR down\r\n", "EVAL": b"-ERR down\r\n"}) as stub:
        limiter = RedisRateLimiter(60, 2, stub.url, RateLimiter(60, 2))
        stub.release.set()
        with anyio.fail_after(20):
            assert await limiter.take("key:a") == 0  # Redis failed: counted here (the first of a burst of 2)
            asked = list(stub.commands)
            stub.release.clear()
            assert await limiter.take("key:a") == 0  # the second, here, at once
            assert await limiter.take("key:a") > 0  # the third waits: this process's bucket is empty
        assert stub.commands == asked
