"""Two hub replicas on one real Redis, a client's requests spread over both: what must cross, crosses.

Each hub runs in this process on its own port with its own stdio upstream (as replicas do), the same
config and `sessionStore: redis://...`. A real SDK client whose every HTTP request goes to the next
replica in turn (as a round-robin balancer without stickiness sends them) answers an upstream's
sampling and roots requests, and, as a 2026-07-28 client, resumes a parked call on the other replica.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.abc
import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from onemcp.config.model import HubConfig
from onemcp.hub import replicas as replicas_module
from support.hub import HEADERS, INIT, RunningHub, running_hub
from support.results import text_of
from support.services import NEEDS_REDIS, replica_config

pytestmark = [
    pytest.mark.anyio,
    NEEDS_REDIS,
]
DEADLINE = 60.0


@asynccontextmanager
async def two_replicas(redis_url: str) -> AsyncIterator[tuple[RunningHub, RunningHub]]:
    async with running_hub(replica_config(redis_url)) as one, running_hub(replica_config(redis_url)) as two:
        for hub in (one, two):
            replicas = hub.app.hub.replicas
            assert replicas is not None
            with anyio.fail_after(10):
                while not replicas.relay.up:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (subscribing)
        yield one, two


class RoundRobin(httpx2.AsyncBaseTransport):
    """Each request to the next replica in turn: no stickiness at all."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.inner = httpx2.AsyncHTTPTransport()
        self.turn = 0
        self.served: list[tuple[int, str]] = []  # (port, method) of each request

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = self.ports[self.turn % len(self.ports)]
        self.turn += 1
        self.served.append((port, request.method))
        request.url = request.url.copy_with(port=port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def sample(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="word"), model="m")


async def roots(context: ClientRequestContext) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri="file:///srv", name="srv")])


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_client_spread_over_replicas_answers_its_upstreams_requests(redis_url: str, mode: str) -> None:
    """Legacy: the answer to a sampling request lands on the other replica and goes back to the one
    whose call asked. 2026-07-28 (auto): the retry with the requestState lands on the other replica,
    which has the call resumed on the replica that parked it."""
    with anyio.fail_after(DEADLINE):
        async with two_replicas(redis_url) as (one, two):
            ports = [httpx.URL(one.url).port or 0, httpx.URL(two.url).port or 0]
            balancer = RoundRobin(ports)
            async with (
                httpx2.AsyncClient(transport=balancer, timeout=30) as http,
                Client(
                    streamable_http_client(one.url, http_client=http),
                    mode=mode,
                    cache=None,
                    sampling_callback=sample,
                    list_roots_callback=roots,
                ) as c,
            ):
                for _ in range(3):  # the call and its answer land on different replicas at least once
                    assert "word" in text_of(await c.call_tool("sample", {"prompt": "p"}))
                    assert "file:///srv" in text_of(await c.call_tool("roots", {}))
            assert {port for port, _ in balancer.served} == set(ports)
            async with httpx.AsyncClient() as plain:
                reports = [(await plain.get(f"{hub.base}/health")).json()["replicas"] for hub in (one, two)]
            assert all(r["redis"] == "connected" for r in reports)
            crossed = "received reply" if mode == "legacy" else "received resume"  # what the relay carried
            assert sum(r["messages"].get(crossed, 0) for r in reports) >= 1, reports


async def sample_with_progress(
    context: ClientRequestContext, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult:
    token = (context.meta or {}).get("progress_token")
    assert token is not None
    await context.session.send_progress_notification(token, 0.5, 1.0, "thinking")
    return await sample(context, params)


class CallsToOne(RoundRobin):
    """Tool calls to the first replica, everything else (the client's progress, its answers) to the second."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        calls = request.method == "POST" and b'"tools/call"' in request.content
        request.url = request.url.copy_with(port=self.ports[0 if calls else 1])
        self.served.append((self.ports[0 if calls else 1], request.method))
        return await self.inner.handle_async_request(request)


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # legacy-era progress
async def test_a_clients_progress_on_sampling_reaches_the_replica_whose_server_asked(redis_url: str) -> None:
    """The progress a client reports on a sampling request lands on another replica than the call: it is
    passed to the replica that sent the request (before the answer that follows it, passed on the same way),
    and its server hears it under its own token."""
    with anyio.fail_after(DEADLINE):
        async with two_replicas(redis_url) as (one, two):
            ports = [httpx.URL(one.url).port or 0, httpx.URL(two.url).port or 0]
            async with (
                httpx2.AsyncClient(transport=CallsToOne(ports), timeout=30) as http,
                Client(
                    streamable_http_client(one.url, http_client=http),
                    mode="legacy",
                    cache=None,
                    sampling_callback=sample_with_progress,
                ) as c,
            ):
                for _ in range(2):
                    result = await c.call_tool("sample", {"token": "up-1"})
                    heard = (result.structured_content or {}).get("progressHeard")
                    assert heard == {"progressToken": "up-1", "progress": 0.5, "total": 1.0, "message": "thinking"}
            async with httpx.AsyncClient() as plain:
                reports = [(await plain.get(f"{hub.base}/health")).json()["replicas"] for hub in (one, two)]
            assert reports[0]["messages"].get("received notify", 0) == 2, reports


async def open_stream(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
    async with http.stream("GET", url, headers={**headers, "accept": "text/event-stream"}) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data:") and line[5:].strip():
                yield json.loads(line[5:])


async def legacy_session(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    r = await http.post(url, json=INIT, headers=HEADERS)
    headers = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    return headers


async def test_a_message_for_a_session_reaches_the_replica_that_holds_its_stream(redis_url: str) -> None:
    """The GET stream is on one; a call on two makes two's upstream log after its reply (related to
    nothing): two passes the log to one, whose stream carries it."""
    with anyio.fail_after(DEADLINE):
        async with two_replicas(redis_url) as (one, two), httpx.AsyncClient(timeout=30) as http:
            headers = await legacy_session(http, one.url)
            sid = headers["mcp-session-id"]
            got: list[dict[str, Any]] = []
            arrived = anyio.Event()

            async def read() -> None:
                async for msg in open_stream(http, one.url, headers):
                    got.append(msg)
                    arrived.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                replicas = two.app.hub.replicas
                assert replicas is not None
                with anyio.fail_after(10):
                    while not replicas.listening(sid):  # two heard that one holds the stream
                        await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                call = {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "tools/call",
                    "params": {"name": "log", "arguments": {"message": "from two", "detached": True}},
                }
                r = await http.post(two.url, json=call, headers=headers)
                assert "logging" in r.text
                await arrived.wait()
                tg.cancel_scope.cancel()
            assert got[0]["method"] == "notifications/message"
            assert got[0]["params"]["data"] == "from two"


async def test_a_cancellation_reaches_the_replica_running_the_call(redis_url: str) -> None:
    with anyio.fail_after(DEADLINE):
        async with two_replicas(redis_url) as (one, two), httpx.AsyncClient(timeout=30) as http:
            headers = await legacy_session(http, one.url)
            sid = headers["mcp-session-id"]
            call = {
                "jsonrpc": "2.0",
                "id": 7,
                "method": "tools/call",
                "params": {"name": "sleep", "arguments": {"seconds": 30}},
            }
            done = anyio.Event()

            async def slow_call() -> None:
                await http.post(two.url, json=call, headers=headers)
                done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(slow_call)
                with anyio.fail_after(10):
                    while (session := two.app.hub.find_session(sid)) is None or 7 not in session.in_flight:
                        await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}
                r = await http.post(one.url, json=cancel, headers=headers)
                assert r.status_code == 202
                with anyio.fail_after(10):  # not the 30 s the upstream would sleep
                    await done.wait()
            assert session is not None and 7 not in session.in_flight


async def test_what_waited_for_a_stream_goes_to_the_replica_where_one_opens(redis_url: str) -> None:
    """No GET stream anywhere: a resource update for the session waits on two. When the client opens
    its GET stream on one, two hands the update over and it arrives there."""
    with anyio.fail_after(DEADLINE):
        async with two_replicas(redis_url) as (one, two), httpx.AsyncClient(timeout=30) as http:
            headers = await legacy_session(http, one.url)
            sid = headers["mcp-session-id"]
            uri = "fixture://static"
            subscribe = {"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": uri}}
            assert "error" not in (await http.post(two.url, json=subscribe, headers=headers)).text
            touch = {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "touch", "arguments": {"uri": uri}},
            }
            assert "error" not in (await http.post(two.url, json=touch, headers=headers)).text
            session = two.app.hub.find_session(sid)
            assert session is not None
            with anyio.fail_after(10):  # the update reached two's session, with no stream to carry it
                while session.outbox is None or session.outbox.queued() == 0:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            got: list[dict[str, Any]] = []
            async for msg in open_stream(http, one.url, headers):
                got.append(msg)
                break
            assert got[0]["method"] == "notifications/resources/updated"
            assert got[0]["params"]["uri"] == uri


async def test_a_task_is_followed_to_the_replica_that_made_it(redis_url: str) -> None:
    """A task runs on the upstream connection of the replica whose call made it: tasks/get, result and
    cancel that land on another replica are answered there (they were 'Task not found')."""
    config = replica_config(redis_url)
    config["mcpServers"]["fx"]["args"].append("--tasks")
    with anyio.fail_after(DEADLINE):
        async with (
            running_hub(config) as one,
            running_hub(config) as two,
            httpx.AsyncClient(timeout=30) as http,
        ):
            for hub in (one, two):
                replicas = hub.app.hub.replicas
                assert replicas is not None
                while not replicas.relay.up:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (subscribing)
            headers = await legacy_session(http, one.url)

            async def ask(url: str, method: str, **params: Any) -> dict[str, Any]:
                body = {"jsonrpc": "2.0", "id": 9, "method": method, "params": params}
                return (await http.post(url, json=body, headers=headers)).json()  # type: ignore[no-any-return]

            quick = await ask(one.url, "tools/call", name="sleep", arguments={"seconds": 0.1}, task={"ttl": 60000})
            slow = await ask(one.url, "tools/call", name="sleep", arguments={"seconds": 30}, task={"ttl": 60000})
            quick_id, slow_id = quick["result"]["task"]["taskId"], slow["result"]["task"]["taskId"]
            assert (await ask(two.url, "tasks/get", taskId=quick_id))["result"]["taskId"] == quick_id
            result = (await ask(two.url, "tasks/result", taskId=quick_id))["result"]
            assert result["content"][0]["text"] == "slept 0.1", result
            cancelled = (await ask(two.url, "tasks/cancel", taskId=slow_id))["result"]
            assert cancelled["taskId"] == slow_id and cancelled["status"] == "cancelled", cancelled
            # an id naming no replica: not found, on either; one naming a replica that is gone says so
            for url in (one.url, two.url):
                error = (await ask(url, "tasks/get", taskId=f"{quick_id}x"))["error"]
                assert error["code"] == -32602 and "Task not found" in error["message"], error
            gone = quick_id.rpartition("@")[0] + "@00000000"
            error = (await ask(two.url, "tasks/get", taskId=gone))["error"]
            assert "replica 00000000 is gone" in error["message"], error


async def test_a_hub_starts_on_a_hung_redis_within_its_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    """The replicas' start asked Redis for the shared secret and the presets with the relay's 5 s reads and
    no bound of its own: a hung Redis held the hub's start (10 s with redis-py's timeouts; for good with a
    Redis that answers nothing at all, as here)."""
    from onemcp.hub import replicas as replicas_module
    from onemcp.hub.core import Hub
    from onemcp.hub.relay import RedisRelay

    async def hang(*_: Any) -> Any:
        await anyio.sleep_forever()

    async def relay_run(self: RedisRelay, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()  # the pub/sub link "up": what hangs is every request
        await anyio.sleep_forever()

    monkeypatch.setattr(replicas_module, "START_PATIENCE", 0.2, raising=False)
    monkeypatch.setattr(RedisRelay, "run", relay_run)
    monkeypatch.setattr(RedisRelay, "shared_secret", hang)
    monkeypatch.setattr(RedisRelay, "get", hang)
    hub = Hub(HubConfig.model_validate({"mcpServers": {}}))
    hub.share_with_replicas("redis://127.0.0.1:1/0")
    assert hub.replicas is not None
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(hub.replicas.run)
            tg.cancel_scope.cancel()


class _PresetsRedis:
    """What the replicas' presets meet in Redis: `put`s that may be held (the first) or fail (while `down`)."""

    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}
        self.puts = 0
        self.hold_first = anyio.Event()  # set: the first put goes through
        self.first_held = anyio.Event()
        self.down = False
        self.unreadable = False  # a get fails (Redis cannot be reached)
        self.announced = 0  # "presets" broadcasts


@asynccontextmanager
async def _replicas_on(
    redis: _PresetsRedis, monkeypatch: pytest.MonkeyPatch, presets: dict[str, Any] | None = None
) -> AsyncIterator[Any]:
    """One hub's replicas, its relay's wire to Redis replaced by `redis` (announcements every 0.05 s)."""
    from onemcp.hub import replicas as replicas_module
    from onemcp.hub.core import Hub
    from onemcp.hub.relay import RedisRelay, RelayError

    async def relay_run(self: RedisRelay, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with anyio.create_task_group() as tg:
            self._tg, self.up = tg, True
            task_status.started()
            await anyio.sleep_forever()

    async def put(self: RedisRelay, key: str, value: bytes) -> bool:
        redis.puts += 1
        if redis.puts == 1:
            redis.first_held.set()
            await redis.hold_first.wait()  # Redis held this write (hung, then let go)
        if redis.down:
            return False
        redis.stored[key] = value
        return True

    async def get(self: RedisRelay, key: str) -> bytes | None:
        if redis.unreadable:
            raise RelayError(f"{key} not read from Redis: Timeout reading")
        return redis.stored.get(key)

    async def no_secret(self: RedisRelay, name: str, mine: bytes | None = None) -> None:
        return None

    def broadcast(self: RedisRelay, doc: dict[str, Any]) -> bool:
        redis.announced += doc.get("k") == "presets"
        return True

    monkeypatch.setattr(replicas_module, "ANNOUNCE_EVERY", 0.05)
    monkeypatch.setattr(RedisRelay, "run", relay_run)
    monkeypatch.setattr(RedisRelay, "put", put)
    monkeypatch.setattr(RedisRelay, "get", get)
    monkeypatch.setattr(RedisRelay, "shared_secret", no_secret)
    monkeypatch.setattr(RedisRelay, "broadcast", broadcast)
    hub = Hub(HubConfig.model_validate({"mcpServers": {}}))
    hub.share_with_replicas("redis://127.0.0.1:1/0")
    assert hub.replicas is not None
    if presets is not None:  # this replica's presets.json, loaded before the replicas start
        hub.replicas.presets_loaded(presets)
    async with anyio.create_task_group() as tg:
        await tg.start(hub.replicas.run)
        yield hub.replicas
        tg.cancel_scope.cancel()


async def test_presets_changed_twice_while_redis_holds_the_first_write_end_in_redis_as_the_latest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each change's write to Redis ran on its own: a write Redis held (hung) finished after a later
    one, and Redis and every other replica kept the older presets for good (15 edits in a row through
    the admin API while Redis hung half a second: 3 reached the other replicas)."""
    redis = _PresetsRedis()
    with anyio.fail_after(10):
        async with _replicas_on(redis, monkeypatch) as replicas:
            replicas.presets_loaded({"one": {"filter": "fx"}})
            await redis.first_held.wait()
            replicas.presets_loaded({"one": {"filter": "fx"}, "two": {"filter": "fx"}})
            # the second share waits for the first (held in Redis); not wait_all_tasks_blocked, which the
            # replicas' own timers could keep from returning
            while replicas._presets_lock.statistics().tasks_waiting < 1:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            redis.hold_first.set()
            while json.loads(redis.stored.get("onemcp:presets", b"{}")).keys() != {"one", "two"} or redis.puts < 2:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the writes in turn)
    assert json.loads(redis.stored["onemcp:presets"]) == {"one": {"filter": "fx"}, "two": {"filter": "fx"}}


async def test_presets_changed_while_redis_failed_reach_it_once_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A change whose write to Redis failed was never shared: the other replicas kept the old presets
    after Redis came back, until the next change."""
    redis = _PresetsRedis()
    redis.hold_first.set()
    redis.down = True
    with anyio.fail_after(10):
        async with _replicas_on(redis, monkeypatch) as replicas:
            replicas.presets_loaded({"one": {"filter": "fx"}})
            while redis.puts < 1:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            assert "onemcp:presets" not in redis.stored
            redis.down = False  # Redis is back: the next announcement round shares them
            while "onemcp:presets" not in redis.stored:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
    assert json.loads(redis.stored["onemcp:presets"]) == {"one": {"filter": "fx"}}
    assert redis.announced == 1


async def test_an_sse_clients_messages_reach_the_replica_holding_its_stream(redis_url: str) -> None:
    """/sse on one replica, every POST /messages on the other (a balancer without stickiness): they were
    404 ("Unknown or missing session_id"), so the TypeScript SDK's SSE client could not connect at all
    behind nginx (two times in three with three replicas). Another principal's POST is still refused."""
    with anyio.fail_after(DEADLINE):
        async with two_replicas(redis_url) as (one, two), httpx.AsyncClient(timeout=30) as http:
            async with http.stream("GET", f"{one.base}/sse", headers={"accept": "text/event-stream"}) as stream:
                lines = stream.aiter_lines()
                endpoint = ""
                async for line in lines:
                    if line.startswith("data:"):
                        endpoint = line[5:].strip()
                        break
                replies: dict[Any, dict[str, Any]] = {}

                async def reply(rid: int) -> dict[str, Any]:
                    async for line in lines:
                        if line.startswith("data:") and line[5:].strip():
                            doc = json.loads(line[5:])
                            replies[doc.get("id")] = doc
                            if rid in replies:
                                break
                    return replies[rid]

                init = {**INIT, "params": {**INIT["params"], "protocolVersion": "2024-11-05"}}
                r = await http.post(f"{two.base}{endpoint}", json=init)
                assert r.status_code == 202, r.text
                # as a client does: the handshake's answer first (a request sent before it may be answered first)
                assert (await reply(1))["result"]["serverInfo"]["name"] == "onemcp"
                await http.post(f"{two.base}{endpoint}", json={"jsonrpc": "2.0", "method": "notifications/initialized"})
                echo = {"name": "echo", "arguments": {"message": "through two"}}
                call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": echo}
                assert (await http.post(f"{two.base}{endpoint}", json=call)).status_code == 202
                await reply(2)
                assert replies[2]["result"]["content"][0]["text"] == "through two"
            r = await http.post(f"{two.base}/messages?session_id={'0' * 32}", json=call)
            assert r.status_code == 404  # a session no replica holds


async def test_an_sse_clients_first_post_may_reach_a_replica_before_the_word_of_its_stream(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """one tells its /sse client where to post (the endpoint event) as it tells the others it holds the
    stream; a client faster than that word (pub/sub, a busy replica) posted to two, which did not know the
    session yet: 404, and the client could not connect. two now waits for the word a moment."""
    with anyio.fail_after(DEADLINE):
        async with two_replicas(redis_url) as (one, two), httpx.AsyncClient(timeout=30) as http:
            other = two.app.hub.replicas
            assert other is not None
            handle, asked = other.relay.on_message, anyio.Event()
            assert handle is not None

            async def word_held(doc: dict[str, Any]) -> None:  # two hears of the stream once it asks
                if doc.get("k") == "stream":
                    await asked.wait()
                await handle(doc)

            listening_soon = other.listening_soon

            async def asking(sid: str) -> bool:
                asked.set()
                return await listening_soon(sid)

            monkeypatch.setattr(other.relay, "on_message", word_held)
            monkeypatch.setattr(other, "listening_soon", asking)
            async with http.stream("GET", f"{one.base}/sse", headers={"accept": "text/event-stream"}) as stream:
                endpoint = ""
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        endpoint = line[5:].strip()
                        break
                init = {**INIT, "params": {**INIT["params"], "protocolVersion": "2024-11-05"}}
                try:
                    r = await http.post(f"{two.base}{endpoint}", json=init)
                finally:
                    asked.set()
                assert r.status_code == 202, r.text


async def test_a_replica_starting_while_redis_cannot_be_read_takes_the_replicas_presets_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read that failed at start counted as "Redis has no presets": the replica's own file's (stale)
    presets would replace every replica's. Now it waits until Redis answers, then takes the shared ones."""
    redis = _PresetsRedis()
    redis.hold_first.set()
    theirs = {"theirs": {"filter": "fx"}}
    redis.stored["onemcp:presets"] = json.dumps(theirs).encode()
    redis.unreadable = True
    applied: list[dict[str, Any]] = []
    with anyio.fail_after(10):
        async with _replicas_on(redis, monkeypatch, presets={"mine": {"filter": "fx"}}) as replicas:

            async def write_presets(presets: dict[str, Any]) -> None:
                applied.append(presets)

            replicas.write_presets = write_presets
            redis.unreadable = False  # Redis answers again: the next round takes the replicas' presets
            while not applied:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
    assert applied == [theirs]
    assert json.loads(redis.stored["onemcp:presets"]) == theirs and redis.puts == 0


async def test_replicas_sign_alike_again_after_redis_lost_their_secret(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis restarted empty, then one replica restarted: it made a new signing key while the others kept
    theirs, and every 2026-07-28 retry that crossed between them failed ("requestState was not issued by
    this hub") for good. Now the replicas read the secret every round (putting theirs back if it is gone),
    and a state signed with the key before still verifies."""
    import redis

    from onemcp.hub import replicas as replicas_module

    monkeypatch.setattr(replicas_module, "ANNOUNCE_EVERY", 0.05)
    with anyio.fail_after(DEADLINE):
        async with two_replicas(redis_url) as (one, two):
            first, second = one.app.hub.parking, two.app.hub.parking
            assert first.key == second.key
            before = first.key
            with redis.Redis.from_url(redis_url) as direct:
                direct.flushall()  # Redis restarted without its data
                while direct.get("onemcp:secret:requestState") != before.hex().encode():
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (a round puts it back)
                direct.set("onemcp:secret:requestState", "ab" * 32)  # as a replica started meanwhile made it
            while not first.key == second.key == bytes.fromhex("ab" * 32):
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the next round reads it)
            body = b"eyJoIjoiMSJ9"
            assert first._signed(body, hmac.new(before, body, hashlib.sha256).hexdigest()[:32])


async def _sampling_call_dropped(http: httpx.AsyncClient, url: str) -> tuple[dict[str, str], list[str], dict[str, Any]]:
    """A session whose call (`sample`) asked its client on the POST's stream, which the client then dropped:
    (headers, the event ids it read, the sampling request)."""
    init = {**INIT, "params": {**INIT["params"], "capabilities": {"sampling": {}}}}
    r = await http.post(url, json=init, headers=HEADERS)
    headers = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "sample", "arguments": {}}}
    ids: list[str] = []
    async with http.stream("POST", url, json=call, headers=headers) as r:
        async for line in r.aiter_lines():
            if line.startswith("id:"):
                ids.append(line[3:].strip())
            elif line.startswith("data:") and line[5:].strip():
                return headers, ids, json.loads(line[5:])
    raise AssertionError("the call's stream ended without asking the client")


async def test_a_reply_stream_resumed_on_another_replica_is_replayed_and_carried_on_from_the_one_holding_it(
    redis_url: str,
) -> None:
    """A call's stream dropped on one, resumed (GET, Last-Event-ID) on two: two got a fresh, empty stream and
    the call's result was lost (hunt s31 #9). Now two relays the events one holds after that id (the
    sampling request again), then the stream as one writes it: the reply once the answer, posted to two,
    reached one. Another session's GET with that id on two gets nothing of it."""
    with anyio.fail_after(DEADLINE):
        async with two_replicas(redis_url) as (one, two), httpx.AsyncClient(timeout=30) as http:
            holder = one.app.hub.replicas
            assert holder is not None
            headers, ids, asked = await _sampling_call_dropped(http, one.url)
            assert asked["method"] == "sampling/createMessage"
            assert ids[0].endswith(f"@{holder.tag}-0")  # the stream's id names the replica holding it
            resumed = {**headers, "accept": "text/event-stream", "last-event-id": ids[0]}
            got: list[dict[str, Any]] = []
            async with http.stream("GET", two.url, headers=resumed) as r:
                assert r.status_code == 200
                async for line in r.aiter_lines():
                    if not (line.startswith("data:") and line[5:].strip()):
                        continue
                    got.append(json.loads(line[5:]))
                    if got[-1].get("method") == "sampling/createMessage":
                        answer = {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"}
                        reply = {"jsonrpc": "2.0", "id": asked["id"], "result": answer}
                        assert (await http.post(two.url, json=reply, headers=headers)).status_code == 202
            assert [m.get("method") or m.get("id") for m in got] == ["sampling/createMessage", 7]
            assert json.loads(got[1]["result"]["content"][0]["text"])["model"] == "m"
            stranger = await legacy_session(http, two.url)
            async with http.stream("GET", two.url, headers={**resumed, **stranger, "accept": "text/event-stream"}) as r:
                async for line in r.aiter_lines():
                    assert line.startswith("id:") and "@" + holder.tag not in line  # a fresh stream of its own
                    break


async def test_a_get_stream_resumed_on_another_replica_replays_what_it_missed_then_carries_on_there(
    redis_url: str,
) -> None:
    """The GET stream on one got a log line the client did not read before it dropped; resumed on two with the
    id before it, two replays the line from one's stream, then its own stream (its own ids) carries what comes."""
    with anyio.fail_after(DEADLINE):
        async with two_replicas(redis_url) as (one, two), httpx.AsyncClient(timeout=30) as http:
            headers = await legacy_session(http, one.url)
            holder, session = one.app.hub.replicas, one.app.hub.sessions.get(headers["mcp-session-id"])
            assert holder is not None and session is not None
            async with http.stream("GET", one.url, headers={**headers, "accept": "text/event-stream"}) as r:
                async for line in r.aiter_lines():
                    if line.startswith("id:"):
                        primed = line[3:].strip()
                        break
            assert primed.endswith(f"@{holder.tag}-0")
            with anyio.fail_after(10):
                while session.streams_open:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (one saw the client go)
            stream, _ = session.streams.find(primed) or (None, 0)
            assert stream is not None
            stream.add(
                {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "missed"}}
            )
            resumed = {**headers, "accept": "text/event-stream", "last-event-id": primed}
            got: list[tuple[str, Any]] = []
            async with http.stream("GET", two.url, headers=resumed) as r:
                last_id = ""
                async for line in r.aiter_lines():
                    if line.startswith("id:"):
                        last_id = line[3:].strip()
                    elif line.startswith("data:") and line[5:].strip():
                        got.append((last_id, json.loads(line[5:])["params"]["data"]))
                        if len(got) == 1:  # now something for the session, on two: its own stream carries it
                            call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call"}
                            call["params"] = {"name": "log", "arguments": {"message": "live", "detached": True}}
                            await http.post(two.url, json=call, headers=headers)
                        else:
                            break
            assert got[0] == (f"g1@{holder.tag}-1", "missed")
            assert got[1][1] == "live" and not got[1][0].endswith(f"@{holder.tag}-1")


async def test_a_post_that_goes_while_waiting_for_the_word_of_its_stream_leaves_no_entry_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A POST /messages for an /sse session not known here waits a moment for the word of its stream; one
    cancelled meanwhile (its client gone, the hub stopping) left its session id in the table for good, and
    once WAITING_MAX were left there no POST waited for the word any more."""
    redis = _PresetsRedis()
    redis.hold_first.set()
    with anyio.fail_after(10):
        async with _replicas_on(redis, monkeypatch) as replicas:
            async with anyio.create_task_group() as tg:
                tg.start_soon(replicas.listening_soon, "gone-before-its-word")
                await anyio.wait_all_tasks_blocked()
                assert "gone-before-its-word" in replicas._awaited  # waiting
                tg.cancel_scope.cancel()
            assert replicas._awaited == {}


async def test_a_delete_waits_for_the_word_of_its_end_a_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The DELETE waits for the others to drop their copies (`ended_everywhere`) on the telling task the relay
    runs; one it accepted and never ran (it stopped as it was asked) held the DELETE for ever. No Redis here:
    a relay that takes the task and never runs it."""
    monkeypatch.setattr(replicas_module, "ENDED_WAIT", 0.05)
    monkeypatch.setattr(replicas_module, "TELL_SLACK", 0.05)
    relay: Any = SimpleNamespace(tag="aaaa", on_message=None, spawn=lambda work, *args: True)
    stub: Any = SimpleNamespace(tag="", elsewhere=None)  # (sessions, parking, tasks: not used by an end)
    replicas = replicas_module.Replicas(relay, stub, stub, stub, resume_here=stub, reply_here=stub, notify_here=stub)
    session: Any = SimpleNamespace(transport="streamable-http", id="s1")
    replicas.session_ended(session)
    with anyio.fail_after(DEADLINE):
        await replicas.ended_everywhere("s1")
    assert replicas._telling == {}  # nothing left behind for the session
