"""Per-principal tool quotas, the request rate shared by replicas, and the result size limit.

A quota over its budget answers the call with a tool error (isError) that says the limit
and when to retry, instead of an HTTP error the model never sees. A result larger than
the configured size has its text cut, with a marker saying how much was left out. With a
Redis session store, quotas (`RedisQuotaBook`) and the gate's request rate (`RedisRateLimiter`)
are counted in Redis, so replicas of a hub enforce one limit between them; Redis is asked on a worker
thread, so a slow one never stalls the event loop, and through the Redis link's breaker: after a failure
each replica counts on its own for a few seconds without asking Redis (`config/redis_link.py`).
"""

from __future__ import annotations

import fnmatch
import logging
import math
import secrets
import time
from collections import deque
from typing import Any

from onemcp.config import redis_link
from onemcp.config.auth_settings import Quota

log = logging.getLogger("onemcp.quotas")


class QuotaBook:
    def __init__(self, quotas: list[Quota]) -> None:
        self.quotas = quotas
        self._calls: dict[tuple[str, int], deque[float]] = {}

    async def charge(self, principal: str, server: str, tool: str) -> str | None:
        """Count a call; the refusal text when a quota is spent (then nothing is counted)."""
        return self._charge_here(principal, server, tool)

    def _charge_here(self, principal: str, server: str, tool: str) -> str | None:
        now = time.monotonic()
        hits = [(i, q) for i, q in enumerate(self.quotas) if fnmatch.fnmatchcase(f"{server}/{tool}", q.tool)]
        for index, quota in hits:
            calls = self._calls.setdefault((principal, index), deque())
            while calls and now - calls[0] >= quota.window:
                calls.popleft()
            if len(calls) >= quota.calls:
                retry = math.ceil(quota.window - (now - calls[0]))
                return (
                    f"Quota exceeded for {server}/{tool}: at most {quota.calls} calls per {quota.window:g}s. "
                    f"Retry in {retry}s."
                )
        for index, _ in hits:
            self._calls[(principal, index)].append(now)
        return None


class RedisQuotaBook(QuotaBook):
    """The same quotas counted in Redis, so replicas of a hub share them (a sliding window per principal and
    quota, as a sorted set of call times; one short script per quota that applies to a call)."""

    CHECK = """
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
    if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
      return redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
    end
    return false
    """

    def __init__(self, quotas: list[Quota], url: str) -> None:
        super().__init__(quotas)
        self._redis: Any = redis_link.client(url)
        self._check: Any = self._redis.register_script(self.CHECK)
        self._errors = redis_link.errors()
        self._breaker = redis_link.breaker(url)

    async def charge(self, principal: str, server: str, tool: str) -> str | None:
        """As `QuotaBook.charge`, counted in Redis on a worker thread (a slow Redis never stalls the event
        loop); while Redis cannot be reached (or failed a moment ago), counted in this process."""
        try:
            return await self._breaker.call(self._charge_in_redis, principal, server, tool)
        except self._errors as exc:  # Redis away: count here, as one process would
            if not isinstance(exc, redis_link.RedisSkipped):
                log.warning("quotas counted in this process only (Redis: %s)", exc)
            return self._charge_here(principal, server, tool)

    def _charge_in_redis(self, principal: str, server: str, tool: str) -> str | None:
        now = time.time()
        hits = [(i, q) for i, q in enumerate(self.quotas) if fnmatch.fnmatchcase(f"{server}/{tool}", q.tool)]
        for index, quota in hits:
            oldest = self._check(keys=[self._key(principal, index)], args=[now, quota.window, quota.calls])
            if oldest is not None:
                retry = math.ceil(quota.window - (now - float(oldest)))
                return (
                    f"Quota exceeded for {server}/{tool}: at most {quota.calls} calls per {quota.window:g}s. "
                    f"Retry in {max(retry, 1)}s."
                )
        with self._redis.pipeline(transaction=False) as pipe:
            for index, quota in hits:
                key = self._key(principal, index)
                pipe.zadd(key, {f"{now}:{secrets.token_hex(4)}": now})
                pipe.expire(key, max(1, math.ceil(quota.window)))
            pipe.execute()
        return None

    @staticmethod
    def _key(principal: str, index: int) -> str:
        return f"onemcp:quota:{index}:{principal}"


class RedisRateLimiter:
    """The gate's token bucket per principal (`requestsPerMinute` sustained, `burst` at once), kept in Redis
    so replicas share it: one script reads, refills and takes from a hash per principal."""

    TAKE = """
    local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
    local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
    local tokens = tonumber(bucket[1]) or burst
    local at = tonumber(bucket[2]) or now
    tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
    local wait = 0
    if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
    redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
    redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
    return tostring(wait)
    """

    def __init__(self, per_minute: float, burst: int, url: str, local: Any) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._local = local  # the per-process bucket, while Redis cannot be reached
        self._redis: Any = redis_link.client(url)
        self._take: Any = self._redis.register_script(self.TAKE)
        self._errors = redis_link.errors()
        self._breaker = redis_link.breaker(url)

    async def take(self, who: str) -> float:
        """0 when allowed; otherwise the seconds to wait. Asked of Redis on a worker thread (a slow Redis
        never stalls the event loop); while Redis cannot be reached (or failed a moment ago: the breaker
        is open, Redis is not asked), counted in this process."""
        try:
            return await self._breaker.call(self._take_in_redis, who)
        except self._errors as exc:
            if not isinstance(exc, redis_link.RedisSkipped):
                log.warning("request rate counted in this process only (Redis: %s)", exc)
            return float(await self._local.take(who))

    def _take_in_redis(self, who: str) -> float:
        return float(self._take(keys=[f"onemcp:rate:{who}"], args=[self.rate, self.burst, time.time()]))


def refusal(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


def truncate(result: dict[str, Any], limit: int) -> None:
    """Cut a tool result's text content to `limit` bytes in all (in place), saying so."""
    content = result.get("content")
    if not isinstance(content, list):
        return
    used = 0
    cut = 0
    for item in content:
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            data = item["text"].encode()
            room = max(0, limit - used)
            if len(data) > room:
                cut += len(data) - room
                item["text"] = data[:room].decode(errors="ignore")
            used += min(len(data), room)
    if cut:
        content.append({"type": "text", "text": f"[onemcp: result truncated, {cut} bytes omitted]"})
        structured = result.pop("structuredContent", None)
        if structured is not None:
            content.append({"type": "text", "text": "[onemcp: structuredContent omitted with the truncated result]"})
            # a tool with an outputSchema must return structuredContent: clients refuse such a result
            # (the SDKs throw) unless it is an error, and the model would read nothing at all
            result["isError"] = True
