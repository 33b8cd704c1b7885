"""Two hub replicas sharing sessions through a real Redis: a session made on one continues on the other.

`redis-server` (Debian's package; scripts/test installs it) runs on a free loopback port for the
test and is stopped by its PID. Both hubs run in this process on their own ports with the same
config and `sessionStore: redis://...`, as replicas behind a load balancer would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from onemcp.auth.keys import KeyStore
from onemcp.hub import records
from onemcp.hub.saved import ENDED, RedisSessions
from onemcp.hub.session import EVICT_IDLE
from support.hub import HEADERS, INIT, RunningHub, running_hub
from support.services import NEEDS_REDIS, replica_config

pytestmark = [
    pytest.mark.anyio,
    NEEDS_REDIS,
]
DEADLINE = 60.0


async def test_a_session_made_on_one_replica_continues_on_another(redis_url: str) -> None:
    import redis

    with anyio.fail_after(DEADLINE):
        async with (
            running_hub(replica_config(redis_url)) as one,
            running_hub(replica_config(redis_url)) as two,
            httpx.AsyncClient(timeout=30) as http,
        ):
            r = await http.post(one.url, json=INIT, headers=HEADERS)
            sid = r.headers["mcp-session-id"]
            headers = {**HEADERS, "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
            await http.post(one.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            call = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"message": "on two"}},
            }
            r = await http.post(two.url, json=call, headers=headers)  # the other replica: it never saw this session
            assert r.status_code == 200 and "on two" in r.text, r.text
            assert two.app.hub.find_session(sid) is not None
            store = redis.Redis.from_url(redis_url)
            ttl = store.ttl(f"onemcp:session:{sid}")
            assert 0 < ttl <= 1800  # Redis expires it after the idle timeout
            store.close()
            r = await http.post(two.url, json={**call, "id": 3}, headers={**headers, "mcp-session-id": "f" * 32})
            assert r.status_code == 404


async def test_a_quota_is_one_quota_across_replicas(redis_url: str) -> None:
    doc = replica_config(redis_url)
    doc["onemcp"]["auth"] = {"quotas": [{"tool": "fx/echo", "calls": 3, "window": 60}]}
    with anyio.fail_after(DEADLINE):
        async with (
            running_hub(doc) as one,
            running_hub(doc) as two,
            httpx.AsyncClient(timeout=30) as http,
        ):
            texts = []
            for i, hub in enumerate([one, two, one, two]):
                r = await http.post(hub.url, json=INIT, headers=HEADERS)
                headers = {
                    **HEADERS,
                    "mcp-session-id": r.headers["mcp-session-id"],
                    "mcp-protocol-version": "2025-11-25",
                }
                call = {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"message": "q"}},
                }
                texts.append((await http.post(hub.url, json=call, headers=headers)).text)
            assert all("Quota exceeded" not in t for t in texts[:3]), texts
            assert "Quota exceeded for fx/echo: at most 3 calls per 60s" in texts[3], texts[3]


async def test_the_request_rate_is_one_bucket_across_replicas(redis_url: str, tmp_path: Path) -> None:
    doc = replica_config(redis_url)
    doc["onemcp"]["auth"] = {"apiKeys": True, "rateLimit": {"requestsPerMinute": 1, "burst": 4}}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(doc))
    key = KeyStore(tmp_path / "keys.db").create("k", ["mcp"])
    auth = {**HEADERS, "authorization": f"Bearer {key}"}
    with anyio.fail_after(DEADLINE):
        async with (
            running_hub(doc, config_path=path) as one,
            running_hub(doc, config_path=path) as two,
            httpx.AsyncClient(timeout=30) as http,
        ):
            statuses = [(await http.post(hub.url, json=INIT, headers=auth)).status_code for hub in (one, two) * 3]
            # a burst of 4 between both replicas, not 4 on each: the 5th and 6th are refused wherever they land
            assert statuses == [200, 200, 200, 200, 429, 429], statuses


async def test_a_preset_made_on_one_replica_reaches_the_others(redis_url: str, tmp_path: Path) -> None:
    """Each replica has its own config folder; a preset written beside one's config reaches the other's
    presets.json and view, and a replica that starts later takes the replicas' presets from Redis."""
    from onemcp.config.presets import load_presets, save

    doc = replica_config(redis_url)
    paths = []
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        paths.append(tmp_path / name / "mcp.json")
        paths[-1].write_text(json.dumps(doc))
    save(tmp_path / "b" / "presets.json", {"presets": {"old": {"filter": "fx"}}})  # b's own, before Redis had any
    with anyio.fail_after(DEADLINE):
        async with running_hub(doc, config_path=paths[0]) as a, running_hub(doc, config_path=paths[1]) as b:
            with anyio.fail_after(10):
                while "old" not in a.app.hub.presets:  # the first replica with presets shared b's
                    await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline
            save(tmp_path / "a" / "presets.json", {"presets": {"dev": {"filter": "fx", "description": "d"}}})
            with anyio.fail_after(15):
                while "dev" not in b.app.hub.presets:
                    await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline
            assert set(b.app.hub.presets) == {"dev"}  # a's file replaced the set: "old" went with it
            assert set(load_presets(tmp_path / "b" / "presets.json")) == {"dev"}
            async with httpx.AsyncClient() as http:
                r = await http.get(f"{b.base}/health")
            assert r.json()["replicas"]["messages"].get("received presets", 0) >= 1
        async with running_hub(doc, config_path=paths[2]) as c:  # started later, its folder without presets
            with anyio.fail_after(10):
                while "dev" not in c.app.hub.presets:
                    await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline
            assert load_presets(tmp_path / "c" / "presets.json")["dev"]["description"] == "d"


async def test_a_preset_saved_through_the_admin_api_is_usable_at_once_at_every_replica(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PUT /api/v1/presets/dev through a was answered before the presets were in Redis (shared by a task of
    its own), and b knew only what the word of them (pub/sub, then its presets.json written and reloaded)
    had brought: the client's next request, with ?preset=dev at b, was a 400 "unknown preset", and a
    session made at a with it was not revived at b (404). Now the edit is answered once Redis holds the
    presets, and b, asked for a preset it does not know, takes the replicas' presets from Redis first."""
    doc = replica_config(redis_url)
    paths = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        paths.append(tmp_path / name / "mcp.json")
        paths[-1].write_text(json.dumps(doc))
    with anyio.fail_after(DEADLINE):
        async with (
            running_hub(doc, config_path=paths[0]) as a,
            running_hub(doc, config_path=paths[1]) as b,
            httpx.AsyncClient(timeout=30) as http,
        ):
            shared, heard = a.app.hub.replicas, b.app.hub.replicas
            assert shared is not None and heard is not None
            await _until(lambda: shared.relay.up and heard.relay.up, "subscribed")
            heard.relay.on_message = None  # b hears of the new presets only after the client's requests
            release = anyio.Event()
            put, share = shared.relay.put, shared.share_presets

            async def put_held(key: str, value: bytes) -> bool:  # a slow Redis
                await release.wait()
                return await put(key, value)

            async def share_releasing() -> None:  # ... whose write lands while its replica waits for it
                release.set()
                await share()

            monkeypatch.setattr(shared.relay, "put", put_held)
            monkeypatch.setattr(shared, "share_presets", share_releasing)
            statuses: list[int] = []

            async def edit_then_use() -> None:
                try:
                    r = await http.put(f"{a.base}/api/v1/presets/dev", json={"filter": "fx"})
                    assert r.status_code == 200, r.text
                    r = await http.post(f"{a.url}?preset=dev", json=INIT, headers=HEADERS)
                    headers = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"]}
                    headers["mcp-protocol-version"] = "2025-11-25"
                    statuses.append(
                        (await http.post(f"{b.url}?preset=dev", json=_ping(2), headers=headers)).status_code
                    )
                    statuses.append((await http.post(f"{b.url}?preset=dev", json=INIT, headers=HEADERS)).status_code)
                finally:
                    release.set()

            await edit_then_use()
            assert statuses == [200, 200]
            assert "dev" in b.app.hub.presets


def _messages(r: httpx.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a POST's answer, JSON or SSE."""
    if not r.headers.get("content-type", "").startswith("text/event-stream"):
        return [r.json()]
    return [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:") and line[5:].strip()]


async def _until(done: Callable[[], bool], what: str) -> None:
    """Wait (a deadline, no fixed sleep) until another replica acted on what crossed Redis."""
    with anyio.move_on_after(10):
        while not done():
            await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (a pub/sub message crossing)
    assert done(), f"not within 10 s: {what}"


@asynccontextmanager
async def _replicas(doc: dict[str, Any], count: int) -> AsyncIterator[list[RunningHub]]:
    async with AsyncExitStack() as stack:
        hubs = [await stack.enter_async_context(running_hub(doc)) for _ in range(count)]
        for hub in hubs:
            replicas = hub.app.hub.replicas
            assert replicas is not None
            await _until(lambda r=replicas: r.relay.up, "subscribed")  # type: ignore[misc]
        yield hubs


async def _session_on(http: httpx.AsyncClient, hub: RunningHub) -> dict[str, str]:
    r = await http.post(hub.url, json=INIT, headers=HEADERS)
    assert r.status_code == 200, r.text
    headers = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    r = await http.post(hub.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    assert r.status_code == 202
    return headers


async def _copied(http: httpx.AsyncClient, one: RunningHub, two: RunningHub) -> tuple[dict[str, str], dict[str, str]]:
    """Two sessions made on `one` and used on `two` (two's copies): the first for the test to end, the other a
    live session, to be kept."""
    made = (await _session_on(http, one), await _session_on(http, one))
    for n, used in enumerate(made):
        assert (await http.post(two.url, json=_ping(n), headers=used)).status_code == 200
    return made


async def _touched(http: httpx.AsyncClient, hub: RunningHub, headers: dict[str, str]) -> list[dict[str, Any]]:
    """The fixture's `touch` of fixture://static through `hub`: what it answers says if it is subscribed there."""
    params = {"name": "touch", "arguments": {"uri": "fixture://static"}}
    touch = {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": params}
    return _messages(await http.post(hub.url, json=touch, headers=headers))


def _ping(n: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": n, "method": "ping"}


async def test_a_replica_forgetting_its_copy_leaves_the_session_to_the_others(redis_url: str) -> None:
    """A copy expired or evicted on one replica is forgotten there only: the shared record stays, and the
    session goes on wherever its next request lands (it ends by its TTL, or by its client's DELETE)."""
    doc = replica_config(redis_url)
    doc["onemcp"]["limits"] = {"maxSessionsPerPrincipal": 1}
    with anyio.fail_after(DEADLINE):
        async with _replicas(doc, 2) as (one, two), httpx.AsyncClient(timeout=30) as http:
            headers = await _session_on(http, one)
            sid = headers["mcp-session-id"]
            assert (await http.post(two.url, json=_ping(2), headers=headers)).status_code == 200
            copy = one.app.hub.find_session(sid)
            assert copy is not None
            copy.last_seen -= one.app.hub.sessions.idle_timeout + 1  # unused on one for the idle timeout
            assert one.app.hub.sessions.expire_idle() == 1
            await one.app.hub.saved.flush()
            assert (await http.post(one.url, json=_ping(3), headers=headers)).status_code == 200  # revived
            copy = one.app.hub.find_session(sid)
            assert copy is not None
            copy.last_seen -= EVICT_IDLE + 1  # ... and unseen there for a minute: room for the principal's next
            await _session_on(http, one)
            assert one.app.hub.find_session(sid) is None  # evicted from one
            await one.app.hub.saved.flush()
            two.app.hub.sessions.forget(sid)  # two forgets its copy too: the session lives in Redis alone
            assert (await http.post(two.url, json=_ping(4), headers=headers)).status_code == 200


async def test_a_copy_over_the_principals_cap_is_refused_for_now_not_lost(redis_url: str) -> None:
    """A replica with no room for the principal's session answers 429 (try later), not 404 (start over)."""
    doc = replica_config(redis_url)
    doc["onemcp"]["limits"] = {"maxSessionsPerPrincipal": 1}
    with anyio.fail_after(DEADLINE):
        async with _replicas(doc, 2) as (one, two), httpx.AsyncClient(timeout=30) as http:
            first = await _session_on(http, one)
            await _session_on(http, two)  # the principal's one session on two, in use
            r = await http.post(two.url, json=_ping(2), headers=first)
            assert r.status_code == 429, r.text
            assert r.json()["error"]["data"] == {"limit": "sessions_per_principal"}
            assert (await http.post(one.url, json=_ping(3), headers=first)).status_code == 200


async def test_a_delete_through_one_replica_ends_the_session_on_every_replica(redis_url: str) -> None:
    """The client's DELETE lands on one replica: the others drop their copies and end its GET stream,
    every replica answers 404 from then on, and a stale copy's late write does not bring it back."""
    with anyio.fail_after(DEADLINE):
        async with _replicas(replica_config(redis_url), 2) as (one, two), httpx.AsyncClient(timeout=30) as http:
            headers = await _session_on(http, one)
            sid = headers["mcp-session-id"]
            assert (await http.post(two.url, json=_ping(2), headers=headers)).status_code == 200
            copy = one.app.hub.find_session(sid)
            assert copy is not None
            stale = records.record_of(copy)
            async with http.stream("GET", one.url, headers={**headers, "accept": "text/event-stream"}) as stream:
                assert stream.status_code == 200
                await _until(lambda: copy.streams_open == 1, "the GET stream open")
                assert (await http.delete(two.url, headers=headers)).status_code == 200
                async for _ in stream.aiter_bytes():  # the stream on one ends with the session
                    pass
            await _until(lambda: one.app.hub.find_session(sid) is None, "one dropped its copy")
            for n, hub in enumerate((one, two)):
                assert (await http.post(hub.url, json=_ping(10 + n), headers=headers)).status_code == 404
            one.app.hub.saved.save(sid, stale)  # a copy that had not heard of the end writes its record
            await one.app.hub.saved.flush()
            for n, hub in enumerate((one, two)):
                assert (await http.post(hub.url, json=_ping(20 + n), headers=headers)).status_code == 404


async def test_a_delete_whose_tombstone_the_replica_could_not_write_is_written_by_the_others(
    redis_url: str,
) -> None:
    """The DELETE's replica could not write the tombstone (Redis failed for it): the others, told of the
    end, write it too, so a replica without a copy does not revive the session from its old record."""
    import redis

    from onemcp.config.redis_link import Breaker

    with anyio.fail_after(DEADLINE):
        async with _replicas(replica_config(redis_url), 3) as (one, two, three), httpx.AsyncClient(timeout=30) as http:
            headers = await _session_on(http, one)
            sid = headers["mcp-session-id"]
            assert (await http.post(two.url, json=_ping(2), headers=headers)).status_code == 200
            saved = one.app.hub.saved
            assert isinstance(saved, RedisSessions)
            saved.breaker = Breaker()  # one's own link to Redis (in-process replicas share one per URL)
            saved._redis = _Refusing()  # which fails, for as long as the test runs
            assert (await http.delete(one.url, headers=headers)).status_code == 200
            await saved.flush()
            key = f"onemcp:session:{sid}"
            with redis.Redis.from_url(redis_url) as direct:
                await _until(lambda: direct.get(key) == b"ended", "another replica wrote the tombstone")
            assert (await http.post(three.url, json=_ping(3), headers=headers)).status_code == 404


class _Refusing:
    def __getattr__(self, name: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            raise OSError("Redis refused")

        return refused


class _WriteHeld:
    """A replica's Redis client, except that the writes `held` picks (by command and arguments) wait for
    `release` (`started` is set when one begins): a slow Redis, or a writer thread busy with what is
    queued before them."""

    def __init__(self, client: Any, command: str, held: Callable[..., bool]) -> None:
        self.client, self.command, self.held = client, command, held
        self.started, self.release = threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        done = getattr(self.client, name)
        if name != self.command:
            return done

        def write(*args: Any, **kwargs: Any) -> Any:
            if self.held(*args):
                self.started.set()
                self.release.wait(30)
            return done(*args, **kwargs)

        return write


def _held_until_flushed(
    monkeypatch: pytest.MonkeyPatch, hub: RunningHub, command: str, held: Callable[..., bool]
) -> _WriteHeld:
    """Hold `hub`'s session writes that `held` picks until the hub waits for its writes (`flush`): they
    land then, as a slow write would while its replica waits; a replica that does not wait answers first."""
    saved = hub.app.hub.saved
    assert isinstance(saved, RedisSessions)
    writes = saved._redis = _WriteHeld(saved._redis, command, held)
    flush = saved.flush

    async def flush_releasing() -> None:
        writes.release.set()
        await flush()

    monkeypatch.setattr(saved, "flush", flush_releasing)
    return writes


async def test_a_delete_is_answered_once_no_replica_can_revive_the_session(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DELETE was answered while the session's tombstone was still on its way to Redis (the writer
    thread): the client's next request, at a replica without a copy that had not yet heard of the end
    (pub/sub is no faster than the client), revived the session from its old record: 200, not 404."""
    with anyio.fail_after(DEADLINE):
        async with _replicas(replica_config(redis_url), 2) as (one, two), httpx.AsyncClient(timeout=30) as http:
            headers = await _session_on(http, one)
            held = _held_until_flushed(monkeypatch, one, "set", lambda key, value, *rest: value == ENDED)
            assert two.app.hub.replicas is not None
            two.app.hub.replicas.relay.on_message = None  # two hears of the end only after the client's request
            statuses: list[int] = []

            async def end_then_go_on() -> None:
                try:
                    statuses.append((await http.delete(one.url, headers=headers)).status_code)
                    statuses.append((await http.post(two.url, json=_ping(2), headers=headers)).status_code)
                finally:
                    held.release.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(end_then_go_on)
                await anyio.to_thread.run_sync(held.started.wait, 30)
            assert statuses == [200, 404]
            assert two.app.hub.find_session(headers["mcp-session-id"]) is None


async def test_a_delete_is_answered_once_no_replica_serves_its_copy_of_the_session(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DELETE was answered once the session's tombstone was in Redis, but a replica holding a live copy
    (it had served the session) does not read the record: it dropped the copy when the word of the end came
    over pub/sub, which is no faster than the client. Meanwhile it served the ended session: the client's next
    request there got 200, not 404 (and for as long as the expiry round, up to a minute, when the word was
    lost). The DELETE is answered once every replica that heard of the end has dropped its copy."""
    with anyio.fail_after(DEADLINE):
        async with _replicas(replica_config(redis_url), 2) as (one, two), httpx.AsyncClient(timeout=30) as http:
            headers = await _session_on(http, one)
            sid = headers["mcp-session-id"]
            assert (await http.post(two.url, json=_ping(2), headers=headers)).status_code == 200  # two's copy
            assert one.app.hub.replicas is not None and two.app.hub.replicas is not None
            relay, heard = two.app.hub.replicas.relay, anyio.Event()
            hear = relay.on_message
            assert hear is not None

            async def slow(doc: dict[str, Any]) -> None:  # two hears of the end once one waits for it
                if doc.get("k") == "ended":
                    await heard.wait()
                await hear(doc)

            relay.on_message = slow
            told = getattr(one.app.hub.replicas, "ended_everywhere", None)

            async def waited(session_id: str) -> None:
                heard.set()
                if told is not None:
                    await told(session_id)

            monkeypatch.setattr(one.app.hub.replicas, "ended_everywhere", waited, raising=False)
            try:
                assert (await http.delete(one.url, headers=headers)).status_code == 200
                assert (await http.post(two.url, json=_ping(3), headers=headers)).status_code == 404
            finally:
                heard.set()
            assert two.app.hub.find_session(sid) is None


async def test_a_log_level_set_is_answered_once_a_replica_reviving_the_session_reads_it(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """setLevel was answered while the session's new record was still on its way to Redis: the client's
    next call, at a replica without a copy, revived the session with its old log level (and sent it the
    info line it had just turned off)."""
    log_call = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": "log", "arguments": {"message": "INFO"}},
    }
    level = {"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "error"}}
    with anyio.fail_after(DEADLINE):
        async with _replicas(replica_config(redis_url), 2) as (one, two), httpx.AsyncClient(timeout=30) as http:
            headers = await _session_on(http, one)
            held = _held_until_flushed(monkeypatch, one, "eval", lambda script, n, key, doc, *rest: '"error"' in doc)
            answers: list[list[dict[str, Any]]] = []

            async def set_then_call() -> None:
                try:
                    assert (await http.post(one.url, json=level, headers=headers)).status_code == 200
                    answers.append(_messages(await http.post(two.url, json=log_call, headers=headers)))
                finally:
                    held.release.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(set_then_call)
                await anyio.to_thread.run_sync(held.started.wait, 30)
            assert [m.get("method") for m in answers[0]] == [None], answers  # the reply only: no info line


async def test_a_replica_that_missed_an_end_forgets_its_copy_at_its_next_expiry_round(redis_url: str) -> None:
    """A replica whose pub/sub link was down when the session ended elsewhere still holds its copy: its
    expiry round reads its copies' records in one batch and forgets those that are tombstones."""
    with anyio.fail_after(DEADLINE):
        async with _replicas(replica_config(redis_url), 2) as (one, two), httpx.AsyncClient(timeout=30) as http:
            headers, other = await _copied(http, one, two)
            sid = headers["mcp-session-id"]
            one.app.hub.sessions.forget(sid)
            one.app.hub.saved.delete(sid)  # the end, as a replica writes it, but no "ended" broadcast
            await one.app.hub.saved.flush()
            assert two.app.hub.find_session(sid) is not None  # two did not hear of it
            await two.app.hub.forget_ended()
            assert two.app.hub.find_session(sid) is None
            assert two.app.hub.find_session(other["mcp-session-id"]) is not None
            assert (await http.post(two.url, json=_ping(5), headers=headers)).status_code == 404
            assert (await http.post(two.url, json=_ping(6), headers=other)).status_code == 200


async def test_a_replica_whose_link_comes_back_forgets_at_once_a_copy_ended_meanwhile(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica whose pub/sub link was down when the session ended elsewhere did not hear of it, and served
    its live copy until its next expiry round, up to a minute. Once subscribed again, it reads its copies'
    records at once and forgets the ended ones."""
    import redis

    with anyio.fail_after(DEADLINE):
        async with _replicas(replica_config(redis_url), 2) as (one, two), httpx.AsyncClient(timeout=30) as http:
            headers, other = await _copied(http, one, two)
            sid = headers["mcp-session-id"]
            relay, back = two.app.hub.replicas.relay, anyio.Event()  # type: ignore[union-attr]
            pubsub = relay._redis.pubsub

            def held(**options: Any) -> Any:  # two subscribes again only once the test says so
                made = pubsub(**options)
                subscribe = made.subscribe

                async def later(*channels: str) -> Any:
                    await back.wait()
                    return await subscribe(*channels)

                made.subscribe = later
                return made

            monkeypatch.setattr(relay._redis, "pubsub", held)
            direct = redis.Redis.from_url(redis_url)
            try:
                await anyio.to_thread.run_sync(lambda: direct.client_kill_filter(_type="pubsub"))  # both links drop
                await _until(lambda: not relay.up and one.app.hub.replicas.relay.up, "two's link down, one's back")  # type: ignore[union-attr]
                assert (await http.delete(one.url, headers=headers)).status_code == 200
                assert two.app.hub.find_session(sid) is not None  # two did not hear of it
                back.set()
                await _until(lambda: relay.up, "two's link back")
                await _until(lambda: two.app.hub.find_session(sid) is None, "two forgot its copy")  # (not a minute)
            finally:
                back.set()
                direct.close()
            assert (await http.post(two.url, json=_ping(5), headers=headers)).status_code == 404
            assert (await http.post(two.url, json=_ping(6), headers=other)).status_code == 200


async def test_sessions_made_and_deleted_round_robin_do_not_fill_the_replicas(redis_url: str) -> None:
    """Each session made on one replica, used on the other, ended through either: no copy is left behind,
    so the replicas' maxSessions is never reached by sessions their clients ended."""
    doc = replica_config(redis_url)
    doc["onemcp"]["limits"] = {"maxSessions": 3}
    with anyio.fail_after(DEADLINE):
        async with _replicas(doc, 2) as hubs, httpx.AsyncClient(timeout=30) as http:
            for n in range(9):
                made, used = hubs[n % 2], hubs[(n + 1) % 2]
                headers = await _session_on(http, made)  # a 503 here: the copies of ended sessions filled it
                assert (await http.post(used.url, json=_ping(n), headers=headers)).status_code == 200
                assert (await http.delete(hubs[n // 2 % 2].url, headers=headers)).status_code == 200
                await _until(lambda: all(len(h.app.hub.sessions) == 0 for h in hubs), "every copy dropped")


async def test_log_level_and_subscriptions_set_through_one_replica_reach_the_sessions_copies(redis_url: str) -> None:
    """setLevel and resources/(un)subscribe through one replica: the session's live copy on the other
    takes them (its upstream is told), as deployment.md promises; the record keeps the latest."""
    import redis

    log_call = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "log", "arguments": {"message": "INFO"}}}
    with anyio.fail_after(DEADLINE):
        async with _replicas(replica_config(redis_url), 2) as (one, two), httpx.AsyncClient(timeout=30) as http:
            headers = await _session_on(http, one)
            sid = headers["mcp-session-id"]
            assert (await http.post(two.url, json=_ping(2), headers=headers)).status_code == 200
            copy = two.app.hub.find_session(sid)
            assert copy is not None
            level = {"jsonrpc": "2.0", "id": 3, "method": "logging/setLevel", "params": {"level": "error"}}
            assert (await http.post(one.url, json=level, headers=headers)).status_code == 200
            await _until(lambda: copy.log_level == "error", "two took the level")
            answer = _messages(await http.post(two.url, json={**log_call, "id": 4}, headers=headers))
            assert [m.get("method") for m in answer] == [None], answer  # the reply only: no info line

            subscribe = {
                "jsonrpc": "2.0",
                "id": 5,
                "method": "resources/subscribe",
                "params": {"uri": "fixture://static"},
            }
            assert (await http.post(one.url, json=subscribe, headers=headers)).status_code == 200
            await _until(lambda: bool(copy.subscriptions), "two took the subscription")
            touch = {
                "jsonrpc": "2.0",
                "method": "tools/call",
                "params": {"name": "touch", "arguments": {"uri": "fixture://static"}},
            }
            answer = _messages(await http.post(two.url, json={**touch, "id": 6}, headers=headers))
            assert "touched fixture://static" in json.dumps(answer[-1]), answer  # two's upstream was subscribed

            unsubscribe = {**subscribe, "id": 7, "method": "resources/unsubscribe"}
            assert (await http.post(two.url, json=unsubscribe, headers=headers)).status_code == 200
            first = one.app.hub.find_session(sid)
            assert first is not None
            await _until(lambda: not first.subscriptions, "one let go of it")
            # ... and its upstream: the copy forgets the key before its unsubscribe is sent (and answered)
            with anyio.move_on_after(10):
                while "not subscribed: fixture://static" not in json.dumps(
                    answer := await _touched(http, one, headers)
                ):
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the upstream's unsubscribe)
            assert "not subscribed: fixture://static" in json.dumps(answer[-1]), answer
            await two.app.hub.saved.flush()
            store = redis.Redis.from_url(redis_url)
            raw = store.get(f"onemcp:session:{sid}")
            store.close()
            assert isinstance(raw, bytes)
            saved = json.loads(raw)
            assert saved["logLevel"] == "error" and saved["subscriptions"] == []


async def test_health_and_metrics_show_a_failing_redis(redis_url: str) -> None:
    """A Redis that fails requests (hung, say) while the pub/sub link stays up: the breaker is open, the
    replica is on its own for sessions and limits, and /health and /metrics say so."""
    import redis

    from onemcp.config import redis_link

    def hung() -> None:
        raise redis.TimeoutError("Timeout reading from socket")

    with anyio.fail_after(DEADLINE):
        async with _replicas(replica_config(redis_url), 1) as (one,), httpx.AsyncClient(timeout=30) as http:
            health = (await http.get(f"{one.base}/health")).json()
            assert health["replicas"]["redis"] == "connected" and health["replicas"]["redisBreaker"] == "closed"
            assert "onemcp_redis_up 1.0" in (await http.get(f"{one.base}/metrics")).text
            breaker = redis_link.breaker(redis_url)
            now = breaker.clock()
            breaker.clock = lambda: now  # the pause does not end during the test
            with pytest.raises(redis.TimeoutError):
                breaker.run(hung)
            health = (await http.get(f"{one.base}/health")).json()
            assert health["replicas"]["redis"] == "failing" and health["replicas"]["redisBreaker"] == "open"
            assert health["status"] == "degraded"
            assert "onemcp_redis_up 0.0" in (await http.get(f"{one.base}/metrics")).text


async def test_an_sse_sessions_changes_wait_for_no_redis_write(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An /sse session has no record (it lives and dies with its stream) and no copy on another replica, yet
    its initialize, setLevel and resources/(un)subscribe each waited for the replica's Redis writes (up to
    5 s behind a slow Redis, or another session's backlog) and its setLevel and (un)subscribe were broadcast.
    Now only a Streamable HTTP session's do (whose record and copies they change)."""
    from support.entries import Target, legacy_http, legacy_sse

    with anyio.fail_after(DEADLINE):
        async with _replicas(replica_config(redis_url), 1) as (one,), httpx.AsyncClient(timeout=30) as http:
            saved, replicas = one.app.hub.saved, one.app.hub.replicas
            assert replicas is not None
            flushes: list[None] = []
            flush = saved.flush

            async def counted() -> None:
                flushes.append(None)
                await flush()

            monkeypatch.setattr(saved, "flush", counted)
            target = Target(one, tmp_path / "mcp.json", http, None)
            async with legacy_sse(initialize=True)(target) as sse:
                assert await sse.request("logging/setLevel", {"level": "error"}) == {}
                assert await sse.request("resources/subscribe", {"uri": "fixture://static"}) == {}
                assert await sse.request("resources/unsubscribe", {"uri": "fixture://static"}) == {}
            assert (len(flushes), replicas.counts["sent changed"]) == (0, 0)
            async with legacy_http(target) as streamable:  # (these do: initialize, setLevel, the DELETE at the end)
                assert await streamable.request("logging/setLevel", {"level": "error"}) == {}
            assert (len(flushes), replicas.counts["sent changed"]) == (3, 1)


async def test_requests_naming_an_unknown_preset_share_the_replicas_read_of_the_presets(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica asked for a preset it does not know reads the replicas' presets from Redis first (one may
    have been made through another replica a moment ago): each request did, one read at a time, so that a
    client repeating ?preset=nosuch queued a Redis read per request. A read now answers every request that
    came before it began: nine while one is read cost one more read (not nine)."""
    from onemcp.hub.replicas import PRESETS_KEY

    with anyio.fail_after(DEADLINE):
        async with _replicas(replica_config(redis_url), 1) as (one,), httpx.AsyncClient(timeout=30) as http:
            hub, replicas = one.app.hub, one.app.hub.replicas
            assert replicas is not None
            reads, asked, release = [], [], anyio.Event()
            get, view = replicas.relay.get, hub.view

            async def held_get(key: str) -> bytes | None:  # a slow Redis, for the first read
                if key == PRESETS_KEY:
                    reads.append(key)
                    if len(reads) == 1:
                        await release.wait()
                return await get(key)

            def counted_view(query: bytes | str) -> Any:
                if "nosuch" in str(query):
                    asked.append(query)
                return view(query)

            monkeypatch.setattr(replicas.relay, "get", held_get)
            monkeypatch.setattr(hub, "view", counted_view)
            statuses: list[int] = []

            async def unknown() -> None:
                statuses.append((await http.post(f"{one.url}?preset=nosuch", json=INIT, headers=HEADERS)).status_code)

            async with anyio.create_task_group() as tg:
                tg.start_soon(unknown)
                await _until(lambda: len(reads) == 1, "the first request reading the presets")
                for _ in range(9):
                    tg.start_soon(unknown)
                await _until(lambda: len(asked) == 10, "nine more looking for the preset meanwhile")
                release.set()
            assert statuses == [400] * 10
            assert len(reads) == 2
            r = await http.post(f"{one.url}?preset=nosuch", json=INIT, headers=HEADERS)  # later: read again
            assert r.status_code == 400 and len(reads) == 3
