"""The fixture upstream and the demo server work with the official SDK client, on every transport."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import httpx
import mcp_types as types
import orjson
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client, StdioServerParameters
from mcp.client import ClientRequestContext
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command, running_http_fixture, stop_process
from support.results import text_of

pytestmark = [
    pytest.mark.anyio,
    # legacy-only methods (ping, logging/setLevel, resources/subscribe) warn under mcp 2.3.0
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

SRC = Path(__file__).resolve().parents[1] / "src"
DEADLINE = 20.0
TRANSPORTS = ["stdio", "http", "http-sse-responses", "sse"]
# RequestParamsMeta is an open TypedDict (PEP 728 extra_items), which mypy does not model yet: hence the cast.
TRACE_META = cast(types.RequestParamsMeta, {"trace": "t1"})


@asynccontextmanager
async def fixture_client(transport: str, *args: str, **client_options: Any) -> AsyncIterator[Client]:
    """An initialized legacy-mode SDK client connected to the fixture over ``transport``."""
    if transport == "stdio":
        command = fixture_command(*args)
        params = StdioServerParameters(command=command[0], args=command[1:])
        async with Client(params, mode="legacy", cache=None, **client_options) as client:
            yield client
        return
    extra = {"http": ("--http",), "http-sse-responses": ("--http", "--sse-responses"), "sse": ("--sse",)}
    async with running_http_fixture(*extra[transport], *args) as url:
        target: Any = sse_client(url) if transport == "sse" else url
        async with Client(target, mode="legacy", cache=None, **client_options) as client:
            yield client


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_list_tools_and_echo(transport: str) -> None:
    with anyio.fail_after(DEADLINE):
        async with fixture_client(transport, "--name", "fx", "--instructions", "be nice", "--tools", "3") as c:
            assert c.server_info is not None and c.server_info.name == "fx"
            assert c.instructions == "be nice"
            names = {tool.name for tool in (await c.list_tools()).tools}
            assert {"echo", "sleep", "progress", "sample", "whoami", "tool_0", "tool_2"} <= names
            result = await c.call_tool("echo", {"message": "hello"})
            assert text_of(result) == "hello" and not result.is_error


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_progress_callback(transport: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []
    all_seen = anyio.Event()
    notified: list[float] = []
    all_notified = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))
        if len(seen) == 3:
            all_seen.set()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ProgressNotification):
            notified.append(message.params.progress)
            if len(notified) == 3:
                all_notified.set()

    with anyio.fail_after(DEADLINE):
        async with fixture_client(transport, message_handler=on_message) as c:
            result = await c.call_tool("progress", {}, progress_callback=on_progress)
            assert text_of(result) == "progress done"
            await all_notified.wait()  # notification handlers run as their own tasks
            if transport != "http":
                await all_seen.wait()
    assert notified == [1.0, 2.0, 3.0]
    if transport == "http":
        # JSON answers: progress travels on the GET stream, a different connection than the answer, so
        # the SDK may resolve the call before it dispatches the last notifications (they then skip the
        # per-call callback; the message handler still gets them).
        assert [p for p, _, _ in seen] == [1.0, 2.0, 3.0][: len(seen)]
    else:
        assert [p for p, _, _ in seen] == [1.0, 2.0, 3.0]
        assert seen[0][1:] == (3.0, "step 1")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sampling_callback(transport: str) -> None:
    prompts: list[str] = []

    async def sampling(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        content = params.messages[0].content
        assert isinstance(content, types.TextContent)
        prompts.append(content.text)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="sampled!"), model="test-model"
        )

    with anyio.fail_after(DEADLINE):
        async with fixture_client(transport, sampling_callback=sampling) as c:
            result = await c.call_tool("sample", {"prompt": "hi there"})
    answer = orjson.loads(text_of(result))
    assert answer["model"] == "test-model" and answer["content"]["text"] == "sampled!"
    assert prompts == ["hi there"]


@pytest.mark.parametrize("transport", ["stdio", "http-sse-responses"])
async def test_roots_log_errors_and_list_changed(transport: str) -> None:
    logs: list[types.LoggingMessageNotificationParams] = []
    changed = anyio.Event()

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async def roots(context: ClientRequestContext) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/r", name="r")])

    options: dict[str, Callable[..., Any]] = {
        "logging_callback": on_log,
        "message_handler": on_message,
        "list_roots_callback": roots,
    }
    with anyio.fail_after(DEADLINE):
        async with fixture_client(transport, **options) as c:
            assert "file:///tmp/r" in text_of(await c.call_tool("roots", {}))
            assert text_of(await c.call_tool("log", {"message": "note"})) == "logged"
            assert (await c.call_tool("fail", {})).is_error
            with pytest.raises(MCPError) as caught:
                await c.call_tool("error", {})
            assert (caught.value.code, caught.value.message) == (-32000, "boom")
            with pytest.raises(MCPError) as unknown:
                await c.call_tool("no_such_tool", {})
            assert unknown.value.code == -32602
            await c.call_tool("add_tool", {"name": "fresh"})
            await changed.wait()
            assert "fresh" in {tool.name for tool in (await c.list_tools()).tools}
            whoami = orjson.loads(text_of(await c.call_tool("whoami", {"x": 1}, meta=TRACE_META)))
            assert whoami["arguments"] == {"x": 1} and whoami["meta"]["trace"] == "t1"
    assert [(entry.level, entry.data) for entry in logs] == [("info", "note")]


async def test_prompts_resources_and_pagination() -> None:
    with anyio.fail_after(DEADLINE):
        async with fixture_client("stdio", "--page-size", "5", "--tools", "7") as c:
            names: list[str] = []
            cursor: str | None = None
            pages = 0
            while True:
                page = await c.list_tools(cursor=cursor)
                names += [tool.name for tool in page.tools]
                pages += 1
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert pages == 5 and len(names) == 25 and len(set(names)) == 25  # 18 fixed tools + 7
            prompt = await c.get_prompt("with_args", {"topic": "owls"})
            first = prompt.messages[0].content
            assert isinstance(first, types.TextContent) and "owls" in first.text
            item = (await c.read_resource("fixture://item/7")).contents[0]
            assert isinstance(item, types.TextResourceContents) and item.text == "item 7"
            blob = (await c.read_resource("fixture://binary")).contents[0]
            assert isinstance(blob, types.BlobResourceContents)
            with pytest.raises(MCPError) as missing:
                await c.read_resource("fixture://nope")
            assert missing.value.code == -32002
            templates = await c.list_resource_templates()
            assert [t.uri_template for t in templates.resource_templates] == ["fixture://item/{id}"]
            await c.subscribe_resource("fixture://static")


async def test_demo_server_over_stdio() -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "onemcp.demo"], env={"PYTHONPATH": str(SRC)})
    with anyio.fail_after(DEADLINE):
        async with Client(params, mode="legacy", cache=None) as c:
            assert c.server_info is not None and c.server_info.name == "onemcp-demo"
            assert c.instructions
            assert {tool.name for tool in (await c.list_tools()).tools} == {"echo", "add", "word_count"}
            assert text_of(await c.call_tool("echo", {"text": "hi"})) == "hi"
            added = await c.call_tool("add", {"a": 2, "b": 3})
            assert text_of(added) == "5" and added.structured_content == {"sum": 5}
            assert text_of(await c.call_tool("word_count", {"text": "one two  three"})) == "3"
            with pytest.raises(MCPError) as bad:
                await c.call_tool("add", {"a": "x", "b": 1})
            assert bad.value.code == -32602
            prompt = await c.get_prompt("greeting", {"name": "Ada"})
            content = prompt.messages[0].content
            assert isinstance(content, types.TextContent) and "Ada" in content.text
            readme = (await c.read_resource("demo://readme")).contents[0]
            assert isinstance(readme, types.TextResourceContents) and "demo" in readme.text
            await c.set_logging_level("warning")
            await c.send_ping()
            done = await c.complete(
                types.PromptReference(type="ref/prompt", name="greeting"), {"name": "name", "value": "A"}
            )
            assert done.completion.values == []


# --- raw wire checks: things the SDK client would hide ------------------------------------------------


class RawStdio:
    def __init__(self, process: Any) -> None:
        self.process = process
        self.lines = BufferedByteReceiveStream(process.stdout)

    async def send(self, message: dict[str, Any]) -> None:
        await self.process.stdin.send(orjson.dumps(message) + b"\n")

    async def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = orjson.loads(await self.lines.receive_until(b"\n", 1 << 24))
        return message


@asynccontextmanager
async def raw_stdio(*args: str) -> AsyncIterator[RawStdio]:
    process = await anyio.open_process(fixture_command(*args), stderr=subprocess.DEVNULL)
    try:
        yield RawStdio(process)
    finally:
        await stop_process(process)


def initialize(request_id: int = 1, version: str = "2025-06-18") -> dict[str, Any]:
    params = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": params}


async def test_raw_stdio_cancel_extra_fields_and_errors() -> None:
    with anyio.fail_after(DEADLINE):
        async with raw_stdio("--extra-fields") as raw:
            await raw.send(initialize())
            init = await raw.receive()
            assert init["result"]["protocolVersion"] == "2025-06-18"
            assert init["result"]["vendorExtra"] == 42 and init["result"]["_meta"] == {"vendor/meta": "v"}
            call = {"name": "sleep", "arguments": {"seconds": 60}}
            await raw.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call})
            await raw.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}})
            await raw.send({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
            listing = await raw.receive()  # the cancelled request 2 is never answered
            assert listing["id"] == 3 and listing["result"]["tools"][0]["x-vendor"] == {"k": 1}
            await raw.process.stdin.send(b"{not json\n")
            assert (await raw.receive())["error"]["code"] == -32700
            await raw.send({"jsonrpc": "2.0", "id": 4, "method": "bogus/method"})
            assert (await raw.receive())["error"]["code"] == -32601
            await raw.process.stdin.aclose()
            assert await raw.process.wait() == 0  # clean exit on EOF


async def test_raw_stdio_start_behaviours() -> None:
    with anyio.fail_after(DEADLINE):
        async with raw_stdio("--hang-on-start") as raw:
            await raw.send(initialize(1, "1999-01-01"))
            await raw.send({"jsonrpc": "2.0", "id": 2, "method": "ping"})
            assert (await raw.receive())["id"] == 2  # ping answered, initialize never is
        async with raw_stdio("--crash-on-start") as raw:
            assert await raw.process.wait() == 1
        async with raw_stdio() as raw:
            await raw.send(initialize(1, "1999-01-01"))
            assert (await raw.receive())["result"]["protocolVersion"] == "2025-11-25"
            call = {"name": "crash", "arguments": {}}
            await raw.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call})
            assert await raw.process.wait() == 3


async def test_raw_http_sessions() -> None:
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    ping = {"jsonrpc": "2.0", "id": 9, "method": "ping"}
    with anyio.fail_after(DEADLINE):
        async with (
            running_http_fixture("--expire-sessions-after", "2") as url,
            httpx.AsyncClient(headers=headers) as http,
        ):
            assert (await http.post(url, json=ping)).status_code == 400
            assert (await http.post(url, json=ping, headers={"mcp-session-id": "nope"})).status_code == 404
            first = await http.post(url, json=initialize())
            session = {"mcp-session-id": first.headers["mcp-session-id"]}
            assert first.json()["result"]["serverInfo"]["name"] == "fixture"
            notified = await http.post(
                url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session
            )
            assert notified.status_code == 202
            assert (await http.post(url, json=ping, headers=session)).json() == {
                "jsonrpc": "2.0",
                "id": 9,
                "result": {},
            }
            assert (await http.post(url, json=ping, headers=session)).status_code == 404  # expired after 2 requests
            again = await http.post(url, json=initialize())
            session = {"mcp-session-id": again.headers["mcp-session-id"]}
            assert (await http.delete(url, headers=session)).status_code == 200
            assert (await http.delete(url, headers=session)).status_code == 404
            assert (await http.post(url, json=ping, headers={"origin": "http://evil.example"})).status_code == 403


@pytest.mark.parametrize("sse_responses", [False, True])
async def test_raw_http_cancelled_request_is_never_answered(sse_responses: bool) -> None:
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    args = ("--sse-responses",) if sse_responses else ()
    sleep = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "sleep", "arguments": {"seconds": 60}},
    }
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}}
    answered: list[httpx.Response] = []
    done = anyio.Event()
    with anyio.fail_after(DEADLINE):
        async with running_http_fixture(*args) as url, httpx.AsyncClient(headers=headers, timeout=DEADLINE) as http:
            first = await http.post(url, json=initialize())
            http.headers["mcp-session-id"] = first.headers["mcp-session-id"]

            async def call_sleep() -> None:
                answered.append(await http.post(url, json=sleep))
                done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(call_sleep)
                while not done.is_set():  # the request may not have reached the server yet: poll
                    assert (await http.post(url, json=cancel)).status_code == 202
                    with anyio.move_on_after(0.05):
                        await done.wait()
            ping = await http.post(url, json={"jsonrpc": "2.0", "id": 3, "method": "ping"})
            body = ping.content.split(b"data: ", 1)[1] if sse_responses else ping.content
            assert orjson.loads(body) == {"jsonrpc": "2.0", "id": 3, "result": {}}  # the session still works
    (response,) = answered
    if sse_responses:
        assert response.status_code == 200 and b"data:" not in response.content  # stream ended, no answer
    else:
        assert response.status_code == 202 and response.content == b""


async def test_http_fixture_crash_on_start_is_reported() -> None:
    with anyio.fail_after(DEADLINE), pytest.raises(RuntimeError, match="code 1"):
        async with running_http_fixture("--crash-on-start"):
            pass
