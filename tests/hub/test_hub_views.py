"""Views, in-process: `?tags=` and `?filter=` restrict every list and every call, in both eras."""

from __future__ import annotations

from urllib.parse import urlencode

import anyio
import pytest

from support.inprocess import fixture, inprocess_hub, tool_call

pytestmark = pytest.mark.anyio
DEADLINE = 10.0
SERVERS = {
    "alpha": fixture("--name", "alpha", tags=["red"]),
    "beta": fixture("--name", "beta", tags=["blue"]),
    "gamma": fixture("--name", "gamma", tags=["red", "green"]),
}


def servers_of(names: list[str]) -> set[str]:
    return {name.split("__", 1)[0] for name in names}


@pytest.mark.parametrize(
    ("selector", "seen"),
    [
        ({"tags": "red"}, {"alpha", "gamma"}),
        ({"tags": "blue,green"}, {"beta", "gamma"}),
        ({"filter": "red+!green"}, {"alpha"}),
        ({"filter": "not red"}, {"beta"}),
    ],
)
async def test_a_view_restricts_the_lists_and_the_calls_of_a_session(selector: dict[str, str], seen: set[str]) -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            session = await h.session(query=urlencode(selector))
            assert servers_of(await session.tools()) == seen
            uris = {r["uri"] for r in (await session.ask("resources/list"))["result"]["resources"]}
            assert {uri.split("+", 1)[0] for uri in uris} == seen
            for server in SERVERS:
                reply = await session.ask("tools/call", tool_call(f"{server}__echo", message=server))
                if server in seen:
                    assert reply["result"]["content"][0]["text"] == server
                else:  # outside the view, a tool does not exist
                    assert reply["error"]["code"] == -32602, reply
                read = await session.ask("resources/read", {"uri": f"{server}+fixture://static"})
                assert ("result" in read) == (server in seen), read


async def test_a_view_restricts_modern_requests_too() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            query = urlencode({"tags": "blue"})
            _, (listed,) = await h.client.modern("tools/list", query=query)
            assert servers_of([t["name"] for t in listed["result"]["tools"]]) == {"beta"}
            _, (ok,) = await h.client.modern("tools/call", query=query, **tool_call("beta__echo", message="b"))
            assert ok["result"]["content"][0]["text"] == "b"
            response, (refused,) = await h.client.modern(
                "tools/call", query=query, **tool_call("alpha__echo", message="a")
            )
            assert response.status == 400 and refused["error"]["code"] == -32602
            _, (everything,) = await h.client.modern("tools/list")  # the view was per request
            assert servers_of([t["name"] for t in everything["result"]["tools"]]) == set(SERVERS)


async def test_a_view_that_cannot_be_parsed_is_refused_in_both_eras() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            query = urlencode({"filter": "red+"})
            body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
            headers = {"accept": "application/json", "content-type": "application/json"}
            response, (reply,) = await h.client.request("POST", query=query, headers=headers, body=body)
            assert response.status == 400 and "filter" in reply["error"]["message"]
            response, (reply,) = await h.client.modern("tools/list", query=query)
            assert response.status == 400 and reply["error"]["code"] == -32602
