"""`onemcp tui` under Textual's headless pilot, against a real hub: tabs, a restart, a live request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from textual.widgets import DataTable, TabbedContent

from fixtures.launch import fixture_command
from onemcp.cli.tui import Stats, base_url, make_app
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
                assert servers.get_row_at(0)[:2] == ["alpha", "ready"]
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
                assert requests.get_row_at(0)[1:3] == ["alpha", "echo"]
                await pilot.press("3")
                tools = app.query_one("#tool-table", DataTable)
                while tools.row_count == 0:
                    await pilot.pause(0.05)
                await pilot.press("5", "1")
                assert app.query_one(TabbedContent).active == "overview"
