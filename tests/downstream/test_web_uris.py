"""Web addresses (http, https) reach clients as they are, in both eras: the spec has a client fetch
such a resource itself, and a server prefix made the address unfetchable. The hub still routes a
read or a subscription of one it can place (listed, named by a result it passed on, or the only server
in reach with resources)."""

from __future__ import annotations

from typing import Any, Literal

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command
from support.hub import running_hub

pytestmark = pytest.mark.anyio
DEADLINE = 30.0


def config(*names: str) -> dict[str, Any]:
    servers = {}
    for name in names:
        cmd = fixture_command("--web-resources", "--name", name)
        servers[name] = {"command": cmd[0], "args": cmd[1:]}
    return {"mcpServers": servers}


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_web_addresses_are_shown_as_they_are_and_still_read(mode: Literal["legacy", "2026-07-28"]) -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config("one", "two")) as hub, Client(hub.url, mode=mode, cache=None) as c:
            uris = {str(r.uri) for r in (await c.list_resources()).resources}
            assert {"https://one.example/page", "https://two.example/page", "one+fixture://static"} <= uris
            read = await c.read_resource("https://two.example/page")
            assert read.contents[0].text == "page of two"  # type: ignore[union-attr]
            result = await c.call_tool("one__web_link", {})
            assert result.content[0].uri == "https://one.example/elsewhere"  # type: ignore[union-attr]
            with pytest.raises(MCPError) as err:  # the server whose result named it is asked
                await c.read_resource("https://one.example/elsewhere")
            assert err.value.error.message.startswith("[one]")  # its own answer: it lists no such page
            with pytest.raises(MCPError) as err:  # named by nobody, two servers could have it: no guess
                await c.read_resource("https://nobody.example/elsewhere")
            assert err.value.error.message.startswith("Resource not found")  # the hub's, no server asked


async def test_one_server_answers_for_a_web_address_it_does_not_list() -> None:
    with anyio.fail_after(DEADLINE):
        cfg = config("solo")
        cfg["onemcp"] = {"prefixMode": "always"}
        async with running_hub(cfg) as hub, Client(hub.url, mode="legacy", cache=None) as c:
            link = (await c.call_tool("solo__web_link", {})).content[0]
            assert link.uri == "https://solo.example/elsewhere"  # type: ignore[union-attr]
            with pytest.raises(MCPError) as err:  # routed to it; it says it has no such resource
                await c.read_resource(link.uri)  # type: ignore[union-attr]
            assert err.value.error.message.startswith("[solo]")  # the server's own answer
