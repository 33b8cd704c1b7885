"""How the authorization server calls its state (oauth.db, or the replicas' Redis): off the event loop, on a
worker thread, a failure to reach the state turned into the OAuth error clients retry on.

Boundary: owns the threads and that translation; not the state (`store`, `shared`) nor what is asked of it
(`grants`, `clients`, `authorize`). Over oauth.db the calls hold `STATE_THREADS` of the process's worker
threads at most: a write waits there for another process's lock (up to the busy timeout, 30 s), and many
of them must not take every worker thread of the hub (its config reads, searches and Redis calls wait for
one too). Over Redis they take anyio's as the hub's other Redis users do: each has the Redis link's 1 s
deadline, and after a failure the breaker skips Redis without a thread.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread

from onemcp.auth.server.grants import OAuthError
from onemcp.config import redis_link

T = TypeVar("T")
audit = logging.getLogger("onemcp.audit")
STATE_THREADS = 4  # worker threads the state's calls may hold at once; more wait for one of them


class StateCalls:
    """`await calls(fn, *args)`: `fn(*args)` on the state, on a worker thread (over oauth.db, one of its own)."""

    def __init__(self, breaker: redis_link.Breaker | None) -> None:
        self._breaker = breaker  # replicas: the shared Redis's (an unreachable one is skipped a while)
        self._threads = anyio.CapacityLimiter(STATE_THREADS)  # oauth.db's

    async def __call__(self, call: Callable[..., T], *args: Any) -> T:
        """Over SQLite a write waits for another process's lock on a worker thread, never on the loop (still
        held after the busy timeout: 503); over Redis, through the Redis link's breaker (unreachable: 503)."""
        failures: tuple[type[Exception], ...] = (*redis_link.errors(), sqlite3.OperationalError)
        try:
            if self._breaker is None:
                return await anyio.to_thread.run_sync(call, *args, limiter=self._threads)
            return await self._breaker.call(call, *args)
        except failures as exc:
            if not isinstance(exc, redis_link.RedisSkipped):  # (a skip was said when Redis failed)
                audit.warning("oauth state unavailable: %s", exc)
            raise OAuthError(
                "temporarily_unavailable", "the authorization server's store cannot be reached", 503
            ) from None
