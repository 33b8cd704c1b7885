"""The four era combinations, and input requests bridged between them."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any, TypedDict

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.session import ElicitationFnT, ListRootsFnT, SamplingFnT
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command
from onemcp.auth.access import LEGACY_HTTP, decide
from onemcp.auth.principal import ANONYMOUS
from onemcp.hub.bridge import ask_client
from onemcp.hub.session import Session
from onemcp.protocol.errors import InvalidRequest
from support.hub import running_hub

pytestmark = pytest.mark.anyio
DEADLINE = 30.0
MODERN_FIXTURE = str(Path(__file__).resolve().parent / "fixtures" / "modern_server.py")
# a raw legacy client's initialize (it can be asked to sample), and its call a modern upstream answers by asking it
SAMPLING_CLIENT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {"sampling": {}},
        "clientInfo": {"name": "r", "version": "0"},
    },
}
ASK_SAMPLE = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "m__ask_sample", "arguments": {}}}


def modern_fixture(**extra: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [MODERN_FIXTURE], **extra}


def legacy_fixture() -> dict[str, Any]:
    cmd = fixture_command()
    return {"command": cmd[0], "args": cmd[1:]}


def text_of(result: types.CallToolResult) -> str:
    item = result.content[0]
    assert isinstance(item, types.TextContent)
    return item.text


async def elicit(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"colour": "teal"})


async def sample(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="word"), model="m")


async def roots(context: ClientRequestContext) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri="file:///srv", name="srv")])


class Callbacks(TypedDict):
    """The client's answers to input requests, as keyword arguments of `Client`."""

    elicitation_callback: ElicitationFnT
    sampling_callback: SamplingFnT
    list_roots_callback: ListRootsFnT


CALLBACKS: Callbacks = {"elicitation_callback": elicit, "sampling_callback": sample, "list_roots_callback": roots}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_input_requests_of_a_modern_upstream_reach_both_kinds_of_client(mode: str) -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"m": modern_fixture(), "l": legacy_fixture()}}) as hub:
            assert hub.app.hub.pool.connections["m"].era == "modern"
            assert hub.app.hub.pool.connections["l"].era == "legacy"
            async with Client(hub.url, mode=mode, cache=None, **CALLBACKS) as c:
                colour = json.loads(text_of(await c.call_tool("m__ask_colour", {})))
                assert colour == {"action": "accept", "content": {"colour": "teal"}}
                sampled = json.loads(text_of(await c.call_tool("m__ask_sample", {})))
                assert sampled["content"]["text"] == "word"
                listed = json.loads(text_of(await c.call_tool("m__ask_roots", {})))
                assert listed["roots"][0]["uri"] == "file:///srv"
                # the client's own arguments reach the upstream untouched, whatever the era
                assert json.loads(text_of(await c.call_tool("m__echo", {"x": [1, 2]}))) == {"x": [1, 2]}
                assert text_of(await c.call_tool("l__echo", {"message": "legacy"})) == "legacy"


async def test_legacy_client_without_the_capability_gets_a_clear_error() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"m": modern_fixture()}}) as hub:
            async with Client(hub.url, mode="legacy", cache=None) as c:
                with pytest.raises(MCPError) as err:
                    await c.call_tool("ask_colour", {})
                assert "elicitation" in err.value.error.message


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_requests_of_a_legacy_upstream_reach_both_kinds_of_client(mode: str) -> None:
    """Pinned to the legacy era, the upstream asks with live requests; a modern client gets
    them as input-required results whose retry resumes the parked upstream call."""
    with anyio.fail_after(DEADLINE):
        servers = {"m": modern_fixture(protocol="legacy"), "l": legacy_fixture()}
        async with running_hub({"mcpServers": servers}) as hub:
            assert hub.app.hub.pool.connections["m"].era == "legacy"
            async with Client(hub.url, mode=mode, cache=None, **CALLBACKS) as c:
                colour = json.loads(text_of(await c.call_tool("m__ask_colour", {})))
                assert colour["content"] == {"colour": "teal"}
                sampled = json.loads(text_of(await c.call_tool("m__ask_sample", {})))
                assert sampled["content"]["text"] == "word"
                # the legacy fixture's own sampling tool, through a parked call too
                assert "word" in text_of(await c.call_tool("l__sample", {}))


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_progress_after_a_parked_call_resumes_reaches_the_retry(mode: str) -> None:
    """The retry is a new request with its own progress token: the resumed call reports under it."""
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"l": legacy_fixture(), "m": modern_fixture()}}) as hub:
            async with Client(hub.url, mode=mode, cache=None, **CALLBACKS) as c:
                result = await c.call_tool("l__sample", {"progress": True}, progress_callback=on_progress)
                assert "word" in text_of(result)
    assert seen == [1.0]


async def test_a_server_that_never_stops_asking_ends_in_an_error_a_legacy_client_can_read() -> None:
    """After `MAX_ROUNDS` rounds of answers a legacy client gets a JSON-RPC error, not the modern
    upstream's input_required result, which its era cannot read."""
    from onemcp.hub import bridge

    asked: list[int] = []

    async def counted(context: ClientRequestContext) -> types.ListRootsResult:
        asked.append(1)
        return await roots(context)

    with anyio.fail_after(DEADLINE):
        servers = {"m": modern_fixture(protocol="modern"), "l": legacy_fixture()}
        async with running_hub({"mcpServers": servers}) as hub:
            async with Client(hub.url, mode="legacy", cache=None, list_roots_callback=counted) as c:
                with pytest.raises(MCPError) as err:
                    await c.call_tool("m__ask_forever", {})
    assert "still asked for input after 8 rounds" in err.value.error.message, asked
    assert len(asked) == bridge.MAX_ROUNDS


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_onemcp_behind_a_onemcp_keeps_its_own_request_state(mode: str) -> None:
    """The inner hub parks its legacy call and signs an `onemcp1.` state; the outer hub, which did
    not sign it, passes it back to the inner one untouched (it used to refuse it as altered)."""
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"l": legacy_fixture()}}) as inner:
            async with running_hub({"mcpServers": {"inner": {"url": inner.url}}}) as outer:
                async with Client(outer.url, mode=mode, cache=None, **CALLBACKS) as c:
                    assert "word" in text_of(await c.call_tool("sample", {}))


async def test_a_parked_call_whose_upstream_died_answers_the_retry_under_its_own_id() -> None:
    """The SDK's 2026-07-28 client answers a bridged sampling request while the legacy upstream that asked
    dies (and is restarted): its retry (a new request id) gets the failure at once, under that id. It was
    answered under the first request's id, and the client waited for its retry's answer for ever."""
    import os
    import signal

    servers = {"l": legacy_fixture(), "other": legacy_fixture()}
    async with running_hub({"mcpServers": servers}) as hub:

        async def dying(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> Any:
            (parked,) = hub.app.hub.parking._parked.values()
            pid = getattr(parked.conn.transport, "pid", None)
            assert isinstance(pid, int)
            os.kill(pid, signal.SIGKILL)
            with anyio.fail_after(DEADLINE):
                while not parked.call.done or not hub.app.hub.pool.any_ready("l"):
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (it died and is back)
            return await sample(context, params)

        with anyio.fail_after(10):
            async with Client(hub.url, mode="2026-07-28", cache=None, sampling_callback=dying) as c:
                with pytest.raises(MCPError) as failed:
                    await c.call_tool("l__sample", {"prompt": "hi"})
    assert failed.value.error.code == -32000 and "[l] upstream closed" in failed.value.error.message


async def test_tampered_or_unknown_request_state_is_refused() -> None:
    import httpx

    from downstream.test_modern import headers, modern

    with anyio.fail_after(DEADLINE):
        servers = {"m": modern_fixture(protocol="legacy"), "l": legacy_fixture()}
        # the server asked: the retries go over the principal's own connection, started by the first (a process)
        async with running_hub({"mcpServers": servers}) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            caps: dict[str, Any] = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}}}
            first = await http.post(
                hub.url,
                json=modern("tools/call", meta=caps, name="m__ask_colour", arguments={}),
                headers=headers("tools/call", "m__ask_colour"),
            )
            result = first.json()["result"]
            assert result["resultType"] == "input_required"
            state = result["requestState"]
            (key,) = result["inputRequests"]
            answer = {key: {"action": "accept", "content": {"colour": "red"}}}
            # altered, not signed by this hub, and not in its form at all (a legacy upstream issues none)
            altered = state[:-1] + ("1" if state.endswith("0") else "0")  # one hex digit of its signature changed
            for bad in (altered, "onemcp1.e30.0000", "junk"):
                r = await http.post(
                    hub.url,
                    json=modern(
                        "tools/call",
                        meta=caps,
                        name="m__ask_colour",
                        arguments={},
                        inputResponses=answer,
                        requestState=bad,
                    ),
                    headers=headers("tools/call", "m__ask_colour"),
                )
                assert r.json()["error"]["code"] == -32602 and "requestState" in r.json()["error"]["message"]
            # the state names its call: another tool (even of another server) or another method is refused,
            # and the state stays good for the retry it was given for
            for method, name, said in (
                ("tools/call", "l__echo", "requestState belongs to another call"),
                ("prompts/get", "l__simple", "requestState belongs to a tools/call call"),
            ):
                r = await http.post(
                    hub.url,
                    json=modern(method, meta=caps, name=name, arguments={}, inputResponses=answer, requestState=state),
                    headers=headers(method, name),
                )
                assert r.json()["error"]["code"] == -32602 and said in r.json()["error"]["message"], r.text
            done = await http.post(
                hub.url,
                json=modern(
                    "tools/call",
                    meta=caps,
                    name="m__ask_colour",
                    arguments={},
                    inputResponses=answer,
                    requestState=state,
                ),
                headers=headers("tools/call", "m__ask_colour"),
            )
            assert "red" in done.json()["result"]["content"][0]["text"]
            again = await http.post(  # a state works once
                hub.url,
                json=modern(
                    "tools/call",
                    meta=caps,
                    name="m__ask_colour",
                    arguments={},
                    inputResponses=answer,
                    requestState=state,
                ),
                headers=headers("tools/call", "m__ask_colour"),
            )
            assert again.json()["error"]["code"] == -32602


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_modern_upstream_over_http(mode: str) -> None:
    """The SDK's HTTP server checks Mcp-Method / Mcp-Name itself: calls succeeding prove them right."""
    from fixtures.launch import running_http_fixture

    with anyio.fail_after(DEADLINE):
        async with running_http_fixture(command=[sys.executable, MODERN_FIXTURE]) as url:
            async with running_hub({"mcpServers": {"m": {"url": url}, "l": legacy_fixture()}}) as hub:
                assert hub.app.hub.pool.connections["m"].era == "modern"
                async with Client(hub.url, mode=mode, cache=None, **CALLBACKS) as c:
                    assert json.loads(text_of(await c.call_tool("m__echo", {"y": "é"}))) == {"y": "é"}
                    colour = json.loads(text_of(await c.call_tool("m__ask_colour", {})))
                    assert colour["content"] == {"colour": "teal"}


async def test_a_request_state_resumes_only_for_the_principal_it_was_issued_to(tmp_path: Path) -> None:
    import httpx

    from downstream.test_modern import headers, modern
    from onemcp.auth.keys import KeyStore

    config = {"mcpServers": {"m": modern_fixture(protocol="legacy")}, "onemcp": {"auth": {"apiKeys": True}}}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config))
    with anyio.fail_after(DEADLINE):
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient() as http:
            keys = KeyStore(tmp_path / "keys.db")
            owner, other = keys.create("a", ["mcp"]), keys.create("b", ["mcp"])
            caps: dict[str, Any] = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}}}

            async def call(key: str, **extra: Any) -> dict[str, Any]:
                r = await http.post(
                    hub.url,
                    json=modern("tools/call", meta=caps, name="ask_colour", arguments={}, **extra),
                    headers={**headers("tools/call", "ask_colour"), "authorization": f"Bearer {key}"},
                )
                body: dict[str, Any] = r.json()
                return body

            result = (await call(owner))["result"]
            (key,) = result["inputRequests"]
            answer = {key: {"action": "accept", "content": {"colour": "red"}}}
            stolen = await call(other, inputResponses=answer, requestState=result["requestState"])
            assert stolen["error"]["code"] == -32602 and "requestState" in stolen["error"]["message"]
            done = await call(owner, inputResponses=answer, requestState=result["requestState"])  # still the owner's
            assert "red" in done["result"]["content"][0]["text"]


async def test_a_legacy_client_does_not_see_the_modern_envelope_of_a_modern_upstream() -> None:
    import httpx

    from support.hub import raw_session

    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"m": modern_fixture(), "l": legacy_fixture()}}) as hub:
            assert hub.app.hub.pool.connections["m"].era == "modern"
            async with httpx.AsyncClient() as http:
                headers = await raw_session(http, hub.url)
                for method, params in (
                    ("tools/call", {"name": "m__echo", "arguments": {"x": 1}}),
                    ("tools/call", {"name": "l__echo", "arguments": {"message": "x"}}),
                ):
                    body = {"jsonrpc": "2.0", "id": 3, "method": method, "params": params}
                    result = (await http.post(hub.url, json=body, headers=headers)).json()["result"]
                    assert not {"resultType", "ttlMs", "cacheScope"} & set(result), result
                    assert "io.modelcontextprotocol/serverInfo" not in result.get("_meta", {}), result


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_a_legacy_client_keeps_the_back_channel_of_a_dual_era_upstream(transport: str) -> None:
    """A dual-era server's tool that asks the client back with a live request works for a legacy
    client through the hub as it does directly (issue 12, item 2); a modern client is bridged."""
    from fixtures.launch import running_http_fixture

    async with contextlib.AsyncExitStack() as stack:
        if transport == "http":
            url = await stack.enter_async_context(running_http_fixture(command=[sys.executable, MODERN_FIXTURE]))
            server: dict[str, Any] = {"url": url}
        else:
            server = modern_fixture()
        with anyio.fail_after(DEADLINE):
            async with running_hub({"mcpServers": {"m": server, "l": legacy_fixture()}}) as hub:
                assert hub.app.hub.pool.connections["m"].era == "modern"
                async with Client(hub.url, mode="legacy", cache=None, **CALLBACKS) as c:
                    sampled = json.loads(text_of(await c.call_tool("m__push_sample", {})))
                    assert sampled["content"]["text"] == "word"
                    colour = json.loads(text_of(await c.call_tool("m__ask_colour", {})))
                    assert colour["content"] == {"colour": "teal"}


async def test_a_request_state_come_back_too_late_ends_its_parked_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The upstream's call waited for an answer that will never come: it is ended, not left in flight."""
    import time

    import httpx

    from downstream.test_modern import headers, modern

    with anyio.fail_after(DEADLINE):
        async with (
            running_hub({"mcpServers": {"m": modern_fixture(protocol="legacy")}}) as hub,
            httpx.AsyncClient() as http,
        ):
            caps: dict[str, Any] = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}}}
            ask = modern("tools/call", meta=caps, name="ask_colour", arguments={})
            result = (await http.post(hub.url, json=ask, headers=headers("tools/call", "ask_colour"))).json()["result"]
            (key,) = result["inputRequests"]
            conn = hub.app.hub.pool.get("m")
            assert conn is not None and conn.in_flight == 1
            later = time.time() + 3600
            monkeypatch.setattr(time, "time", lambda: later)  # (bridge reads time.time)
            retry = modern(
                "tools/call", meta=caps, name="ask_colour", arguments={},
                inputResponses={key: {"action": "accept", "content": {"colour": "red"}}},
                requestState=result["requestState"],
            )  # fmt: skip
            r = await http.post(hub.url, json=retry, headers=headers("tools/call", "ask_colour"))
            assert r.json()["error"]["code"] == -32602 and "expired" in r.json()["error"]["message"]
            while conn.in_flight:
                await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline (the upstream is told)


async def test_a_request_state_retried_through_call_tool_resumes_its_call() -> None:
    """Search exposure: the client calls `call_tool`, which names the tool; the retry does the same,
    and must resume the call it was given for (it was refused as 'another call')."""
    import httpx

    from downstream.test_modern import headers, modern

    with anyio.fail_after(DEADLINE):
        async with (
            running_hub({"mcpServers": {"m": modern_fixture(protocol="legacy")}}) as hub,
            httpx.AsyncClient() as http,
        ):
            url = hub.url + "?exposure=search"
            caps: dict[str, Any] = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}}}
            args = {"name": "ask_colour", "arguments": {}}
            ask = modern("tools/call", meta=caps, name="call_tool", arguments=args)
            first = await http.post(url, json=ask, headers=headers("tools/call", "call_tool"))
            result = first.json()["result"]
            assert result["resultType"] == "input_required", first.text
            (key,) = result["inputRequests"]
            answers = {key: {"action": "accept", "content": {"colour": "red"}}}
            state = result["requestState"]
            # a retry whose call_tool arguments are wrong, or that is another meta-tool, names no call: said so
            # (it was "Tool not found: call_tool"), and the parked call stays to be resumed
            wrongs: list[tuple[str, dict[str, Any], str]] = [
                ("call_tool", {"name": "ask_colour", "arguments": [1]}, "must be an object"),
                ("call_tool", {"arguments": {}}, "'name' must be a tool name"),
                ("search_tools", {"query": "colour"}, "belongs to another call"),
            ]
            for tool, arguments, complaint in wrongs:
                wrong = {"name": tool, "arguments": arguments, "inputResponses": answers, "requestState": state}
                retry = modern("tools/call", meta=caps, **wrong)
                r = await http.post(url, json=retry, headers=headers("tools/call", tool))
                error = r.json()["error"]
                assert error["code"] == -32602 and complaint in error["message"], (wrong, r.text)
            retry = modern(
                "tools/call", meta=caps, name="call_tool", arguments=args, inputResponses=answers, requestState=state
            )
            r = await http.post(url, json=retry, headers=headers("tools/call", "call_tool"))
            assert "red" in r.text, r.text


async def test_a_delete_while_the_bridge_asks_the_client_answers_the_call_session_ended() -> None:
    """A legacy client's call to a modern upstream, while the hub asks that client for the upstream's
    input: the client's DELETE answers it as any call its session's end finds in flight (it was -32603
    'the client did not fulfil sampling/createMessage: no answer')."""
    import httpx

    from support.hub import HEADERS

    servers = {"m": modern_fixture(protocol="modern"), "other": legacy_fixture()}
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers}) as hub, httpx.AsyncClient(timeout=None) as http:
            r = await http.post(hub.url, json=SAMPLING_CLIENT, headers=HEADERS)
            headers = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
            await http.post(hub.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            messages: list[dict[str, Any]] = []
            async with http.stream("POST", hub.url, json=ASK_SAMPLE, headers=headers) as reply:
                async for line in reply.aiter_lines():
                    if line.startswith("data: {"):
                        messages.append(json.loads(line[6:]))
                        if messages[-1].get("method") == "sampling/createMessage":
                            assert (await http.delete(hub.url, headers=headers)).status_code == 200
    _asked, answer = messages
    assert answer["id"] == 9 and answer["error"]["code"] == -32000, answer
    assert answer["error"]["message"].startswith("the session ended while this request was in flight")


async def test_a_call_whose_client_refuses_the_bridged_question_counts_as_an_error() -> None:
    """A legacy client answers a modern upstream's sampling request (asked through the bridge) with an error:
    its call is answered -32603 'the client did not fulfil ...', and /metrics, the Calls view and the audit
    line count it as an error (they said ok: the upstream's input_required reply had been counted so)."""
    import httpx

    from support.hub import HEADERS

    servers = {"m": modern_fixture(protocol="modern"), "other": legacy_fixture()}
    messages: list[dict[str, Any]] = []
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers}) as hub, httpx.AsyncClient(timeout=None) as http:
            r = await http.post(hub.url, json=SAMPLING_CLIENT, headers=HEADERS)
            headers = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
            await http.post(hub.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            async with http.stream("POST", hub.url, json=ASK_SAMPLE, headers=headers) as reply:
                async for line in reply.aiter_lines():
                    if line.startswith("data: {"):
                        messages.append(json.loads(line[6:]))
                        if messages[-1].get("method") == "sampling/createMessage":
                            refusal = {"code": -1, "message": "the user declined"}
                            said = {"jsonrpc": "2.0", "id": messages[-1]["id"], "error": refusal}
                            assert (await http.post(hub.url, json=said, headers=headers)).status_code == 202
            metrics = (await http.get(f"{hub.base}/metrics")).text
    assert messages[-1]["error"]["message"] == "the client did not fulfil sampling/createMessage: the user declined"
    assert 'onemcp_upstream_requests_total{method="tools/call",outcome="error",server="m"} 1.0' in metrics
    assert 'outcome="ok"' not in metrics


async def bridged_call(ending: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A legacy client's call to a modern-only upstream that asks for input (`ask_colour`), ended while the
    hub asks the client: `cancel` (the client's notifications/cancelled, then its user answers anyway) or
    `deadline` (nobody answers; the server's `timeout` is 1 s). The call's messages, and its GET stream's."""
    import httpx

    from support.hub import HEADERS

    init = {
        "protocolVersion": "2025-11-25",
        "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "r", "version": "0"},
    }
    call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "ask_colour", "arguments": {}}}
    servers = {"m": modern_fixture(protocol="modern", timeout=1 if ending == "deadline" else 30)}
    messages: list[dict[str, Any]] = []
    heard: list[dict[str, Any]] = []
    async with running_hub({"mcpServers": servers}) as hub, httpx.AsyncClient(timeout=None) as http:
        r = await http.post(
            hub.url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}, headers=HEADERS
        )
        headers = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        await http.post(hub.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        listening, told = anyio.Event(), anyio.Event()
        async with anyio.create_task_group() as tg:

            async def listen() -> None:
                async with http.stream("GET", hub.url, headers={**headers, "accept": "text/event-stream"}) as stream:
                    listening.set()
                    async for line in stream.aiter_lines():
                        if line.startswith("data: {"):
                            heard.append(json.loads(line[6:]))
                            told.set()

            tg.start_soon(listen)
            await listening.wait()
            async with http.stream("POST", hub.url, json=call, headers=headers) as reply:
                async for line in reply.aiter_lines():
                    if line.startswith("data: {"):
                        messages.append(json.loads(line[6:]))
                        asked = messages[-1]
                        if asked.get("method") == "elicitation/create" and ending == "cancel":
                            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}
                            assert (await http.post(hub.url, json=cancel, headers=headers)).status_code == 202
                            answer = {"action": "accept", "content": {"colour": "red"}}
                            late = {"jsonrpc": "2.0", "id": asked["id"], "result": answer}
                            assert (await http.post(hub.url, json=late, headers=headers)).status_code == 202
            with anyio.move_on_after(5):  # without a withdrawal, the assertions say so
                await told.wait()
            tg.cancel_scope.cancel()
    return messages, heard


async def test_a_legacy_client_that_cancels_while_the_bridge_asks_it_is_never_answered_nor_retried() -> None:
    """Its cancel used to be ignored while it was asked: the user's late answer was sent upstream as a retry
    of the cancelled call, which ran, and its result answered the cancelled request (or, unanswered, the call
    waited for the server's `timeout`). The client is told the hub no longer waits for its answer."""
    with anyio.fail_after(DEADLINE):
        messages, heard = await bridged_call("cancel")
    (asked,) = messages  # the question, and no answer: the stream ends at the cancel
    assert asked["method"] == "elicitation/create"
    (withdrawn,) = heard
    assert withdrawn["method"] == "notifications/cancelled" and withdrawn["params"]["requestId"] == asked["id"]


async def test_a_bridged_question_unanswered_at_the_deadline_is_withdrawn_from_the_client() -> None:
    """The call times out while the hub asks the client for a modern upstream's input: the client gets the
    -32001 and is told the question is withdrawn (it was left asking its user, as for a legacy upstream's)."""
    with anyio.fail_after(DEADLINE):
        messages, heard = await bridged_call("deadline")
    asked, answer = messages
    assert answer["id"] == 9 and answer["error"]["code"] == -32001, answer
    (withdrawn,) = heard
    assert withdrawn["method"] == "notifications/cancelled" and withdrawn["params"]["requestId"] == asked["id"]
    assert withdrawn["params"]["reason"].startswith("[m] elicitation/create withdrawn")


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # logging, ping
@pytest.mark.parametrize("level", [None, "info"])
async def test_a_legacy_client_hears_a_modern_upstreams_log_lines_as_it_would_directly(
    level: types.LoggingLevel | None,
) -> None:
    """Over a handshake a dual-era server sends a client that set no level every line; the hub speaks
    2026-07-28 to it, where a request hears only the lines its `logLevel` opts in to: such a client
    heard none through the hub."""
    heard: list[tuple[str, Any]] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        heard.append((params.level, params.data))

    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"m": modern_fixture(), "l": legacy_fixture()}}) as hub:
            assert hub.app.hub.pool.connections["m"].era == "modern"
            async with Client(hub.url, mode="legacy", cache=None, logging_callback=on_log) as c:
                if level is not None:
                    await c.set_logging_level(level)
                assert text_of(await c.call_tool("m__log", {})) == "logged"
                await c.send_ping()  # anything still on its way to the client has arrived by now
    everything = [("debug", "a debug line"), ("info", "an info line")]
    assert heard == (everything if level is None else everything[1:])


async def test_an_input_request_onemcp_cannot_forward_is_named_in_short() -> None:
    """The method is the upstream's text: a 100,000-character one comes back cut, with its length."""
    session = Session(id="s" * 32, transport="streamable-http", access=decide(ANONYMOUS, LEGACY_HTTP, None, {}, {}))
    sent: list[Any] = []

    async def emit(msg: Any) -> None:
        sent.append(msg)

    with pytest.raises(InvalidRequest) as err:
        await ask_client(session, emit, {"k": {"method": "x" * 100_000, "params": {}}})
    assert "which onemcp cannot forward" in err.value.message
    assert "(100002 characters)" in err.value.message and len(err.value.message) < 400
    assert sent == []


async def test_a_parked_call_waits_ten_minutes_for_a_person_and_the_servers_timeout_for_a_client() -> None:
    """A legacy upstream's request to a 2026-07-28 client parks its call until the client's retry: an
    elicitation (a person answers it) for 10 minutes, a sampling or roots request (the client's own) for
    the server's `timeout`, what a legacy client has to answer them, at most 10 minutes."""
    import base64
    import time

    import httpx

    from downstream.test_modern import headers, modern

    caps: dict[str, Any] = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}, "sampling": {}}}
    servers = {"m": modern_fixture(protocol="legacy", timeout=20), "h": modern_fixture(protocol="legacy", timeout=3000)}
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers}) as hub, httpx.AsyncClient() as http:
            waits = {}
            for tool in ("m__ask_colour", "m__ask_sample", "h__ask_sample"):
                ask = modern("tools/call", meta=caps, name=tool, arguments={})
                reply = (await http.post(hub.url, json=ask, headers=headers("tools/call", tool))).json()["result"]
                body = reply["requestState"].removeprefix("onemcp1.").rsplit(".", 1)[0]
                waits[tool] = json.loads(base64.urlsafe_b64decode(body))["e"] - time.time()
    assert 590 < waits["m__ask_colour"] <= 600
    assert 10 < waits["m__ask_sample"] <= 20
    assert 590 < waits["h__ask_sample"] <= 600
