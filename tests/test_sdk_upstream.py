"""The hub against an upstream the official SDK implements (`fixtures/sdk_upstream.py`), as a matrix.

Upstream transport (stdio, Streamable HTTP shared and per-session, legacy HTTP+SSE) x upstream era
(the SDK speaks 2026-07-28 over stdio and HTTP, and legacy when told to or over SSE) x client era
(legacy, 2026-07-28, the SDK's own client) x way of calling (by hub name in full exposure, by hub
name in search exposure, through `call_tool`): every result and error must be what the same SDK
client gets calling the upstream directly (text, structured content, several items, a large
text, tool errors, a crash, a JSON-RPC error's code and data), and progress must reach the caller.
The one documented difference: a JSON-RPC error's message starts with `[<server>] `.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from fixtures.launch import running_http_fixture
from support.hub import running_hub

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]
SDK_UPSTREAM = [sys.executable, str(Path(__file__).parent / "fixtures" / "sdk_upstream.py")]
DEADLINE = 120.0
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("say", {"text": "hi"}),
    ("weather", {"city": "Oslo"}),
    ("many", {"n": 2}),
    ("big", {"kb": 256}),
    ("broken", {"reason": "r"}),
    ("crash", {}),
    ("protocol_error", {}),
    ("say", {}),  # a missing argument: the upstream's own validation error
]


def outcome(server: str, got: Any) -> dict[str, Any]:
    """A call's result or error as data; a JSON-RPC error's `[server] ` prefix taken off (documented)."""
    if isinstance(got, MCPError):
        message = got.error.message.removeprefix(f"[{server}] ")
        return {"error": got.error.code, "message": message, "data": got.error.data}
    doc: dict[str, Any] = got.model_dump(mode="json", exclude_none=True, by_alias=True)
    doc.pop("_meta", None)
    return doc


async def attempt(client: Client, server: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    try:
        with anyio.fail_after(30):
            return outcome(server, await client.call_tool(name, arguments))
    except MCPError as exc:
        return outcome(server, exc)


@asynccontextmanager
async def upstreams() -> AsyncIterator[dict[str, Any]]:
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(running_http_fixture("--http", command=SDK_UPSTREAM))
        sse = await stack.enter_async_context(running_http_fixture("--sse", command=SDK_UPSTREAM))
        yield {
            "st": {"command": SDK_UPSTREAM[0], "args": SDK_UPSTREAM[1:]},
            "sl": {"command": SDK_UPSTREAM[0], "args": SDK_UPSTREAM[1:], "protocol": "legacy"},
            "ht": {"url": http},
            "hl": {"url": http, "protocol": "legacy"},
            "hs": {"url": http, "isolation": "session"},  # a connection of its own for each client session
            "ss": {"url": sse, "type": "sse"},
        }


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
async def test_results_errors_and_progress_pass_through_as_a_direct_call_gives_them(
    era: Literal["legacy", "2026-07-28"],
) -> None:
    with anyio.fail_after(DEADLINE):
        direct: list[dict[str, Any]] = []
        params = StdioServerParameters(command=SDK_UPSTREAM[0], args=SDK_UPSTREAM[1:])
        async with Client(params, mode=era) as client:
            for name, arguments in CALLS:
                direct.append(await attempt(client, "", name, arguments))
        assert direct[4]["isError"] and direct[6]["error"] == -32001  # the baseline holds each kind of answer
        differences: list[str] = []
        async with (
            upstreams() as servers,
            running_hub({"mcpServers": servers, "onemcp": {"searchCache": False}}) as hub,
        ):
            async with (
                Client(hub.url, mode=era, cache=None) as full,
                Client(f"{hub.url}?exposure=search", mode=era, cache=None) as search,
            ):
                for server in servers:
                    for (name, arguments), want in zip(CALLS, direct, strict=True):
                        target = f"{server}__{name}"
                        ways = {
                            "full": await attempt(full, server, target, arguments),
                            "search": await attempt(search, server, target, arguments),
                            "call_tool": await attempt(
                                search, server, "call_tool", {"name": target, "arguments": arguments}
                            ),
                        }
                        differences += [
                            f"{server} {way} {name}: {str(got)[:300]} != {str(want)[:300]}"
                            for way, got in ways.items()
                            if got != want
                        ]
                    for way, client, name, arguments in (
                        ("full", full, f"{server}__slowly", {"steps": 3}),
                        ("search", search, f"{server}__slowly", {"steps": 3}),
                        ("call_tool", search, "call_tool", {"name": f"{server}__slowly", "arguments": {"steps": 3}}),
                    ):
                        seen: list[float] = []

                        async def on_progress(
                            progress: float, total: float | None, message: str | None, seen: list[float] = seen
                        ) -> None:
                            seen.append(progress)

                        with anyio.fail_after(30):
                            await client.call_tool(name, arguments, progress_callback=on_progress)
                        if seen != [1.0, 2.0, 3.0]:
                            differences.append(f"{server} {way} slowly: progress {seen}")
        assert not differences, "\n".join(differences)
