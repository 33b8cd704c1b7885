"""`onemcp tui` under Textual's headless pilot, against a real hub: tabs, a restart, a live request."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from textual.widgets import DataTable, Input, RichLog, Static, TabbedContent

from fixtures.launch import fixture_command, hostile_command
from onemcp.auth.keys import KeyStore
from onemcp.cli.tui import REQUESTS, Stats, base_url, make_app, refusal
from support.hub import running_hub

pytestmark = pytest.mark.anyio
DEADLINE = 60.0


def test_base_url_and_stats() -> None:
    assert base_url("http://127.0.0.1:3050/mcp?preset=dev") == "http://127.0.0.1:3050"
    assert base_url("http://h:1/") == "http://h:1"
    stats = Stats()
    stats.add("a", 1000.0)
    stats.add("a", 1001.0)
    assert stats.series("a", now=1002.0)[-1] == 2 / 5 and stats.series("b", now=1002.0) == [0.0] * 36


async def test_tabs_restart_and_a_live_request(tmp_path: Path) -> None:
    fx = fixture_command()
    doc: dict[str, Any] = {"mcpServers": {"alpha": {"command": fx[0], "args": fx[1:]}}}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(doc))
    with anyio.fail_after(DEADLINE):
        async with running_hub(doc, config_path=path) as hub:
            app = make_app(hub.base, None)
            async with app.run_test(size=(160, 48)) as pilot:
                await pilot.press("2")
                assert app.query_one(TabbedContent).active == "servers"
                servers = app.query_one("#server-table", DataTable)
                while servers.row_count == 0:
                    await pilot.pause(0.05)
                assert [str(c) for c in servers.get_row_at(0)[:2]] == ["alpha", "ready"]  # Text cells
                conn = hub.app.hub.pool.get("alpha")
                assert conn is not None
                pid = getattr(conn.transport, "pid", None)
                await pilot.press("r")  # restart the selected server
                while True:
                    conn = hub.app.hub.pool.get("alpha")
                    if conn is not None and conn.state == "ready" and getattr(conn.transport, "pid", None) != pid:
                        break
                    await pilot.pause(0.05)
                while not hub.app.hub.bus.active:  # the TUI watches the event stream
                    await pilot.pause(0.05)
                async with httpx.AsyncClient() as http:
                    r = await http.post(f"{hub.base}/api/v1/tools/echo/call", json={"arguments": {"message": "x"}})
                    assert r.status_code == 200
                await pilot.press("4")
                assert app.query_one(TabbedContent).active == "requests"
                requests = app.query_one("#request-table", DataTable)
                while requests.row_count == 0:
                    await pilot.pause(0.05)
                assert [str(c) for c in requests.get_row_at(0)[1:3]] == ["alpha", "echo"]
                await pilot.press("3")
                tools = app.query_one("#tool-table", DataTable)
                while tools.row_count == 0:
                    await pilot.pause(0.05)
                await pilot.press("5", "1")
                assert app.query_one(TabbedContent).active == "overview"


async def test_a_hub_gone_is_said_and_the_tui_keeps_running() -> None:
    """A restart and a tool call that find the hub unreachable (it restarts, it crashed) are shown as
    errors; the TUI stays up (it used to exit 1 on the ConnectError)."""
    fx = fixture_command()
    doc: dict[str, Any] = {"mcpServers": {"alpha": {"command": fx[0], "args": fx[1:]}}}
    with socket.socket() as dead, anyio.fail_after(DEADLINE):
        dead.bind(("127.0.0.1", 0))  # bound, never listening: a connection is refused at once
        async with running_hub(doc) as hub:
            app = make_app(hub.base, None)
            async with app.run_test(size=(160, 48)) as pilot:
                await pilot.press("3")
                tools = app.query_one("#tool-table", DataTable)
                servers = app.query_one("#server-table", DataTable)
                while tools.row_count == 0 or servers.row_count == 0:
                    await pilot.pause(0.05)
                live, app.http = app.http, httpx.AsyncClient(base_url=f"http://127.0.0.1:{dead.getsockname()[1]}")
                await live.aclose()
                app.query_one("#tool-args", Input).focus()
                await pilot.press("enter")  # call the selected tool with {}
                result = app.query_one("#tool-result", RichLog)
                while not result.lines and app.is_running:  # (it used to crash here)
                    await pilot.pause(0.05)
                assert "hub unreachable" in " ".join(str(line.text) for line in result.lines)
                await pilot.press("2")
                servers.focus()  # not the arguments' input: "r" is a key, not a letter typed
                await pilot.press("r")  # restart the selected server
                while not app._notifications and app.is_running:
                    await pilot.pause(0.05)
                (shown,) = app._notifications
                assert "restart alpha: hub unreachable" in str(shown.message) and shown.severity == "error"
                assert app.is_running


async def test_an_upstreams_markup_and_escapes_stay_text() -> None:
    """A description, a lastError and a stderr tail full of markup and terminal codes: no MarkupError,
    no click action, no escape code; the brackets show as the upstream wrote them."""
    broken, evil = hostile_command("--crash"), hostile_command()
    doc: dict[str, Any] = {
        "mcpServers": {
            "broken": {"command": broken[0], "args": broken[1:]},
            "evil": {"command": evil[0], "args": evil[1:]},
        }
    }
    with anyio.fail_after(DEADLINE):
        async with running_hub(doc) as hub:
            app = make_app(hub.base, None)
            async with app.run_test(size=(160, 48)) as pilot:
                await pilot.press("3")
                tools = app.query_one("#tool-table", DataTable)
                while tools.row_count == 0:
                    await pilot.pause(0.05)
                await pilot.pause()  # drawn: a cell parsed as markup would raise here
                rows = map(tools.get_row_at, range(tools.row_count))
                cell = next(row[2] for row in rows if str(row[0]) == "evil__echo")
                assert_text(cell)
                await pilot.press("2")
                servers = app.query_one("#server-table", DataTable)
                detail = app.query_one("#server-detail", Static)
                while "[@click" not in str(detail.visual):  # broken (the first row) has failed
                    await pilot.pause(0.05)
                assert_text(detail.visual)  # its lastError and stderr tail
                assert str(servers.get_row_at(0)[0]) == "broken" and app.is_running


def assert_text(shown: Any) -> None:
    """`shown` (a cell, a widget's visual) says what the upstream wrote, as plain text: brackets and
    all, escape codes escaped, no span with an action."""
    text = str(shown)
    assert "\x1b" not in text and "\x9b" not in text and "\u202e" not in text, text
    assert "[/oops] [@click=app.quit]x[/] \\x1b[31mred" in text, text
    spans = getattr(shown, "spans", [])
    assert not [s for s in spans if "@click" in str(getattr(s, "style", ""))], spans


def test_a_refused_credential_is_named_not_unreachable() -> None:
    assert refusal(200, {}, True) is None and refusal(500, None, True) is None
    assert (
        refusal(401, {"error": "invalid_token"}, True) == "the hub refused the token in $ONEMCP_TOKEN (invalid_token)"
    )
    assert "set $ONEMCP_TOKEN" in str(refusal(401, None, False))
    assert "lacks the operator or admin scope (insufficient_scope)" in str(
        refusal(403, {"error": "insufficient_scope"}, True)
    )


async def test_a_wrong_or_narrow_token_is_said_and_the_stream_is_not_hammered(tmp_path: Path) -> None:
    """A 401 or 403 was shown as "hub unreachable at URL: 'servers'" and the event stream was asked
    again every second for ever (hunt s28 F6)."""
    fx = fixture_command()
    doc: dict[str, Any] = {
        "mcpServers": {"alpha": {"command": fx[0], "args": fx[1:]}},
        "onemcp": {"auth": {"apiKeys": True}},
    }
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(doc))
    narrow = KeyStore(tmp_path / "keys.db").create("user", ["mcp"])
    with anyio.fail_after(DEADLINE):
        async with running_hub(doc, config_path=path) as hub:
            for token, said in (
                ("omk_wrong_key", "the hub refused the token in $ONEMCP_TOKEN"),
                (narrow, "lacks the operator"),
            ):
                app = make_app(hub.base, token)
                async with app.run_test(size=(160, 48)) as pilot:
                    status = app.query_one("#status", Static)
                    while said not in str(status.visual):
                        await pilot.pause(0.05)
                    assert "unreachable" not in str(status.visual)
                    while app.refused is None or app.workers:  # the stream's worker gave up: no retry each second
                        await pilot.pause(0.05)
                    await pilot.press("3")
                    result = app.query_one("#tool-result", RichLog)
                    while not result.lines:  # written while its tab was hidden: drawn once shown
                        await pilot.pause(0.05)
                    assert said in " ".join(str(line.text) for line in result.lines)  # the Tools search says it too


async def test_requests_are_capped_and_a_cut_stream_does_not_repeat_them(tmp_path: Path) -> None:
    """The Requests table grew for as long as the TUI ran, and each reconnect of the event stream
    added the replayed history again (hunt s28 F5, F3)."""
    fx = fixture_command()
    doc: dict[str, Any] = {"mcpServers": {"alpha": {"command": fx[0], "args": fx[1:]}}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(doc) as hub, httpx.AsyncClient(base_url=f"{hub.base}/api/v1") as http:
            app = make_app(hub.base, None)
            async with app.run_test(size=(160, 48)) as pilot:
                requests = app.query_one("#request-table", DataTable)
                bus = hub.app.hub.bus
                while not bus.active:
                    await pilot.pause(0.05)
                for _ in range(2):
                    await http.post("/tools/echo/call", json={"arguments": {"message": "x"}})
                while requests.row_count < 2:
                    await pilot.pause(0.05)
                cut = set(bus._watchers)
                for watcher in cut:  # the stream ends, as when a proxy in between drops it
                    watcher.close()
                while not set(bus._watchers) - cut:
                    await pilot.pause(0.05)  # the TUI reconnects after a second
                await http.post("/tools/echo/call", json={"arguments": {"message": "x"}})
                while requests.row_count < 3:
                    await pilot.pause(0.05)
                await pilot.pause(0.2)  # a replay would have been drawn by now
                assert requests.row_count == 3
                for n in range(REQUESTS + 10):
                    app.take_event(
                        {"kind": "call", "at": 1.0, "server": "s", "tool": f"t{n}", "ms": 1, "outcome": "ok"}
                    )
                assert requests.row_count == REQUESTS
                assert str(requests.get_row_at(REQUESTS - 1)[2]) == f"t{REQUESTS + 9}"  # the newest kept


async def test_a_refresh_answered_as_the_tui_closes_ends_quietly(tmp_path: Path) -> None:
    """The 2 s refresh's GET answered after the TUI began to close (its widgets gone): the timer raised
    NoMatches and the TUI ended on a traceback (seen on a busy machine, in the test above)."""
    fx = fixture_command()
    doc: dict[str, Any] = {"mcpServers": {"alpha": {"command": fx[0], "args": fx[1:]}}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(doc) as hub:
            app = make_app(hub.base, None)
            async with app.run_test(size=(160, 48)):
                await app.query_one("#server-table", DataTable).remove()
                await app.refresh_servers()
