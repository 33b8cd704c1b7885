"""An HTTP upstream reached through the environment's forward proxy (tunnel.py, h1.py).

Hunt s33-h F4: with `HTTPS_PROXY`/`HTTP_PROXY` set (a corporate network, where only the proxy reaches
out), the SDK's own client reached the server through it and the hub went direct, and failed
("cannot connect ... Name or service not known"); its upstream OAuth client (httpx) did use it.
The proxy here is a raw asyncio forward proxy on 127.0.0.1 port 0 that maps `*.invalid` names to
127.0.0.1 and records each connection's first request line and its Proxy-Authorization.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from onemcp.upstream.transports.tunnel import Proxy, ProxyError, proxy_for
from support.certs import self_signed
from support.hub import running_hub
from support.results import text_of

pytestmark = pytest.mark.anyio
DEADLINE = 10.0
NAME = "mcp.upstream.invalid"  # resolves nowhere: only the proxy reaches it
VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


class ForwardProxy:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.asked: list[tuple[str, str | None]] = []  # (first request line, proxy-authorization)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        self.asked.append((lines[0], headers.get("proxy-authorization")))
        method, target = lines[0].split(" ")[:2]
        if self.refuse:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
            writer.close()
            return
        authority = target if method == "CONNECT" else target.split("/")[2]
        host, _, port = authority.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1" if host.endswith(".invalid") else host, port)
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            up_writer.write(head)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def mcp_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A JSON-only MCP server at any path: initialize, tools/list (one tool), tools/call."""
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if not head[0].startswith("POST"):
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                continue
            msg = json.loads(body)
            if "id" not in msg:
                writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                continue
            result: dict[str, Any] = {}
            if msg["method"] == "initialize":
                result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "p"}}
            elif msg["method"] == "tools/list":
                result = {"tools": [{"name": "where", "inputSchema": {"type": "object"}}]}
            elif msg["method"] == "tools/call":
                result = {"content": [{"type": "text", "text": f"host {headers.get('host')}"}]}
            out = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(out))
            writer.write(out)
            await writer.drain()
    writer.close()


@asynccontextmanager
async def serving(handler: Any, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def private_ca(tmp_path: Path) -> ssl.SSLContext:
    """A self-signed certificate for NAME, written to tmp_path/ca.pem; the server's TLS context."""
    return self_signed(tmp_path / "ca.pem", tmp_path / "key.pem", NAME)


async def call_through_hub(url: str) -> str:
    config = {"mcpServers": {"s": {"url": url, "type": "http", "protocol": "legacy"}}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, Client(hub.url, mode="legacy", cache=None) as c:
            return text_of(await c.call_tool("where", {}))


async def test_an_http_upstream_is_reached_through_http_proxy_with_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = ForwardProxy()
    async with serving(mcp_server) as port, serving(proxy.serve) as proxy_port:
        monkeypatch.setenv("HTTP_PROXY", f"http://alice:p%40ss@127.0.0.1:{proxy_port}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # for the test's own client of the hub (httpx)
        assert await call_through_hub(f"http://{NAME}:{port}/mcp") == f"host {NAME}:{port}"
    assert proxy.asked, "nothing went through the proxy"
    for line, authorization in proxy.asked:  # absolute form, each connection with the credentials
        assert line.split(" ")[1] == f"http://{NAME}:{port}/mcp"
        assert authorization == "Basic YWxpY2U6cEBzcw=="  # alice:p@ss


async def test_an_https_upstream_is_reached_through_a_connect_tunnel_trusting_a_private_ca(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    proxy = ForwardProxy()
    async with serving(mcp_server, private_ca(tmp_path)) as port, serving(proxy.serve) as proxy_port:
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        monkeypatch.setenv("https_proxy", f"127.0.0.1:{proxy_port}")  # lower case, no scheme: as curl takes it
        assert await call_through_hub(f"https://{NAME}:{port}/mcp") == f"host {NAME}:{port}"
    assert {line for line, _ in proxy.asked} == {f"CONNECT {NAME}:{port} HTTP/1.1"}


async def test_a_proxy_that_refuses_the_tunnel_fails_the_start_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = ForwardProxy(refuse=True)
    async with serving(proxy.serve) as proxy_port:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy_port}")
        config = {"mcpServers": {"s": {"url": f"https://{NAME}/mcp", "type": "http", "protocol": "legacy"}}}
        with anyio.fail_after(DEADLINE):
            async with running_hub(config) as hub:
                error = hub.app.hub.pool.connections["s"].last_error or ""
    assert f"cannot connect to {NAME}:443 through the proxy 127.0.0.1:{proxy_port}" in error
    assert "refused CONNECT" in error and "407 Proxy Authentication Required" in error


def test_which_proxy_serves_which_upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "internal.corp, .svc.local,10.1.2.3:8080")
    assert proxy_for("https", "api.example.com") == Proxy("proxy.corp", 3128, None)
    assert proxy_for("http", "api.example.com") is None  # HTTP_PROXY is not set
    for host in ("internal.corp", "a.internal.corp", "x.svc.local", "10.1.2.3", "localhost", "127.0.0.9", "::1"):
        assert proxy_for("https", host) is None, host
    assert proxy_for("https", "notinternal.corp") is not None
    monkeypatch.setenv("NO_PROXY", "*")
    assert proxy_for("https", "api.example.com") is None
    monkeypatch.setenv("HTTPS_PROXY", "https://proxy.corp:3129")
    monkeypatch.delenv("NO_PROXY")
    with pytest.raises(ProxyError, match="HTTPS_PROXY must be an http:// proxy"):
        proxy_for("https", "api.example.com")
    assert ipaddress.ip_address("127.0.0.9").is_loopback  # the bypass above is the loopback rule's
