"""`onemcp serve --transport stdio`: the hub for one client on stdin/stdout, driven by the SDK's stdio client."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client import ClientRequestContext
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command
from support.hub_process import clean_env
from support.results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]
DEADLINE = 60.0


def servers() -> dict[str, Any]:
    cmd = fixture_command()
    return {
        "demo": {"command": sys.executable, "args": ["-m", "onemcp.demo"]},
        "fx": {"command": cmd[0], "args": cmd[1:]},
    }


def write_config(directory: Path, entries: dict[str, Any]) -> Path:
    path = directory / "mcp.json"
    path.write_text(json.dumps({"mcpServers": entries}))
    return path


@asynccontextmanager
async def stdio_hub(config: Path, *flags: str, **options: Any) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "onemcp", "serve", "--transport", "stdio", "--config", str(config), *flags],
        env=clean_env(config.parent),
    )
    async with Client(params, mode="legacy", cache=None, **options) as client:
        yield client


async def test_lists_are_complete_from_the_first_request_and_calls_work(tmp_path: Path) -> None:
    with anyio.fail_after(DEADLINE):
        async with stdio_hub(write_config(tmp_path, servers())) as c:
            assert c.server_info is not None and c.server_info.name == "onemcp"
            names = {t.name for t in (await c.list_tools()).tools}
            assert {"demo__echo", "demo__add", "fx__echo", "fx__progress"} <= names
            assert text_of(await c.call_tool("demo__echo", {"text": "over stdio"})) == "over stdio"
            with pytest.raises(MCPError) as err:
                await c.call_tool("nope__x", {})
            assert "Tool not found: nope__x" in err.value.error.message


async def test_requests_run_concurrently(tmp_path: Path) -> None:
    """A slow call does not hold up the next one (each request is its own task)."""
    with anyio.fail_after(DEADLINE):
        async with stdio_hub(write_config(tmp_path, servers())) as c:
            results: list[str] = []

            async def slow() -> None:
                results.append(text_of(await c.call_tool("fx__sleep", {"seconds": 30})))

            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                results.append(text_of(await c.call_tool("demo__echo", {"text": "quick"})))
                tg.cancel_scope.cancel()  # the slow one is not waited for
            assert results == ["quick"]


async def test_progress_and_server_requests_reach_the_client(tmp_path: Path) -> None:
    seen: list[float] = []
    all_three = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)
        if len(seen) == 3:
            all_three.set()

    async def sampling(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="sampled!"), model="test-model"
        )

    with anyio.fail_after(DEADLINE):
        async with stdio_hub(write_config(tmp_path, servers()), sampling_callback=sampling) as c:
            await c.call_tool("fx__progress", {"steps": 3}, progress_callback=on_progress)
            await all_three.wait()
            assert seen == [1.0, 2.0, 3.0]
            assert "sampled!" in text_of(await c.call_tool("fx__sample", {"prompt": "hi"}))


async def test_config_change_sends_list_changed_from_the_outbox(tmp_path: Path) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    config = write_config(tmp_path, {"demo": servers()["demo"]})
    with anyio.fail_after(DEADLINE):
        async with stdio_hub(config, message_handler=on_message) as c:
            assert {t.name for t in (await c.list_tools()).tools} == {"echo", "add", "word_count"}
            write_config(tmp_path, servers())  # the hub watches its config in stdio mode too
            while True:
                await changed.wait()
                names = {t.name for t in (await c.list_tools()).tools}
                if "fx__echo" in names:
                    break
                changed = anyio.Event()
            assert "demo__echo" in names


async def test_stdout_carries_only_json_rpc_and_eof_ends_the_process(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"demo": servers()["demo"]})
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
         "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}},
    ]  # fmt: skip
    payload = "".join(json.dumps(line) + "\n" for line in lines) + "not json\n"
    with anyio.fail_after(DEADLINE):
        done = await anyio.run_process(
            [sys.executable, "-m", "onemcp", "serve", "--transport", "stdio", "--config", str(config)],
            input=payload.encode(),
            env=clean_env(tmp_path),
            check=False,
            stderr=subprocess.PIPE,
        )
    assert done.returncode == 0
    replies = [json.loads(line) for line in done.stdout.decode().splitlines()]  # every line is JSON
    by_id = {r.get("id"): r for r in replies}
    assert by_id[1]["result"]["protocolVersion"] == "2025-06-18"
    assert by_id[2]["result"]["content"] == [{"type": "text", "text": "x"}]
    assert by_id[None]["error"]["code"] == -32700
    assert b"on stdio" in done.stderr


async def test_bad_config_exits_2_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"x": {"url": "ftp://nope"}}}))
    with anyio.fail_after(DEADLINE):
        done = await anyio.run_process(
            [sys.executable, "-m", "onemcp", "serve", "--transport", "stdio", "--config", str(path)],
            input=b"",
            env=clean_env(tmp_path),
            check=False,
        )
    assert done.returncode == 2 and done.stdout == b""
    assert b"must start with http:// or https://" in done.stderr


async def test_flags_choose_the_stdio_clients_view_and_exposure(tmp_path: Path) -> None:
    """What /mcp?tags=, ?preset= and ?exposure= choose over HTTP, the serve flags choose for stdio."""
    entries = servers()
    entries["demo"]["tags"] = ["web"]
    path = write_config(tmp_path, entries)
    (tmp_path / "presets.json").write_text(json.dumps({"presets": {"only-fx": {"filter": "!web"}}}))
    with anyio.fail_after(DEADLINE):
        async with stdio_hub(path, "--tags", "web") as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert "demo__echo" in names and not any(n.startswith("fx__") for n in names), names
            with pytest.raises(MCPError):
                await c.call_tool("fx__echo", {"message": "out of view"})
        async with stdio_hub(path, "--exposure", "search", "--tags", "web") as c:
            assert sorted(t.name for t in (await c.list_tools()).tools) == [
                "call_tool",
                "get_tool_schema",
                "search_tools",
            ]
            found = text_of(await c.call_tool("search_tools", {"query": "echo a message back", "limit": 20}))
            assert "demo__echo(" in found and "fx__" not in found, found
            assert text_of(await c.call_tool("demo__echo", {"text": "by name"})) == "by name"
        async with stdio_hub(path, "--preset", "only-fx") as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert "fx__echo" in names and not any(n.startswith("demo__") for n in names), names


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--preset", "nope"], b"nope"),
        (["--tags", ""], b"tags"),
        (["--exposure", "everything"], b"invalid choice"),
        (["--tags", "a", "--preset", "p"], b"not allowed with"),
        (["--transport", "http", "--tags", "web"], b"--tags is for --transport stdio"),
    ],
)
async def test_a_bad_or_misplaced_view_flag_is_refused(tmp_path: Path, flags: list[str], complaint: bytes) -> None:
    path = write_config(tmp_path, servers())
    transport = [] if "--transport" in flags else ["--transport", "stdio"]
    with anyio.fail_after(DEADLINE):
        done = await anyio.run_process(
            [sys.executable, "-m", "onemcp", "serve", *transport, "--config", str(path), *flags],
            input=b"",
            env=clean_env(tmp_path),
            check=False,
        )
    assert done.returncode == 2 and done.stdout == b"", done
    assert complaint in done.stderr, done.stderr
