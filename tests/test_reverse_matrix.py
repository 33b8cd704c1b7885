"""The reverse path as a matrix: what an upstream asks or tells reaches the client it belongs to,
whatever entry the client came in by and whatever transport and era the upstream speaks.

Each cell is driven by the official SDK client (`mcp.Client` with its callbacks): over /mcp in both
eras, over /sse + /messages, over `serve --transport stdio` and over the stdio `proxy` (both
in-process, the client's lines carried in memory).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.sse import sse_client
from mcp.shared.message import SessionMessage

from fixtures.launch import fixture_command, running_http_fixture
from onemcp.auth.principal import ANONYMOUS
from onemcp.cli.proxy import Proxy
from onemcp.cli.target import Endpoint
from onemcp.downstream.stdio import StdioServer
from support.hub import RunningHub, running_hub
from support.results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]
DEADLINE = 30.0
MODERN_FIXTURE = str(Path(__file__).resolve().parent / "fixtures" / "modern_server.py")


class LineTransport:
    """An SDK client `Transport` whose messages are the lines a stdio server reads and writes, in memory.

    `read_line` and `write` are what `StdioServer` and `Proxy` take in place of stdin and stdout."""

    def __init__(self) -> None:
        self.to_server, self.server_reads = anyio.create_memory_object_stream[SessionMessage](64)
        self.to_client, self.client_reads = anyio.create_memory_object_stream[SessionMessage | Exception](64)

    async def read_line(self) -> bytes:
        try:
            message = await self.server_reads.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return b""
        return message.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"

    async def write(self, data: bytes) -> None:
        message = types.jsonrpc_message_adapter.validate_json(data, by_name=False)
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self.to_client.send(SessionMessage(message))

    async def __aenter__(self) -> tuple[Any, Any]:
        return self.client_reads, self.to_server

    async def __aexit__(self, *exc: object) -> None:
        self.to_server.close()

    def close(self) -> None:
        for end in (self.to_server, self.server_reads, self.to_client, self.client_reads):
            end.close()


@asynccontextmanager
async def entry_client(hub: RunningHub, entry: str, mode: str, **callbacks: Any) -> AsyncIterator[Client]:
    """The SDK client of `mode` ("legacy" or "2026-07-28") reaching `hub` through `entry`."""
    if entry == "mcp":
        async with Client(hub.url, mode=mode, cache=None, **callbacks) as c:
            yield c
        return
    if entry == "sse":
        async with Client(sse_client(f"{hub.base}/sse"), mode=mode, cache=None, **callbacks) as c:
            yield c
        return
    lines = LineTransport()
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(lines.close)
        tg = await stack.enter_async_context(anyio.create_task_group())
        if entry == "stdio":
            server = StdioServer(hub.app.hub, ANONYMOUS, lines.read_line, lines.write)
            tg.start_soon(server.serve)
        else:
            tg.start_soon(Proxy(Endpoint(hub.url), lines.read_line, lines.write, wait=5.0).run)
        async with Client(lines, mode=mode, cache=None, **callbacks) as c:
            yield c
        tg.cancel_scope.cancel()


async def elicit(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
    if isinstance(params, types.ElicitRequestURLParams):
        return types.ElicitResult(action="accept")
    return types.ElicitResult(action="accept", content={"colour": "teal"})


async def sample(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="word"), model="m")


async def roots(context: ClientRequestContext) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri="file:///srv", name="srv")])


CALLBACKS: dict[str, Any] = {"elicitation_callback": elicit, "sampling_callback": sample, "list_roots_callback": roots}


@asynccontextmanager
async def upstream(kind: str) -> AsyncIterator[dict[str, Any]]:
    """The mcp.json entry of one upstream: `legacy-stdio|http|sse` (the legacy fixture), `dual-stdio|http`
    (the SDK's dual-era fixture, era probed), `modern-stdio` (it, pinned to 2026-07-28)."""
    transport = kind.split("-")[1]
    if kind.startswith("legacy"):
        if transport == "stdio":
            cmd = fixture_command()
            yield {"command": cmd[0], "args": cmd[1:]}
        else:
            async with running_http_fixture(*(["--sse"] if transport == "sse" else [])) as url:
                yield {"url": url, "type": transport}
        return
    pin = {"protocol": "modern"} if kind.startswith("modern") else {}
    if transport == "stdio":
        yield {"command": sys.executable, "args": [MODERN_FIXTURE], **pin}
    else:
        async with running_http_fixture(command=[sys.executable, MODERN_FIXTURE]) as url:
            yield {"url": url, **pin}


class Notes:
    """The notifications the client's message handler was given; `came(method)` waits for one."""

    def __init__(self) -> None:
        self.got: list[Any] = []
        self._new = anyio.Event()

    async def __call__(self, message: Any) -> None:
        self.got.append(message)
        self._new.set()
        self._new = anyio.Event()

    async def came(self, method: str) -> None:
        while not any(getattr(m, "method", None) == method for m in self.got):
            await self._new.wait()


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline


async def never(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


def asking(kind: str, mode: str) -> list[tuple[str, dict[str, Any]]]:
    """The tools of upstream `kind` that ask the client: sampling, a form elicitation, roots (and a
    dual-era server's tool that asks with a live request, which only a legacy-era call can)."""
    if kind.startswith("legacy"):
        return [("sample", {}), ("elicit", {"mode": "form"}), ("roots", {})]
    calls: list[tuple[str, dict[str, Any]]] = [("ask_sample", {}), ("ask_colour", {}), ("ask_roots", {})]
    return [*calls, ("push_sample", {})] if kind.startswith("dual") and mode == "legacy" else calls


@pytest.mark.parametrize(
    ("entry", "mode", "kind"),
    [
        ("sse", "legacy", "modern-stdio"),  # input_required turned into live requests on the /sse stream
        ("sse", "legacy", "dual-stdio"),  # the legacy-era companion's back-channel, over /sse
        ("sse", "legacy", "legacy-sse"),
        ("stdio", "legacy", "modern-stdio"),
        ("stdio", "legacy", "dual-http"),
        ("stdio", "2026-07-28", "legacy-sse"),  # a parked call, its retry on the same stdio session
        ("proxy", "legacy", "modern-stdio"),
        ("proxy", "2026-07-28", "legacy-stdio"),  # input_required through the proxy's 2026-07-28 forwarder
        ("proxy", "2026-07-28", "dual-http"),  # passed through untouched, requestState and all
        ("mcp", "2026-07-28", "legacy-sse"),
    ],
)
async def test_what_an_upstream_asks_reaches_the_client_whatever_the_way_in(entry: str, mode: str, kind: str) -> None:
    with anyio.fail_after(DEADLINE):
        async with upstream(kind) as server, running_hub({"mcpServers": {"u": server}}) as hub:
            async with entry_client(hub, entry, mode, **CALLBACKS) as c:
                said = [text_of(await c.call_tool(name, args)) for name, args in asking(kind, mode)]
    assert "word" in said[0] and "teal" in said[1] and "file:///srv" in said[2], said
    assert all("word" in s for s in said[3:]), said


@pytest.mark.parametrize(("entry", "kind"), [("sse", "legacy-sse"), ("stdio", "legacy-http"), ("proxy", "legacy-sse")])
async def test_what_an_upstream_tells_reaches_a_legacy_client_whatever_the_way_in(entry: str, kind: str) -> None:
    """Progress, a log line, a URL elicitation and its completion, a withdrawn request, a subscribed
    resource's update and a list change."""
    notes = Notes()
    steps: list[float] = []
    logs: list[Any] = []
    withdrawn: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        steps.append(progress)

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    async def sampling(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> Any:
        try:
            return await never(context, params)
        except anyio.get_cancelled_exc_class():
            withdrawn.append("cancelled")
            raise

    callbacks = {**CALLBACKS, "sampling_callback": sampling, "message_handler": notes, "logging_callback": on_log}
    with anyio.fail_after(DEADLINE):
        async with upstream(kind) as server, running_hub({"mcpServers": {"u": server}}) as hub:
            async with entry_client(hub, entry, "legacy", **callbacks) as c:
                await c.call_tool("progress", {"steps": 3}, progress_callback=on_progress)
                assert text_of(await c.call_tool("log", {"message": "hi"})) == "logged"
                assert "accept" in text_of(await c.call_tool("elicit", {"mode": "url"}))
                await notes.came("notifications/elicitation/complete")
                assert text_of(await c.call_tool("sample_withdrawn", {"after": 0.3})) == "withdrawn"
                await until(lambda: bool(withdrawn))
                await c.subscribe_resource("fixture://static")
                assert "touched" in text_of(await c.call_tool("touch", {"uri": "fixture://static"}))
                await notes.came("notifications/resources/updated")
                assert text_of(await c.call_tool("add_tool", {"name": "added"})) == "added added"
                await notes.came("notifications/tools/list_changed")
    assert steps == [1.0, 2.0, 3.0] and logs == ["hi"]


@pytest.mark.parametrize(("entry", "kind"), [("mcp", "legacy-sse"), ("stdio", "legacy-sse"), ("proxy", "legacy-http")])
async def test_what_an_upstream_tells_reaches_a_2026_client_whatever_the_way_in(entry: str, kind: str) -> None:
    """Request-scoped progress and log lines (the client opted in to `info`), then a subscribed
    resource's update and a list change on its `subscriptions/listen` stream."""
    steps: list[float] = []
    logs: list[Any] = []
    events: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        steps.append(progress)

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    callbacks = {**CALLBACKS, "logging_callback": on_log, "log_level": "info"}
    with anyio.fail_after(DEADLINE):
        async with upstream(kind) as server, running_hub({"mcpServers": {"u": server}}) as hub:
            async with entry_client(hub, entry, "2026-07-28", **callbacks) as c:
                await c.call_tool("progress", {"steps": 3}, progress_callback=on_progress)
                assert text_of(await c.call_tool("log", {"message": "hi"})) == "logged"
                async with c.listen(tools_list_changed=True, resource_subscriptions=["fixture://static"]) as sub:
                    assert "touched" in text_of(await c.call_tool("touch", {"uri": "fixture://static"}))
                    assert text_of(await c.call_tool("add_tool", {"name": "added"})) == "added added"
                    async for event in sub:
                        events.append(type(event).__name__)
                        if len(events) == 2:
                            break
    assert steps == [1.0, 2.0, 3.0] and logs == ["hi"]
    assert sorted(events) == ["ResourceUpdated", "ToolsListChanged"]


@pytest.mark.parametrize(
    ("entry", "mode", "kind"),
    [("sse", "legacy", "legacy-sse"), ("proxy", "legacy", "legacy-http"), ("stdio", "2026-07-28", "legacy-stdio"),
     ("proxy", "2026-07-28", "legacy-stdio")],
)  # fmt: skip
async def test_a_call_the_client_cancels_is_cancelled_at_the_upstream(entry: str, mode: str, kind: str) -> None:
    with anyio.fail_after(DEADLINE):
        async with upstream(kind) as server, running_hub({"mcpServers": {"u": server}}) as hub:
            async with entry_client(hub, entry, mode, **CALLBACKS) as c:
                connection = hub.app.hub.pool.connections["u"]
                async with anyio.create_task_group() as tg:
                    tg.start_soon(c.call_tool, "sleep", {"seconds": 60})
                    await until(lambda: connection.in_flight > 0)
                    tg.cancel_scope.cancel()
                # the server stops running it (its notifications/cancelled may come a moment after)
                while text_of(await c.call_tool("running", {})) != "0":
                    await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline


@pytest.mark.parametrize("entry", ["sse", "stdio", "proxy"])
async def test_a_legacy_client_cancelling_while_the_bridge_asks_it_is_withdrawn_the_question(entry: str) -> None:
    """A 2026-07-28 upstream's input request, asked of a legacy client as a live request: the client's
    cancel of the call withdraws it there, and the next call is asked afresh."""
    outcome: list[str] = []
    asked = anyio.Event()

    async def sampling(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> Any:
        asked.set()
        try:
            return await never(context, params)
        except anyio.get_cancelled_exc_class():
            outcome.append("cancelled")
            raise

    with anyio.fail_after(DEADLINE):
        async with upstream("modern-stdio") as server, running_hub({"mcpServers": {"u": server}}) as hub:
            async with entry_client(hub, entry, "legacy", **{**CALLBACKS, "sampling_callback": sampling}) as c:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(c.call_tool, "ask_sample", {})
                    await asked.wait()
                    tg.cancel_scope.cancel()
                await until(lambda: bool(outcome))
                assert "teal" in text_of(await c.call_tool("ask_colour", {}))
    assert outcome == ["cancelled"]
