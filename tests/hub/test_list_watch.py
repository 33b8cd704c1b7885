"""A 2026-07-28 listen stream hears of a change to a list its server cannot announce within about the
list's ttl, with no client listing; nothing is read for it once nobody listens.

Before (s34 p leftover): such a list was read again only when some client listed, so a listener heard of
a tool the server added only then (or never).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from onemcp.hub.list_watch import ListWatch
from onemcp.upstream import freshness
from onemcp.upstream.lists import Relist
from support.clock import Clock
from support.hub import running_hub

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]
DEADLINE = 30.0
V = "2026-07-28"
GROWING = str(Path(__file__).resolve().parents[1] / "fixtures" / "growing_server.py")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_listener_hears_of_a_change_its_server_cannot_announce_with_nobody_listing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(freshness, "MIN_KEEP", 0.2)  # the SDK's ttlMs is 0: its lists expire after this
    config: dict[str, Any] = {"mcpServers": {"g": {"command": sys.executable, "args": [GROWING]}}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, Client(hub.url, mode="2026-07-28", cache=None) as client:
            watch = hub.app.hub.list_watch
            async with client.listen(tools_list_changed=True) as sub:
                assert sub.honored.tools_list_changed
                assert watch.watched() != {}
                assert await grow(hub.url) == "grow lists t1"  # raw: the SDK's client lists to check a result
                async for event in sub:  # no client lists: the watch reads the list as it expires
                    assert "ToolsListChanged" in type(event).__name__
                    break
            with anyio.fail_after(5):
                while watch.listeners:  # the stream's end reaches the hub
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            assert watch.watched() == {}  # nobody listens: nothing is read for listeners


async def test_a_principals_own_connection_a_listen_watches_is_not_swept_as_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 2026-07-28 caller's own connection (`isolation: session`) that its open listen stream watches is in
    use though no call came: the sweep of idle ones (`sessionIdleTimeout`) closed it, its view fell back to the
    catalog, and the listener heard a change that was only that. Once nobody listens, it is swept."""
    monkeypatch.setattr(freshness, "MIN_KEEP", 0.2)
    growing = {"command": sys.executable, "args": [GROWING], "isolation": "session"}
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"g": growing}}) as hub:
            core = hub.app.hub
            async with Client(hub.url, mode="2026-07-28", cache=None) as client:
                assert await grow(hub.url) == "grow lists t1"  # made the principal's own connection
                (own,) = core.isolated.held_by("user:anonymous")
                async with client.listen(tools_list_changed=True) as sub:
                    assert sub.honored.tools_list_changed
                    core.isolated.close_idle("user:", 0)  # the hub's sweep, nothing called since
                    assert core.isolated.held_by("user:anonymous") == [own]
            with anyio.fail_after(5):
                while core.list_watch.listeners:  # the stream's end reaches the hub
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            core.isolated.close_idle("user:", 0)
            assert core.isolated.held_by("user:anonymous") == []


async def grow(url: str) -> str:
    """`g__grow` called as a 2026-07-28 request on the wire, and nothing else asked."""
    meta = {"io.modelcontextprotocol/protocolVersion": V, "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "g__grow", "_meta": meta}}
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": V}
    async with httpx.AsyncClient(timeout=DEADLINE) as http:
        answer = await http.post(url, json=body, headers={**headers, "mcp-method": "tools/call", "mcp-name": "g__grow"})
    return str(answer.json()["result"]["content"][0]["text"])


class Conn:
    """What the watch asks of a connection: its `fresh`."""

    def __init__(self, clock: Clock) -> None:
        self.asked = 0
        self.relist = Relist()
        self.fresh = freshness.Freshness(lambda: {"tools": {}}, self.read_again, clock)

    def read_again(self, kind: str, *, unpaced: bool = False) -> Relist:
        self.asked += 1
        return self.relist


def test_the_watch_reads_a_list_as_it_expires_and_not_again_within_min_keep() -> None:
    clock = Clock()
    conn: Any = Conn(clock)
    watch = ListWatch(set(), lambda session: [conn], clock)
    assert watch.due(conn, "tools") is None  # not read yet: nothing expires
    conn.fresh.reading("tools")([60_000])
    assert watch.due(conn, "tools") == clock.now + 60
    conn.fresh.reading("tools")([0])
    assert watch.due(conn, "tools") == clock.now + freshness.MIN_KEEP
    watch._asked[conn] = {"tools": clock.now + 10}  # a reading the watch asked for
    assert watch.due(conn, "tools") == clock.now + 10 + freshness.MIN_KEEP  # a failing list is not asked in a loop


async def test_a_list_slower_to_read_than_its_ttl_is_not_read_back_to_back() -> None:
    """`MIN_KEEP` counts from the end of the watch's reading: a server whose ttlMs is 0 and whose list takes
    longer than `MIN_KEEP` to read was read again as soon as each reading ended, while anyone listened."""
    clock = Clock()
    conn: Any = Conn(clock)
    watch = ListWatch(set(), lambda session: [conn], clock)

    async def slow(kind: str) -> None:
        done = conn.fresh.reading(kind)
        clock.now += 5 * freshness.MIN_KEEP  # the server takes this long to answer
        done([0])

    conn.fresh.ensure = slow
    await watch._read(conn, "tools")
    assert watch.due(conn, "tools") == clock.now + freshness.MIN_KEEP  # not already past
