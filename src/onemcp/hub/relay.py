"""Messages between hub replicas, over Redis pub/sub: the wire of `replicas`, nothing of what they mean.

Owns one Redis connection pair per replica: a subscription to the replica's own channel
(`onemcp:replica:<tag>`) and to the one every replica hears (`onemcp:replicas`), and a publisher
fed by a bounded queue, so a message can be sent from synchronous code without waiting. Also owns
asking another replica and waiting for its answer (`ask`, by correlation id, failing fast when no
replica is subscribed to the channel asked and as soon as the one asked stops being subscribed),
and secrets every replica must share (`shared_secret`). What the documents say is the concern of
`replicas`. While Redis cannot be reached, nothing crosses: sends are dropped and counted,
asks fail at once with a clear error, and the subscriber reconnects with a bounded backoff. The
commands a request may wait on (an ask's publish, values and secrets) have the Redis link's 1 s
deadline and go through its breaker: after a failure, for a few seconds, they fail at once (a hung
Redis costs one ask its second, not each ask five).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from onemcp.config import redis_link
from onemcp.observability.limits import hit
from onemcp.protocol.errors import HubError

log = logging.getLogger("onemcp.replicas")
ALL = "onemcp:replicas"
PREFIX = "onemcp:replica:"
QUEUE = 10_000  # messages waiting to be published; beyond it they are dropped (and counted)
CHECK_EVERY = 2.0  # seconds between checks that the replica asked is still there
Handler = Callable[[dict[str, Any]], Awaitable[None]]
Missed = Callable[[], None]


class RelayError(HubError):
    """Another replica could not be asked, or went away before it answered."""


class RedisRelay:
    def __init__(self, url: str, tag: str | None = None) -> None:
        self.url = url
        self.tag = tag or secrets.token_hex(4)
        self.up = False  # subscribed now
        self.on_message: Handler | None = None  # set by the owner before `run`
        self.on_back: Callable[[], Awaitable[None]] | None = None  # each time it is subscribed (again)
        self._redis: Any = None
        self._commands: Any = None  # for what a request waits on: the short deadline, through the breaker
        self._breaker = redis_link.breaker(url)
        self._send: MemoryObjectSendStream[tuple[str, bytes, Missed | None]] | None = None
        self._waiting: dict[str, tuple[anyio.Event, list[dict[str, Any]]]] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    @staticmethod
    def channel(tag: str) -> str:
        return PREFIX + tag

    # ------------------------------------------------------------------ lifecycle
    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Subscribe (reconnecting while Redis is away) and publish what is queued, until cancelled."""
        import redis.asyncio as aredis

        self._redis = aredis.Redis.from_url(self.url, socket_connect_timeout=1.0, socket_timeout=5.0)
        deadline = redis_link.DEADLINE
        self._commands = aredis.Redis.from_url(self.url, socket_connect_timeout=deadline, socket_timeout=deadline)
        self._send, queue = anyio.create_memory_object_stream[tuple[str, bytes, Missed | None]](QUEUE)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._publish, queue)
                await tg.start(self._subscribe)
                task_status.started()
        finally:
            self.up = False
            self._send.close()
            queue.close()
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await self._redis.aclose()
                await self._commands.aclose()

    async def _command(self, name: str, *args: Any, **options: Any) -> Any:
        """A command a caller waits on: the 1 s deadline, and not asked while the breaker is open."""

        async def command() -> Any:
            return await getattr(self._commands, name)(*args, **options)

        return await self._breaker.attempt(command)

    async def _subscribe(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        from redis.exceptions import RedisError

        started, backoff = False, 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel(self.tag), ALL)
                self.up, backoff = True, 0.1
                if self.on_back is not None:  # what was said while it was not heard: the owner checks
                    self.spawn(self.on_back)
                if not started:
                    started = True
                    task_status.started()
                async for raw in pubsub.listen():
                    self._received(raw)
            except (RedisError, OSError) as exc:
                if self.up:
                    log.warning("replica %s lost Redis (%s): nothing crosses replicas until it is back", self.tag, exc)
            finally:
                self.up = False
                with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                    await pubsub.aclose()
            if not started:
                started = True
                log.warning("replica %s cannot reach Redis at start: nothing crosses replicas until it can", self.tag)
                task_status.started()
            await anyio.sleep(backoff)
            backoff = min(5.0, backoff * 2)

    def _received(self, raw: dict[str, Any]) -> None:
        if raw.get("type") != "message":
            return
        try:
            doc = orjson.loads(raw["data"])
        except orjson.JSONDecodeError:
            log.warning("replica %s: a message that is not JSON on %s, ignored", self.tag, raw.get("channel"))
            return
        if not isinstance(doc, dict) or doc.get("from") == self.tag:
            return  # what this replica broadcast itself
        waiting = self._waiting.get(str(doc.get("re"))) if doc.get("k") == "answer" else None
        if waiting is not None:
            waiting[1].append(doc)
            waiting[0].set()
        elif self.on_message is not None and self._tg is not None:
            self._tg.start_soon(self._handle, self.on_message, doc)

    async def _handle(self, handler: Handler, doc: dict[str, Any]) -> None:
        try:
            await handler(doc)
        except Exception:
            log.exception("replica %s: handling a %r message from %s failed", self.tag, doc.get("k"), doc.get("from"))

    async def _publish(self, queue: MemoryObjectReceiveStream[tuple[str, bytes, Missed | None]]) -> None:
        from redis.exceptions import RedisError

        async for channel, data, missed in queue:
            try:
                heard = await self._redis.publish(channel, data)
            except (RedisError, OSError) as exc:
                log.info("replica %s: not published to %s: %s", self.tag, channel, exc)
                heard = 0
            if heard == 0 and missed is not None:
                missed()

    # ------------------------------------------------------------------ sending
    def _doc(self, doc: dict[str, Any]) -> bytes:
        return orjson.dumps({**doc, "from": self.tag})

    def _enqueue(self, channel: str, doc: dict[str, Any], missed: Missed | None) -> bool:
        if self._send is None:
            return False
        try:
            self._send.send_nowait((channel, self._doc(doc), missed))
        except anyio.WouldBlock:
            hit("relay_queue", "replica %s: relay queue full, dropped a %r message", self.tag, doc.get("k"))
            return False
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        return True

    def send(self, tag: str, doc: dict[str, Any], missed: Missed | None = None) -> bool:
        """Queue `doc` for replica `tag`; `missed` runs if no replica heard it (False: not even queued)."""
        return self.up and self._enqueue(self.channel(tag), doc, missed)

    def broadcast(self, doc: dict[str, Any]) -> bool:
        """Queue `doc` for every other replica."""
        return self.up and self._enqueue(ALL, doc, None)

    async def ask(self, tag: str, doc: dict[str, Any], patience: float) -> dict[str, Any]:
        """Ask replica `tag` and wait for its answer (the document it sent back), at most `patience` s."""
        if not self.up:
            raise RelayError(f"replica {tag} cannot be asked: this replica has no connection to Redis")
        corr = secrets.token_hex(8)
        event, answers = anyio.Event(), list[dict[str, Any]]()
        self._waiting[corr] = (event, answers)
        channel = self.channel(tag)
        try:
            try:
                heard = await self._command("publish", channel, self._doc({**doc, "re": corr}))
            except redis_link.errors() as exc:
                raise RelayError(f"replica {tag} cannot be asked: {exc}") from None
            if heard == 0:
                raise RelayError(f"replica {tag} is gone (it stopped or lost Redis)")
            with anyio.move_on_after(patience):
                while not event.is_set():
                    with anyio.move_on_after(CHECK_EVERY):
                        await event.wait()
                    if not event.is_set() and not await self._subscribed(channel):
                        raise RelayError(f"replica {tag} went away before it answered")
            if not answers:
                raise RelayError(f"replica {tag} did not answer within {patience:g} s")
            answer: dict[str, Any] = answers[0]
            return answer
        finally:
            self._waiting.pop(corr, None)

    async def tell_all(self, doc: dict[str, Any], patience: float) -> int:
        """Publish `doc` to every other replica and wait, `patience` s at most, until each that heard it has
        answered (`answer`): what it says has been acted on everywhere. Returns how many did not answer in time
        (Redis away: nothing is heard, 0). Not published at once (the breaker skips Redis after a failure, or
        the command failed): queued as a `broadcast`, which is not waited for (0), never dropped for it."""
        if not self.up:
            return 0
        corr = secrets.token_hex(8)
        answers: list[dict[str, Any]] = []
        try:
            self._waiting[corr] = (anyio.Event(), answers)
            try:
                heard = await self._command("publish", ALL, self._doc({**doc, "re": corr}))
            except redis_link.errors() as exc:
                log.info("replica %s: a %r message not published at once (%s): queued", self.tag, doc.get("k"), exc)
                self.broadcast(doc)
                return 0
            others = max(int(heard) - 1, 0)  # (this replica hears its own, and drops it)
            with anyio.move_on_after(patience):
                while len(answers) < others:
                    event = anyio.Event()  # set by the next answer (`_received`)
                    self._waiting[corr] = (event, answers)
                    await event.wait()
            return max(others - len(answers), 0)
        finally:
            self._waiting.pop(corr, None)

    async def present(self, tag: str) -> bool:
        """Is replica `tag` still subscribed (True too when Redis failed a moment ago: asked again later)?"""
        return await self._subscribed(self.channel(tag))

    async def _subscribed(self, channel: str) -> bool:
        try:
            counts = await self._command("pubsub_numsub", channel)
        except redis_link.RedisSkipped:
            return True  # Redis failed a moment ago (maybe for another caller): asked again at the next check
        except redis_link.errors():
            return False
        return bool(counts and int(counts[0][1]) > 0)

    def answer(self, asked: dict[str, Any], doc: dict[str, Any]) -> None:
        """Send `doc` back to the replica that asked `asked`."""
        asker, corr = asked.get("from"), asked.get("re")
        if isinstance(asker, str) and isinstance(corr, str):
            self._enqueue(self.channel(asker), {**doc, "k": "answer", "re": corr}, None)

    def spawn(self, work: Callable[..., Awaitable[Any]], *args: Any) -> bool:
        """Run `work` in the relay's task group (from synchronous code); False when the relay is not running."""
        if self._tg is None or not self.up:
            return False
        self._tg.start_soon(self._handle_work, work, args)
        return True

    async def _handle_work(self, work: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            await work(*args)
        except Exception:
            log.exception("replica %s: %s failed", self.tag, getattr(work, "__name__", work))

    async def get(self, key: str) -> bytes | None:
        """A value every replica reads (None: absent; `RelayError`: Redis cannot be reached)."""
        try:
            value = await self._command("get", key)
        except redis_link.errors() as exc:
            log.warning("replica %s: %s not read from Redis: %s", self.tag, key, exc)
            raise RelayError(f"{key} not read from Redis: {exc}") from None
        return bytes(value) if value is not None else None

    async def put(self, key: str, value: bytes) -> bool:
        try:
            await self._command("set", key, value)
        except redis_link.errors() as exc:
            log.warning("replica %s: %s not written to Redis: %s", self.tag, key, exc)
            return False
        return True

    async def shared_secret(self, name: str, mine: bytes | None = None) -> bytes | None:
        """A 32-byte secret every replica on this Redis shares (made by whichever asks first: `mine`, the
        one this replica uses, if it has one, else a new one); None if unreachable."""
        key = f"onemcp:secret:{name}"
        try:
            await self._command("set", key, (mine or secrets.token_bytes(32)).hex(), nx=True)
            value = await self._command("get", key)
        except redis_link.errors() as exc:
            log.warning("replica %s: no shared %s secret (%s)", self.tag, name, exc)
            return None
        return bytes.fromhex(value.decode()) if value else None
