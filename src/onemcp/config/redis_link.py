"""The link to the replicas' Redis that the session store and the shared limits use: a client with a
short deadline, and a circuit breaker per Redis URL.

Boundary: owns only the client settings and the breaker; what is stored is its users'. A user asks Redis
through `Breaker.call` on a worker thread (a slow Redis never stalls the event loop). After a failure the
breaker is open for `PAUSE` seconds: its users then skip Redis at once (`RedisSkipped`) and do what they
do without it (count in this process, do not revive), so a Redis that is down costs one request its
1 s deadline, not every request. Then one call tries Redis again (the others still skip until it answers);
its success closes the breaker. The breaker is shared by everything that names the same URL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio.to_thread

from onemcp.config.writer import OrderedWriter

T = TypeVar("T")
log = logging.getLogger("onemcp.redis")
PAUSE = 5.0  # seconds Redis is skipped after a failure
DEADLINE = 1.0  # seconds a connect or an answer may take


class RedisSkipped(Exception):
    """Redis failed lately: not asked (the breaker is open)."""


def client(url: str) -> Any:
    """A redis-py client (thread-safe, pooled) for `url`, with the short deadline."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=DEADLINE, socket_connect_timeout=DEADLINE)


def errors() -> tuple[type[Exception], ...]:
    """What a failing Redis raises (and `RedisSkipped`, a Redis not asked)."""
    import redis

    return (redis.RedisError, OSError, RedisSkipped)


class Breaker:
    def __init__(self, pause: float = PAUSE, clock: Callable[[], float] = time.monotonic) -> None:
        self.pause = pause
        self.clock = clock
        self._lock = threading.Lock()
        self._until = 0.0  # while the clock is before this, Redis is skipped
        self._failed = False  # the last answer was a failure
        self._probing = False  # a call is trying Redis again after the pause

    @property
    def open(self) -> bool:
        with self._lock:
            return self._failed and (self._probing or self.clock() < self._until)

    def _admit(self) -> bool:
        """Whether a call may ask Redis now (after the pause, the first one probes)."""
        with self._lock:
            if not self._failed:
                return True
            if self._probing or self.clock() < self._until:
                return False
            self._probing = True
            return True

    def _settle(self, ok: bool) -> None:
        with self._lock:
            self._probing = False
            self._failed = not ok
            if not ok:
                self._until = self.clock() + self.pause

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` (blocking, for a worker thread), unless the breaker is open (`RedisSkipped`)."""
        if not self._admit():
            raise RedisSkipped("Redis failed in the last few seconds; not asked")
        try:
            result = fn(*args)
        except BaseException as exc:
            self._after(exc)
            raise
        self._settle(ok=True)
        return result

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on a worker thread, unless the breaker is open (then `RedisSkipped` at once)."""
        if not self._admit():
            raise RedisSkipped("Redis failed in the last few seconds; not asked")
        try:
            result = await anyio.to_thread.run_sync(fn, *args)
        except BaseException as exc:
            self._after(exc)
            raise
        self._settle(ok=True)
        return result

    async def attempt(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await fn(*args)` (an asyncio client's command), unless the breaker is open (then `RedisSkipped` at once)."""
        if not self._admit():
            raise RedisSkipped("Redis failed in the last few seconds; not asked")
        try:
            result = await fn(*args)
        except BaseException as exc:
            self._after(exc)
            raise
        self._settle(ok=True)
        return result

    def _after(self, exc: BaseException) -> None:
        """A call ended in `exc`: a Redis failure opens the breaker; anything else (a cancelled wait)
        leaves it as it was, but ends a probe."""
        if isinstance(exc, errors()):
            self._settle(ok=False)
        else:
            with self._lock:
                self._probing = False


class Writer(OrderedWriter[Callable[[], object]]):
    """Writes nobody waits for (`put`: a blocking callable), done in the order they were put by one
    thread of their own through `breaker`; when `limit` already wait, or Redis failed, one is dropped
    (and said, with `what`). `flush` waits (off the loop) for the writes put so far: for what another
    replica must be able to read before this one tells anyone of it."""

    def __init__(self, breaker: Breaker, what: str, limit: int = 1_000) -> None:
        super().__init__(f"onemcp-redis-{what}", what, "Redis", log, limit)
        self.breaker = breaker

    def do(self, job: Callable[[], object]) -> None:
        try:
            self.breaker.run(job)
        except RedisSkipped:
            log.warning("%s not written to Redis: it failed in the last few seconds", self.what)
        except errors() as exc:
            log.warning("%s not written to Redis: %s", self.what, exc)

    def close(self, wait: float = 5.0) -> bool:
        """Stop after the writes already put (waits `wait` seconds at most)."""
        return super().close(wait)


_BREAKERS: dict[str, Breaker] = {}
_BREAKERS_LOCK = threading.Lock()


def breaker(url: str) -> Breaker:
    """The breaker of the Redis at `url`, shared by all its users in this process."""
    with _BREAKERS_LOCK:
        return _BREAKERS.setdefault(url, Breaker())


def forget_breakers() -> None:
    """Every Redis trusted again (tests: a port, and so a URL, may come again for another Redis)."""
    with _BREAKERS_LOCK:
        _BREAKERS.clear()


# The client's own keyword arguments a URL may give as text (redis-py passes any query parameter it does not
# parse on to the connection): a CA for `rediss://`, `ssl_cert_reqs=none`, a client name
_TEXT_OPTIONS = (
    *("client_name", "username", "password", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_ca_data"),
    *("ssl_certfile", "ssl_keyfile", "ssl_password", "ssl_ciphers"),
)
_FROM_URL = frozenset({"host", "port", "username", "password", "path", "connection_class", "ssl"})


def url_problem(url: str) -> str | None:
    """Why the Redis client would misread `url` (None: it reads it as written): a database that is no
    number (`/x`, `/0/extra`: the client takes database 0 without a word) or one also given as `?db=`
    (the client takes that one), a query parameter it does not take with this URL's connection (it fails
    when it connects: `ssl_check_hostname` on `redis://`) or one whose value it cannot read. The hub's
    clients, threaded and asyncio, are both built from it (nothing is connected). Never shows the URL's
    password."""
    from urllib.parse import parse_qs, unquote, urlsplit

    import redis.asyncio.connection
    import redis.connection

    parts = urlsplit(url)
    db = unquote(parts.path).removeprefix("/") if parts.scheme in ("redis", "rediss") else ""
    if db and not (db.isascii() and db.isdigit()):
        return f"the database after the host must be a number (redis://host:6379/0), not {db[:40]!r}"
    try:
        options = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
        threaded = options.get("connection_class", redis.connection.Connection)
        asyncio = redis.asyncio.connection.parse_url(url).get("connection_class", redis.asyncio.Connection)
    except ValueError as exc:
        return str(exc).rstrip(".")
    if db and "db" in (query := parse_qs(parts.query)):  # (the client takes the query's without a word)
        return f"the database is given twice, /{db} and ?db={query['db'][0][:40]}: give one of them"
    accepted = _keywords(threaded) & _keywords(asyncio) | {"max_connections"}  # (the last: the pool's)
    named = (*redis.connection.URL_QUERY_ARGUMENT_PARSERS, *_TEXT_OPTIONS)
    takes = f"(the Redis client takes {', '.join(n for n in named if n in accepted)})"
    for name in sorted(options.keys() - _FROM_URL):
        if name not in named:
            return f"unknown parameter {name[:40]!r} {takes}"
        if name not in accepted:
            return f"{name!r} is no parameter of a {parts.scheme}:// URL {takes}"
    for pool in (redis.connection.ConnectionPool, redis.asyncio.ConnectionPool):
        try:  # each value read as the client will (`ssl_cert_reqs=maybe`): no socket is opened
            pool.from_url(url).make_connection()
        except (ValueError, TypeError, redis.RedisError) as exc:
            return str(exc).rstrip(".")[:200]
    return None


def _keywords(cls: type) -> set[str]:
    """The keyword arguments a redis-py connection class takes (its own and its bases')."""
    import inspect

    names: set[str] = set()
    for klass in cls.__mro__:
        if (init := klass.__dict__.get("__init__")) is not None:
            params = inspect.signature(init).parameters.values()
            names.update(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
    return names - {"self"}
