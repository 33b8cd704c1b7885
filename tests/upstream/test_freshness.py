"""A list a server cannot announce changes of is kept for its `ttlMs` (at least `MIN_KEEP`), and is stale
once a client's call to that server was answered: a client's next list reads it again.

Before (s33 c F3): a dual-era SDK low-level server with no `subscriptions/listen` handler, spoken to in
2026-07-28, declares no `tools.listChanged`; the hub read its lists once, at connect, and a tool it
added never showed through the hub, in either client era (directly, a 2026-07-28 client lists again:
the SDK's `ttlMs` is 0; a legacy client hears `list_changed`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from fixtures.launch import running_http_fixture
from onemcp.auth.keys import KeyStore
from onemcp.upstream import freshness
from onemcp.upstream.freshness import MIN_KEEP, Freshness, announces, ttl_of
from onemcp.upstream.lists import Relist
from support.clock import Clock
from support.hub import running_hub
from support.results import Heard, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]
DEADLINE = 30.0
TOOLS_ONLY: dict[str, Any] = {"tools": {}}  # no listChanged
GROWING = str(Path(__file__).resolve().parents[1] / "fixtures" / "growing_server.py")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Readings:
    """The connection's side: `refresh_soon` as Freshness calls it, with the readings it asked for."""

    def __init__(self) -> None:
        self.asked = 0
        self.relist = Relist()

    def __call__(self, kind: str, *, unpaced: bool = False) -> Relist:
        assert unpaced is False  # a reading asked for a client is not paced because a client waits for it
        self.asked += 1
        return self.relist

    def end(self) -> None:
        self.relist.begin()
        self.relist.end()


def test_the_ttl_is_the_least_of_the_pages_and_only_a_whole_number_counts() -> None:
    assert ttl_of([0]) == 0 and ttl_of([2500, 1000]) == 1.0
    assert ttl_of([]) is None and ttl_of([None]) is None  # a legacy server says nothing
    assert ttl_of([1000, None]) is None and ttl_of([-1]) is None and ttl_of([True]) is None and ttl_of(["5"]) is None


def test_a_list_is_announced_by_its_capability() -> None:
    assert announces({"tools": {"listChanged": True}}, "tools")
    assert not announces({"tools": {"listChanged": False}}, "tools") and not announces({"tools": {}}, "tools")
    assert announces({"resources": {"listChanged": True}}, "resourceTemplates")


def test_a_list_kept_by_its_ttl_expires_after_it_and_at_least_min_keep() -> None:
    clock, caps = Clock(), TOOLS_ONLY
    fresh = Freshness(lambda: caps, Readings(), clock)
    fresh.reading("tools")([0])  # ttlMs 0, as the SDK says
    assert not fresh.stale("tools")
    clock.now += MIN_KEEP
    assert fresh.stale("tools")
    fresh.reading("tools")([5000])
    clock.now += 4.9
    assert not fresh.stale("tools")
    clock.now += 0.1
    assert fresh.stale("tools")


def test_a_call_answered_since_the_reading_began_makes_it_stale() -> None:
    clock, caps = Clock(), TOOLS_ONLY
    fresh = Freshness(lambda: caps, Readings(), clock)
    read = fresh.reading("tools")
    fresh.answered += 1  # during the reading: it may or may not show the call's change
    read([60_000])
    assert fresh.stale("tools")
    fresh.reading("tools")([60_000])
    assert not fresh.stale("tools")
    fresh.answered += 1
    assert fresh.stale("tools")


def test_a_list_the_server_announces_or_gives_no_ttl_for_is_kept() -> None:
    clock, caps = Clock(), {"tools": {"listChanged": True}, "prompts": {}}
    fresh = Freshness(lambda: caps, Readings(), clock)
    fresh.reading("tools")([0])  # the change feed tells the hub
    fresh.reading("prompts")([None])  # legacy: no ttlMs, no listChanged: nothing said of its changing
    clock.now += 3600
    fresh.answered += 1
    assert not fresh.stale("tools") and not fresh.stale("prompts") and not fresh.stale("resources")


def test_a_change_heard_elsewhere_makes_any_list_stale_until_a_reading_begun_after_it_ends() -> None:
    """Even a list the server announces (or gives no ttl for): the connection that heard it is another."""
    clock, caps = Clock(), {"tools": {"listChanged": True}}
    readings = Readings()
    fresh = Freshness(lambda: caps, readings, clock)
    fresh.reading("tools")([None])
    under_way = fresh.reading("tools")  # began before the change
    fresh.changed_elsewhere("tools")
    assert readings.asked == 1 and fresh.stale("tools")  # a reading asked for at once
    under_way([None])
    assert fresh.stale("tools")  # it may not show the change
    fresh.reading("tools")([None])
    assert not fresh.stale("tools")


async def test_clients_listing_at_once_share_one_reading() -> None:
    clock, caps = Clock(), TOOLS_ONLY
    readings = Readings()
    fresh = Freshness(lambda: caps, readings, clock)
    fresh.reading("tools")([0])
    clock.now += MIN_KEEP
    done = 0

    async def ask() -> None:
        nonlocal done
        await fresh.ensure("tools")
        done += 1

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(ask)
            while readings.relist.upcoming.statistics().tasks_waiting < 20:
                await anyio.lowlevel.checkpoint()
            assert readings.asked == 1 and done == 0  # one reading for all of them, and they wait for it
            fresh.reading("tools")([0])
            readings.end()
    assert done == 20
    await fresh.ensure("tools")  # read just now: not again
    assert readings.asked == 1


async def test_a_client_waits_for_a_stale_list_at_most_fresh_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that does not answer its list: the client gets the kept list, not a hang."""
    monkeypatch.setattr(freshness, "FRESH_WAIT", 0.05)
    clock, caps = Clock(), TOOLS_ONLY
    fresh = Freshness(lambda: caps, Readings(), clock)
    fresh.reading("tools")([0])
    clock.now += MIN_KEEP
    with anyio.fail_after(DEADLINE):
        await fresh.ensure("tools")


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_tool_a_server_that_cannot_announce_adds_is_listed_through_the_hub(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real SDK server (`fixtures/growing_server.py`), both client eras: the list after the call that
    grew it shows the new tool; lists with no call between them (within the ttl) read it once."""
    monkeypatch.setattr(freshness, "MIN_KEEP", 3600.0)  # no list here expires by time: calls make them stale
    config = {
        "mcpServers": {
            "g": {"command": sys.executable, "args": [GROWING]},
            "o": {"command": sys.executable, "args": [GROWING]},
        }
    }
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, Client(hub.url, mode=mode, cache=None) as client:
            conn = hub.app.hub.pool.get("g")
            assert (
                conn is not None and conn.era == "modern" and conn.capabilities["tools"].get("listChanged") is not True
            )
            assert text_of(await client.call_tool("g__grow", {})) == "grow lists t1"
            assert "g__t1" in {tool.name for tool in (await client.list_tools()).tools}
            listed = int(text_of(await client.call_tool("g__lists", {})))
            for _ in range(3):  # read again once (a call was answered since), then kept
                await client.list_tools()
            assert int(text_of(await client.call_tool("g__lists", {}))) == listed + 1


async def test_a_principals_own_connections_lists_expire_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """`isolation: session` gives a 2026-07-28 caller its principal's own connection (its own process): its
    view of the server is what that connection lists, and a call there makes that list stale as on the
    shared one (s34 p leftover: only the pool's and a session's own connections were checked, so the view
    kept the list read at connect for ever)."""
    monkeypatch.setattr(freshness, "MIN_KEEP", 3600.0)
    config = {"mcpServers": {"g": {"command": sys.executable, "args": [GROWING], "isolation": "session"}}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, Client(hub.url, mode="2026-07-28", cache=None) as client:
            assert text_of(await client.call_tool("grow", {})) == "grow lists t1"
            own = [c for c in hub.app.hub.isolated.connections() if c.name == "g"]
            assert len(own) == 1 and own[0] is not hub.app.hub.pool.get("g")  # the call went to the principal's
            assert "t1" in {tool.name for tool in (await client.list_tools()).tools}
            listed = int(text_of(await client.call_tool("lists", {})))
            for _ in range(3):
                await client.list_tools()
            assert int(text_of(await client.call_tool("lists", {}))) == listed + 1  # one reading for three lists


async def test_a_call_on_a_principals_own_connection_makes_the_shared_list_stale_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTP a principal's own connection (`isolation: session`, a 2026-07-28 caller) reaches the same
    server as the shared one, whose list (the catalog: what another principal's session without a connection
    of its own is shown, what search indexes) a call there may change: it is stale once that call is
    answered, as after a call on the shared one (s35 leftover: only the connection that answered was made
    stale, so the catalog kept the list until its ttl ran out)."""
    monkeypatch.setattr(freshness, "MIN_KEEP", 3600.0)  # no list here expires by time: calls make them stale
    keys = KeyStore(tmp_path / "keys.db")
    alice, bob = keys.create("alice", ["mcp"]), keys.create("bob", ["mcp"])
    with anyio.fail_after(DEADLINE):
        async with running_http_fixture("--http", command=[sys.executable, GROWING]) as url:
            config = {"mcpServers": {"g": {"url": url, "isolation": "session"}}, "onemcp": {"auth": {"apiKeys": True}}}
            (tmp_path / "mcp.json").write_text(json.dumps(config))
            async with running_hub(config, config_path=tmp_path / "mcp.json") as hub:
                core = hub.app.hub
                for key, mode in ((alice, "2026-07-28"), (bob, "legacy")):
                    async with (
                        httpx2.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=30) as http,
                        Client(streamable_http_client(hub.url, http_client=http), mode=mode, cache=None) as client,
                    ):
                        if key == alice:
                            assert text_of(await client.call_tool("grow", {})) == "grow lists t1"
                            (own,) = [c for c in core.isolated.connections() if c.name == "g"]
                            assert own is not core.pool.get("g")  # the call went to alice's own connection
                        else:  # bob has called nothing: he is shown the catalog's list
                            assert f"key:{bob.split('_')[1]}" not in core.events.views.principals
                            assert "t1" in {tool.name for tool in (await client.list_tools()).tools}


async def test_a_list_changed_on_the_legacy_era_companion_reads_the_shared_list_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A legacy client that can be asked back calls a dual-era server over its legacy-era companion; over
    HTTP that is the same server, and the tool its call added must show in the hub's list (s33 c F3's second
    half: the companion's `list_changed` changed nobody's view; the shared 2026-07-28 connection cannot
    announce, and no call was answered on it, so its list was kept)."""
    from onemcp.hub.connections import LEGACY_COMPANION

    monkeypatch.setattr(freshness, "MIN_KEEP", 3600.0)

    async def sampling(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> Any:
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="ok"), model="m")

    with anyio.fail_after(DEADLINE):
        async with running_http_fixture("--http", command=[sys.executable, GROWING]) as url:
            config = {"mcpServers": {"g": {"url": url}, "o": {"command": sys.executable, "args": [GROWING]}}}
            async with running_hub(config) as hub:
                heard = Heard(types.ToolListChangedNotification, lambda n: n.method)
                async with (
                    Client(hub.url, mode="legacy", cache=None, sampling_callback=sampling) as asker,
                    Client(hub.url, mode="legacy", cache=None, message_handler=heard) as other,
                    Client(hub.url, mode="2026-07-28", cache=None) as modern,
                ):
                    assert "g__t1" not in {tool.name for tool in (await other.list_tools()).tools}
                    assert text_of(await asker.call_tool("g__grow", {})) == "grow lists t1"
                    assert hub.app.hub.isolated.ready(LEGACY_COMPANION, "g") is not None  # it went there
                    assert "g__t1" in {tool.name for tool in (await asker.list_tools()).tools}
                    assert "g__t1" in {tool.name for tool in (await modern.list_tools()).tools}
                    await heard.came.wait()  # the client on the shared connection is told
                    assert "g__t1" in {tool.name for tool in (await other.list_tools()).tools}
