"""Search exposure end to end: the official SDK client, legacy and 2026-07-28, a real upstream from PyPI.

The hub runs on a loopback port in front of `mcp-server-time` (a real server) and our fixture;
the client asks for `?exposure=search`, finds a tool by a request in a user's words, reads its
schema and calls it both ways, by its hub name and through `call_tool`.
"""

from __future__ import annotations

from typing import Any, Literal

import anyio
import pytest
from mcp import Client

from fixtures.launch import fixture_command, running_http_fixture
from support.hub import running_hub
from support.real_servers import time_stdio_command
from support.results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]
DEADLINE = 60.0


def servers() -> dict[str, Any]:
    time_server = time_stdio_command()
    cmd = fixture_command()
    return {
        "time": {"command": time_server[0], "args": [*time_server[1:], "--local-timezone", "UTC"]},
        "fx": {"command": cmd[0], "args": cmd[1:]},
    }


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_the_sdk_client_searches_and_calls_in_both_eras(mode: Literal["legacy", "2026-07-28"]) -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers(), "onemcp": {"searchCache": False}}) as hub:
            async with Client(f"{hub.url}?exposure=search", mode=mode, cache=None) as client:
                listed = sorted(t.name for t in (await client.list_tools()).tools)
                assert listed == ["call_tool", "get_tool_schema", "search_tools"]
                found = text_of(await client.call_tool("search_tools", {"query": "current time in Tokyo", "limit": 3}))
                assert "time__get_current_time(timezone: string)" in found, found
                schema = text_of(await client.call_tool("get_tool_schema", {"name": "time__get_current_time"}))
                assert "timezone" in schema
                direct = await client.call_tool("time__get_current_time", {"timezone": "Asia/Tokyo"})
                assert "Asia/Tokyo" in text_of(direct)
                routed = await client.call_tool(
                    "call_tool", {"name": "time__get_current_time", "arguments": {"timezone": "Europe/Paris"}}
                )
                assert "Europe/Paris" in text_of(routed)
                bad = await client.call_tool("search_tools", {"query": ""})
                assert bad.is_error
            async with Client(hub.url, mode=mode, cache=None) as client:
                assert "time__get_current_time" in {t.name for t in (await client.list_tools()).tools}


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_server_is_found_by_the_kind_of_product_its_handshake_names(
    mode: Literal["legacy", "2026-07-28"], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two servers with the same tools and names that say nothing ("a", "b"): the one whose serverInfo
    names a product known as a crash tracker answers a request for the crash tracker."""
    from onemcp.search import kinds

    path = tmp_path / "kinds.toml"
    path.write_text('[zorblat]\nnames = ["zorblat"]\nkind = "error tracking, crash reports, exceptions"\n')
    monkeypatch.setattr(kinds, "KINDS_FILE", path)
    kinds.gazetteer.cache_clear()
    cmd = fixture_command()
    config = {
        "mcpServers": {
            "a": {"command": cmd[0], "args": [*cmd[1:], "--name", "quillo"]},
            "b": {"command": cmd[0], "args": [*cmd[1:], "--name", "Zorblat MCP"]},
        },
        "onemcp": {"searchCache": False},
    }
    try:
        with anyio.fail_after(DEADLINE):
            async with (
                running_hub(config) as hub,
                Client(f"{hub.url}?exposure=search", mode=mode, cache=None) as client,
            ):
                found = text_of(await client.call_tool("search_tools", {"query": "echo into the crash tracker"}))
                assert found.index("b__echo") < found.index("a__echo"), found
    finally:
        kinds.gazetteer.cache_clear()


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_client_giving_up_on_call_tool_cancels_the_upstream_call(
    mode: Literal["legacy", "2026-07-28"],
) -> None:
    """Cancellation crosses `call_tool` as it crosses a direct call, over stdio and Streamable HTTP."""
    cmd = fixture_command()
    with anyio.fail_after(DEADLINE):
        async with running_http_fixture() as url:
            config = {"mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}, "fh": {"url": url}}}
            async with (
                running_hub({**config, "onemcp": {"searchCache": False}}) as hub,
                Client(f"{hub.url}?exposure=search", mode=mode, cache=None) as client,
            ):
                for server in ("fx", "fh"):
                    sleeping = {"name": f"{server}__sleep", "arguments": {"seconds": 30}}
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(client.call_tool, "call_tool", sleeping)
                        while (await client.call_tool(f"{server}__running", {})).structured_content != {"running": 1}:
                            await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline (the call started)
                        tg.cancel_scope.cancel()  # the SDK client sends notifications/cancelled
                    while (await client.call_tool(f"{server}__running", {})).structured_content != {"running": 0}:
                        await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline (the upstream stopped it)
