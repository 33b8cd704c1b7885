"""Routing, in-process: a namespaced name or URI reaches the upstream it names, in both eras."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest

from downstream.test_modern import headers, modern
from fixtures.launch import fixture_command
from support.hub import running_hub
from support.inprocess import fixture, inprocess_hub, tool_call

pytestmark = pytest.mark.anyio
DEADLINE = 10.0
SERVERS = {
    "alpha": fixture("--name", "alpha"),
    "beta": fixture("--name", "beta", "--tools", "2"),
    "gamma": fixture("--name", "gamma"),
}


async def test_each_server_s_tools_are_listed_under_its_name_in_config_order() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            names = await (await h.session()).tools()
            assert {"alpha__echo", "beta__echo", "gamma__echo", "beta__tool_0", "beta__tool_1"} <= set(names)
            assert not {"alpha__tool_0", "gamma__tool_0"} & set(names)  # beta's own tools stay beta's
            assert names.index("alpha__echo") < names.index("beta__echo") < names.index("gamma__echo")
            _, (modern,) = await h.client.modern("tools/list")
            assert [tool["name"] for tool in modern["result"]["tools"]] == names


async def test_a_call_reaches_the_server_its_prefix_names() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            session = await h.session()
            reply = await session.ask("tools/call", tool_call("beta__add_tool", name="legacy_made"))
            assert reply["result"]["content"][0]["text"] == "added legacy_made"
            _, (modern,) = await h.client.modern("tools/call", **tool_call("gamma__add_tool", name="modern_made"))
            assert modern["result"]["content"][0]["text"] == "added modern_made"
            tools = {name: set(h.upstreams.current(name).tools) for name in SERVERS}
            assert "legacy_made" in tools["beta"] and "modern_made" in tools["gamma"]
            assert not {"legacy_made", "modern_made"} & tools["alpha"]
            assert "modern_made" not in tools["beta"] and "legacy_made" not in tools["gamma"]


async def test_an_unknown_tool_is_invalid_params_naming_it_in_both_eras() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            session = await h.session()
            for name in ("alpha__nope", "delta__echo", "echo"):
                reply = await session.ask("tools/call", tool_call(name))
                assert reply["error"]["code"] == -32602 and name in reply["error"]["message"], reply
                response, (modern,) = await h.client.modern("tools/call", **tool_call(name))
                assert response.status == 400 and modern["error"]["code"] == -32602, modern


async def test_an_error_repeats_at_most_200_characters_of_what_the_caller_sent_in_both_eras() -> None:
    """A name, URI, method or task id the hub does not know is named in its error by its start and its
    length: a 100,000-character one came back whole (any size up to maxBodyBytes), in the reply and the log."""
    big = "x" * 100_000
    asked = {
        "tools/call": tool_call("alpha__" + big),
        "prompts/get": {"name": big},
        "resources/read": {"uri": "delta+fixture://" + big},  # no server delta: the hub answers
        "completion/complete": {"ref": {"type": "ref/prompt", "name": big}, "argument": {"name": "a", "value": ""}},
        "tasks/get": {"taskId": big},
        "nosuch/" + big: {},
    }
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            session = await h.session()
            for method, params in asked.items():
                errors = [(await session.ask(method, params))["error"]]
                if method != "tasks/get":  # not a 2026-07-28 method: that era's tasks are tools' results
                    errors.append((await h.client.modern(method, **params))[1][0]["error"])
                for error in errors:
                    assert len(json.dumps(error)) < 400, (method[:20], len(json.dumps(error)))
                    assert error["message"].endswith(" characters)") and "xxxxx..." in error["message"], error
            unknown = (await session.ask("tools/call", tool_call("alpha__nope")))["error"]
            assert unknown["message"] == "Tool not found: alpha__nope"  # a short one is named whole, as before


async def test_prompts_and_resources_route_by_name_and_uri() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            session = await h.session()
            got = await session.ask("prompts/get", {"name": "beta__with_args", "arguments": {"topic": "routing"}})
            assert got["result"]["messages"][0]["content"]["text"] == "Tell me about routing."
            read = await session.ask("resources/read", {"uri": "gamma+fixture://item/7"})
            assert read["result"]["contents"] == [
                {"uri": "gamma+fixture://item/7", "mimeType": "text/plain", "text": "item 7"}
            ]
            _, (modern,) = await h.client.modern("resources/read", uri="alpha+fixture://static")
            assert modern["result"]["contents"][0]["text"] == "static fixture text"
            missing = await session.ask("resources/read", {"uri": "delta+fixture://static"})
            assert "error" in missing and "result" not in missing


async def test_an_upstream_error_keeps_its_code_and_names_the_server() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            reply = await (await h.session()).ask("tools/call", tool_call("beta__error"))
            assert reply["error"] == {"code": -32000, "message": "[beta] boom"}
            _, (modern,) = await h.client.modern("tools/call", **tool_call("gamma__error"))
            assert modern["error"]["code"] == -32000 and modern["error"]["message"] == "[gamma] boom"


async def test_one_unprefixed_server_answers_for_names_it_did_not_list_in_both_eras() -> None:
    """Documented (README "Names"): with one server and names unprefixed, a name it did not list is
    passed to it (it may serve more than it lists), so its own error answers an unknown one; a tool
    its rules hide is the hub's -32602 "Tool not found", never passed on."""
    solo = {"iso": fixture("--name", "iso", disabledTools=["crash"])}
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(solo, {"prefixMode": "conditional"}) as h:
            session = await h.session()
            assert "add_tool" in await session.tools()
            legacy = await session.ask("tools/call", tool_call("iso__add_tool", name="x"))
            _, (modern,) = await h.client.modern("tools/call", **tool_call("iso__add_tool", name="x"))
            for reply in (legacy, modern):
                assert reply["error"]["code"] == -32602, reply
                assert reply["error"]["message"].startswith("[iso] ") and "iso__add_tool" in reply["error"]["message"]
            hidden = await session.ask("tools/call", tool_call("crash"))
            _, (modern_hidden,) = await h.client.modern("tools/call", **tool_call("crash"))
            for reply in (hidden, modern_hidden):
                assert reply["error"]["code"] == -32602 and not reply["error"]["message"].startswith("[iso]"), reply
                assert "not found" in reply["error"]["message"].lower(), reply


async def test_a_call_that_comes_while_its_server_starts_waits_for_it_as_a_list_does() -> None:
    """A 2026-07-28 client has no handshake to wait in, and a session revived after a restart skips it:
    their first call came while the server was still starting and was refused at once, '[late] server
    is starting; its tools return when it is back' (a TypeScript SDK client's first call after `onemcp
    restart`). It waits as a first list does (`firstListWait`), then goes to the server."""
    cmd = fixture_command()
    late = {"command": "sh", "args": ["-c", 'sleep 0.5; exec "$0" "$@"', *cmd]}  # slow to start (in its own process)
    with anyio.fail_after(DEADLINE):
        config = {"mcpServers": {"late": late}, "onemcp": {"prefixMode": "always"}}
        async with running_hub(config, wait=False) as hub:
            async with httpx.AsyncClient(timeout=DEADLINE) as http:
                call = modern("tools/call", **tool_call("late__echo", message="waited"))
                r = await http.post(hub.url, json=call, headers=headers("tools/call", "late__echo"))
                assert r.status_code == 200 and "result" in r.json(), r.text
                assert r.json()["result"]["content"][0]["text"] == "waited"


async def test_a_call_in_the_moment_its_server_s_tools_are_listed_but_it_is_not_ready_waits_too() -> None:
    """At start, a server's tools join the catalog before its other lists are read and it is ready: a
    call routed in that moment was refused, '[slow] server is starting'."""
    cmd = fixture_command()
    slow = {"command": cmd[0], "args": [*cmd[1:], "--slow-prompts", "3"]}
    with anyio.fail_after(DEADLINE):
        config = {"mcpServers": {"slow": slow}, "onemcp": {"prefixMode": "always", "firstListWait": 8}}
        async with running_hub(config, wait=False) as hub:
            while "slow__echo" not in {tool["name"] for tool in hub.app.hub.catalog.items("tools")}:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            conn = hub.app.hub.pool.get("slow")
            assert conn is not None and conn.state == "starting"  # listed, not ready: the moment
            async with httpx.AsyncClient(timeout=DEADLINE) as http:
                call = modern("tools/call", **tool_call("slow__echo", message="waited"))
                r = await http.post(hub.url, json=call, headers=headers("tools/call", "slow__echo"))
                assert r.status_code == 200 and "result" in r.json(), r.text
                assert r.json()["result"]["content"][0]["text"] == "waited"


async def test_a_call_cancelled_while_it_waits_for_its_connection_to_start_is_never_sent_nor_answered() -> None:
    """A legacy client's notifications/cancelled for a call still waiting to be sent (here for the session's own
    connection to start; or its server, a template instance) found no call in flight and was dropped: the call
    was sent once the connection was ready, ran, and answered the cancelled request."""
    from support.hub import raw_session

    cmd = fixture_command()
    slow = {"command": cmd[0], "args": [*cmd[1:], "--slow-prompts", "2"], "isolation": "session"}
    with anyio.fail_after(2 * DEADLINE):
        config = {"mcpServers": {"slow": slow}, "onemcp": {"prefixMode": "always"}}
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            session_headers = await raw_session(http, hub.url)
            call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": tool_call("slow__add_tool", name="x")}
            replies: list[httpx.Response] = []
            async with anyio.create_task_group() as tg:

                async def post() -> None:
                    replies.append(await http.post(hub.url, json=call, headers=session_headers))

                tg.start_soon(post)
                while not hub.app.hub.isolated.connections():  # the call waits for its own connection to start
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}
                assert (await http.post(hub.url, json=cancel, headers=session_headers)).status_code == 202
            added = {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": tool_call("slow__add_tool", name="y")}
            assert "result" in (await http.post(hub.url, json=added, headers=session_headers)).text
            listed = {"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {}}
            tools = (await http.post(hub.url, json=listed, headers=session_headers)).json()["result"]["tools"]
    (reply,) = replies
    assert reply.text == "", reply.text  # never answered
    names = {tool["name"] for tool in tools}
    assert "slow__y" in names and "slow__x" not in names  # never run


async def test_a_clients_log_level_never_narrows_what_a_client_that_set_none_hears() -> None:
    """hunt-auth F5: a shared upstream was told the most verbose level among the sessions that had set
    one, so a client that set `emergency` cut off every other line for a client that had set none (which
    takes all the server sends, as it would directly); each session's own filter stays on the way back."""
    with anyio.fail_after(10):
        async with inprocess_hub({"alpha": fixture("--name", "alpha"), "beta": fixture("--name", "beta")}) as h:
            quiet, picky = await h.session(), await h.session()

            async def told() -> object:
                reply = await picky.ask("tools/call", tool_call("alpha__whoami"))
                return json.loads(reply["result"]["content"][0]["text"])["logLevel"]

            assert (await picky.ask("logging/setLevel", {"level": "emergency"}))["result"] == {}
            assert await told() == "debug"  # `quiet` takes everything
            assert (await quiet.ask("logging/setLevel", {"level": "warning"}))["result"] == {}
            assert await told() == "warning"  # now every session named a level: the most verbose of them


@pytest.mark.parametrize("prefix_mode", ["always", "never"])
async def test_a_web_address_a_result_named_is_read_from_its_server_not_a_catch_all(prefix_mode: str) -> None:
    """A web address is shown as it is: `evil` lists the template `https://{+rest}`, which matches every
    one. A link `good`'s tool result handed the client (a presigned URL, say) is read from `good`, in
    both eras, never sent to `evil`; an address nobody named still goes by the templates."""
    servers = {
        "good": fixture("--name", "good", "--web-resources"),
        "evil": fixture("--name", "evil", "--web-catchall"),
    }
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(servers, {"prefixMode": prefix_mode}) as h:
            session = await h.session()
            link = await session.ask(
                "tools/call", tool_call("good__web_link" if prefix_mode == "always" else "web_link")
            )
            uri = link["result"]["content"][0]["uri"]
            assert uri == "https://good.example/elsewhere"
            read = await session.ask("resources/read", {"uri": uri})
            assert read["error"]["message"].startswith("[good]"), read  # good's own answer: it lists no such page
            listed = await session.ask("resources/read", {"uri": "https://good.example/page"})
            assert listed["result"]["contents"][0]["text"] == "page of good"
            nobody = await session.ask("resources/read", {"uri": "https://else.example/x"})
            assert nobody["result"]["contents"][0]["text"] == "caught https://else.example/x"
            # a 2026-07-28 client: each request stands alone, the reach it has is what remembers
            name = "good__web_link" if prefix_mode == "always" else "web_link"
            _, (called,) = await h.client.modern("tools/call", **tool_call(name))
            assert called["result"]["content"][0]["uri"] == uri
            _, (modern_read,) = await h.client.modern("resources/read", uri=uri)
            assert modern_read["error"]["message"].startswith("[good]"), modern_read
