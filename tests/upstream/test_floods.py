"""A hostile upstream's floods cost the hub a bounded amount (issue 20: "log lines per second", no task per message).

Before: every `list_changed` started its own refresh (a flood of 2,000 made 2,000 concurrent
`tools/list` round trips, each holding its pages), and every line a server wrote to stderr became
a log record (a server can write millions).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from fixtures.launch import fixture_command
from onemcp.config.model import ServerConfig
from onemcp.observability.limits import HITS
from onemcp.upstream.connection import UpstreamConnection
from onemcp.upstream.transports import stdio
from support.hub import raw_session, running_hub

pytestmark = pytest.mark.anyio
DEADLINE = 20.0
FLOOD = 2000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_list_changed_flood_costs_two_refreshes(monkeypatch: pytest.MonkeyPatch) -> None:
    refreshes: list[str] = []
    running = {"now": 0, "most": 0}
    real = UpstreamConnection.refresh

    async def counted(self: UpstreamConnection, kind: str) -> None:
        refreshes.append(kind)
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        try:
            await real(self, kind)
        finally:
            running["now"] -= 1

    cmd = fixture_command()
    config = {"mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}}, "onemcp": {"prefixMode": "always"}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            monkeypatch.setattr(UpstreamConnection, "refresh", counted)
            headers = await raw_session(http, hub.url)
            call: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
            call["params"] = {"name": "fx__changed", "arguments": {"count": FLOOD}}
            assert "result" in (await http.post(hub.url, json=call, headers=headers)).json()
            # the flood is read; then a marker change that must still be seen after it
            call["params"] = {"name": "fx__changed", "arguments": {"count": 1}}
            assert "result" in (await http.post(hub.url, json=call, headers=headers)).json()
            while running["now"] or not refreshes:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
    assert running["most"] == 1  # one refresh at a time ...
    assert len(refreshes) <= 4  # ... and changes announced during one make one more, not one each


def test_a_stderr_flood_is_logged_at_a_bounded_rate(caplog: pytest.LogCaptureFixture) -> None:
    transport = stdio.StdioTransport("noisy", ServerConfig(command="true"))
    protocol = stdio._ChildProtocol(transport, lambda msg, related: None)
    before = HITS.counts["log_lines"]
    with caplog.at_level(logging.INFO):
        protocol.pipe_data_received(2, b"".join(b"line %d\n" % i for i in range(5000)))
        logged = sum("stderr: line" in r.getMessage() for r in caplog.records)
        assert logged == stdio.STDERR_LINES_PER_SECOND
        assert transport.stderr_tail[-1] == "line 4999"  # the tail keeps the last lines, logged or not
        protocol._err_window -= 1.0  # a second later: the next line is logged, and the rest counted
        protocol.pipe_data_received(2, b"after\n")
    assert HITS.counts["log_lines"] == before + 5000 - stdio.STDERR_LINES_PER_SECOND
    assert any("4900 more lines were not logged" in r.getMessage() for r in caplog.records)
    assert "stderr: after" in caplog.records[-1].getMessage()


def test_stderr_without_newlines_is_logged_a_few_kilobytes_a_line(caplog: pytest.LogCaptureFixture) -> None:
    """1 MB writes with no newline were logged whole, 216 KiB a record: 273 MB of log in 20 s."""
    transport = stdio.StdioTransport("noisy", ServerConfig(command="true"))
    protocol = stdio._ChildProtocol(transport, lambda msg, related: None)
    with caplog.at_level(logging.INFO):
        for _ in range(20):
            protocol.pipe_data_received(2, b"E" * 1_000_000)
    records = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stderr: E")]
    assert len(records) == 20 and all(len(m) < stdio.STDERR_LINE_BYTES + 100 for m in records)
    assert records[0].endswith("bytes in all)")


async def test_an_endless_list_is_cut_at_the_item_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server may page forever (1,000 pages of anything it likes): the hub keeps a bounded list."""
    from onemcp.upstream import lists

    monkeypatch.setattr(lists, "MAX_LIST_ITEMS", 20)
    before = HITS.counts["list_items"]
    cmd = fixture_command("--tools", "60", "--page-size", "7")
    config = {"mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}}, "onemcp": {"prefixMode": "always"}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub:
            tools = hub.app.hub.catalog.items("tools")
    assert len(tools) == 20  # the first 20 (of 60 + the fixed tools), not all of them
    assert HITS.counts["list_items"] == before + 1


async def test_a_change_announced_during_the_first_lists_is_listed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that announces `tools/list_changed` while the hub is still making its first lists
    (it registers tools as its backend comes up): once ready, the hub lists them again."""
    refreshes: list[tuple[str, str]] = []
    real = UpstreamConnection.refresh

    async def announcing(self: UpstreamConnection, kind: str) -> None:
        await real(self, kind)
        refreshes.append((kind, self.state))
        if kind == "tools" and self.state == "starting":  # as if the server said so right after its answer
            self._on_notification({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"},
                                  "notifications/tools/list_changed", None)  # fmt: skip

    monkeypatch.setattr(UpstreamConnection, "refresh", announcing)
    cmd = fixture_command()
    config = {"mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config):
            while ("tools", "ready") not in refreshes:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the fix's re-list)
    assert refreshes.count(("tools", "starting")) == 1


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_list_whose_next_cursor_is_not_a_string_keeps_what_was_read(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A server whose nextCursor is a number, and which then refuses it as a cursor, failed its start
    (tools/list failed: Invalid cursor) and was restarted without end; a client reaching it directly
    refuses the page (a cursor is a string). The hub keeps the pages it read, says so, and serves
    them; a cursor of the wrong type that the server takes back is followed as it came."""
    bad = fixture_command("--number-cursor", "--page-size", "5", "--name", "bad")
    with anyio.fail_after(30):
        async with running_hub({"mcpServers": {"bad": {"command": bad[0], "args": bad[1:]}}}) as hub:
            async with Client(hub.url, mode=mode, cache=None) as client:
                tools = await client.list_tools()
                prompts = await client.list_prompts()
            conn = hub.app.hub.pool.get("bad")
            assert conn is not None and conn.state == "ready"
    assert len(tools.tools) == 5 and {p.name for p in prompts.prompts} == {"simple", "with_args"}  # one page, whole
    said = [r.getMessage() for r in caplog.records if "nextCursor" in r.getMessage()]
    assert (
        said
        and said[0].startswith("upstream bad: its tools list's nextCursor is not a string (18)")
        and "left out" in said[0]
    )


async def test_a_next_cursor_of_another_type_that_the_server_takes_back_is_followed() -> None:
    from onemcp.upstream.lists import read_list

    asked: list[dict[str, Any]] = []

    async def request(method: str, params: dict[str, Any]) -> dict[str, Any]:
        asked.append(params)
        if params.get("cursor") == 1:
            return {"tools": [{"name": "b"}]}
        return {"tools": [{"name": "a"}], "nextCursor": 1}

    assert await read_list(request, "s", "tools", 10_000) == [{"name": "a"}, {"name": "b"}]
    assert asked == [{}, {"cursor": 1}]


async def test_a_list_that_names_a_page_it_already_gave_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """hunt s32-a: the same nextCursor forever cost 1,000 requests on every reading (every list_changed),
    and the cut was neither warned of nor counted; a page it names again is not asked for again."""
    from onemcp.upstream.lists import read_list

    asked: list[dict[str, Any]] = []

    async def request(method: str, params: dict[str, Any]) -> dict[str, Any]:
        asked.append(params)
        return {"tools": [{"name": f"t{len(asked)}"}], "nextCursor": "x" if len(asked) % 2 else "y"}

    before = HITS.counts["list_items"]
    assert await read_list(request, "s", "tools", 10_000) == [{"name": "t1"}, {"name": "t2"}, {"name": "t3"}]
    assert asked == [{}, {"cursor": "x"}, {"cursor": "y"}]
    assert HITS.counts["list_items"] == before + 1


async def test_a_list_cut_at_its_page_bound_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new cursor on every page: the reading stops at MAX_LIST_PAGES, said and counted as the item bound is."""
    from onemcp.upstream import lists

    monkeypatch.setattr(lists, "MAX_LIST_PAGES", 5)
    asked: list[dict[str, Any]] = []

    async def request(method: str, params: dict[str, Any]) -> dict[str, Any]:
        asked.append(params)
        return {"tools": [{"name": f"t{len(asked)}"}], "nextCursor": f"c{len(asked)}"}

    before = HITS.counts["list_items"]
    assert len(await lists.read_list(request, "s", "tools", 10_000)) == 5
    assert len(asked) == 5 and HITS.counts["list_items"] == before + 1


async def test_a_server_flooding_list_changed_answers_its_own_call_after_one_more_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call's answer waits for the first reading of the list that begins after a change announced while it
    ran (its doing, maybe), not for the readings to stop. Before, it waited for a reading during which
    nothing more was announced: a server announcing all the time held its own calls' answers until
    `RELIST_WAIT` (5 s; 5-25 s measured with a real flooder)."""
    from onemcp.hub.forward import Forwarder
    from onemcp.upstream import call as call_module

    monkeypatch.setattr(call_module, "RELIST_WAIT", 2 * DEADLINE)  # never the bound that releases it here
    CHANGED = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
    PAST = 20  # the flood goes on until the call is answered, or this many readings after its change
    begun, ended = [0], [0]
    seen = {"announced_in": -1, "answered_after": -1}  # readings begun at the call's last change; ended at its answer
    real_refresh, real_note, real_for_client = (
        UpstreamConnection.refresh,
        UpstreamConnection._on_notification,
        Forwarder.for_client,
    )

    async def refresh(self: UpstreamConnection, kind: str) -> None:
        begun[0] += 1
        call_seen, answered = seen["announced_in"], seen["answered_after"]
        if answered < 0 and (call_seen < 0 or begun[0] < call_seen + PAST) and begun[0] < 10_000:
            self._on_notification(dict(CHANGED), CHANGED["method"], None)  # changed again, meanwhile
        try:
            await real_refresh(self, kind)
        finally:
            ended[0] += 1

    def note(self: UpstreamConnection, msg: Any, method: str, related: Any) -> None:
        if method == CHANGED["method"] and self.in_flight:
            seen["announced_in"] = begun[0]
        real_note(self, msg, method, related)

    def for_client(self: Forwarder, *args: Any, **kwargs: Any) -> Any:
        seen["answered_after"] = ended[0]  # the answer was released just now
        return real_for_client(self, *args, **kwargs)

    cmd = fixture_command()
    config = {"mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}}, "onemcp": {"prefixMode": "always"}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            conn = hub.app.hub.pool.get("fx")
            assert conn is not None

            async def no_pause(seconds: float) -> None:
                await anyio.lowlevel.checkpoint()

            conn.pace.sleep = no_pause
            monkeypatch.setattr(UpstreamConnection, "refresh", refresh)
            monkeypatch.setattr(UpstreamConnection, "_on_notification", note)
            monkeypatch.setattr(Forwarder, "for_client", for_client)
            headers = await raw_session(http, hub.url)
            conn._on_notification(dict(CHANGED), CHANGED["method"], None)  # the flood begins
            while begun[0] < 3:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
            call["params"] = {"name": "fx__changed", "arguments": {"count": 1}}
            assert "result" in (await http.post(hub.url, json=call, headers=headers)).json()
            while "tools" in conn._stale:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
    assert seen["announced_in"] >= 3  # the call was made during the flood
    assert seen["answered_after"] == seen["announced_in"] + 1  # one more reading, the one begun after it
