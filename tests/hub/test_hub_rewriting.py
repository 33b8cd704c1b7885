"""Result rewriting, in-process: ids, progress tokens, names and URIs as each side must see them."""

from __future__ import annotations

import gc

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import PromptReference, TextContent

from fixtures.launch import fixture_command
from support.hub import running_hub
from support.inprocess import fixture, inprocess_hub, tool_call

pytestmark = pytest.mark.anyio
DEADLINE = 10.0
SERVERS = {"alpha": fixture("--name", "alpha"), "beta": fixture("--name", "beta", "--extra-fields")}


async def test_the_client_s_id_comes_back_and_the_upstream_sees_the_hub_s_own() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            first, second = await h.session(), await h.session()
            for session, rid in ((first, "same"), (second, "same"), (first, 2**40)):
                params = {**tool_call("alpha__whoami", k=1), "_meta": {"progressToken": "tok", "trace": "t1"}}
                reply = await session.ask("tools/call", params, rid=rid)
                assert reply["id"] == rid
                seen = reply["result"]["structuredContent"]
                assert seen["arguments"] == {"k": 1} and seen["meta"]["trace"] == "t1"  # other _meta passes
                token = seen["meta"]["progressToken"]
                assert isinstance(token, int)  # the hub's request id upstream, never a client's token


async def test_progress_reaches_the_caller_under_its_own_token_in_both_eras() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            session = await h.session()
            params = {**tool_call("beta__progress", steps=3), "_meta": {"progressToken": "mine"}}
            async with session.call("tools/call", params, rid=41) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                messages = await response.messages()
            *progress, reply = messages
            assert [(m["method"], m["params"]["progressToken"], m["params"]["progress"]) for m in progress] == [
                ("notifications/progress", "mine", step) for step in (1, 2, 3)
            ]
            assert reply["id"] == 41 and reply["result"]["content"][0]["text"] == "progress done"
            _, messages = await h.client.modern(
                "tools/call", meta={"progressToken": 7}, rid="m1", **tool_call("alpha__progress", steps=2)
            )
            *progress, reply = messages
            assert [m["params"]["progressToken"] for m in progress] == [7, 7]
            assert reply["id"] == "m1" and reply["result"]["resultType"] == "complete"


async def test_uris_are_namespaced_in_lists_and_in_what_a_read_returns() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            session = await h.session()
            listed = (await session.ask("resources/list"))["result"]["resources"]
            assert {r["uri"] for r in listed} == {
                f"{server}+fixture://{name}" for server in SERVERS for name in ("static", "binary")
            }
            templates = (await session.ask("resources/templates/list"))["result"]["resourceTemplates"]
            assert {t["uriTemplate"] for t in templates} == {"alpha+fixture://item/{id}", "beta+fixture://item/{id}"}
            for uri in ("beta+fixture://static", "alpha+fixture://item/42"):
                reply = await session.ask("resources/read", {"uri": uri})
                assert [c["uri"] for c in reply["result"]["contents"]] == [uri]
                _, (modern,) = await h.client.modern("resources/read", uri=uri)
                assert [c["uri"] for c in modern["result"]["contents"]] == [uri]


async def test_fields_the_hub_does_not_know_pass_through() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            session = await h.session()
            tools = {t["name"]: t for t in (await session.ask("tools/list"))["result"]["tools"]}
            assert tools["beta__echo"]["x-vendor"] == {"k": 1} and "x-vendor" not in tools["alpha__echo"]
            reply = await session.ask("tools/call", tool_call("beta__echo", message="m"))
            assert reply["result"]["vendorExtra"] == 42 and reply["result"]["_meta"] == {"vendor/meta": "v"}


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_tool_result_of_the_wrong_types_is_a_tool_error_naming_the_server(mode: str) -> None:
    """The official SDK client validates a tool's result: a content item without a type, a text
    that is not a string, a structuredContent that is not an object (legacy) made call_tool raise
    a bare validation error; the hub answers a tool error that says which server and what."""
    bad = fixture_command("--bad-schemas", "--name", "bad")
    with anyio.fail_after(30):
        async with running_hub({"mcpServers": {"bad": {"command": bad[0], "args": bad[1:]}}}) as hub:
            async with Client(hub.url, mode=mode, cache=None) as client:
                said: dict[str, tuple[bool, str]] = {}
                for kind in ("untyped", "number", "structured", "content", "error"):
                    result = await client.call_tool("mistyped", {"kind": kind})
                    texts = [item.text for item in result.content if isinstance(item, TextContent)]
                    said[kind] = (bool(result.is_error), texts[0] if texts else "")
                fine = await client.call_tool("echo", {"message": "still fine"})
            counted = hub.app.hub.metrics.registry
    expected = {
        "untyped": "content[0] has no type",
        "number": "content[0] (text) has no string text",
        "content": "content is not a list",
        "error": "isError is not a boolean",
    }
    if mode == "legacy":
        expected["structured"] = "structuredContent is not an object"
    else:  # 2026-07-28 types structuredContent as any JSON value: passed as it came
        assert said.pop("structured")[0] is False
    assert said == {k: (True, f"[bad] the server's tool result cannot be read: {v}") for k, v in expected.items()}
    assert not fine.is_error
    labels = {"method": "tools/call", "server": "bad", "outcome": "tool_error"}
    assert counted.get_sample_value("onemcp_upstream_requests_total", labels) == len(expected)  # not as successes


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_prompt_or_read_result_of_the_wrong_types_is_an_error_naming_the_server(mode: str) -> None:
    """The official SDK client validates a prompts/get and a resources/read result: a message with
    an untyped content, a text that is not a string, a role "system", messages or contents not a
    list, a contents item without a uri or a string text/blob made get_prompt/read_resource raise a
    bare validation error; the hub answers -32603 saying which server and what."""
    bad = fixture_command("--bad-schemas", "--name", "bad")
    said: dict[str, tuple[int, str]] = {}
    with anyio.fail_after(30):
        async with running_hub({"mcpServers": {"bad": {"command": bad[0], "args": bad[1:]}}}) as hub:
            async with Client(hub.url, mode=mode, cache=None) as client:
                for kind in ("untyped", "number", "role", "messages"):
                    with pytest.raises(MCPError) as err:
                        await client.get_prompt("mistyped_prompt", {"kind": kind})
                    said[f"prompt {kind}"] = (err.value.code, err.value.message)
                for kind in ("uri", "body", "contents"):
                    with pytest.raises(MCPError) as err:
                        await client.read_resource(f"fixture://mistyped/{kind}")
                    said[f"read {kind}"] = (err.value.code, err.value.message)
                fine = await client.get_prompt("odd_args")
                read = await client.read_resource("fixture://odd")
    expected = {
        "prompt untyped": "messages[0].content has no type",
        "prompt number": "messages[0].content (text) has no string text",
        "prompt role": "messages[0] has the role 'system', not 'user' or 'assistant'",
        "prompt messages": "messages is not a list",
        "read uri": "contents[0] has no string uri",
        "read body": "contents[0] has neither a string text nor a string blob",
        "read contents": "contents is not a list",
    }
    method = {"prompt": "prompts/get", "read": "resources/read"}
    answer = "[bad] the server answered {} with a result a client cannot read: {}"
    assert said == {k: (-32603, answer.format(method[k.split()[0]], v)) for k, v in expected.items()}
    assert fine.messages and read.contents


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_completion_of_the_wrong_types_is_an_error_naming_the_server(mode: str) -> None:
    """The official SDK client validates a completion/complete result: values not a list of strings,
    a completion that is not an object or is missing, a _meta that is not an object made complete()
    raise a bare validation error (a total or hasMore of the wrong type it coerces; zod does not);
    the hub answers -32603 saying which server and what. More than the 100 values a result may hold
    (a 2026-07-28 client refuses them) are cut to 100 with hasMore."""
    bad = fixture_command("--bad-schemas", "--name", "bad")
    said: dict[str, tuple[int, str]] = {}
    ref = PromptReference(type="ref/prompt", name="mistyped_prompt")
    with anyio.fail_after(30):
        async with running_hub({"mcpServers": {"bad": {"command": bad[0], "args": bad[1:]}}}) as hub:
            async with Client(hub.url, mode=mode, cache=None) as client:
                for kind in ("values", "value", "total", "more", "completion", "missing", "meta"):
                    with pytest.raises(MCPError) as err:
                        await client.complete(ref, {"name": "kind", "value": kind})
                    said[kind] = (err.value.code, err.value.message)
                many = await client.complete(ref, {"name": "kind", "value": "many"})
                topic = PromptReference(type="ref/prompt", name="with_args")
                fine = await client.complete(topic, {"name": "topic", "value": ""})
            counted = hub.app.hub.metrics.registry
    expected = {
        "values": "completion.values is not a list",
        "value": "completion.values[1] is not a string",
        "total": "completion.total is not an integer",
        "more": "completion.hasMore is not a boolean",
        "completion": "completion is not an object",
        "missing": "completion is missing",
        "meta": "_meta is not an object",
    }
    answer = "[bad] the server answered completion/complete with a result a client cannot read: {}"
    assert said == {k: (-32603, answer.format(v)) for k, v in expected.items()}
    assert many.completion.values == [f"v{n}" for n in range(100)]
    assert many.completion.has_more is True and many.completion.total == 150
    assert fine.completion.values == []
    labels = {"method": "completion/complete", "server": "bad", "outcome": "error"}
    assert counted.get_sample_value("onemcp_upstream_requests_total", labels) == len(expected)  # not as successes


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_2026_result_envelope_of_the_wrong_types_is_an_error_naming_the_server(mode: str) -> None:
    """A 2026-07-28 upstream's result whose resultType is not a string, or that asks for input with
    inputRequests not an object of elicitation/sampling/roots requests with their params or a
    requestState not a string, or asks it on completion/complete (which cannot), made the SDK client raise a bare
    validation error; the hub answers a tool error or -32603 saying which server and what. A legacy
    client is told the same at once (it was asked for nothing, 8 times, or told of a capability it
    lacked without the server's name); it never sees resultType."""
    bad = fixture_command("--bad-schemas", "--modern-raw", "--name", "bad")
    said: dict[str, str] = {}
    ref = PromptReference(type="ref/prompt", name="mistyped_prompt")
    with anyio.fail_after(30):
        async with running_hub({"mcpServers": {"bad": {"command": bad[0], "args": bad[1:]}}}) as hub:
            assert hub.app.hub.pool.get("bad").era == "modern"  # type: ignore[union-attr]
            async with Client(hub.url, mode=mode, cache=None) as client:
                for kind in ("result_type", "asks", "asks_ping", "asks_elicit", "asks_state"):
                    result = await client.call_tool("mistyped", {"kind": kind})
                    texts = "".join(item.text for item in result.content if isinstance(item, TextContent))
                    said[f"call {kind}"] = texts if result.is_error else "fine"
                for kind in ("result_type", "asks"):
                    try:
                        await client.complete(ref, {"name": "kind", "value": kind})
                        said[f"complete {kind}"] = "fine"
                    except MCPError as err:
                        assert err.code == -32603
                        said[f"complete {kind}"] = err.message
                fine = await client.call_tool("echo", {"message": "still fine"})
    called = "[bad] the server's tool result cannot be read: {}"
    completed = "[bad] the server answered completion/complete with a result a client cannot read: {}"
    legacy = mode == "legacy"
    assert said == {
        "call result_type": "fine" if legacy else called.format("resultType is not a string"),
        "call asks": called.format("inputRequests is not an object"),
        "call asks_ping": called.format(
            "inputRequests['a'] is not an elicitation/create, sampling/createMessage or roots/list request"
        ),
        "call asks_elicit": called.format("inputRequests['a'].params is missing"),
        "call asks_state": called.format("requestState is not a string"),
        "complete result_type": "fine" if legacy else completed.format("resultType is not a string"),
        "complete asks": completed.format("resultType is 'input_required', which completion/complete cannot answer"),
    }
    assert not fine.is_error


def _progress_messages(text: str) -> list[object]:
    """The progress notifications saying `text` alive in this process (as parsed dicts)."""
    return [
        o
        for o in gc.get_objects()
        if type(o) is dict
        and o.get("method") == "notifications/progress"
        and isinstance(o.get("params"), dict)
        and o["params"].get("message") == text
    ]


async def test_a_call_does_not_hold_the_progress_it_relayed_while_it_waits() -> None:
    """h6: the loop driving a call kept its last related message while it waited for the next: each
    call in flight after one 60 MB progress message held it (8 such calls, read by their client, held
    a real hub at 480 MB until they ended; a session may have 256)."""
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            session = await h.session()
            params = {**tool_call("beta__progress", steps=2, pause=3600), "_meta": {"progressToken": "mine"}}
            async with session.call("tools/call", params, rid=42) as response:
                first = await response.message()
                assert first["params"]["message"] == "step 1"
                del first
                await anyio.wait_all_tasks_blocked()  # the hub waits for the call's next message
                assert _progress_messages("step 1") == []
                await session.post({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 42}})
