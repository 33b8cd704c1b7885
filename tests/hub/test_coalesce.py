"""A flood of `logging/setLevel` and `roots/list_changed` becomes few messages upstream (hub/coalesce.py).

The gap (hunt B, limits): each client's message was passed on to every upstream it reaches, one for one, so
a client sending a thousand made a thousand times as many. Now at most one is in flight per upstream
connection and those arriving meanwhile are served by one more, sent with the state then (the latest
level); a lone one is sent at once. And (hunt G) a roots change was told to the upstreams before the
client's notification was done with: one upstream slow to take it held the client up for its `timeout`
(60 s by default; over `serve --transport stdio` every later message of the client waited too); a
setLevel's reply likewise waited for every upstream's acknowledgement (s32): now a short grace.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import orjson
import pytest

from fixtures.launch import fixture_command, running_http_fixture
from onemcp.hub.coalesce import Backlog
from support.hub import HEADERS, INIT, running_hub

pytestmark = pytest.mark.anyio
DEADLINE = 30.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Upstream:
    """A key whose sends can be held, recording the state each send carried."""

    def __init__(self) -> None:
        self.state = 0
        self.sent: list[int] = []
        self.hold = anyio.Event()
        self.holding = anyio.Event()

    async def send(self) -> None:
        self.sent.append(self.state)  # read when sent, as the hub reads the level
        self.holding.set()
        await self.hold.wait()


async def test_a_lone_mark_is_sent_at_once_and_its_event_set_when_the_send_ends() -> None:
    backlog: Backlog[Upstream] = Backlog()
    up = Upstream()
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            backlog.tg = tg
            done = await backlog.mark(up, up.send)
            await up.holding.wait()
            assert not done.is_set()  # in flight
            up.hold.set()
            await done.wait()
            done = await backlog.mark(up, up.send)  # one after the other: each its own
            await done.wait()
    assert up.sent == [0, 0]


async def test_marks_during_a_send_share_one_more_send_and_one_event() -> None:
    backlog: Backlog[Upstream] = Backlog()
    up = Upstream()
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            backlog.tg = tg
            first = await backlog.mark(up, up.send)
            await up.holding.wait()
            later = set()
            for n in range(1, 101):
                up.state = n
                later.add(await backlog.mark(up, up.send))
            assert len(later) == 1 and first not in later  # served by the next send, not the one in flight
            up.hold.set()
            await later.pop().wait()
    assert up.sent == [0, 100] and first.is_set()


async def _whoami(http: httpx.AsyncClient, url: str, headers: dict[str, str], name: str = "whoami") -> dict[str, Any]:
    call = {"jsonrpc": "2.0", "id": "w", "method": "tools/call", "params": {"name": name, "arguments": {}}}
    r = await http.post(url, json=call, headers=headers)
    seen: dict[str, Any] = orjson.loads(r.json()["result"]["content"][0]["text"])
    return seen


async def test_a_flood_of_set_level_is_answered_while_the_upstream_holds_it_and_reaches_it_as_two_messages() -> None:
    """A setLevel is answered after a short grace even while an upstream holds its acknowledgement (hunt
    G, s32: the reply waited for it, up to the server's `timeout`), and those that came meanwhile reach
    the upstream as one more message with the last level."""
    fx = fixture_command("--held-levels")
    config = {"mcpServers": {"fx": {"command": fx[0], "args": fx[1:], "timeout": 300}}}  # names unprefixed
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            r = await http.post(hub.url, json=INIT, headers=HEADERS)
            session = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
            await http.post(hub.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
            replies: list[dict[str, Any]] = []

            async def set_level(i: int, level: str) -> None:
                body = {"jsonrpc": "2.0", "id": i, "method": "logging/setLevel", "params": {"level": level}}
                replies.append((await http.post(hub.url, json=body, headers=session)).json())

            await set_level(1, "debug")  # answered though the upstream holds its acknowledgement (300 s)
            assert (await _whoami(http, hub.url, session))["heard"]["logging/setLevel"] == 1
            async with anyio.create_task_group() as tg:
                for i in range(2, 52):
                    tg.start_soon(set_level, i, "warning")
            assert len(replies) == 51 and all(reply["result"] == {} for reply in replies)
            upstream = next(iter(hub.app.hub.pool.connections.values()))
            assert hub.app.hub.dispatcher.level_sends.pending(upstream)  # still held
            release = {"name": "release_levels", "arguments": {}}
            await http.post(
                hub.url, json={"jsonrpc": "2.0", "id": 0, "method": "tools/call", "params": release}, headers=session
            )
            while hub.app.hub.dispatcher.level_sends.pending(upstream):
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            seen = await _whoami(http, hub.url, session)
            assert seen["heard"]["logging/setLevel"] == 2  # was 51
            assert seen["logLevel"] == "warning"


async def test_a_backlog_returns_at_once_and_sends_what_came_meanwhile_once() -> None:
    backlog: Backlog[Upstream] = Backlog()
    up, other = Upstream(), Upstream()
    other.hold.set()
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            backlog.tg = tg
            await backlog.mark(up, up.send)
            await up.holding.wait()  # the send is in flight, held; mark returned before it ended
            for n in range(1, 101):
                up.state = n
                await backlog.mark(up, up.send)  # returns at once
            await backlog.mark(other, other.send)
            while backlog.pending(other):  # another key is not held up by this one
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            assert other.sent == [0] and up.sent == [0]
            up.hold.set()
    assert up.sent == [0, 100] and not backlog.pending(up)


async def test_a_backlog_outlives_a_send_that_fails() -> None:
    backlog: Backlog[Upstream] = Backlog()
    up = Upstream()
    up.hold.set()
    sent = 0

    async def broken() -> None:
        nonlocal sent
        sent += 1
        raise RuntimeError("a bug in a send")

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            backlog.tg = tg
            await backlog.mark(up, broken)
            while backlog.pending(up):
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            await backlog.mark(up, up.send)  # the task group lives on, and so do the next sends
    assert sent == 1 and up.sent == [0]


async def test_an_upstream_slow_to_take_a_roots_change_holds_up_neither_the_client_nor_the_others() -> None:
    fx = fixture_command()
    with anyio.fail_after(DEADLINE):
        async with running_http_fixture("--http", "--held-roots") as url:
            servers = {"slow": {"url": url, "timeout": 300}, "fx": {"command": fx[0], "args": fx[1:]}}
            async with running_hub({"mcpServers": servers}) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
                r = await http.post(hub.url, json=INIT, headers=HEADERS)
                session = {
                    **HEADERS,
                    "mcp-session-id": r.headers["mcp-session-id"],
                    "mcp-protocol-version": "2025-11-25",
                }
                await http.post(
                    hub.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session
                )
                changed = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
                for _ in range(20):  # each answered while the slow upstream holds the first (300 s)
                    assert (await http.post(hub.url, json=changed, headers=session)).status_code == 202
                slow = hub.app.hub.pool.connections["slow"]
                heard = await _whoami(http, hub.url, session, "slow__whoami")
                assert heard["heard"]["notifications/roots/list_changed"] == 1  # the rest wait as one
                assert (await _whoami(http, hub.url, session, "fx__whoami"))["heard"][
                    "notifications/roots/list_changed"
                ] >= 1
                release = {"name": "slow__release_roots", "arguments": {}}
                await http.post(
                    hub.url,
                    json={"jsonrpc": "2.0", "id": 0, "method": "tools/call", "params": release},
                    headers=session,
                )
                while hub.app.hub.dispatcher.roots_sends.pending(slow):
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                heard = await _whoami(http, hub.url, session, "slow__whoami")
                assert heard["heard"]["notifications/roots/list_changed"] == 2  # the last change is not lost


async def test_a_level_an_upstream_already_logs_at_is_not_told_again_for_each_new_session() -> None:
    """Each new session's setLevel was passed on to every upstream it reaches, the same level or not: many
    short sessions of a client that sets its level cost one message per upstream each (10 sessions, 5
    upstreams: 50). Now an upstream is told a level only when it is not the one it logs at."""
    fx = fixture_command()
    config = {"mcpServers": {"fx": {"command": fx[0], "args": fx[1:]}}}  # one server: names unprefixed
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:

            async def new_session_at(level: str) -> dict[str, str]:
                r = await http.post(hub.url, json=INIT, headers=HEADERS)
                sid = r.headers["mcp-session-id"]
                session = {**HEADERS, "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
                body = {"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": level}}
                assert (await http.post(hub.url, json=body, headers=session)).json()["result"] == {}
                return session

            for _ in range(5):
                session = await new_session_at("info")
            upstream = next(iter(hub.app.hub.pool.connections.values()))
            while hub.app.hub.dispatcher.level_sends.pending(upstream):
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            assert (await _whoami(http, hub.url, session))["heard"]["logging/setLevel"] == 1  # was 5
            session = await new_session_at("debug")  # more verbose: told
            while hub.app.hub.dispatcher.level_sends.pending(upstream):
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            seen = await _whoami(http, hub.url, session)
            assert seen["heard"]["logging/setLevel"] == 2 and seen["logLevel"] == "debug"
