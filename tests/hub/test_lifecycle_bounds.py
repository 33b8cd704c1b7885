"""Nothing the hub holds grows with time: each lifecycle, run many times, gives back all it took.

A matrix of lifecycles (entry points, what happens in them, upstream lifecycles, parked 2026-07-28 calls
never retried, task-augmented calls and how their tasks end, template instances made and reaped, `onemcp
proxy`'s clients, replicas on one Redis), in-process over in-memory fixture upstreams (and, for the last
few, over loopback sockets). Each runs WARM times; then `support.census` counts what the hub holds (its
tables by attribute path, live onemcp/anyio/asyncio objects, tasks, file descriptors, children); the
lifecycle runs CYCLES more times and the count must come back to exactly that (waited for, with a
deadline, while the last cycle's ends reach the hub).
"""

from __future__ import annotations

import math
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
import httpx
import orjson
import pytest

from fixtures.launch import fixture_command
from fixtures.tasks import TaskTable
from onemcp.app import OneMcpApp
from onemcp.auth.principal import ANONYMOUS
from onemcp.cli.proxy import Proxy
from onemcp.cli.target import Endpoint
from onemcp.config.context import encode
from onemcp.config.model import HubConfig
from onemcp.downstream.stdio import StdioServer
from onemcp.hub.session import QueuedBytes
from onemcp.search import meta
from onemcp.search.index import KEEP_UNUSED
from onemcp.upstream import pool
from onemcp.upstream.isolation import PRINCIPAL
from support.census import census, grown
from support.entries import LineClient
from support.hub import RunningHub, raw_session, running_hub
from support.inprocess import (
    BOTH,
    AsgiClient,
    AsgiResponse,
    FixtureUpstreams,
    InProcessHub,
    LegacySession,
    fixture,
    inprocess_hub,
    legacy_session,
    lifespan,
    modern_request,
    tool_call,
)
from support.lines import Lines
from support.services import NEEDS_REDIS, replica_config

pytestmark = pytest.mark.anyio
CYCLES = 20
PROCESS_CYCLES = 8  # with a real upstream process: each crash costs a process start
WARM = 2  # cycles before the first count: what is made once on a later use is made by then
DEADLINE = 60.0
SETTLE = 10.0
SERVERS: dict[str, Any] = {"alpha": fixture("--name", "alpha"), "beta": fixture("--name", "beta")}
Json = dict[str, Any]
CAPABILITIES: Json = {"sampling": {}, "elicitation": {"form": {}}}
Cycle = Callable[[InProcessHub, int], Awaitable[None]]


def sampled(text: str) -> Json:
    return {"role": "assistant", "content": {"type": "text", "text": text}, "model": "m"}


async def bounded(h: InProcessHub, cycle: Cycle, cycles: int = CYCLES, kept: tuple[str, ...] = ()) -> None:
    """Run `cycle` WARM times, count, run it `cycles` more times: the count comes back to the same
    (but for the tables named in `kept`, which keep something of each cycle by design, bounded apart)."""
    roots: dict[str, object] = {"hub": h.app.hub, "app": h.app}

    def count() -> Counter[str]:
        # the test's record of the fixture servers it made: the newest of each name still served (alive anyway)
        started = h.upstreams.started
        for name in list(started):
            if h.upstreams.live.get(name):
                del started[name][:-1]
            else:
                del started[name]
        counts = census(roots)
        for name in [name for name in counts if name.startswith(tuple(f"len {table}" for table in kept))]:
            del counts[name]
        counts.update({f"fixture servers served: {name}": live for name, live in h.upstreams.live.items()})
        # what every session's outbox holds, counted process-wide (class attributes: no attribute path reaches them)
        counts.update({"queued bytes": QueuedBytes.used, "queued holders": QueuedBytes.holders})
        counts["queued messages"] = len(QueuedBytes._shared)
        return counts

    await repeated(partial(cycle, h), count, cycles)


async def repeated(cycle: Callable[[int], Awaitable[None]], count: Callable[[], Counter[str]], cycles: int) -> None:
    for n in range(WARM):
        await cycle(n)
    before = await settled(count, None)
    for n in range(WARM, WARM + cycles):
        await cycle(n)
    await settled(count, before, cycles)


async def settled(count: Callable[[], Counter[str]], before: Counter[str] | None, cycles: int = 0) -> Counter[str]:
    """The count once the hub has quietened (two equal counts in a row), or once equal to `before`."""
    last = count()
    try:
        with anyio.fail_after(SETTLE):
            while True:
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline (a count is costly)
                now = count()
                if (before is None and now == last) or (before is not None and now == before):
                    return now
                last = now
    except TimeoutError:
        assert before is not None, "the hub never quietened"
        diff = grown(before, last)
        raise AssertionError(f"grew (or shrank) after {cycles} more cycles:\n{diff}") from None


# ------------------------------------------------------------------------------------------ entry points


async def legacy_deleted(h: InProcessHub, n: int) -> None:
    session = await h.session()
    reply = await session.ask("tools/call", tool_call("alpha__echo", message=f"m{n}"))
    assert reply["result"]["content"][0]["text"] == f"m{n}"
    response, _ = await h.client.request("DELETE", headers=session.headers())
    assert response.status == 200


async def legacy_abandoned(h: InProcessHub, n: int) -> None:
    """A session left alone until its idle expiry (made due at once, then the hub's sweep)."""
    session = await h.session()
    reply = await session.ask("tools/call", tool_call("alpha__echo", message=f"m{n}"))
    assert "result" in reply
    store = h.app.hub.sessions
    live = store.get(session.id)
    assert live is not None
    live.last_seen -= store.idle_timeout + 1
    assert store.expire_idle() == 1


async def legacy_get_stream(h: InProcessHub, n: int) -> None:
    session = await h.session()
    async with session.listen() as stream:
        assert stream.status == 200
        reply = await session.ask("tools/call", tool_call("alpha__log", message=f"m{n}"))
        assert "result" in reply
    response, _ = await h.client.request("DELETE", headers=session.headers())
    assert response.status == 200


async def legacy_queued_unread(h: InProcessHub, n: int) -> None:
    """Messages queued for a session whose GET stream dropped (its client taken to be reconnecting),
    never read: the session ends."""
    session = await h.session()
    async with session.listen() as stream:
        assert stream.status == 200
    reply = await session.ask("tools/call", tool_call("alpha__log", message=f"m{n}", count=3, detached=True))
    assert "result" in reply
    live = h.app.hub.sessions.get(session.id)
    assert live is not None
    while live.queued_count < 3:
        await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the test's)
    response, _ = await h.client.request("DELETE", headers=session.headers())
    assert response.status == 200


async def modern_call(h: InProcessHub, n: int) -> None:
    _, (reply,) = await h.client.modern("tools/call", rid=n, **tool_call("alpha__echo", message=f"m{n}"))
    assert reply["result"]["content"][0]["text"] == f"m{n}"


async def modern_listen_dropped(h: InProcessHub, n: int) -> None:
    headers, body = modern_request("subscriptions/listen", rid=f"L{n}", notifications={"toolsListChanged": True})
    async with h.client.open("POST", headers=headers, body=body) as stream:
        assert stream.status == 200
        ack = await stream.message()
        assert ack["method"] == "notifications/subscriptions/acknowledged"


async def sse_endpoint(stream: AsgiResponse) -> str:
    while b"\n\n" not in stream._buffer:
        assert await stream._more(), "the /sse stream ended before its endpoint"
    event, _, stream._buffer = stream._buffer.partition(b"\n\n")
    data = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
    return data[0].decode()


async def sse_dropped_mid_call(h: InProcessHub, n: int) -> None:
    """The legacy /sse + /messages pair: a call is held upstream when the client drops the stream."""
    async with h.client.open("GET", path="/sse", headers={"accept": "text/event-stream"}) as stream:
        assert stream.status == 200
        endpoint = await sse_endpoint(stream)
        path, _, query = endpoint.partition("?")
        headers = {"content-type": "application/json"}

        async def post(body: Json) -> None:
            response, _ = await h.client.request("POST", path=path, query=query, headers=headers, body=body)
            assert response.status == 202

        init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
        await post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
        assert (await stream.message())["id"] == 0
        await post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await post({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": tool_call("alpha__hold")})
        await in_flight(h, "alpha")


async def stdio_serve(h: InProcessHub, n: int) -> None:
    """`serve --transport stdio` in-process: a client's whole life on one pipe, both eras."""
    pipe = Lines(8)
    with pipe:
        server = StdioServer(h.app.hub, ANONYMOUS, pipe.read_line, pipe.write)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve)
            init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
            await pipe.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
            await pipe.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
            await pipe.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": tool_call("alpha__echo")})
            while not pipe.replies(2):
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the test's)
            pipe.close()


# ------------------------------------------------------------------------------------------ what happens in them


async def cancelled_call(h: InProcessHub, n: int) -> None:
    session = await h.session()
    async with anyio.create_task_group() as tg:

        async def call() -> None:  # a cancelled request is not answered
            async with session.call("tools/call", tool_call("alpha__hold"), rid=f"c{n}") as response:
                assert await response.messages() == []

        tg.start_soon(call)
        hub_session = h.app.hub.sessions.get(session.id)
        assert hub_session is not None
        while not hub_session.in_flight:
            await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the test's)
        note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": f"c{n}"}}
        assert await session.post(note) == 202
    response, _ = await h.client.request("DELETE", headers=session.headers())
    assert response.status == 200


async def timed_out_call(h: InProcessHub, n: int) -> None:
    session = await h.session()
    reply = await session.ask("tools/call", tool_call("slow__hold"))
    assert reply["error"]["code"] == -32001, reply
    response, _ = await h.client.request("DELETE", headers=session.headers())
    assert response.status == 200


async def post_then_leave(h: InProcessHub, headers: dict[str, str], body: Json, leave: anyio.Event) -> None:
    """POST to /mcp and go away (`http.disconnect`) once `leave` is set, whether or not an answer began."""
    scope: Json = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000")] + [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    requested = False

    async def receive() -> Json:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": orjson.dumps(body), "more_body": False}
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        if leave.is_set():
            raise OSError("the client went away")

    await h.app(scope, receive, send)


async def in_flight(h: InProcessHub, server: str) -> None:
    conn = h.app.hub.pool.get(server)
    assert conn is not None
    while not conn.in_flight:
        await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the test's)


async def disconnected_mid_answer(h: InProcessHub, n: int) -> None:
    """The client goes away while its call is held upstream, then ends its session (a 2025-11-25
    client's disconnection is not a cancellation: the session's end is)."""
    session = await h.session()
    leave = anyio.Event()
    params = {**tool_call("alpha__hold"), "_meta": {"progressToken": n}}
    async with anyio.create_task_group() as tg:
        tg.start_soon(post_then_leave, h, session.headers(), session.body("tools/call", params), leave)
        await in_flight(h, "alpha")
        leave.set()
        response, _ = await h.client.request("DELETE", headers=session.headers())
        assert response.status == 200


async def modern_disconnected(h: InProcessHub, n: int) -> None:
    """A 2026-07-28 client goes away mid-call: that cancels it, upstream too."""
    headers, body = modern_request("tools/call", rid=n, **tool_call("alpha__hold"))
    leave = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(post_then_leave, h, headers, body, leave)
        await in_flight(h, "alpha")
        leave.set()


async def progress_call(h: InProcessHub, n: int) -> None:
    session = await h.session()
    params = {**tool_call("alpha__progress", steps=3), "_meta": {"progressToken": f"p{n}"}}
    async with session.call("tools/call", params) as response:
        messages = await response.messages()
    assert [m.get("method") for m in messages[:3]] == ["notifications/progress"] * 3
    assert messages[-1]["result"]["content"][0]["text"] == "progress done"
    response, _ = await h.client.request("DELETE", headers=session.headers())
    assert response.status == 200


async def sampling_asked_back(h: InProcessHub, n: int) -> None:
    session = await legacy_session(h.client, capabilities=CAPABILITIES)
    async with session.call("tools/call", tool_call("alpha__sample", prompt=f"p{n}")) as response:
        ask = await response.message()
        assert ask["method"] == "sampling/createMessage"
        assert await session.post({"jsonrpc": "2.0", "id": ask["id"], "result": sampled(f"s{n}")}) == 202
        reply = await response.message()
    assert reply["result"]["structuredContent"] == sampled(f"s{n}")
    response, _ = await h.client.request("DELETE", headers=session.headers())
    assert response.status == 200


async def sampling_left_unanswered(h: InProcessHub, n: int) -> None:
    """The client is asked, never answers, and ends its session."""
    session = await legacy_session(h.client, capabilities=CAPABILITIES)
    async with session.call("tools/call", tool_call("alpha__sample", prompt=f"p{n}")) as response:
        ask = await response.message()
        assert ask["method"] == "sampling/createMessage"
        deleted, _ = await h.client.request("DELETE", headers=session.headers())
        assert deleted.status == 200
        await response.messages()


async def modern_sampling_bridged(h: InProcessHub, n: int) -> None:
    params = tool_call("alpha__sample", prompt=f"p{n}")
    _, (first,) = await h.client.modern("tools/call", capabilities=CAPABILITIES, rid=f"a{n}", **params)
    result = first["result"]
    assert result["resultType"] == "input_required", result
    ((key, _),) = result["inputRequests"].items()
    _, (done,) = await h.client.modern(
        "tools/call",
        capabilities=CAPABILITIES,
        rid=f"b{n}",
        inputResponses={key: sampled(f"s{n}")},
        requestState=result["requestState"],
        **params,
    )
    assert done["result"]["structuredContent"] == sampled(f"s{n}")


async def modern_input_never_retried(h: InProcessHub, n: int) -> None:
    """A 2026-07-28 call the hub parked to ask its client for input (`input_required`, `requestState`);
    the client never comes back: the parked call expires (made due at once, then the hub's sweep)."""
    params = tool_call("alpha__elicit", message=f"m{n}")
    _, (first,) = await h.client.modern("tools/call", capabilities=CAPABILITIES, rid=f"e{n}", **params)
    result = first["result"]
    assert result["resultType"] == "input_required", result
    parking = h.app.hub.parking
    for parked in parking._parked.values():
        parked.expires = 0.0
    assert parking.expire() == 1
    await in_flight_none(h, "alpha")


async def in_flight_none(h: InProcessHub, server: str) -> None:
    conn = h.app.hub.pool.get(server)
    assert conn is not None
    while conn.in_flight:
        await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the test's)


async def subscribed_then_deleted(h: InProcessHub, n: int) -> None:
    session = await h.session()
    listed = await session.ask("resources/list")
    uri = listed["result"]["resources"][0]["uri"]
    assert "result" in await session.ask("resources/subscribe", {"uri": uri})
    if n % 2:
        assert "result" in await session.ask("resources/unsubscribe", {"uri": uri})
    response, _ = await h.client.request("DELETE", headers=session.headers())
    assert response.status == 200


async def searched(h: InProcessHub, n: int) -> None:
    session = await legacy_session(h.client, query="exposure=search")
    reply = await session.ask("tools/call", tool_call(meta.SEARCH, query=f"echo a message back {n}"))
    assert "result" in reply, reply
    response, _ = await h.client.request("DELETE", query="exposure=search", headers=session.headers())
    assert response.status == 200
    await h.app.hub.exposure.transformer_settled()  # its background encoding is work, not growth


ENTRIES: dict[str, Cycle] = {
    "legacy, DELETE": legacy_deleted,
    "legacy, abandoned to idle expiry": legacy_abandoned,
    "legacy, GET stream": legacy_get_stream,
    "legacy, queued for a dropped GET stream": legacy_queued_unread,
    "2026-07-28 call": modern_call,
    "2026-07-28 listen dropped": modern_listen_dropped,
    "/sse dropped mid-call": sse_dropped_mid_call,
    "stdio serve": stdio_serve,
    "cancelled call": cancelled_call,
    "client gone mid-answer, then DELETE": disconnected_mid_answer,
    "2026-07-28 client gone mid-call": modern_disconnected,
    "progress": progress_call,
    "sampling answered": sampling_asked_back,
    "sampling unanswered, session ended": sampling_left_unanswered,
    "2026-07-28 sampling through input_required": modern_sampling_bridged,
    "2026-07-28 input_required never retried": modern_input_never_retried,
    "resource subscription, session ended": subscribed_then_deleted,
    "search exposure": searched,
}


@pytest.mark.parametrize("name", list(ENTRIES))
async def test_a_client_lifecycle_gives_back_all_it_took(name: str) -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, {"searchCache": False}) as h:
            await bounded(h, ENTRIES[name])


async def test_a_call_that_times_out_upstream_gives_back_all_it_took() -> None:
    servers = {**SERVERS, "slow": fixture("--name", "slow", timeout=0.05)}
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(servers) as h:
            await bounded(h, timed_out_call)


# ------------------------------------------------------------------------------------------ upstream lifecycles


async def test_an_upstream_crashing_and_restarted_again_and_again_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pool, "BACKOFF_FIRST", 0.0)
    monkeypatch.setattr(pool, "BACKOFF_MAX", 0.0)
    monkeypatch.setattr(pool, "RESTART_BUDGET", math.inf)
    monkeypatch.setattr(pool, "STABLE_AFTER", 0.0)  # it ran well before each crash (restarts in a window are bounded)

    async def crash(h: InProcessHub, n: int) -> None:
        session = await h.session()
        restarted = h.upstreams.made
        reply = await session.ask("tools/call", tool_call("alpha__crash"))
        assert "error" in reply
        await restarted.wait()
        await h.ready("alpha")
        again = await session.ask("tools/call", tool_call("alpha__echo", message="back"))
        assert "result" in again, again
        response, _ = await h.client.request("DELETE", headers=session.headers())
        assert response.status == 200

    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            await bounded(h, crash)
            assert h.upstreams.live == {"alpha": 1, "beta": 1}  # the old ones all ended


@pytest.mark.parametrize("renamed", [False, True], ids=["same name", "a new name each time"])
async def test_a_server_added_and_removed_by_reloads_again_and_again_leaves_nothing_behind(renamed: bool) -> None:

    def config(servers: Json) -> HubConfig:
        return HubConfig.model_validate({"mcpServers": servers, "onemcp": {"searchCache": False}})

    async def reload(h: InProcessHub, n: int) -> None:
        name = f"gamma{n}" if renamed else "gamma"
        extra = {name: fixture("--name", name, "--tools", "3")}
        await h.app.hub.apply_config(config({**SERVERS, **extra}))
        await h.ready(name)
        searching = await legacy_session(h.client, query="exposure=search")
        reply = await searching.ask("tools/call", tool_call(meta.SEARCH, query="generated tool"))
        assert "result" in reply, reply
        session = await h.session()
        called = await session.ask("tools/call", tool_call(f"{name}__echo", message="x"))
        assert "result" in called, called
        for ended in (searching, session):
            response, _ = await h.client.request("DELETE", query=ended.query, headers=ended.headers())
            assert response.status == 200
        await h.app.hub.apply_config(config(SERVERS))
        await h.app.hub.exposure.transformer_settled()
        while h.app.hub.pool.busy(name):
            await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (its removal runs in the background)
        async with h.client.open("GET", path="/metrics") as scraped:  # a removed server's series go when scraped
            assert name.encode() not in await scraped.read()

    # By design, a server's name leaves something behind when it goes: its tools' pins (trust on first use
    # outlives a remove and re-add; at most MAX_PINS a server), the search vectors of definitions no tool
    # has any more (a few hundred, `_forget_unused`): bounded by the names an operator configures, checked apart.
    # (Its request series go at the next scrape once its connection is gone.)
    kept = ("hub.pins", "hub.exposure._index._deep", "hub.exposure._index._memory") if renamed else ()
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, {"searchCache": False}) as h:
            await bounded(h, reload, kept=kept)
            index = h.app.hub.exposure._index
            assert index is not None and index.vectors_held() <= 2 * len(index) + KEEP_UNUSED
            assert not any(h.upstreams.live[name] for name in h.upstreams.live if name.startswith("gamma"))


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_isolated_connections_opened_and_closed_again_and_again_leave_nothing_behind(era: str) -> None:
    """`isolation: session`: a session's own connection ends with it; a 2026-07-28 principal's when idle."""

    async def own(h: InProcessHub, n: int) -> None:
        if era == "legacy":
            session = await legacy_session(h.client, capabilities=CAPABILITIES)
            assert "result" in await session.ask("tools/call", tool_call("iso__echo", message="x"))
            response, _ = await h.client.request("DELETE", headers=session.headers())
            assert response.status == 200
        else:
            _, (reply,) = await h.client.modern("tools/call", rid=n, **tool_call("iso__echo", message="x"))
            assert "result" in reply, reply
            isolated = h.app.hub.isolated
            isolated.close_idle(PRINCIPAL, -1.0)

    servers = {**SERVERS, "iso": fixture("--name", "iso", isolation="session")}
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(servers) as h:
            await bounded(h, own)
            assert h.upstreams.live["iso"] == 1  # the hub's own, which reads the lists


# ------------------------------------------------------------------------------------------ real sockets and processes


async def test_real_clients_and_a_real_upstream_process_crashing_leave_no_fd_task_or_child_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over real loopback sockets (uvicorn) and a stdio upstream process: a legacy session (a call, then
    DELETE), a 2026-07-28 call, an /sse stream dropped mid-call, and the upstream process crashing and
    restarted by supervision. File descriptors, tasks and children (none a zombie) come back."""
    monkeypatch.setattr(pool, "BACKOFF_FIRST", 0.0)
    monkeypatch.setattr(pool, "BACKOFF_MAX", 0.0)
    monkeypatch.setattr(pool, "RESTART_BUDGET", math.inf)
    monkeypatch.setattr(pool, "STABLE_AFTER", 0.0)
    command = fixture_command("--name", "proc")
    config = {"mcpServers": {"proc": {"command": command[0], "args": command[1:]}}, "onemcp": {"searchCache": False}}

    async def cycle(hub: RunningHub, n: int) -> None:
        async with httpx.AsyncClient(timeout=DEADLINE) as client:
            headers = await raw_session(client, hub.url)
            call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": tool_call("echo", message="x")}
            assert "result" in (await client.post(hub.url, json=call, headers=headers)).json()
            slot = hub.app.hub.pool.slots["proc"]
            crashed = slot.restarts
            crash = {**call, "id": 3, "params": tool_call("crash")}
            assert "error" in (await client.post(hub.url, json=crash, headers=headers)).json()
            while slot.restarts == crashed or slot.conn.state != "ready":
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the test's)
            assert (await client.delete(hub.url, headers=headers)).status_code == 200
            modern_headers, body = modern_request("tools/call", rid=n, **tool_call("echo", message="y"))
            assert "result" in (await client.post(hub.url, json=body, headers=modern_headers)).json()
            async with client.stream("GET", f"{hub.base}/sse", headers={"accept": "text/event-stream"}) as stream:
                endpoint, lines = "", stream.aiter_lines()  # (held: dropped, it would close the stream)
                async for line in lines:
                    if line.startswith("data:") and "session_id=" in line:
                        endpoint = line[5:].strip()
                        break
                messages = str(httpx.URL(hub.url).join(endpoint))
                init = {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "0"},
                }
                for message in (
                    {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init},
                    {"jsonrpc": "2.0", "method": "notifications/initialized"},
                    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": tool_call("sleep", seconds=30)},
                ):
                    posted = await client.post(messages, json=message)
                    assert posted.status_code == 202, (messages, message, posted.text)
                while not slot.conn.in_flight:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the test's)

    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub:
            roots: dict[str, object] = {"hub": hub.app.hub, "app": hub.app}
            await repeated(partial(cycle, hub), partial(census, roots), PROCESS_CYCLES)
            assert census(roots)["zombies"] == 0


# ------------------------------------------------------------------------------------------ parked calls and tasks


def task_table(h: InProcessHub, server: str) -> TaskTable:
    return TaskTable.of(h.upstreams.current(server))


TASK = {"ttl": 60_000}


async def task_made(session: Any, tool: str, **arguments: Any) -> str:
    reply = await session.ask("tools/call", {**tool_call(tool, **arguments), "task": TASK})
    assert reply["result"]["task"]["status"] == "working", reply
    return str(reply["result"]["task"]["taskId"])


async def task_ends(h: InProcessHub, how: str, n: int) -> None:
    """One legacy session's task-augmented call, and how its task ends (or does not) before the session does."""
    session = await h.session()
    table = task_table(h, "tk")
    if how == "finished":
        visible = await task_made(session, "tk__echo", message=f"m{n}")
        done = await session.ask("tasks/result", {"taskId": visible})
        assert done["result"]["content"][0]["text"] == f"m{n}", done
        assert (await session.ask("tasks/get", {"taskId": visible}))["result"]["status"] == "completed"
        listed = await session.ask("tasks/list")
        assert [t["taskId"] for t in listed["result"]["tasks"]] == [visible], listed
    elif how == "cancelled":
        visible = await task_made(session, "tk__hold")
        cancelled = await session.ask("tasks/cancel", {"taskId": visible})
        assert cancelled["result"]["status"] == "cancelled", cancelled
    elif how == "expired upstream":  # the server forgets it (its ttl ran out) without a status: cancelling it fails
        await task_made(session, "tk__hold")
        (upstream_id,) = table.tasks
        table.expire(upstream_id)
    elif how == "running when the session ends":  # the hub cancels it upstream (the server offers tasks/cancel)
        await task_made(session, "tk__hold")
    elif how == "running on a server that crashes":
        await task_made(session, "tk__hold")
        restarted = h.upstreams.made
        assert "error" in await session.ask("tools/call", tool_call("tk__crash"))
        for upstream_id in list(table.tasks):  # in memory, its runs outlive its end: a process's would not
            table.expire(upstream_id)
        await restarted.wait()
        await h.ready("tk")
    response, _ = await h.client.request("DELETE", headers=session.headers())
    assert response.status == 200
    await in_flight_none(h, "tk")
    if how != "running on a server that crashes":  # (the crashed server's table went with it)
        while any(not runner.done() for runner in table.runners.values()):
            await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the test's)
        table.forget_ended()


async def task_ends_unheard(h: InProcessHub, n: int) -> None:
    """A server without tasks/cancel: a session ends with its task running; the task ends later (its status
    says so), or the server forgets it without a word once its ttl (here short) ran out: the hub forgets it
    once past its ttl, at a later session's end."""
    session = await h.session()
    table = task_table(h, "tk")
    short = n % 2 == 0
    reply = await session.ask("tools/call", {**tool_call("tk__hold"), "task": {"ttl": 1} if short else TASK})
    assert reply["result"]["task"]["status"] == "working", reply
    (upstream_id,) = table.tasks
    response, _ = await h.client.request("DELETE", headers=session.headers())
    assert response.status == 200
    if short:
        table.expire(upstream_id)
        for orphan in h.app.hub.tasks._orphans.values():  # past its ttl by the next session's end, which drops it
            while orphan.until >= time.monotonic():
                await anyio.sleep(0.001)  # allowed-sleep: polling with a deadline (its 1 ms ttl)
    else:
        table.runners[upstream_id].cancel()  # it ends: its status says so
        while not table.runners[upstream_id].done():
            await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the test's)
        table.forget_ended()
    await in_flight_none(h, "tk")


async def modern_task_call(h: InProcessHub, n: int) -> None:
    """A 2026-07-28 task-augmented call: tasks are not served in that era, so it runs as a plain call."""
    params = {**tool_call("tk__echo", message=f"m{n}"), "task": TASK}
    _, (reply,) = await h.client.modern("tools/call", rid=n, **params)
    assert reply["result"]["content"][0]["text"] == f"m{n}", reply


TASK_ENDS = ["finished", "cancelled", "expired upstream", "running when the session ends"]


@pytest.mark.parametrize("how", [*TASK_ENDS, "running on a server that crashes", "unheard", "2026-07-28"])
async def test_task_augmented_calls_leave_nothing_behind(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool, "BACKOFF_FIRST", 0.0)
    monkeypatch.setattr(pool, "BACKOFF_MAX", 0.0)
    monkeypatch.setattr(pool, "RESTART_BUDGET", math.inf)
    monkeypatch.setattr(pool, "STABLE_AFTER", 0.0)
    flags = ("--uncancellable-tasks",) if how == "unheard" else ("--tasks",)
    servers = {**SERVERS, "tk": fixture("--name", "tk", *flags)}
    cycle: Cycle = (
        task_ends_unheard
        if how == "unheard"
        else modern_task_call
        if how == "2026-07-28"
        else lambda h, n: task_ends(h, how, n)
    )
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(servers, {"searchCache": False}) as h:
            await bounded(h, cycle)


# ------------------------------------------------------------------------------------------ template instances


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_template_instances_made_and_reaped_again_and_again_leave_nothing_behind(era: str) -> None:
    """A template server's instances: a legacy session's own (per session), a 2026-07-28 request's shared
    one (per project, a new project each cycle); each ends (the session's DELETE), is reaped as idle (made
    due at once), and its fixture server stops."""
    template = {**fixture("--name", "tpl"), "template": {"shareable": era == "modern"}}
    config = {"mcpServers": SERVERS, "mcpTemplates": {"tpl": template}, "onemcp": {"searchCache": False}}

    async def cycle(h: InProcessHub, n: int) -> None:
        context = encode({"project": {"path": f"/work/p{n}", "name": f"p{n}"}}, h.app.hub.context_secret)
        if era == "legacy":
            init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
            body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}
            response, _ = await h.client.request(
                "POST", headers={"accept": BOTH, "content-type": "application/json", **context}, body=body
            )
            assert response.status == 200
            session = LegacySession(h.client, response.headers["mcp-session-id"])
            headers = {**session.headers(), **context}
            for message in (
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                session.body("tools/call", tool_call("tpl__echo", message=f"m{n}")),
            ):
                response, replies = await h.client.request("POST", headers=headers, body=message)
                assert response.status in (200, 202), replies
            assert replies[-1]["result"]["content"][0]["text"] == f"m{n}", replies
            response, _ = await h.client.request("DELETE", headers=headers)
            assert response.status == 200
        else:
            headers, body = modern_request("tools/call", rid=n, **tool_call("tpl__echo", message=f"m{n}"))
            _, (reply,) = await h.client.request("POST", headers={**headers, **context}, body=body)
            assert reply["result"]["content"][0]["text"] == f"m{n}", reply
        instances = h.app.hub.instances
        (instance,) = instances.instances.values()
        assert await instances.reap(now=time.monotonic() + instance.config.timeout + 10**6) == [instance.id]
        while any(h.upstreams.live[name] for name in h.upstreams.live if name.startswith("tpl")):
            await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the test's)

    upstreams = FixtureUpstreams()
    app = OneMcpApp(HubConfig.model_validate(config), transports=upstreams)
    app.hub.context_secret = secrets.token_bytes(32)
    with anyio.fail_after(DEADLINE):
        async with lifespan(app):
            await app.hub.pool.tried.wait()
            await bounded(InProcessHub(app, upstreams, AsgiClient(app)), cycle)


# ------------------------------------------------------------------------------------------ onemcp proxy


async def test_clients_of_onemcp_proxy_come_and_go_and_leave_nothing_behind() -> None:
    """`onemcp proxy` in-process (stdio lines in, the hub over loopback): each cycle a client initializes, calls
    (and sends one 2026-07-28 request), then closes its end; the proxy ends its hub session and stops. What the
    hub holds, the proxy's objects, tasks and file descriptors come back."""
    command = fixture_command("--name", "proc")
    config = {"mcpServers": {"proc": {"command": command[0], "args": command[1:]}}, "onemcp": {"searchCache": False}}

    async def cycle(hub: RunningHub, n: int) -> None:
        client = LineClient()
        async with anyio.create_task_group() as tg:
            tg.start_soon(Proxy(Endpoint(hub.url), client.read_line, client.write, wait=5.0).run)
            await client.initialize()
            result = await client.request("tools/call", tool_call("echo", message=f"m{n}"))
            assert result["content"][0]["text"] == f"m{n}", result
            _, modern = modern_request("tools/call", rid=1000 + n, **tool_call("echo", message=f"y{n}"))
            answered = client.replies.expect(1000 + n)
            await client.send(modern)
            assert (await answered())["result"]["content"][0]["text"] == f"y{n}"
            client.to_server.close()  # the client is gone: the proxy ends
        client.close()
        # its session ended, and the hub's side of its connections closed (the last may take a moment)
        while len(hub.app.hub.sessions) or hub.server.server_state.connections:
            await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the test's)

    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub:
            roots: dict[str, object] = {"hub": hub.app.hub, "app": hub.app}
            await repeated(partial(cycle, hub), partial(closed_kept, roots), PROCESS_CYCLES)


# A closed connection's protocol (and its transport, socket, events) lives on until its cancelled keep-alive
# timer comes due in the loop's heap (bounded by time, not use): its socket is closed (the fds are counted).
CLOSED_KEPT = ("live onemcp.http.server.HubHttpProtocol", "live asyncio.TransportSocket", "live asyncio.Event")


def closed_kept(roots: dict[str, object]) -> Counter[str]:
    counts = census(roots)
    for name in [name for name in counts if name.startswith(CLOSED_KEPT) or name.endswith("SocketTransport")]:
        del counts[name]
    return counts


# ------------------------------------------------------------------------------------------ replicas on one Redis


@NEEDS_REDIS
async def test_sessions_across_two_replicas_on_redis_leave_nothing_behind(redis_url: str) -> None:
    """Two replicas sharing a Redis: a session made on one, called on the other (which revives its copy from
    the shared record), its GET stream on the first, then its DELETE on the second: both forget it."""
    config = replica_config(redis_url)
    config["onemcp"]["searchCache"] = False

    async def cycle(one: RunningHub, two: RunningHub, n: int) -> None:
        async with httpx.AsyncClient(timeout=DEADLINE) as client:
            headers = await raw_session(client, one.url)
            call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": tool_call("echo", message=f"m{n}")}
            async with client.stream("GET", one.url, headers={**headers, "accept": "text/event-stream"}) as stream:
                assert stream.status_code == 200
                reply = (await client.post(two.url, json=call, headers=headers)).json()
                assert reply["result"]["content"][0]["text"] == f"m{n}", reply
                assert two.app.hub.sessions.get(headers["mcp-session-id"]) is not None  # its copy there
            assert (await client.delete(two.url, headers=headers)).status_code == 200
        for hub in (one, two):
            while len(hub.app.hub.sessions) or hub.server.server_state.connections:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the test's)

    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as one, running_hub(config) as two:
            for hub in (one, two):
                replicas = hub.app.hub.replicas
                assert replicas is not None
                while not replicas.relay.up:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (subscribing)
            roots: dict[str, object] = {"one": one.app.hub, "two": two.app.hub, "app1": one.app, "app2": two.app}
            await repeated(partial(cycle, one, two), partial(closed_kept, roots), PROCESS_CYCLES)
