"""`onemcp proxy`: the SDK's stdio client, through the proxy, to a real hub process, across a hub restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
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
from onemcp.cli import proxy as proxy_module
from onemcp.cli.proxy import Proxy
from onemcp.cli.proxy_legacy import HubSession
from onemcp.cli.proxy_modern import ModernForwarder
from onemcp.cli.serve import hub_lock, write_runtime
from onemcp.cli.target import Endpoint, no_hub_for
from support.credentials import asgi_body, loopback_asgi
from support.entries import LineClient
from support.hub import running_hub
from support.hub_process import HubProcess, clean_env, free_port
from support.results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]
DEADLINE = 90.0


def write_config(directory: Path) -> Path:
    cmd = fixture_command("--header-tool")  # fx__lookup: an argument a 2026-07-28 request mirrors in a header
    servers = {
        "demo": {"command": sys.executable, "args": ["-m", "onemcp.demo"], "tags": ["demo"]},
        "fx": {"command": cmd[0], "args": cmd[1:], "tags": ["fx"]},
    }
    path = directory / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    process = HubProcess(write_config(tmp_path), port=free_port())
    try:
        yield process
    finally:
        process.stop()


@asynccontextmanager
async def proxied(
    *args: str, cwd: Path | None = None, env_dir: Path, mode: str = "legacy", **options: Any
) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "onemcp", "proxy", *args], env=clean_env(env_dir), cwd=cwd
    )
    async with Client(params, mode=mode, cache=None, **options) as client:
        yield client


def mcp_error(exc: BaseException) -> MCPError | None:
    """The MCPError in `exc` (the SDK may wrap it in exception groups)."""
    if isinstance(exc, MCPError):
        return exc
    for inner in exc.exceptions if isinstance(exc, BaseExceptionGroup) else []:
        found = mcp_error(inner)
        if found is not None:
            return found
    return None


async def initialize_error(*args: str, env_dir: Path) -> str:
    """The message of the error the client's initialize got through the proxy."""
    try:
        async with proxied(*args, env_dir=env_dir):
            pass
    except BaseException as exc:  # the SDK wraps it in exception groups
        found = mcp_error(exc)
        if found is None:
            raise
        return found.error.message
    raise AssertionError("initialize succeeded")


async def test_forwards_lists_calls_and_server_requests(hub: HubProcess) -> None:
    hub.start()
    await hub.wait_ready_async()

    async def sampling(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="sampled!"), model="test-model"
        )

    seen: list[float] = []
    all_three = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)
        if len(seen) == 3:
            all_three.set()

    with anyio.fail_after(DEADLINE):
        async with proxied("--url", hub.url, env_dir=hub.config.parent, sampling_callback=sampling) as c:
            assert c.server_info is not None and c.server_info.name == "onemcp"
            assert c.instructions is not None and "onemcp" in c.instructions
            names = {t.name for t in (await c.list_tools()).tools}
            assert {"demo__echo", "fx__sample", "fx__progress"} <= names
            assert text_of(await c.call_tool("demo__echo", {"text": "via proxy"})) == "via proxy"
            # the hub's request to the client travels on the reply stream; the answer is POSTed back
            assert "sampled!" in text_of(await c.call_tool("fx__sample", {"prompt": "hi"}))
            await c.call_tool("fx__progress", {"steps": 3}, progress_callback=on_progress)
            await all_three.wait()
            assert seen == [1.0, 2.0, 3.0]
            with pytest.raises(MCPError) as err:
                await c.call_tool("fx__error", {})
            assert "boom" in err.value.error.message


async def test_a_2026_client_through_the_proxy(hub: HubProcess) -> None:
    """The SDK's default client starts with server/discover and never initializes (issue 12, item 6)."""
    hub.start()
    await hub.wait_ready_async()
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    with anyio.fail_after(DEADLINE):
        async with proxied("--url", hub.url, env_dir=hub.config.parent, mode="auto") as c:
            assert c.server_info is not None and c.server_info.name == "onemcp"
            assert c.protocol_version == "2026-07-28"  # not a fallback to initialize after a discover timeout
            names = {t.name for t in (await c.list_tools()).tools}
            assert {"demo__echo", "fx__progress"} <= names
            assert text_of(await c.call_tool("demo__echo", {"text": "modern via proxy"})) == "modern via proxy"
            await c.call_tool("fx__progress", {"steps": 3}, progress_callback=on_progress)
            assert seen == [1.0, 2.0, 3.0]
            with pytest.raises(MCPError) as err:
                await c.call_tool("fx__error", {})
            assert "boom" in err.value.error.message
            with pytest.raises(MCPError):
                await c.call_tool("nope__nothing", {})


async def test_survives_a_hub_restart_on_the_same_port(hub: HubProcess) -> None:
    hub.start()
    await hub.wait_ready_async()
    relisted = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            relisted.set()

    with anyio.fail_after(DEADLINE):
        async with proxied("--url", hub.url, env_dir=hub.config.parent, message_handler=on_message) as c:
            assert text_of(await c.call_tool("demo__echo", {"text": "before"})) == "before"
            await anyio.to_thread.run_sync(hub.stop)  # by its PID
            url = await anyio.to_thread.run_sync(hub.start)  # a new process, the same port
            assert url.endswith(f":{hub.port}/mcp")
            await hub.wait_ready_async()
            # the proxy re-initialized (new session) and told the client to fetch its lists again
            await relisted.wait()
            names = {t.name for t in (await c.list_tools()).tools}
            assert "demo__echo" in names
            assert text_of(await c.call_tool("demo__echo", {"text": "after"})) == "after"


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_call_during_the_restart_waits_for_the_new_hub(hub: HubProcess, mode: str) -> None:
    """In either era (a 2026-07-28 request failed at once while the hub was away)."""
    hub.start()
    await hub.wait_ready_async()
    with anyio.fail_after(DEADLINE):
        async with proxied("--url", hub.url, env_dir=hub.config.parent, mode=mode) as c:
            await c.list_tools()
            await anyio.to_thread.run_sync(hub.stop)
            results: list[str] = []

            async def call() -> None:
                results.append(text_of(await c.call_tool("demo__echo", {"text": "patient"})))

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)  # sent while no hub listens: it waits for the next one
                await anyio.to_thread.run_sync(hub.start)
            assert results == ["patient"]


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_hub_restarted_at_another_port_is_followed_through_runtime_json(tmp_path: Path, mode: str) -> None:
    """No --url: the proxy found the hub in runtime.json, and finds it there again when the hub comes back
    at another port (`onemcp restart --port 0`). It kept asking the old port until the client restarted it."""
    process = HubProcess(write_config(tmp_path), port=free_port())
    relisted = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            relisted.set()

    try:
        process.start()
        await process.wait_ready_async()
        with anyio.fail_after(DEADLINE):
            async with proxied(cwd=tmp_path, env_dir=tmp_path, mode=mode, message_handler=on_message) as c:
                assert text_of(await c.call_tool("demo__echo", {"text": "before"})) == "before"
                await anyio.to_thread.run_sync(process.stop)
                old = process.port
                while process.port == old:
                    process.port = free_port()
                await anyio.to_thread.run_sync(process.start)  # runtime.json names the new port
                if mode == "legacy":
                    await relisted.wait()  # re-initialized at the new address
                assert text_of(await c.call_tool("demo__echo", {"text": "after"})) == "after"
    finally:
        process.stop()


async def test_view_from_flags_and_from_the_project_rc_file(hub: HubProcess, tmp_path: Path) -> None:
    hub.start()
    await hub.wait_ready_async()
    with anyio.fail_after(DEADLINE):
        async with proxied("--url", hub.url, "--tags", "fx", env_dir=hub.config.parent) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert "fx__echo" in names and not any(n.startswith("demo__") for n in names)
        project = tmp_path / "project"
        (project / "deep").mkdir(parents=True)
        (project / ".onemcprc").write_text(json.dumps({"url": hub.url, "filter": "demo"}))
        async with proxied(cwd=project / "deep", env_dir=hub.config.parent) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert names == {"demo__echo", "demo__add", "demo__word_count"}


async def test_hub_refusing_the_view_is_the_initialize_error(hub: HubProcess) -> None:
    hub.start()
    await hub.wait_ready_async()
    with anyio.fail_after(DEADLINE):
        message = await initialize_error("--url", hub.url, "--preset", "nope", env_dir=hub.config.parent)
    assert "unknown preset 'nope'" in message


async def test_no_hub_at_all_fails_initialize_after_the_wait(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    with anyio.fail_after(DEADLINE):
        message = await initialize_error("--url", url, "--wait", "0.5", env_dir=tmp_path)
    assert f"no onemcp hub answers at {url}" in message


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_exposure_search_through_the_proxy(hub: HubProcess, mode: str) -> None:
    """`proxy --exposure search`: a stdio client of either era gets the meta-tools, and they work."""
    hub.start()
    await hub.wait_ready_async()
    with anyio.fail_after(DEADLINE):
        async with proxied("--url", hub.url, "--exposure", "search", env_dir=hub.config.parent, mode=mode) as c:
            names = sorted(t.name for t in (await c.list_tools()).tools)
            assert names == ["call_tool", "get_tool_schema", "search_tools"]
            found = text_of(await c.call_tool("search_tools", {"query": "echo some text back", "limit": 3}))
            assert "demo__echo(" in found, found
            assert text_of(await c.call_tool("demo__echo", {"text": "direct"})) == "direct"
            called = await c.call_tool("call_tool", {"name": "demo__echo", "arguments": {"text": "via"}})
            assert text_of(called) == "via"
            # a tool the search-mode list lacks, with an x-mcp-header argument, called directly: the proxy
            # learns its headers from get_tool_schema (a 2026-07-28 request without them is refused)
            looked_up = await c.call_tool("fx__lookup", {"account": "acme"})
            assert not looked_up.is_error and "acme" in text_of(looked_up)


async def test_the_proxy_sends_its_project_so_each_project_gets_its_instance(tmp_path: Path) -> None:
    """The proxy signs the project of the directory it runs in: a template renders per project."""
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    config = {
        "mcpServers": {"demo": {"command": sys.executable, "args": ["-m", "onemcp.demo"]}},
        "mcpTemplates": {
            "mine": {"command": sys.executable, "args": ["-m", "onemcp.demo"], "env": {"AT": "{{ project.path }}"}}
        },
    }
    path = hub_dir / "mcp.json"
    path.write_text(json.dumps(config))
    process = HubProcess(path, port=free_port())
    alpha, beta = tmp_path / "alpha", tmp_path / "beta"
    alpha.mkdir()
    beta.mkdir()
    try:
        process.start()
        await process.wait_ready_async()
        with anyio.fail_after(DEADLINE):
            for project in (alpha, beta, alpha):
                async with proxied(cwd=project, env_dir=hub_dir) as c:  # the hub from runtime.json: its key
                    assert "mine__echo" in {t.name for t in (await c.list_tools()).tools}
                    assert text_of(await c.call_tool("mine__echo", {"text": "hi"})) == "hi"
            health = json.loads(await anyio.to_thread.run_sync(fetch, f"{process.base}/health"))
            assert sorted(i["context"]["name"] for i in health["instances"]) == ["alpha", "beta"]
            async with proxied("--url", process.url, env_dir=tmp_path) as c:  # no key to sign with: no context
                assert not any(t.name.startswith("mine__") for t in (await c.list_tools()).tools)
    finally:
        process.stop()


def fetch(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
        "capabilities": {}, "clientInfo": {"name": "pipe", "version": "0"}}}  # fmt: skip
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def call(rid: str | int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


async def piped(hub: HubProcess, lines: list[dict[str, Any]], *args: str) -> dict[Any, dict[str, Any]]:
    """The proxy's replies, by id, to `lines` written at once to its stdin, which then closes (a script)."""
    payload = "".join(json.dumps(line) + "\n" for line in lines).encode()
    with anyio.fail_after(DEADLINE):
        done = await anyio.run_process(
            [sys.executable, "-m", "onemcp", "proxy", "--url", hub.url, *args],
            input=payload,
            env=clean_env(hub.config.parent),
            check=False,
        )
    return {r.get("id"): r for r in map(json.loads, done.stdout.decode().splitlines())}


async def test_requests_out_when_the_client_closes_its_end_are_still_answered(hub: HubProcess) -> None:
    """A client that writes its requests and closes stdin (a script, a pipe): the answers still come,
    as `serve --transport stdio` gives them (they were dropped)."""
    hub.start()
    await hub.wait_ready_async()
    replies = await piped(hub, [INIT, INITIALIZED, call(2, "fx__sleep", {"seconds": 1})])
    assert "result" in replies.get(2, {}), replies


async def test_a_request_before_initialize_is_refused_at_once(hub: HubProcess) -> None:
    """It waited --wait (30 s) for a session that never comes, then blamed the hub; `ping` is answered."""
    hub.start()
    await hub.wait_ready_async()
    early = {"jsonrpc": "2.0", "id": "early", "method": "tools/list"}
    ping = {"jsonrpc": "2.0", "id": "ping", "method": "ping"}
    late = {"jsonrpc": "2.0", "id": "late", "method": "tools/list"}
    replies = await piped(hub, [early, ping, INIT, INITIALIZED, late])
    assert replies["early"]["error"]["code"] == -32600, replies["early"]
    assert "send initialize first" in replies["early"]["error"]["message"]
    assert replies["ping"]["result"] == {}
    assert "demo__echo" in {t["name"] for t in replies["late"]["result"]["tools"]}


async def test_a_request_the_hub_refuses_unread_is_answered_under_its_id(hub: HubProcess) -> None:
    """A body over the hub's limit gets HTTP 413 with "id": null (the hub never read it); the proxy knows
    the id, and the client waits for that id: the error came back as "id": null."""
    hub.start()
    await hub.wait_ready_async()
    text = "x" * (4 * 1024 * 1024 + 1)  # over maxBodyBytes (4 MiB by default)
    modern = call("big-2026", "demo__echo", {"text": text})
    modern["params"]["_meta"] = {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}
    replies = await piped(hub, [INIT, INITIALIZED, call("big", "demo__echo", {"text": text}), modern])
    for rid in ("big", "big-2026"):
        assert replies[rid]["error"]["code"] == -32600 and "larger than" in replies[rid]["error"]["message"]
    assert None not in replies


async def test_a_client_gone_from_stdout_ends_the_proxy_quietly(hub: HubProcess) -> None:
    """Nobody reads stdout any more: replies are dropped, and the proxy ends with stdin, exit 0 and no
    traceback (it printed an ExceptionGroup ending in BrokenPipeError and exited 1)."""
    hub.start()
    await hub.wait_ready_async()
    payload = "".join(json.dumps(m) + "\n" for m in (INIT, INITIALIZED, {"jsonrpc": "2.0", "id": 2, "method": "ping"}))

    def blind() -> subprocess.CompletedProcess[bytes]:
        read_end, write_end = os.pipe()
        os.close(read_end)  # the client stopped reading
        try:
            return subprocess.run(
                [sys.executable, "-m", "onemcp", "proxy", "--url", hub.url],
                input=payload.encode(),
                stdout=write_end,
                stderr=subprocess.PIPE,
                env=clean_env(hub.config.parent),
                timeout=DEADLINE,
                check=False,
            )
        finally:
            os.close(write_end)

    done = await anyio.to_thread.run_sync(blind)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode()


class HeldHub:
    """A stand-in hub on a loopback port: its calls' replies and its answers to notifications are held
    (an open SSE stream, an unanswered POST) until `release`; initialize and ping are answered at once."""

    def __init__(self) -> None:
        self.calls = 0
        self.all_calls = anyio.Event()
        self.expected = 0
        self.cancelled: list[Any] = []
        self.cancel_seen = anyio.Event()
        self.release = anyio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await send({"type": "http.response.start", "status": 405, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        msg = json.loads(await asgi_body(receive))
        method = msg.get("method")
        if method == "tools/call":
            self.calls += 1
            if self.calls == self.expected:
                self.all_calls.set()
            sse = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": sse})
            await send({"type": "http.response.body", "body": b": held\n\n", "more_body": True})
            await self.release.wait()
            reply = {"jsonrpc": "2.0", "id": msg["id"], "result": {"content": []}}
            await send({"type": "http.response.body", "body": f"data: {json.dumps(reply)}\n\n".encode()})
            return
        if "id" not in msg:  # a notification: taken, and answered only at the end
            if method == "notifications/cancelled":
                self.cancelled.append(msg["params"]["requestId"])
                self.cancel_seen.set()
                await self.release.wait()
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        result: dict[str, Any] = {}
        if method == "initialize":
            result = {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "serverInfo": {"name": "held", "version": "1"},
            }
        headers = [(b"content-type", b"application/json"), (b"mcp-session-id", b"s" * 32)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {
                "type": "http.response.body",
                "body": json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}).encode(),
            }
        )


async def test_more_calls_in_flight_than_a_connection_pool_then_a_cancel_and_a_ping_go_at_once() -> None:
    """120 calls the hub holds (each holds a connection): a cancel, then a ping, still reach the hub at
    once, and the ping is answered, while the cancel's own POST is held too (the proxy wedged at ~99
    calls: its pool of 100 was full, and it read no more of stdin until a notification was POSTed)."""
    held = HeldHub()
    held.expected = 120
    client = LineClient()
    async with loopback_asgi(held) as base, anyio.create_task_group() as tg:
        bridge = Proxy(Endpoint(f"{base}/mcp"), client.read_line, client.write, wait=5.0)
        tg.start_soon(bridge.run)
        with anyio.fail_after(30):
            await client.initialize()
            waiting = {rid: client.replies.expect(rid) for rid in range(100, 100 + held.expected)}
            for rid in waiting:
                await client.send(call(rid, "slow", {}))
            await held.all_calls.wait()  # every call reached the hub: none waits for a connection
            await client.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 105}})
            pong = client.replies.expect(99)
            await client.send({"jsonrpc": "2.0", "id": 99, "method": "ping"})
            assert (await pong())["result"] == {}  # answered while the calls and the cancel's POST are held
            await held.cancel_seen.wait()
            assert held.cancelled == [105]
            held.release.set()
            for wait in waiting.values():
                assert "result" in await wait()
            client.to_server.close()
        tg.cancel_scope.cancel()
    client.close()


async def test_requests_past_the_cap_out_at_once_are_refused_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hunt B (limits): every request read became a POST of its own, without bound: 20,000 slow calls written
    at once held 2,000 of the hub's connections (which every client shares) and grew the proxy to 135 MB.
    Past MAX_OUT unanswered a request is refused at once (as `serve --transport stdio` does), and once
    replies come the client is served again."""
    monkeypatch.setattr(proxy_module, "MAX_OUT", 3)
    held = HeldHub()
    held.expected = 3
    client = LineClient()
    async with loopback_asgi(held) as base, anyio.create_task_group() as tg:
        bridge = Proxy(Endpoint(f"{base}/mcp"), client.read_line, client.write, wait=5.0)
        tg.start_soon(bridge.run)
        with anyio.fail_after(30):
            await client.initialize()
            waiting = {rid: client.replies.expect(rid) for rid in range(100, 100 + held.expected)}
            for rid in waiting:
                await client.send(call(rid, "slow", {}))
            await held.all_calls.wait()
            refused = client.replies.expect(200)
            await client.send(call(200, "slow", {}))
            error = (await refused())["error"]
            assert error["code"] == -32000 and error["data"] == {"limit": "calls_per_session"}
            assert held.calls == 3  # never sent to the hub
            held.release.set()
            for wait in waiting.values():
                assert "result" in await wait()
            again = client.replies.expect(201)
            await client.send(call(201, "slow", {}))
            assert "result" in await again()
            client.to_server.close()
        tg.cancel_scope.cancel()
    client.close()


class StartingHub:
    """A stand-in hub that answers, but is starting: /health/ready is 503 until `ready` (its upstreams are
    being tried), then its initialize takes until `answer` (a hub's initialize waits for upstreams too)."""

    def __init__(self) -> None:
        self.asked = 0  # /health/ready requests
        self.asked_twice = anyio.Event()
        self.ready = anyio.Event()
        self.initializing = anyio.Event()
        self.answer = anyio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET" and scope["path"] == "/health/ready":
            self.asked += 1
            if self.asked == 2:
                self.asked_twice.set()
            status = 200 if self.ready.is_set() else 503
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        msg = json.loads(await asgi_body(receive))
        if msg.get("method") != "initialize":
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        self.initializing.set()
        await self.answer.wait()
        result = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "late", "version": "1"}}
        headers = [(b"content-type", b"application/json"), (b"mcp-session-id", b"s" * 32)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        body = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}).encode()
        await send({"type": "http.response.body", "body": body})


async def test_a_hub_that_answers_but_is_starting_is_waited_for_past_wait() -> None:
    """--wait is how long the initialize waits for a hub to answer at all. A hub that answers but is still
    starting (its upstreams, then its own initialize) was cut off at --wait, and the client was told
    "no onemcp hub answers at URL (start one with `onemcp serve`)" while one did, its session gone."""
    hub = StartingHub()
    client = LineClient()
    async with loopback_asgi(hub) as base, anyio.create_task_group() as tg:
        bridge = Proxy(Endpoint(f"{base}/mcp"), client.read_line, client.write, wait=0.01)
        tg.start_soon(bridge.run)
        with anyio.fail_after(30):
            reply = client.replies.expect(1)
            init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}
            await client.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
            await hub.asked_twice.wait()  # past --wait, still starting
            hub.ready.set()
            await hub.initializing.wait()
            hub.answer.set()
            assert (await reply())["result"]["serverInfo"]["name"] == "late"
            client.to_server.close()
        tg.cancel_scope.cancel()
    client.close()


MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}


class CuttingHub:
    """A hub that begins a 2026-07-28 request's reply stream, then drops the connection (a crash, a kill)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await asgi_body(receive)
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b": working\n\n", "more_body": True})
        raise RuntimeError("the hub died mid-reply")


async def test_a_2026_request_cut_off_mid_reply_may_have_run() -> None:
    """The hub took the request and died before it answered: the call may have run, so the client is
    told so (as a legacy request is), not "no onemcp hub answers" (which reads as safe to send again)."""
    client = LineClient()
    async with loopback_asgi(CuttingHub()) as base, anyio.create_task_group() as tg:
        bridge = Proxy(Endpoint(f"{base}/mcp"), client.read_line, client.write, wait=0.01)
        tg.start_soon(bridge.run)
        with anyio.fail_after(30):
            reply = client.replies.expect(7)
            await client.send({"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"_meta": MODERN_META}})
            error = (await reply())["error"]
            client.to_server.close()
        tg.cancel_scope.cancel()
    client.close()
    assert error["code"] == -32000
    assert error["message"].startswith("the connection to the hub broke: ")
    assert error["message"].endswith("; the request may or may not have run")


async def test_a_2026_request_with_no_hub_listening_says_so() -> None:
    """Nothing listens at all: the request never went out, and the message says that."""
    client = LineClient()
    async with anyio.create_task_group() as tg:
        bridge = Proxy(Endpoint(f"http://127.0.0.1:{free_port()}/mcp"), client.read_line, client.write, wait=0.01)
        tg.start_soon(bridge.run)
        with anyio.fail_after(30):
            reply = client.replies.expect(8)
            request = {"jsonrpc": "2.0", "id": 8, "method": "tools/list", "params": {"_meta": MODERN_META}}
            await client.send(request)
            error = (await reply())["error"]
            client.to_server.close()
        tg.cancel_scope.cancel()
    client.close()
    assert error["code"] == -32000 and error["message"].startswith("no onemcp hub answers at http://127.0.0.1:")


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_with_no_hub_of_its_directory_the_proxy_reaches_no_other_hub(tmp_path: Path, era: str) -> None:
    """With no runtime.json, the proxy used http://127.0.0.1:3050/mcp, which was another config directory's
    hub, and served it silently (hunt s38 h5 #16; it got $ONEMCP_TOKEN too). Now the client is told there is
    no hub of its directory, naming the address not tried; once that hub writes runtime.json it is used."""
    cmd = fixture_command()
    config = tmp_path / "mine" / "mcp.json"
    config.parent.mkdir()
    client = LineClient()
    meta = {**MODERN_META, "io.modelcontextprotocol/clientCapabilities": {}}
    first: dict[str, Any] = dict(INIT)
    if era == "modern":
        first = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}}
    async with running_hub({"mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}}}) as other:
        waiting = no_hub_for(config, other.url)  # the other directory's hub listens where the proxy would guess
        async with anyio.create_task_group() as tg:
            bridge = Proxy(Endpoint(other.url, config, waiting=waiting), client.read_line, client.write, wait=0.01)
            tg.start_soon(bridge.run)
            with anyio.fail_after(30):
                reply = client.replies.expect(1)
                await client.send(first)
                assert (await reply())["error"] == {"code": -32000, "message": waiting}
                assert not list(other.app.hub.sessions)
                lock = hub_lock(config)  # this directory's hub starts (here: at the same address)
                assert lock is not None
                try:
                    write_runtime(config, other.url)
                    reply = client.replies.expect(2)
                    await client.send({**first, "id": 2})
                    assert "result" in await reply()
                finally:
                    os.close(lock)
                client.to_server.close()
            tg.cancel_scope.cancel()
    client.close()


async def test_a_cancel_whose_request_id_is_true_cancels_no_2026_request() -> None:
    """JSON `true` is not the request whose id is 1 (True == 1 in Python): the proxy closed the stream of
    the 2026-07-28 call with id 1, which was then never answered."""
    cmd = fixture_command()
    client = LineClient()
    async with running_hub({"mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}}}) as hub:
        conn = hub.app.hub.pool.connections["fx"]
        async with anyio.create_task_group() as tg:
            bridge = Proxy(Endpoint(hub.url), client.read_line, client.write, wait=5.0)
            tg.start_soon(bridge.run)
            with anyio.fail_after(30):
                reply = client.replies.expect(1)
                meta = {**MODERN_META, "io.modelcontextprotocol/clientCapabilities": {}}
                params = {"name": "sleep", "arguments": {"seconds": 3}, "_meta": meta}
                await client.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
                while conn.in_flight == 0:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": True}}
                await client.send(cancel)
                assert "result" in await reply()
                client.to_server.close()
            tg.cancel_scope.cancel()
    client.close()


@pytest.mark.parametrize(
    ("method", "name", "code"),
    [
        ("tools/li\u00dft", None, -32601),
        ("tools/list\n", None, -32601),
        ("\u00e9" * 100_000, None, -32601),
        ("tools/call", "\ud800", -32602),
    ],
)
async def test_a_2026_request_no_header_can_carry_is_answered_and_the_proxy_goes_on(
    method: str, name: str | None, code: int
) -> None:
    """A method or name that no `Mcp-Method` / `Mcp-Name` header can carry as it is raised out of the
    request's task (UnicodeEncodeError building the headers) and ended the whole proxy. The method is
    answered -32601 at once; the name goes in base64, and the hub refuses it (no such tool)."""
    cmd = fixture_command()
    client = LineClient()
    meta = {**MODERN_META, "io.modelcontextprotocol/clientCapabilities": {}}
    async with running_hub({"mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}}}) as hub:
        async with anyio.create_task_group() as tg:
            bridge = Proxy(Endpoint(hub.url), client.read_line, client.write, wait=5.0)
            tg.start_soon(bridge.run)
            with anyio.fail_after(30):
                reply = client.replies.expect(1)
                params: dict[str, Any] = {"_meta": meta} if name is None else {"name": name, "_meta": meta}
                await client.send({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
                error = (await reply())["error"]
                assert error["code"] == code and len(error["message"]) < 300, error  # a long method: its start
                listed = client.replies.expect(2)
                await client.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta}})
                assert "echo" in {tool["name"] for tool in (await listed())["result"]["tools"]}
                client.to_server.close()
            tg.cancel_scope.cancel()
    client.close()


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_a_fault_of_the_proxys_own_ends_its_request_not_the_proxy(
    monkeypatch: pytest.MonkeyPatch, era: str
) -> None:
    """Whatever raises while one request is forwarded is that request's -32603, logged; the proxy's other
    requests go on (an exception out of one request's task ended the whole proxy)."""
    cmd = fixture_command()
    client = LineClient()
    meta = {**MODERN_META, "io.modelcontextprotocol/clientCapabilities": {}}
    target: Any = ModernForwarder if era == "modern" else HubSession
    original = target.request

    async def faulty(self: Any, msg: dict[str, Any]) -> None:
        if msg.get("id") == 1:
            raise RuntimeError("a bug of the proxy's own")
        await original(self, msg)

    monkeypatch.setattr(target, "request", faulty)
    async with running_hub({"mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}}}) as hub:
        async with anyio.create_task_group() as tg:
            bridge = Proxy(Endpoint(hub.url), client.read_line, client.write, wait=5.0)
            tg.start_soon(bridge.run)
            with anyio.fail_after(30):
                await client.initialize()
                params = {"_meta": meta} if era == "modern" else {}
                for rid in (1, 2):
                    reply = client.replies.expect(rid)
                    await client.send({"jsonrpc": "2.0", "id": rid, "method": "tools/list", "params": params})
                    got = await reply()
                    if rid == 1:
                        assert got["error"]["code"] == -32603 and "onemcp proxy" in got["error"]["message"]
                    else:
                        assert "echo" in {tool["name"] for tool in got["result"]["tools"]}
                client.to_server.close()
            tg.cancel_scope.cancel()
    client.close()
