"""The set of upstreams: start them in parallel, supervise them, add and remove them live.

Owns one `Slot` per enabled server it runs (`runs`: a stdio hub's view leaves some out; plus one per
extra replica URL, balanced by `pick`):
its current connection, and a supervisor task that
restarts the connection when it fails (exponential backoff with jitter; more than
`RESTART_BUDGET` restarts within `BUDGET_WINDOW` seconds marks the server crash-looping
and slows retries to `CRASH_LOOP_WAIT`). Removing a server lets its in-flight calls
finish for up to `drain` seconds, then stops it (its callers get a clear error). Each
replica's breaker is fed here: a failed call counts only when the upstream shows no sign of
life (`judge`).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskGroup, TaskStatus

from onemcp.config.model import HubConfig, Probe, ServerConfig
from onemcp.upstream import user_secrets
from onemcp.upstream.balance import Balancer
from onemcp.upstream.breaker import Breaker
from onemcp.upstream.connection import ConnectionEvents, UpstreamConnection
from onemcp.upstream.oauth.registry import UpstreamAuth
from onemcp.upstream.sandbox import OVER_LIMIT
from onemcp.upstream.transports.factory import TransportFactory, make_transport

log = logging.getLogger("onemcp.pool")
RESTART_BUDGET = 5
BUDGET_WINDOW = 60.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
CRASH_LOOP_WAIT = 300.0
STABLE_AFTER = 30.0  # ready this long: the backoff starts over
DRAIN_SECONDS = 10.0
REMOVED, CHANGED = "removed from the config by a reload", "restarting after a config change"  # what calls cut off hear
BLOCKED_WAIT = 3600.0  # waiting for an operator to authorize: woken by the callback


# what the supervisor is doing with a server
SlotStatus = Literal[
    "running", "restarting", "crash-looping", "needs-authorization", "command-not-found", "over-limit", "stopping"
]


@dataclass(eq=False)
class Slot:
    """One configured upstream and its supervisor's bookkeeping."""

    name: str
    config: ServerConfig
    conn: UpstreamConnection
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    status: SlotStatus = "running"
    restarts: int = 0
    recent: deque[float] = field(default_factory=deque)
    next_attempt: float | None = None
    wake: anyio.Event = field(default_factory=anyio.Event)
    breaker: Breaker = field(default_factory=Breaker)
    replicas: list[Slot] = field(default_factory=list)  # further URLs of the same server
    balancer: Balancer | None = None  # the first member's: spreads calls over all (upstream/balance.py)
    probe_ok: bool = True  # the active health probe's verdict (HTTP `probe`); a member out of it takes no calls
    probe_streak: int = 0  # probes in a row that disagree with `probe_ok`
    picks: int = 0  # calls this member was chosen for
    server_config: ServerConfig | None = None  # the server's own config (a replica's has its own URL)
    # why the last attempt failed, kept while the next one starts: "did not start within 30s (attempt 3, ...)"
    last_failure: str | None = None
    last_error: str | None = None  # the failure last logged, and how many times in a row it happened
    repeats: int = 0

    @property
    def members(self) -> list[Slot]:
        return [self, *self.replicas]


class Pool:
    def __init__(
        self,
        config: HubConfig,
        events: ConnectionEvents,
        auth: UpstreamAuth | None = None,
        transports: TransportFactory = make_transport,
    ) -> None:
        self.events = events
        self.auth = auth
        self.transports = transports
        self.slots: dict[str, Slot] = {}
        self._changing: dict[str, anyio.Lock] = {}  # one stop/start of a server at a time (`restart`)
        self._initial = dict(config.enabled)
        self._tg: TaskGroup | None = None
        self.tried = anyio.Event()
        self.judging = 0  # failed calls whose upstream is being pinged (see `judge`)
        self.runs: Callable[[str], bool] = lambda name: True  # which servers are started (`hub.served`)

    @property
    def connections(self) -> dict[str, UpstreamConnection]:
        """One connection per server: a ready replica when there is one."""
        return {name: self._representative(slot) for name, slot in self.slots.items()}

    @staticmethod
    def _representative(slot: Slot) -> UpstreamConnection:
        return next((m.conn for m in slot.members if m.conn.state == "ready"), slot.conn)

    def get(self, name: str) -> UpstreamConnection | None:
        slot = self.slots.get(name)
        return self._representative(slot) if slot is not None else None

    def _member(self, conn: UpstreamConnection) -> Slot | None:
        slot = self.slots.get(conn.name)
        if slot is None:
            return None
        return next((m for m in slot.members if m.conn is conn), None)

    def is_current(self, conn: UpstreamConnection) -> bool:
        return self._member(conn) is not None

    def any_ready(self, name: str) -> bool:
        slot = self.slots.get(name)
        return slot is not None and any(m.conn.state == "ready" for m in slot.members)

    def pick(self, name: str, pins: dict[str, int] | None = None, key: str | None = None) -> Slot | None:
        """A ready replica of `name` whose breaker and probe let a call through (sticky per `pins`;
        with consistent-hash, the one `key` hashes to)."""
        slot = self.slots.get(name)
        if slot is None:
            return None
        members = slot.members
        healthy = [
            i for i, m in enumerate(members) if m.conn.state == "ready" and m.breaker.state != "open" and m.probe_ok
        ]
        if not healthy:
            return None
        hashed = slot.config.balance == "consistent-hash"
        if pins is not None and not hashed and pins.get(name) in healthy:
            index = pins[name]
        elif slot.balancer is not None:
            index = slot.balancer.pick(healthy, lambda i: members[i].conn.in_flight, key)
        else:
            index = healthy[0]
        if pins is not None and len(members) > 1 and not hashed:
            pins[name] = index
        members[index].picks += 1
        return members[index]

    def all_tried(self) -> bool:
        """Has every upstream (every replica too) been tried at least once?"""
        return all(m.conn.state != "starting" or m.restarts for s in self.slots.values() for m in s.members)

    def note_state(self) -> None:
        if not self.tried.is_set() and self.all_tried():
            self.tried.set()
            log.info("every server was tried: %s", self.summary())

    def summary(self) -> str:
        """ "3 ready, 1 failed: fetch (process exited with code 1)" """
        states: dict[str, int] = {}
        failed = []
        for name, slot in self.slots.items():
            state = slot.conn.state
            states[state] = states.get(state, 0) + 1
            if state == "failed":
                failed.append(
                    f"{name} ({(slot.conn.last_error or '').splitlines()[0][:100] if slot.conn.last_error else '?'})"
                )
        text = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "no servers"
        return text + (f": {', '.join(failed)}" if failed else "")

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for name, config in self._initial.items():
                self.add(name, config)
            self.note_state()
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:  # the hub stops: OAuth exchanges shielded from their callers must not hold it up
                if self.auth is not None:
                    self.auth.stop()

    def _connection(self, name: str, config: ServerConfig, server: ServerConfig) -> UpstreamConnection:
        """A connection to `config` (a replica's URL, or the server's own) with the server's credential;
        `${user:NAME}` values are left at their defaults: this one lists tools for everyone."""
        if user_secrets.per_user(server):
            config, server = user_secrets.render(config, None), user_secrets.render(server, None)
        return UpstreamConnection(name, config, self.transports(name, config, self.auth, server), self.events)

    def add(self, name: str, config: ServerConfig) -> None:
        """Start supervising a server (a new one, or a changed one after `remove`), unless it is not to run."""
        assert self._tg is not None, "the pool is not running"
        if not self.runs(name):  # outside a stdio hub's one view: no client could reach it
            return
        if config.url is not None:
            urls: list[str | None] = [config.url, *(config.replicas if isinstance(config.replicas, list) else [])]
        else:
            urls = [None] * config.members  # stdio: N processes of the command
        members = []
        for url in urls:
            own = config if url == config.url else config.model_copy(update={"url": url})
            member = Slot(name, own, self._connection(name, own, config), server_config=config)
            member.breaker = Breaker(config.breaker_threshold, config.breaker_cooldown)
            members.append(member)
        slot = members[0]
        slot.replicas = members[1:]
        ids = [url or f"{name}#{i}" for i, url in enumerate(urls)]
        slot.balancer = Balancer(config.balance, ids, config.weights or None)
        replaced = self.slots.get(name)
        if replaced is not None:  # never two supervised connections for one name: the one there stops now
            self._stop(replaced, "replaced by a new start")
        self.slots[name] = slot
        for member in members:
            self._tg.start_soon(self._supervise, member)
            if config.probe is not None and member.config.url is not None:
                self._tg.start_soon(self._probe, member, config.probe)

    async def remove(self, name: str, *, drain: float | None = None, reason: str = "stopped by the hub") -> None:
        """Stop a server: in-flight calls get `drain` seconds (`DRAIN_SECONDS`) to finish, then end with `reason`."""
        drain = DRAIN_SECONDS if drain is None else drain
        slot = self.slots.get(name)
        if slot is None:
            return
        for member in slot.members:
            member.status = "stopping"
        with anyio.move_on_after(drain):
            for member in slot.members:
                await member.conn.drained()
        if self.slots.get(name) is slot:  # not the one someone else started meanwhile
            del self.slots[name]
        self._stop(slot, reason)
        self.note_state()  # the start-up may have waited only for this one

    @staticmethod
    def _stop(slot: Slot, reason: str) -> None:
        for member in slot.members:
            member.status = "stopping"
            member.conn.fail_pending(reason, closed=False)  # a clear error, not "connection closed"
            member.scope.cancel()

    def take_request_settings(self, name: str, settings: dict[str, Any]) -> None:
        """The server's per-request settings changed (`ServerConfig.REQUEST_FIELDS`): every member's
        connection uses them from its next request, and a restart after a crash keeps them."""
        slot = self.slots.get(name)
        for member in slot.members if slot is not None else []:
            member.config = member.config.model_copy(update=settings)
            if member.server_config is not None:
                member.server_config = member.server_config.model_copy(update=settings)
            retime(member.conn, settings)

    def busy(self, name: str) -> bool:
        """Is `name` running, stopping, or being restarted?"""
        return name in self.slots or name in self._changing

    def restart_soon(
        self, name: str, wanted: Callable[[], ServerConfig | None], on_stopped: Callable[[str], None] | None = None
    ) -> None:
        """`restart` (unforced) in the background: a reload does not wait for a removed server's drain."""
        assert self._tg is not None, "the pool is not running"
        self._tg.start_soon(self._restart_quietly, name, wanted, on_stopped)

    async def _restart_quietly(
        self, name: str, wanted: Callable[[], ServerConfig | None], on_stopped: Callable[[str], None] | None
    ) -> None:
        try:
            await self.restart(name, wanted, force=False, on_stopped=on_stopped)
        except Exception:  # the boundary: one server's change never takes the hub down
            log.exception("upstream %s: the reload's change failed", name)

    async def restart(
        self,
        name: str,
        wanted: Callable[[], ServerConfig | None],
        *,
        force: bool = True,
        reason: str | None = None,
        on_stopped: Callable[[str], None] | None = None,
    ) -> bool:
        """Bring `name` to what `wanted()` (its config now, None when it has none) says, one change at a
        time per server. Its slot stops (calls get the drain bound) when `force`d, gone from `wanted`, or
        changed in how it connects; it then starts with what `wanted()` says *after* the drain (a reload
        may have changed or removed it meanwhile), `on_stopped` first. True when it runs afterwards.
        Calls cut off by the drain bound hear `reason` (default: a reload's `REMOVED` or `CHANGED`)."""
        lock = self._changing.setdefault(name, anyio.Lock())
        try:
            async with lock:
                slot, config = self.slots.get(name), wanted()
                stale = slot is not None and (
                    config is None or not (slot.server_config or slot.config).same_connection(config)
                )
                if slot is not None and (force or stale):
                    await self.remove(name, reason=reason or (REMOVED if config is None else CHANGED))
                    if on_stopped is not None:
                        on_stopped(name)
                elif slot is not None and config is not None:
                    # kept: a reload that removed it and one that added it back ran before this change (the
                    # catalog forgot its lists at the removal), so its lists are read again, not waited for
                    for member in slot.members:
                        for kind in member.conn.kinds() if member.conn.state == "ready" else ():
                            member.conn.refresh_soon(kind, unpaced=True)
                config = wanted()
                if config is not None and name not in self.slots:
                    self.add(name, config)
                return config is not None
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting and self._changing.get(name) is lock:
                del self._changing[name]

    def record(self, conn: UpstreamConnection, *, ok: bool) -> None:
        """A call on `conn` finished: feed its replica's breaker."""
        member = self._member(conn)
        if member is not None:
            member.breaker.record(ok)

    def judge(self, conn: UpstreamConnection, since: float) -> None:
        """A call sent on `conn` at `since` timed out or could not be carried: a failure for its
        replica's breaker only if the upstream shows no sign of life (it answered nothing since, and
        no ping now), since one client's calls alone can make calls fail. Judged in the background:
        the caller's error is not delayed by the ping."""
        if conn.last_answered >= since:
            self.record(conn, ok=True)
        elif self._tg is None:
            self.record(conn, ok=False)
        else:
            self.judging += 1
            self._tg.start_soon(self._judge, conn, since)

    async def _judge(self, conn: UpstreamConnection, since: float) -> None:
        try:
            self.record(conn, ok=await conn.responsive(since))
        finally:
            self.judging -= 1

    def retry_now(self, name: str) -> None:
        """Cut a waiting restart short (a reload touched the server, or an operator asked)."""
        slot = self.slots.get(name)
        if slot is not None:
            for member in slot.members:
                member.wake.set()

    async def _probe(self, member: Slot, probe: Probe) -> None:
        """GET `probe.path` on the member's origin every `interval`: out after `unhealthyThreshold`
        failures in a row, back after `healthyThreshold` successes (any answer below 500 is a success)."""
        import httpx

        assert member.config.url is not None
        parts = urlsplit(member.config.url)
        target = f"{parts.scheme}://{parts.netloc}{probe.path}"
        async with httpx.AsyncClient(timeout=probe.timeout, trust_env=False) as client:
            while member.status != "stopping":
                try:
                    with anyio.fail_after(probe.timeout):  # the whole answer: httpx's timeout is per read
                        up = (await client.get(target)).status_code < 500
                except (httpx.HTTPError, TimeoutError):
                    up = False
                member.probe_streak = 0 if up == member.probe_ok else member.probe_streak + 1
                needed = probe.healthy_threshold if not member.probe_ok else probe.unhealthy_threshold
                if member.probe_streak >= needed:
                    member.probe_ok, member.probe_streak = up, 0
                    log.warning(
                        "upstream %s replica %s: probe %s", member.name, member.config.url, "up" if up else "down"
                    )
                    self.events.on_state(member.conn)
                await anyio.sleep(probe.interval)

    async def _supervise(self, slot: Slot) -> None:
        delay = BACKOFF_FIRST
        with slot.scope:
            while True:
                started = time.monotonic()
                await slot.conn.run()
                if slot.status == "stopping":
                    return
                now = time.monotonic()
                if slot.conn.ready_since is not None and now - slot.conn.ready_since >= STABLE_AFTER:
                    delay = BACKOFF_FIRST
                    slot.recent.clear()
                slot.recent.append(now)
                while slot.recent and now - slot.recent[0] > BUDGET_WINDOW:
                    slot.recent.popleft()
                credential = getattr(slot.conn.transport, "auth", None)
                error = slot.conn.last_error or ""
                if error.startswith(("command not found", "working directory not found")):
                    # retrying cannot help: wait for the config to change (a reload restarts it) or an operator
                    slot.status, wait, delay = "command-not-found", math.inf, BACKOFF_FIRST
                    slot.recent.clear()
                elif OVER_LIMIT in (slot.conn.last_error or ""):
                    # it would only run into its sandbox limit again: an operator restarts it, or a reload
                    slot.status, wait, delay = "over-limit", math.inf, BACKOFF_FIRST
                    slot.recent.clear()
                elif credential is not None and credential.blocked:
                    # an operator must authorize the hub; retrying sooner would only be refused
                    slot.status, wait, delay = "needs-authorization", BLOCKED_WAIT, BACKOFF_FIRST
                    slot.recent.clear()
                elif len(slot.recent) > RESTART_BUDGET and slot.conn.config.url is None:
                    # a process that keeps dying; a remote server that cannot be reached is only down:
                    # it keeps the backoff (at most 30 s), so it is back soon after the server is
                    slot.status, wait = "crash-looping", CRASH_LOOP_WAIT
                else:
                    slot.status, wait = "restarting", delay * random.uniform(0.8, 1.2)
                    delay = min(delay * 2, BACKOFF_MAX)
                    # a server that refused with 429/503 + Retry-After: not asked again sooner
                    wait = max(wait, getattr(slot.conn.transport, "retry_after", None) or 0.0)
                # the same failure again and again: said at the 1st, 2nd, 4th, 8th... time, with the count
                slot.repeats = slot.repeats + 1 if slot.conn.last_error == slot.last_error else 1
                slot.last_error = slot.conn.last_error
                if slot.repeats & (slot.repeats - 1) == 0:
                    log.warning(
                        "upstream %s stopped after %.1fs (%s)%s; %s, %s",
                        slot.name,
                        now - started,
                        slot.conn.last_error,
                        f" [{slot.repeats} times in a row]" if slot.repeats > 1 else "",
                        slot.status,
                        f"next attempt in {wait:.1f}s" if wait != math.inf else "waiting for a config change",
                    )
                slot.next_attempt = time.time() + wait if wait != math.inf else None
                upcoming = f", next in {wait:.0f}s" if wait != math.inf else ", waiting for a config change"
                slot.last_failure = f"{slot.conn.last_error} (attempt {slot.restarts + 1}{upcoming})"
                slot.wake = anyio.Event()
                with anyio.move_on_after(wait):
                    await slot.wake.wait()
                slot.next_attempt = None
                slot.restarts += 1
                old_tail = getattr(slot.conn.transport, "stderr_tail", None)
                slot.conn = self._connection(slot.name, slot.config, slot.server_config or slot.config)
                new_tail = getattr(slot.conn.transport, "stderr_tail", None)
                if old_tail and new_tail is not None:  # why the last one died stays readable
                    new_tail.extend(old_tail)
                slot.status = "running"
                self.events.on_state(slot.conn)


def retime(conn: UpstreamConnection, settings: dict[str, Any]) -> None:
    """Give a running connection (and its transport) new per-request settings, for its next requests."""
    conn.config = conn.config.model_copy(update=settings)
    conn.transport.config = conn.transport.config.model_copy(update=settings)
    conn.transport.budget.rate = conn.transport.config.max_messages_per_second  # from its next message
