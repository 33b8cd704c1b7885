"""FastMCP's `Client` (the `fastmcp` package, 4.x) against the hub: the Python client most Python agents and
scripts are built on, where every other Python test uses the official SDK's `ClientSession` directly.

FastMCP's client negotiates on its own: by default it probes `server/discover` and, the hub answering it,
speaks 2026-07-28 (stateless, input-required rounds for sampling, elicitation and roots); `mode="legacy"`
keeps the 2025-11-25 handshake, and its `SSETransport` is the legacy HTTP+SSE entry. Its OAuth helper
(dynamic registration, PKCE, the RFC 9728 / 8414 discovery) is run headless against the built-in
authorization server, and its multi-server `MCPConfig` client holds two views of one hub at once.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest

from fixtures.launch import fixture_command
from support.hub import RunningHub, oauth_hub, running_hub
from support.real_servers import everything_stdio_command

if TYPE_CHECKING:
    from fastmcp import Client

pytestmark = pytest.mark.anyio
DEADLINE = 30


def _server(command: list[str]) -> dict[str, Any]:
    return {"command": command[0], "args": command[1:]}


@asynccontextmanager
async def _client(target: Any, mode: str, **handlers: Any) -> AsyncIterator[Client[Any]]:
    from fastmcp import Client  # imported here: the package is big, and only these tests need it

    async with Client(target, mode=mode, timeout=10, **handlers) as client:
        yield client


def _transport(hub: RunningHub, entry: str, auth: Any = None) -> Any:
    from fastmcp.client.transports import SSETransport, StreamableHttpTransport

    if entry == "sse":
        return SSETransport(f"{hub.base}/sse", auth=auth)
    return StreamableHttpTransport(hub.url, auth=auth)


# (mode, entry, the era FastMCP ends up speaking)
ERAS = [("auto", "http", "2026-07-28"), ("legacy", "http", "2025-11-25"), ("auto", "sse", "2025-11-25")]


@pytest.mark.parametrize(("mode", "entry", "era"), ERAS)
async def test_fastmcp_calls_the_hubs_tools_in_either_era(tmp_path: Path, mode: str, entry: str, era: str) -> None:
    from fastmcp.exceptions import ToolError
    from mcp.shared.exceptions import MCPError

    progress: list[float] = []
    asked: list[str] = []

    async def sampling(messages: Any, params: Any, context: Any) -> str:
        return "sampled by fastmcp"

    async def elicitation(message: str, response_type: Any, params: Any, context: Any) -> dict[str, Any]:
        asked.append(message)
        return {"colour": "teal"}

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    handlers = {
        "sampling_handler": sampling,
        "elicitation_handler": elicitation,
        "progress_handler": on_progress,
        "roots": ["file:///fastmcp-root"],
    }
    config = {"mcpServers": {"fx": _server(fixture_command()), "every": _server(everything_stdio_command())}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, _client(_transport(hub, entry), mode, **handlers) as client:
            assert client.protocol_version == era
            names = {tool.name for tool in await client.list_tools()}
            assert {"fx__echo", "fx__sample", "every__get-structured-content", "every__get-tiny-image"} <= names
            assert (await client.call_tool("fx__echo", {"message": "hello"})).content[0].text == "hello"  # type: ignore[union-attr]
            weather = await client.call_tool("every__get-structured-content", {"location": "Chicago"})
            assert set(weather.structured_content or {}) == {"temperature", "conditions", "humidity"}
            assert weather.data is not None  # FastMCP built it from the output schema the hub passed on
            image = await client.call_tool("every__get-tiny-image", {})
            assert [block.type for block in image.content] == ["text", "image", "text"]
            failed = await client.call_tool("fx__fail", {}, raise_on_error=False)
            assert failed.is_error and failed.content[0].text == "failed on purpose"  # type: ignore[union-attr]
            with pytest.raises((ToolError, MCPError), match=r"\[fx\] boom"):
                await client.call_tool("fx__error", {})
            await client.call_tool("fx__progress", {"steps": 3})
            assert progress == [1, 2, 3]
            sampled = await client.call_tool("fx__sample", {})
            assert "sampled by fastmcp" in sampled.content[0].text  # type: ignore[union-attr]
            roots = await client.call_tool("fx__roots", {})
            assert roots.structured_content == {"roots": [{"uri": "file:///fastmcp-root"}]}
            elicited = await client.call_tool("fx__elicit", {})
            assert asked == ["Favourite colour?"]
            assert elicited.structured_content == {"action": "accept", "content": {"colour": "teal"}}
            # FastMCP's own timeout: the hub cancels the call upstream (its stream closed, or the client said so)
            with pytest.raises(MCPError, match="timed out"):
                await client.call_tool("fx__sleep", {"seconds": 30}, timeout=0.5)
            with anyio.fail_after(5):
                while (await client.call_tool("fx__running", {})).structured_content != {"running": 0}:
                    await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
            (blob,) = await client.read_resource("fx+fixture://binary")
            assert blob.blob == "AAECAwQFBgcICQoLDA0ODw=="  # type: ignore[union-attr]
            prompt = await client.get_prompt("fx__with_args", {"topic": "tea"})
            assert "tea" in prompt.messages[0].content.text  # type: ignore[union-attr]
            with pytest.raises(MCPError, match="nope__x"):
                await client.call_tool("nope__x", {})


class _HeadlessOAuth:
    """FastMCP's OAuth helper with the browser taken out: the hub consents at once (`oauthConsent: auto`),
    so the authorization URL answers a redirect to the callback, whose code is read from it here rather
    than by the callback server FastMCP would start."""

    @staticmethod
    def make() -> Any:
        from fastmcp.client.auth import OAuth
        from mcp.shared.auth import AuthorizationCodeResult

        class Headless(OAuth):
            location = ""
            visits = 0

            async def redirect_handler(self, authorization_url: str) -> None:
                async with httpx.AsyncClient() as http:
                    answer = await http.get(authorization_url)
                assert answer.status_code == 302, answer.text
                self.location = answer.headers["location"]
                self.visits += 1

            async def callback_handler(self) -> AuthorizationCodeResult:
                query = parse_qs(urlsplit(self.location).query)
                return AuthorizationCodeResult(code=query["code"][0], state=query["state"][0], iss=query["iss"][0])

        return Headless(callback_host="127.0.0.1")


@pytest.mark.parametrize(("mode", "entry", "era"), ERAS)
async def test_fastmcp_authorizes_with_its_oauth_helper(tmp_path: Path, mode: str, entry: str, era: str) -> None:
    with anyio.fail_after(DEADLINE):
        async with oauth_hub(tmp_path, "fx", fixture_command()) as hub:
            auth = _HeadlessOAuth.make()
            with warnings.catch_warnings():  # its tokens kept in memory, as a test wants them
                warnings.filterwarnings("ignore", "Using in-memory token storage", UserWarning)
                transport = _transport(hub, entry, auth)
            async with _client(transport, mode) as client:
                assert client.protocol_version == era
                assert auth.visits == 1
                assert (await client.call_tool("fx__echo", {"message": "authorized"})).content[0].text == "authorized"  # type: ignore[union-attr]
            async with httpx.AsyncClient() as http:  # without a token: refused, as the helper found first
                r = await http.post(hub.url if entry == "http" else f"{hub.base}/sse", json={})
            assert r.status_code in (401, 405)


async def test_fastmcp_holds_two_views_of_one_hub_in_its_multi_server_config(tmp_path: Path) -> None:
    from onemcp.auth.keys import KeyStore

    config = {
        "mcpServers": {"fx": _server(fixture_command()), "fy": _server(fixture_command())},
        "onemcp": {"prefixMode": "always", "auth": {"apiKeys": True}},
    }
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config))
    with anyio.fail_after(DEADLINE):
        async with running_hub(config, config_path=path) as hub:
            keys = KeyStore(tmp_path / "keys.db")
            full, narrow = keys.create("full", ["mcp"]), keys.create("fx only", ["mcp", "server:fx"])
            servers = {
                "all": {"url": hub.url, "auth": full},
                "fx": {"url": hub.url, "headers": {"Authorization": f"Bearer {narrow}"}},
                "found": {"url": f"{hub.url}?exposure=search", "auth": full},
                "old": {"url": f"{hub.base}/sse", "transport": "sse", "auth": full},
            }
            async with _client({"mcpServers": servers}, "auto") as client:
                names = {tool.name for tool in await client.list_tools()}
                assert {"all_fx__echo", "all_fy__echo", "fx_fx__echo", "old_fy__echo"} <= names
                assert not {n for n in names if n.startswith("fx_fy__")}  # the narrow key's view
                assert {n for n in names if n.startswith("found_")} == {
                    "found_search_tools",
                    "found_get_tool_schema",
                    "found_call_tool",
                }
                echoed = await client.call_tool("fx_fx__echo", {"message": "narrow"})
                assert echoed.content[0].text == "narrow"  # type: ignore[union-attr]
                found = await client.call_tool("found_search_tools", {"query": "echo a message back", "limit": 3})
                assert "fx__echo" in found.content[0].text  # type: ignore[union-attr]
                called = await client.call_tool("found_call_tool", {"name": "fy__echo", "arguments": {"message": "m"}})
                assert called.content[0].text == "m"  # type: ignore[union-attr]
                assert (await client.call_tool("old_fy__echo", {"message": "sse"})).content[0].text == "sse"  # type: ignore[union-attr]
