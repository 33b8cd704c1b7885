"""Legacy sessions survive a restart of the hub: the same Mcp-Session-Id works on the new process.

A real `onemcp serve` process on a fixed loopback port is stopped and started again (same
config directory, so the same `sessions.db`). A raw client checks the exact session id; the
official SDK client, connected across the restart, checks that its next call just works.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client

from fixtures.launch import fixture_command
from support.hub import HEADERS, INIT
from support.hub_process import HubProcess, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]
DEADLINE = 90.0


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    fx = fixture_command()
    servers = {
        "fx": {"command": fx[0], "args": fx[1:], "tags": ["fx"]},
        "demo": {"command": sys.executable, "args": ["-m", "onemcp.demo"], "tags": ["demo"]},
    }
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    process = HubProcess(path, port=free_port())
    try:
        yield process
    finally:
        process.stop()


def call(rid: int, name: str, **arguments: str) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


async def test_the_same_session_id_works_after_a_restart(hub: HubProcess) -> None:
    with anyio.fail_after(DEADLINE):
        hub.start()
        await hub.wait_ready_async()
        async with httpx.AsyncClient(timeout=30) as http:
            url = f"{hub.url}?tags=fx"  # a view: it must hold after the restart too
            r = await http.post(url, json=INIT, headers=HEADERS)
            sid = r.headers["mcp-session-id"]
            headers = {**HEADERS, "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
            await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            level = {"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "debug"}}
            assert (await http.post(url, json=level, headers=headers)).status_code == 200
            assert "before" in (await http.post(url, json=call(3, "fx__echo", message="before"), headers=headers)).text
            hub.stop()
            hub.start()  # the same port, a new process
            await hub.wait_ready_async()
            r = await http.post(url, json=call(4, "fx__echo", message="after"), headers=headers)
            assert r.status_code == 200 and "after" in r.text, r.text
            listed = await http.post(url, json={"jsonrpc": "2.0", "id": 5, "method": "tools/list"}, headers=headers)
            names = {t["name"] for t in listed.json()["result"]["tools"]}
            assert "fx__echo" in names and not any(n.startswith("demo__") for n in names)  # still the fx view
            other = {**headers, "mcp-session-id": "0" * 32}
            r = await http.post(url, json=call(6, "fx__echo", message="x"), headers=other)
            assert r.status_code == 404  # an id that was never saved is still no session
            ended = await http.delete(url, headers=headers)
            assert ended.status_code in (200, 204)
            hub.stop()
            hub.start()
            await hub.wait_ready_async()
            r = await http.post(url, json=call(7, "fx__echo", message="gone"), headers=headers)
            assert r.status_code == 404  # a session the client ended does not come back


async def test_the_sdk_client_carries_on_across_a_restart(hub: HubProcess) -> None:
    with anyio.fail_after(DEADLINE):
        hub.start()
        await hub.wait_ready_async()
        async with Client(hub.url, mode="legacy", cache=None) as client:
            result = await client.call_tool("fx__echo", {"message": "one"})
            assert isinstance(result.content[0], types.TextContent) and result.content[0].text == "one"
            await anyio.to_thread.run_sync(hub.stop)
            await anyio.to_thread.run_sync(hub.start)
            await hub.wait_ready_async()
            result = await client.call_tool("fx__echo", {"message": "two"})
            assert isinstance(result.content[0], types.TextContent) and result.content[0].text == "two"


@pytest.mark.anyio
async def test_an_ended_session_is_never_saved_again(tmp_path: Path) -> None:
    """A request of a session still running when the session ends (a slow `logging/setLevel`, say)
    saves it on its way out: an ended session must stay ended (404), not be revived from that save."""
    from support.hub import running_hub

    path = tmp_path / "mcp.json"
    fx = fixture_command()
    config = {"mcpServers": {"a": {"command": fx[0], "args": fx[1:]}}}
    path.write_text(json.dumps(config))
    with anyio.fail_after(30):
        async with running_hub(config, config_path=path) as running, httpx.AsyncClient() as http:
            r = await http.post(running.url, json=INIT, headers=HEADERS)
            sid = r.headers["mcp-session-id"]
            hub = running.app.hub
            session = hub.find_session(sid)
            assert session is not None
            headers = {**HEADERS, "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
            assert (await http.delete(running.url, headers=headers)).status_code == 200
            hub.save_session(session)  # what the slow request does when it returns
            ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
            assert (await http.post(running.url, json=ping, headers=headers)).status_code == 404
