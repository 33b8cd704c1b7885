"""Smoke tests: every real-server helper starts a server the official MCP SDK client can list tools from."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client

from support.real_servers import (
    everything_stdio_command,
    git_stdio_command,
    memory_env,
    memory_stdio_command,
    running_everything_http,
    time_stdio_command,
)

pytestmark = pytest.mark.anyio

TIMEOUT = 60


def _stdio(command: list[str], env: dict[str, str] | None = None) -> StdioServerParameters:
    return StdioServerParameters(command=command[0], args=command[1:], env=env)


async def _tool_names(target: StdioServerParameters | str) -> set[str]:
    async with Client(target, mode="legacy", cache=None, read_timeout_seconds=TIMEOUT) as client:
        result = await client.list_tools()
    return {tool.name for tool in result.tools}


async def test_everything_stdio_lists_tools() -> None:
    names = await _tool_names(_stdio(everything_stdio_command()))
    assert {"echo", "get-sum", "get-env"} <= names


async def test_everything_streamable_http_lists_tools() -> None:
    async with running_everything_http() as url:
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/mcp")
        names = await _tool_names(url)
    assert {"echo", "get-sum", "get-env"} <= names


async def test_everything_legacy_sse_lists_tools_and_an_unknown_transport_is_refused() -> None:
    async with running_everything_http(transport="sse") as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/sse")
        async with Client(sse_client(url), mode="legacy", cache=None, read_timeout_seconds=TIMEOUT) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
    assert {"echo", "get-sum", "get-env"} <= names
    with pytest.raises(ValueError, match="transport must be 'http' or 'sse', not 'stdio'"):
        async with running_everything_http(transport="stdio"):
            pass


async def test_memory_stdio_lists_tools(tmp_path: Path) -> None:
    names = await _tool_names(_stdio(memory_stdio_command(), memory_env(tmp_path / "memory.jsonl")))
    assert {"create_entities", "read_graph", "search_nodes"} <= names


async def test_time_stdio_lists_tools() -> None:
    names = await _tool_names(_stdio(time_stdio_command()))
    assert {"get_current_time", "convert_time"} <= names


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "--quiet", str(repo)], check=True)
    return repo


async def test_git_stdio_lists_tools(git_repo: Path) -> None:
    names = await _tool_names(_stdio(git_stdio_command(git_repo)))
    assert {"git_status", "git_log", "git_diff"} <= names
