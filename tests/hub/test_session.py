"""Sessions' queues under a flood (issue 20, finding 4).

Before: every message dropped from a full queue wrote one WARNING, and Streamable HTTP sessions
with no GET stream (most clients never open one) queued every upstream log line; 2 MB of
upstream logging with 2,000 idle sessions became 2.1 M log lines and stalled the hub.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import httpx
import orjson
import pytest

from fixtures.launch import fixture_command
from onemcp.auth.access import LEGACY_HTTP, decide
from onemcp.auth.principal import ANONYMOUS
from onemcp.hub.session import OUTBOX_SIZE, Session
from onemcp.observability.limits import HITS
from onemcp.protocol.errors import LimitReached
from support.hub import RunningHub, raw_session, running_hub

pytestmark = pytest.mark.anyio
DEADLINE = 20.0
MIB = 1024 * 1024
IDLE = 30  # sessions that never open a GET stream
LINES = 40  # log lines the upstream sends, related to no call


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_a_full_queue_drops_newest_with_one_warning_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    access = decide(ANONYMOUS, LEGACY_HTTP, None, {}, {})
    session = Session(id="s" * 32, transport="streamable-http", access=access)
    before = HITS.counts["queued_messages"]
    with caplog.at_level(logging.WARNING):
        for i in range(OUTBOX_SIZE + 2000):
            session.post({"jsonrpc": "2.0", "method": "notifications/message", "params": {"n": i}})
    assert HITS.counts["queued_messages"] == before + 2000  # each drop is counted ...
    assert len(caplog.records) <= 1  # ... but not each one written to the log
    assert session.outbox is not None and session.outbox.queued() == OUTBOX_SIZE
    session.close()


async def test_the_queue_is_bounded_in_bytes_and_gives_them_back_as_it_is_read() -> None:
    """1,024 messages of a megabyte would be a gigabyte: the queue holds OUTBOX_BYTES at most."""
    from onemcp.hub.session import OUTBOX_BYTES

    access = decide(ANONYMOUS, LEGACY_HTTP, None, {}, {})
    session = Session(id="b" * 32, transport="streamable-http", access=access)
    big = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "x" * (1024 * 1024)}}
    for _ in range(3 * OUTBOX_BYTES // (1024 * 1024)):
        session.post(big)
    outbox = session.outbox
    assert outbox is not None and 0 < session.queued_bytes <= OUTBOX_BYTES
    assert outbox.queued() == OUTBOX_BYTES // (1024 * 1024 + 100)
    while outbox.queued():
        assert (await outbox.receive())["params"] == big["params"]
    assert session.queued_bytes == 0
    session.post(big)  # room again
    assert outbox.queued() == 1
    session.close()


async def test_all_sessions_queues_together_are_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each session under its own bound, but many of them: the process's total is bounded too (past
    the budget only sessions over their share lose messages; at twice the budget, every session)."""
    from onemcp.hub import session as sessions

    monkeypatch.setattr(sessions, "OUTBOX_TOTAL_BYTES", 5 * 1024 * 1024)
    access = decide(ANONYMOUS, LEGACY_HTTP, None, {}, {})
    start, holders = sessions.QueuedBytes.used, sessions.QueuedBytes.holders
    many = [Session(id=f"{n:032d}", transport="streamable-http", access=access) for n in range(8)]
    for session in many:
        for _ in range(3):  # each message its own (nothing shared)
            session.post({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "x" * MIB}})
    held = [session.outbox.queued() if session.outbox is not None else 0 for session in many]
    # past 5 MiB a session over its share loses messages, one holding nothing may hold one; at 10 MiB all do
    assert held == [3, 2, 1, 1, 1, 1, 0, 0] and 0 < sessions.QueuedBytes.used - start <= 10 * MIB
    assert sessions.QueuedBytes.holders == holders + 6
    for session in many:
        session.close()  # what they held is given back
    assert (sessions.QueuedBytes.used, sessions.QueuedBytes.holders) == (start, holders)


async def test_sessions_that_never_read_do_not_starve_one_that_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """hunt-limits F7: 20 sessions with a GET stream they never read filled the hub-wide budget with
    the upstream's log lines (one message, charged once per queue), and then the session that read
    its stream got 16 of 60: past the budget every session's messages were dropped alike."""
    from onemcp.hub import session as sessions

    monkeypatch.setattr(sessions, "OUTBOX_TOTAL_BYTES", 8 * MIB)
    access = decide(ANONYMOUS, LEGACY_HTTP, None, {}, {})
    start = sessions.QueuedBytes.used
    stuck = [Session(id=f"s{n:031d}", transport="streamable-http", access=access) for n in range(20)]
    good = Session(id="g" * 32, transport="streamable-http", access=access)
    assert good.outbox is not None
    received = 0
    for n in range(30):
        line = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"n": n, "data": "x" * MIB}}
        for session in [*stuck, good]:  # one object for all, as an upstream's log line is
            session.post(line)
        if n == 0:
            assert sessions.QueuedBytes.used - start < 2 * MIB  # charged once, not 21 times
        while good.outbox.queued():
            assert (await good.outbox.receive())["params"]["n"] == received
            received += 1
        assert sessions.QueuedBytes.used - start <= 2 * 8 * MIB
    assert received == 30  # before: none (the 20 took the budget with the first line)
    assert all(0 < s.queued_bytes <= 9 * MIB for s in stuck)  # they keep what fitted, no more
    for session in [*stuck, good]:
        session.close()
    assert sessions.QueuedBytes.used == start


async def test_a_json_only_call_does_not_queue_its_notifications_for_a_stream_nobody_reads() -> None:
    cmd = fixture_command()
    config = {"mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}}, "onemcp": {"prefixMode": "always"}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            headers = {**await raw_session(http, hub.url), "accept": "application/json"}
            call: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
            call["params"] = {"name": "fx__log", "arguments": {"count": 5, "message": "x" * 10_000}}
            assert "result" in (await http.post(hub.url, json=call, headers=headers)).json()
            progress = {"name": "fx__progress", "arguments": {"steps": 5}, "_meta": {"progressToken": "p"}}
            call["params"] = progress
            assert "result" in (await http.post(hub.url, json=call, headers=headers)).json()
            session = next(s for s in hub.app.hub.sessions if s.id == headers["mcp-session-id"])
            assert session.queued_bytes == 0


async def test_upstream_logs_reach_listening_sessions_and_are_not_queued_for_the_others() -> None:
    cmd = fixture_command()
    config = {"mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}}, "onemcp": {"prefixMode": "always"}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            idle = [await raw_session(http, hub.url) for _ in range(IDLE)]
            listener = await raw_session(http, hub.url)
            heard: list[dict[str, object]] = []
            before = HITS.counts["unheard_logs"]
            async with anyio.create_task_group() as tg:
                opened = anyio.Event()
                tg.start_soon(_listen, http, hub, listener, heard, opened)
                await opened.wait()
                call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
                call["params"] = {"name": "fx__log", "arguments": {"count": LINES, "detached": True}}
                assert (await http.post(hub.url, json=call, headers=idle[0])).status_code == 200
                while len(heard) < LINES:
                    await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline
                tg.cancel_scope.cancel()
            assert all(m["method"] == "notifications/message" for m in heard)
            # the idle sessions were counted, not queued
            assert HITS.counts["unheard_logs"] - before == IDLE * LINES
            sessions = {s.id: s for s in hub.app.hub.sessions}
            for headers in idle:
                outbox = sessions[headers["mcp-session-id"]].outbox
                assert outbox is not None and outbox.queued() == 0


async def _listen(
    http: httpx.AsyncClient,
    hub: RunningHub,
    headers: dict[str, str],
    heard: list[dict[str, object]],
    opened: anyio.Event,
) -> None:
    async with http.stream("GET", hub.url, headers={**headers, "accept": "text/event-stream"}) as stream:
        assert stream.status_code == 200
        opened.set()
        async for line in stream.aiter_lines():
            if line.startswith("data:") and line[5:].strip():
                heard.append(orjson.loads(line[5:]))


async def test_resource_subscriptions_per_session_are_capped() -> None:
    cmd = fixture_command()
    config = {
        "mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}},
        "onemcp": {"prefixMode": "always", "limits": {"maxSubscriptionsPerSession": 3}},
    }
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            headers = await raw_session(http, hub.url)

            async def subscribe(uri: str) -> dict[str, Any]:
                msg = {"jsonrpc": "2.0", "id": uri, "method": "resources/subscribe", "params": {"uri": uri}}
                return dict((await http.post(hub.url, json=msg, headers=headers)).json())

            listed = {"jsonrpc": "2.0", "id": 0, "method": "resources/templates/list"}
            template = (await http.post(hub.url, json=listed, headers=headers)).json()["result"]["resourceTemplates"]
            item = template[0]["uriTemplate"].replace("{id}", "")  # one template: endless URIs
            for n in range(3):
                assert "result" in await subscribe(f"{item}{n}")
            refused = await subscribe(f"{item}3")
            assert refused["error"]["data"] == {"limit": "subscriptions_per_session"}
            assert "result" in await subscribe(f"{item}0")  # again: not a new one
            session = next(s for s in hub.app.hub.sessions if s.id == headers["mcp-session-id"])
            assert len(session.subscriptions) == 3


def test_at_its_cap_a_principal_s_stalest_idle_session_makes_room() -> None:
    """Without auth every client is one principal: its cap must not lock every client out."""
    from onemcp.config.model import Limits
    from onemcp.hub.session import EVICT_IDLE, SessionStore

    store = SessionStore(1800, Limits.model_validate({"maxSessionsPerPrincipal": 3}))
    access = decide(ANONYMOUS, LEGACY_HTTP, None, {}, {})
    first, second, third = (store.create("streamable-http", access) for _ in range(3))
    with pytest.raises(LimitReached):  # all three seen just now: none is taken away
        store.create("streamable-http", access)
    first.last_seen -= EVICT_IDLE + 1
    second.last_seen -= EVICT_IDLE + 2
    second.streams_open = 1  # reading its GET stream: in use, however long unseen
    fourth = store.create("streamable-http", access)
    assert store.get(first.id) is None and first.closed
    assert {s.id for s in store} == {second.id, third.id, fourth.id}


def test_a_session_ended_is_told_apart_from_a_copy_forgotten() -> None:
    """The hub deletes a shared record only for an end (DELETE): an idle or evicted copy is only forgotten."""
    from onemcp.config.model import Limits
    from onemcp.hub.session import EVICT_IDLE, SessionStore

    gone: list[tuple[str, bool]] = []
    store = SessionStore(
        1800, Limits.model_validate({"maxSessionsPerPrincipal": 3}), lambda s, ended: gone.append((s.id, ended))
    )
    access = decide(ANONYMOUS, LEGACY_HTTP, None, {}, {})
    ended, idle, evicted = (store.create("streamable-http", access) for _ in range(3))
    assert gone == [] and store.get(ended.id) is not None
    store.remove(ended.id)
    idle.last_seen -= 1801
    assert store.expire_idle() == 1
    store.create("streamable-http", access)
    store.create("streamable-http", access)  # the principal at its cap (3)
    evicted.last_seen -= EVICT_IDLE + 1
    store.create("streamable-http", access)  # room made: the stalest idle copy goes
    assert gone == [(ended.id, True), (idle.id, False), (evicted.id, False)]


def test_the_sessions_used_since_a_moment_are_those_seen_since_or_busy_now() -> None:
    """Whose saved last-seen time moves on in an expiry round: an idle copy's does not (with replicas,
    the shared record then expires after the session's last use on any replica)."""
    from onemcp.config.model import Limits
    from onemcp.hub.session import SessionStore

    store = SessionStore(1800, Limits())
    access = decide(ANONYMOUS, LEGACY_HTTP, None, {}, {})
    used, streaming, idle = (store.create("streamable-http", access) for _ in range(3))
    since = used.last_seen
    for session in (streaming, idle):
        session.last_seen = since - 10
    streaming.streams_open = 1
    assert {s.id for s in store.used_since(since)} == {used.id, streaming.id}


def test_a_hub_s_sessions_share_one_replay_budget_and_an_ended_session_gives_its_bytes_back() -> None:
    """Hunt B (limits): what sessions keep for replay is bounded for all of them together (hub.replay)."""
    from onemcp.config.model import Limits
    from onemcp.hub.session import SessionStore

    store = SessionStore(1800, Limits())
    access = decide(ANONYMOUS, LEGACY_HTTP, None, {}, {})
    kept, ended = (store.create("streamable-http", access) for _ in range(2))
    assert kept.streams.budget is store.replay and ended.streams.budget is store.replay
    for session in (kept, ended):
        reply = session.streams.open("p")
        reply.add({"jsonrpc": "2.0", "id": 1, "result": {"data": "x" * 1000}})
        reply.finish()
    assert store.replay.bytes == kept.streams.bytes + ended.streams.bytes > 2000
    store.remove(ended.id)
    assert store.replay.bytes == kept.streams.bytes and store.replay.holders == {kept.streams}


async def test_deliveries_waiting_for_room_end_when_the_session_does_and_give_their_bytes_back() -> None:
    from onemcp.hub import session as sessions

    access = decide(ANONYMOUS, LEGACY_HTTP, None, {}, {})
    start, holders = sessions.QueuedBytes.used, sessions.QueuedBytes.holders
    session = Session(id="w" * 32, transport="sse", access=access, queue_size=16)
    for n in range(16):
        session.post({"jsonrpc": "2.0", "method": "notifications/message", "params": {"n": n}})
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            for rid in range(3):
                tg.start_soon(session.deliver, {"jsonrpc": "2.0", "id": rid, "result": {}})
            await anyio.wait_all_tasks_blocked()
            assert session.queued_bytes > 0
            session.close()  # the waiting ones return
    assert (sessions.QueuedBytes.used, sessions.QueuedBytes.holders) == (start, holders)
    assert session.queued_bytes == 0


async def test_logs_sent_while_a_get_stream_reconnects_wait_for_it() -> None:
    """s28/e F5: a client reconnecting its GET stream (Last-Event-ID) lost every log line sent in the gap:
    with no stream open, its session counted as not listening. Long after its stream ended, it is again."""
    from onemcp.hub.session import RECONNECT_GRACE

    cmd = fixture_command()
    config = {"mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}}, "onemcp": {"prefixMode": "always"}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            caller, listener = await raw_session(http, hub.url), await raw_session(http, hub.url)
            session = next(s for s in hub.app.hub.sessions if s.id == listener["mcp-session-id"])
            get = {**listener, "accept": "text/event-stream"}
            async with http.stream("GET", hub.url, headers=get) as stream:
                assert stream.status_code == 200
                last_id = ""
                async for line in stream.aiter_lines():
                    if line.startswith("id: "):
                        last_id = line[4:]
                        break  # the priming event: the stream is open
            while session.streams_open:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline, for the hub to see it close
            call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
            call["params"] = {"name": "fx__log", "arguments": {"count": 3, "detached": True}}
            assert (await http.post(hub.url, json=call, headers=caller)).status_code == 200
            outbox = session.outbox
            assert outbox is not None
            while outbox.queued() < 3:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline, for the detached lines
            heard = []
            async with http.stream("GET", hub.url, headers={**get, "last-event-id": last_id}) as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("data: ") and line[6:].strip():
                        heard.append(orjson.loads(line[6:])["method"])
                        if len(heard) == 3:
                            break
            assert heard == ["notifications/message"] * 3
            while session.streams_open:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            assert session.stream_ended is not None
            session.stream_ended -= RECONNECT_GRACE  # long gone: not reconnecting
            before = HITS.counts["unheard_logs"]
            call["id"] = 2
            assert (await http.post(hub.url, json=call, headers=caller)).status_code == 200
            while HITS.counts["unheard_logs"] - before < 2 * 3:  # the caller's and the listener's
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            assert outbox.queued() == 0


async def test_a_busy_session_is_not_expired_as_idle_and_its_idle_time_starts_when_its_call_ends() -> None:
    """A call longer than sessionIdleTimeout (the client writes nothing while it runs) keeps its session,
    as an open stream does; the hub's idle expiry cut such calls off with no reply (soak hunt s29/p F0)."""
    import mcp_types as types
    from mcp import Client
    from mcp.client import ClientRequestContext

    from support.results import text_of

    fx = fixture_command()
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"a": {"command": fx[0], "args": fx[1:]}}}) as hub:
            store = hub.app.hub.sessions
            long_ago = store.idle_timeout + 1
            expired: list[int] = []

            async def elicit(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
                (session,) = store  # mid-call: as if the call had run longer than the idle timeout
                session.last_seen -= long_ago
                expired.append(store.expire_idle())
                return types.ElicitResult(action="accept", content={"colour": "teal"})

            async with Client(hub.url, mode="legacy", cache=None, elicitation_callback=elicit) as c:
                assert "teal" in text_of(await c.call_tool("elicit", {"mode": "form"}))  # one server: unprefixed
                assert expired == [0]
                (session,) = store
                assert store.get(session.id) is session  # idle from the call's end, not from its request
                assert len((await c.list_tools()).tools) > 1

            # a client with no GET stream, saying nothing during a call: idle counts from the call's end
            async with httpx.AsyncClient(timeout=DEADLINE) as http:
                headers = await raw_session(http, hub.url)
                (raw,) = (s for s in store if s.id == headers["mcp-session-id"])
                async with anyio.create_task_group() as tg:
                    done: list[int] = []

                    async def call() -> None:
                        body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call"}
                        body["params"] = {"name": "sleep", "arguments": {"seconds": 0.3}}
                        done.append((await http.post(hub.url, json=body, headers=headers)).status_code)

                    tg.start_soon(call)
                    while not raw.in_flight:
                        await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                    raw.last_seen -= long_ago
                    assert store.expire_idle() == 0
                assert done == [200] and store.get(raw.id) is raw

            # a legacy /sse session is in use while its stream is open, however long since it last wrote
            async with httpx.AsyncClient(timeout=DEADLINE) as http, http.stream("GET", f"{hub.base}/sse") as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        break
                (sse,) = (s for s in store if s.transport == "sse")
                sse.last_seen -= long_ago
                assert store.expire_idle() == 0 and store.get(sse.id) is sse


def test_a_limit_warns_once_per_interval_then_says_how_many_hits_it_did_not_write(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each hit is counted; a warning is written at most once per `logInterval` per limit, and the next one
    says how many hits went unwritten since (another limit warns on its own clock)."""
    import time

    from onemcp.observability.limits import _Hits

    hits, now = _Hits(), [1000.0]
    hits.interval = 10.0
    monkeypatch.setattr(time, "monotonic", lambda: now[0])  # a sync test: no event loop reads it meanwhile
    with caplog.at_level(logging.WARNING, logger="onemcp.limits"):
        for _ in range(5):
            hits.hit("queued_messages", "session %s full", "s1")
        hits.hit("sessions", "no room")
        now[0] += 9.9
        hits.hit("queued_messages", "session %s full", "s1")
        now[0] += 0.2
        hits.hit("queued_messages", "session %s full", "s2")
    assert hits.counts["queued_messages"] == 7 and hits.counts["sessions"] == 1
    assert [r.getMessage() for r in caplog.records] == [
        "limit queued_messages: session s1 full",
        "limit sessions: no room",
        "limit queued_messages: session s2 full (5 more like it since the last warning)",
    ]
