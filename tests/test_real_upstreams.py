"""The hub in front of real MCP servers from PyPI and npm, as a user would run it."""

from __future__ import annotations

import json
import subprocess
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command
from support.hub import running_hub
from support.real_servers import (
    everything_stdio_command,
    git_stdio_command,
    memory_env,
    memory_stdio_command,
    running_everything_http,
    time_stdio_command,
)
from support.results import text_of

pytestmark = pytest.mark.anyio
DEADLINE = 60.0


def entry(cmd: list[str], **extra: Any) -> dict[str, Any]:
    return {"command": cmd[0], "args": cmd[1:], **extra}


async def test_time_and_everything_stdio_and_a_dead_server() -> None:
    servers = {
        "time": entry([*time_stdio_command(), "--local-timezone", "UTC"]),
        "everything": entry(everything_stdio_command()),
        "down": {"command": "/nonexistent/mcp-server"},
    }
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers}) as hub:
            async with Client(hub.url, mode="legacy", cache=None) as c:
                names = {t.name for t in (await c.list_tools()).tools}
                assert {"time__get_current_time", "everything__echo", "everything__get-sum"} <= names
                now = await c.call_tool("time__get_current_time", {"timezone": "Europe/Paris"})
                assert json.loads(text_of(now))["timezone"] == "Europe/Paris"
                assert text_of(await c.call_tool("everything__echo", {"message": "hi"})) == "Echo: hi"
                total = await c.call_tool("everything__get-sum", {"a": 2, "b": 3})
                assert "5" in text_of(total)
                prompts = {p.name for p in (await c.list_prompts()).prompts}
                assert any(p.startswith("everything__") for p in prompts)
                resources = (await c.list_resources()).resources
                first = next(r for r in resources if str(r.uri).startswith("everything+"))
                read = await c.read_resource(str(first.uri))
                assert str(read.contents[0].uri) == str(first.uri)
                with pytest.raises(MCPError) as err:
                    await c.call_tool("down__anything", {})
                assert "[down]" in err.value.error.message and "command not found" in err.value.error.message
            assert hub.app.hub.pool.connections["down"].state in ("failed", "starting")  # supervised: retried


async def test_everything_over_streamable_http_with_time_over_stdio() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_everything_http() as url:
            servers = {"everything": {"url": url, "type": "http"}, "time": entry(time_stdio_command())}
            async with running_hub({"mcpServers": servers}) as hub:
                assert hub.app.hub.pool.connections["everything"].state == "ready"
                async with Client(hub.url, mode="legacy", cache=None) as c:
                    echo = await c.call_tool("everything__echo", {"message": "via http"})
                    assert text_of(echo) == "Echo: via http"
                    seen: list[float] = []

                    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                        seen.append(progress)

                    long = await c.call_tool(
                        "everything__trigger-long-running-operation",
                        {"duration": 0.4, "steps": 2},
                        progress_callback=on_progress,
                    )
                    assert not long.is_error


async def test_everything_over_streamable_http_restarted_on_the_same_port_is_used_again() -> None:
    """It answers the hub's old session id with 400 "Bad Request: No valid session ID provided" (not the
    spec's 404): the hub starts a new session and the call goes through (it failed for ever; hunt-ops F2)."""
    with anyio.fail_after(DEADLINE):
        async with AsyncExitStack() as stack:
            first = AsyncExitStack()
            stack.push_async_callback(first.aclose)
            url = await first.enter_async_context(running_everything_http())
            hub = await stack.enter_async_context(
                running_hub({"onemcp": {"prefixMode": "always"}, "mcpServers": {"everything": {"url": url}}})
            )
            c = await stack.enter_async_context(Client(hub.url, mode="legacy", cache=None))
            assert text_of(await c.call_tool("everything__echo", {"message": "before"})) == "Echo: before"
            await first.aclose()  # the server stops, and starts again on the same port
            await stack.enter_async_context(running_everything_http(port=urlsplit(url).port))
            assert text_of(await c.call_tool("everything__echo", {"message": "after"})) == "Echo: after"
            assert hub.app.hub.pool.connections["everything"].state == "ready"


async def test_memory_and_git(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    servers = {
        "memory": entry(memory_stdio_command(), env=memory_env(tmp_path / "memory.jsonl")),
        "git": entry(git_stdio_command(repo)),
        "fx": entry(fixture_command()),
    }
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers}) as hub:
            async with Client(hub.url, mode="legacy", cache=None) as c:
                status = await c.call_tool("git__git_status", {"repo_path": str(repo)})
                assert not status.is_error
                created = await c.call_tool(
                    "memory__create_entities",
                    {"entities": [{"name": "onemcp", "entityType": "project", "observations": ["a hub"]}]},
                )
                assert not created.is_error
                graph = await c.call_tool("memory__read_graph", {})
                assert "onemcp" in text_of(graph)
            assert all(conn.state == "ready" for conn in hub.app.hub.pool.connections.values())
