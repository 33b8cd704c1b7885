"""mcp-remote against the hub: the stdio-to-remote bridge that Claude Desktop and other stdio-only hosts
run to reach a remote MCP server, with its own OAuth client (discovery, dynamic registration, PKCE, a
loopback callback) and its own transport strategies and 2026-07-28 bridging (`--protocol auto`).

The test is the host: it speaks MCP on mcp-remote's stdin/stdout (initialize, lists, calls, sampling,
roots, progress) and plays the browser: the authorization URL mcp-remote prints goes through the hub's
authorization server (oauthConsent "auto" approves at once) to mcp-remote's callback listener.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.buffered import BufferedByteReceiveStream

from fixtures.launch import fixture_command
from support.hub import RunningHub, oauth_hub
from support.real_servers import NODE_MODULES, node_binary

pytestmark = pytest.mark.anyio
MCP_REMOTE = NODE_MODULES / "mcp-remote" / "dist" / "proxy.js"  # pinned in tests/npm/package.json
AUTHORIZE = re.compile(rb"(http://127\.0\.0\.1:\d+/oauth/authorize\?\S+)")
Json = dict[str, Any]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def lines(stream: ByteReceiveStream) -> Any:
    buffered = BufferedByteReceiveStream(stream)
    while True:
        try:
            yield await buffered.receive_until(b"\n", 1 << 22)
        except (anyio.EndOfStream, anyio.IncompleteRead):
            return


class Host:
    """The stdio side of mcp-remote, as a desktop host drives it: one request at a time."""

    def __init__(self, proc: Process) -> None:
        self.proc = proc
        self.next_id = 0
        self.replies: dict[int, Json] = {}
        self.arrived = anyio.Event()
        self.progress: list[float] = []
        self.asked: list[str] = []
        self.ended = False

    async def read(self) -> None:
        assert self.proc.stdout is not None
        async for line in lines(self.proc.stdout):
            msg = json.loads(line)
            if "method" in msg and "id" in msg:  # the hub, through mcp-remote, asks its client
                self.asked.append(msg["method"])
                await self.send({"jsonrpc": "2.0", "id": msg["id"], "result": self.answer(msg["method"])})
            elif msg.get("method") == "notifications/progress":
                self.progress.append(msg["params"]["progress"])
            elif "id" in msg:
                self.replies[msg["id"]] = msg
                self.arrived.set()
        self.ended = True  # mcp-remote is gone: a request waiting for its answer fails now, not at the deadline
        self.arrived.set()

    @staticmethod
    def answer(method: str) -> Json:
        if method == "sampling/createMessage":
            return {"role": "assistant", "content": {"type": "text", "text": "sampled by the host"}, "model": "m"}
        if method == "roots/list":
            return {"roots": [{"uri": "file:///host-root", "name": "host"}]}
        return {}

    async def send(self, msg: Json) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send(json.dumps(msg).encode() + b"\n")

    async def request(self, method: str, params: Json) -> Json:
        self.next_id += 1
        rid = self.next_id
        await self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        while rid not in self.replies:
            assert not self.ended, f"mcp-remote ended before it answered {method}"
            self.arrived = anyio.Event()
            await self.arrived.wait()
        return self.replies.pop(rid)

    async def call(self, tool: str, arguments: Json, **meta: Any) -> Json:
        params: Json = {"name": tool, "arguments": arguments, **({"_meta": meta} if meta else {})}
        reply = await self.request("tools/call", params)
        assert "result" in reply, reply
        result: Json = reply["result"]
        return result


async def browser(proc: Process, seen: list[bytes]) -> None:
    """What the user's browser would do: open the URL mcp-remote prints, follow it back to its callback."""
    assert proc.stderr is not None
    async for line in lines(proc.stderr):
        seen.append(line)
        found = AUTHORIZE.search(line)
        if found:
            async with httpx.AsyncClient(follow_redirects=True, timeout=20) as http:
                done = await http.get(found.group(1).decode())
            assert done.status_code == 200, done.text  # mcp-remote's callback page: authorized


async def session(hub: RunningHub, entry: str, options: list[str], config_dir: Path) -> tuple[Json, Host]:
    url = f"{hub.base}/{entry}"
    cmd = [node_binary(), str(MCP_REMOTE), url, "--allow-http", "--auth-timeout", "30", *options]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(config_dir), "MCP_REMOTE_CONFIG_DIR": str(config_dir)}
    env["BROWSER"] = "true"  # xdg-open, when mcp-remote tries it, opens nothing
    stderr: list[bytes] = []
    seen: Json = {}
    async with await anyio.open_process(cmd, env=env) as proc, anyio.create_task_group() as tg:
        host = Host(proc)
        tg.start_soon(host.read)
        tg.start_soon(browser, proc, stderr)
        try:
            init = {"protocolVersion": "2025-11-25", "capabilities": {"sampling": {}, "roots": {"listChanged": True}}}
            init["clientInfo"] = {"name": "desktop-host", "version": "1"}
            seen["initialize"] = (await host.request("initialize", init))["result"]
            await host.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
            seen["tools"] = [t["name"] for t in (await host.request("tools/list", {}))["result"]["tools"]]
            seen["echo"] = (await host.call("fx__echo", {"message": "hello"}))["content"][0]["text"]
            seen["sample"] = (await host.call("fx__sample", {"prompt": "hi?"}))["content"][0]["text"]
            seen["roots"] = (await host.call("fx__roots", {}))["content"][0]["text"]
            await host.call("fx__progress", {"steps": 3}, progressToken="p1")
            seen["progress"] = list(host.progress)
            seen["unknown"] = (await host.request("tools/call", {"name": "fx__nope", "arguments": {}}))["error"]
        except BaseException:
            print(b"\n".join(stderr).decode(errors="replace"))  # what mcp-remote said, for the failure report
            raise
        finally:
            assert proc.stdin is not None
            await proc.stdin.aclose()  # the host goes away: mcp-remote ends
            with anyio.move_on_after(10):
                await proc.wait()
            tg.cancel_scope.cancel()
    return seen, host


@pytest.mark.parametrize(
    ("entry", "options"),
    [
        ("mcp", []),  # its default: http-first
        ("sse", ["--transport", "sse-only"]),  # the legacy HTTP+SSE entry
        ("mcp", ["--transport", "sse-first"]),  # a GET /mcp without a session is 405: it moves on to HTTP
        ("mcp", ["--protocol", "auto"]),  # 2026-07-28, each request bridged by mcp-remote itself
    ],
)
async def test_mcp_remote_authorizes_and_bridges_a_stdio_host(tmp_path: Path, entry: str, options: list[str]) -> None:
    with anyio.fail_after(60):
        async with oauth_hub(tmp_path, "fx", fixture_command()) as hub:
            seen, host = await session(hub, entry, options, tmp_path)
    assert seen["initialize"]["serverInfo"]["name"] == "onemcp"
    assert {"fx__echo", "fx__sample", "fx__roots", "fx__progress"} <= set(seen["tools"])
    assert seen["echo"] == "hello"
    assert "sampled by the host" in seen["sample"]
    assert "file:///host-root" in seen["roots"]
    assert host.asked.count("sampling/createMessage") == 1
    assert seen["progress"] == [1, 2, 3]
    assert seen["unknown"]["code"] == -32602 and "fx__nope" in seen["unknown"]["message"]
