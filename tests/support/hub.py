"""Run the hub in-process for tests: real uvicorn on 127.0.0.1 port 0, torn down on exit."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn

from onemcp.app import HubServer, OneMcpApp
from onemcp.config.model import HubConfig


@dataclass
class RunningHub:
    app: OneMcpApp
    base: str
    server: uvicorn.Server

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    async def wait_ready(self, timeout: float = 30.0) -> None:
        with anyio.fail_after(timeout):
            await self.app.hub.pool.tried.wait()


@asynccontextmanager
async def running_hub(
    config: dict[str, Any], *, wait: bool = True, config_path: Path | None = None, public_host: str = "127.0.0.1"
) -> AsyncIterator[RunningHub]:
    """The hub on a free loopback port; with `config_path` it also watches that file. `public_host`:
    the name in its public URL (a browser mapped to loopback may reach it by another name)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    public = f"http://{public_host}:{port}/mcp"
    try:
        app = OneMcpApp(HubConfig.model_validate(config), config_path=config_path, public_url=public)
        server = HubServer(app.server_config())
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(10):
                while not server.started:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            hub = RunningHub(app, f"http://127.0.0.1:{port}", server)
            if wait:
                await hub.wait_ready()
            try:
                yield hub
            finally:
                server.should_exit = True
    finally:
        sock.close()  # a failed test too: else its garbage collection fails another test (ResourceWarning)


@asynccontextmanager
async def oauth_hub(tmp_path: Path, name: str, command: list[str]) -> AsyncIterator[RunningHub]:
    """A hub of one stdio server `name` (names always prefixed) behind its built-in authorization server,
    consent given at once: what a real client's OAuth flow runs against; its config a watched file."""
    config: dict[str, Any] = {
        "mcpServers": {name: {"command": command[0], "args": command[1:]}},
        "onemcp": {"prefixMode": "always", "auth": {"oauth": True, "oauthConsent": "auto"}},
    }
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config))
    async with running_hub(config, config_path=path) as hub:
        yield hub


HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INIT: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}


async def raw_session(client: httpx.AsyncClient, url: str) -> dict[str, str]:
    """Initialize over raw HTTP; returns the headers later requests need."""
    r = await client.post(url, json=INIT, headers=HEADERS)
    assert r.status_code == 200, r.text
    sid = r.headers["mcp-session-id"]
    headers = {**HEADERS, "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
    r = await client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    assert r.status_code == 202
    return headers
