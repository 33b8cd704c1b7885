"""Stopping the hub: in-flight calls finish, and no child process survives, however it stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from fixtures.launch import fixture_command, stop_process
from onemcp.app import HubServer, OneMcpApp
from onemcp.config.model import HubConfig
from support.hub import HEADERS, raw_session
from support.inprocess import BOTH, FixtureUpstreams, fixture, modern_request, tool_call

pytestmark = pytest.mark.anyio
DEADLINE = 60.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too: it only waits to be reaped by its parent
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


async def start_hub(tmp_path: Path) -> tuple[anyio.abc.Process, str, dict[str, int]]:
    stubborn, plain = fixture_command("--stubborn"), fixture_command()
    config = {
        "mcpServers": {
            "stubborn": {"command": stubborn[0], "args": stubborn[1:]},
            "plain": {"command": plain[0], "args": plain[1:]},
        }
    }
    (tmp_path / "mcp.json").write_text(json.dumps(config))
    process = await anyio.open_process(
        [sys.executable, "-m", "onemcp", "serve", "--config", str(tmp_path / "mcp.json"), "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        line += await process.stdout.receive(1)
    url = line.decode().split()[-1]
    base = url.removesuffix("/mcp")
    async with httpx.AsyncClient() as http:
        while (await http.get(f"{base}/health/ready")).status_code != 200:
            await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
        doc = (await http.get(f"{base}/health")).json()
    pids = {name: up["pid"] for name, up in doc["upstreams"].items()}
    assert all(isinstance(pid, int) and alive(pid) for pid in pids.values())
    return process, url, pids


async def test_sigterm_lets_the_call_finish_and_leaves_no_child(tmp_path: Path) -> None:
    with anyio.fail_after(DEADLINE):
        process, url, pids = await start_hub(tmp_path)
        try:
            async with httpx.AsyncClient(timeout=None) as http:
                headers = await raw_session(http, url)
                replies: list[httpx.Response] = []

                async def call() -> None:
                    body = {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "tools/call",
                        "params": {"name": "plain__sleep", "arguments": {"seconds": 1}},
                    }
                    replies.append(await http.post(url, json=body, headers={**HEADERS, **headers}))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(call)
                    base = url.removesuffix("/mcp")
                    while (await http.get(f"{base}/health")).json()["upstreams"]["plain"]["inFlight"] == 0:
                        await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline
                    process.send_signal(signal.SIGTERM)
                assert replies[0].json()["result"]["content"][0]["text"]  # the call completed
            await process.wait()
            while any(alive(pid) for pid in pids.values()):
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
        finally:
            await stop_process(process)


async def test_sigkill_of_the_hub_takes_its_children_along(tmp_path: Path) -> None:
    with anyio.fail_after(DEADLINE):
        process, _, pids = await start_hub(tmp_path)
        try:
            process.kill()
            await process.wait()
            while any(alive(pid) for pid in pids.values()):
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
        finally:
            await stop_process(process)


async def test_a_call_still_running_after_the_grace_gets_a_json_rpc_error(caplog: pytest.LogCaptureFixture) -> None:
    """Not uvicorn's bare 500 text/plain and a traceback: the hub ends the call, in the transport's type."""
    upstreams = FixtureUpstreams()
    app = OneMcpApp(
        HubConfig.model_validate({"mcpServers": {"slow": fixture(), "other": fixture()}}), transports=upstreams
    )
    server = HubServer(app.server_config(timeout_graceful_shutdown=0))  # the grace is over at once
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    answers: dict[str, httpx.Response] = {}

    async def call(accept: str) -> None:
        headers, body = modern_request("tools/call", **tool_call("slow__hold"))
        async with httpx.AsyncClient(timeout=DEADLINE) as http:
            answers[accept] = await http.post(f"{base}/mcp", headers={**headers, "accept": accept}, json=body)

    with anyio.fail_after(DEADLINE), sock:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            await app.hub.pool.tried.wait()
            tg.start_soon(call, "application/json")
            tg.start_soon(call, BOTH)
            conn = app.hub.pool.get("slow")
            while conn is None or conn.in_flight < 2:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                conn = app.hub.pool.get("slow")
            server.should_exit = True
    for accept, response in answers.items():
        assert response.headers["content-type"].startswith(accept.split(",")[0]), response.headers
        *_, last = (line for line in response.text.splitlines() if line.startswith(("{", "data: ")))
        error = json.loads(last.removeprefix("data: "))["error"]
        assert error == {"code": -32000, "message": "[slow] the hub is shutting down"}
    assert "Exception in ASGI application" not in caplog.text
    assert "1 request(s) still being" not in caplog.text and "2 request(s) still being answered" in caplog.text


async def test_every_request_and_stream_still_open_after_the_grace_ends_in_its_own_terms(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """hunt-ops F4, rest: requests waiting for the start-up (in the hub's answer, on its own or behind
    an /sse session) and the streams got uvicorn's bare 500 / a cut connection, and tracebacks."""
    upstreams = FixtureUpstreams()
    config = {
        "mcpServers": {"hang": fixture("--hang-on-start", startupTimeout=60)},
        "onemcp": {"firstListWait": 60},  # a list waits for the start-up, past the grace
    }
    app = OneMcpApp(HubConfig.model_validate(config), transports=upstreams)
    server = HubServer(app.server_config(timeout_graceful_shutdown=0))  # the grace is over at once
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    answers: dict[str, httpx.Response] = {}
    on_sse: list[str] = []
    waiting = 0

    async def modern_list(accept: str, rid: int) -> None:
        nonlocal waiting
        headers, body = modern_request("tools/list", rid=rid)
        async with httpx.AsyncClient(timeout=DEADLINE) as http:
            waiting += 1
            answers[accept] = await http.post(f"{base}/mcp", headers={**headers, "accept": accept}, json=body)

    async def initialize() -> None:
        nonlocal waiting
        body = {"jsonrpc": "2.0", "id": 14, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
        async with httpx.AsyncClient(timeout=DEADLINE) as http:
            waiting += 1
            answers["initialize"] = await http.post(f"{base}/mcp", headers=HEADERS, json=body)

    async def sse_session(posted: anyio.Event) -> None:
        async with httpx.AsyncClient(timeout=DEADLINE) as http, http.stream("GET", f"{base}/sse") as stream:
            lines = stream.aiter_lines()
            async for line in lines:
                if line.startswith("data: /messages"):
                    body = {"jsonrpc": "2.0", "id": 11, "method": "tools/list"}
                    r = await http.post(f"{base}{line.removeprefix('data: ')}", json=body)
                    assert r.status_code == 202
                    posted.set()
                    break
            on_sse.extend([line async for line in lines if line.startswith("data: ")])  # to the stream's end

    with anyio.fail_after(DEADLINE), sock:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            while not server.started:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            posted = anyio.Event()
            tg.start_soon(sse_session, posted)
            await posted.wait()
            tg.start_soon(modern_list, "application/json", 12)
            tg.start_soon(modern_list, "text/event-stream", 13)
            tg.start_soon(initialize)
            while waiting < 3 or app.hub.stopping.exchanges < 4:  # the requests reached the hub, the stream open
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            server.should_exit = True
    error = {"code": -32000, "message": "the hub is shutting down"}
    heard = [json.loads(line.removeprefix("data: ")) for line in on_sse]
    assert heard == [{"jsonrpc": "2.0", "id": 11, "error": error}]  # the reply, then the stream's end
    assert answers["application/json"].headers["content-type"] == "application/json"
    assert answers["application/json"].json() == {"jsonrpc": "2.0", "id": 12, "error": error}
    assert answers["text/event-stream"].headers["content-type"] == "text/event-stream"
    event = next(line for line in answers["text/event-stream"].text.splitlines() if line.startswith("data: "))
    assert json.loads(event.removeprefix("data: ")) == {"jsonrpc": "2.0", "id": 13, "error": error}
    assert answers["initialize"].json() == {"jsonrpc": "2.0", "id": 14, "error": error}
    assert "Exception in ASGI application" not in caplog.text and "Traceback" not in caplog.text
    assert "timeout graceful shutdown exceeded" not in caplog.text


async def test_idle_sessions_streams_end_at_once_not_after_the_grace() -> None:
    """TS-SDK hunt F4: a client holding a GET stream (every TypeScript SDK client does) or an /sse stream
    made SIGTERM wait the whole grace, then a traceback. An idle session's streams end when the shutdown
    begins; the cut-off (the end of the grace) has not come when they do."""
    app = OneMcpApp(HubConfig.model_validate({"mcpServers": {"fx": fixture()}}), transports=FixtureUpstreams())
    server = HubServer(app.server_config(timeout_graceful_shutdown=120))  # far longer than this test's deadline
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    ended: list[tuple[str, bool]] = []
    opened = anyio.Event()

    async def hold(path: str, headers: dict[str, str] | None, http: httpx.AsyncClient) -> None:
        async with http.stream("GET", f"{base}{path}", headers=headers) as stream:
            async for line in stream.aiter_lines():
                if path == "/sse" and line.startswith("data: /messages"):
                    opened.set()
        ended.append((path, app.hub.stopping.cut))

    with anyio.fail_after(DEADLINE), sock:
        async with httpx.AsyncClient(timeout=DEADLINE) as http, anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            while not server.started:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            headers = await raw_session(http, f"{base}/mcp")
            tg.start_soon(hold, "/mcp", {**headers, "accept": "text/event-stream"}, http)
            tg.start_soon(hold, "/sse", None, http)
            await opened.wait()
            while app.hub.stopping.exchanges < 2:  # both streams are open at the hub
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            server.should_exit = True
    assert sorted(ended) == [("/mcp", False), ("/sse", False)]  # ended, before any cut-off
