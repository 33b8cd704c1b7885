"""Server->client requests reach the session whose call caused them, under every sharing rule."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.session import SamplingFnT
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

from fixtures.launch import fixture_command
from support.hub import HEADERS, RunningHub, running_hub
from support.results import Heard, text_of

pytestmark = pytest.mark.anyio
DEADLINE = 30.0


def stdio(**extra: Any) -> dict[str, Any]:
    cmd = fixture_command()
    return {"command": cmd[0], "args": cmd[1:], **extra}


def completions() -> Heard:
    """What a client hears of `notifications/elicitation/complete`: the elicitation ids."""
    return Heard(types.ElicitCompleteNotification, lambda n: n.params.elicitation_id)


class Barrier:
    """Lets n sampling callbacks answer only once all n are waiting (so they truly overlap)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.arrived = 0
        self.all_here = anyio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived == self.n:
            self.all_here.set()
        await self.all_here.wait()


def sampler(label: str, barrier: Barrier, seen: list[str]) -> SamplingFnT:
    async def sampling(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        seen.append(label)
        await barrier.wait()
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=f"from {label}"), model=label
        )

    return sampling


async def two_sessions_sampling(hub: RunningHub, tools: tuple[str, str]) -> tuple[list[Any], list[str], list[str]]:
    barrier = Barrier(2)
    seen_a: list[str] = []
    seen_b: list[str] = []
    results: list[Any] = [None, None]

    async def one(index: int, tool: str, label: str, seen: list[str]) -> None:
        async with Client(hub.url, mode="legacy", cache=None, sampling_callback=sampler(label, barrier, seen)) as c:
            try:
                results[index] = text_of(await c.call_tool(tool, {}))
            except MCPError as exc:
                results[index] = exc
                barrier.all_here.set()  # let the other one finish

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 0, tools[0], "A", seen_a)
        tg.start_soon(one, 1, tools[1], "B", seen_b)
    return results, seen_a, seen_b


async def test_two_sessions_two_upstreams_each_get_their_own_requests() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"one": stdio(), "two": stdio()}}) as hub:
            results, seen_a, seen_b = await two_sessions_sampling(hub, ("one__sample", "two__sample"))
    assert seen_a == ["A"] and seen_b == ["B"]
    assert '"from A"' in results[0] and '"from B"' in results[1]


async def test_shared_upstream_with_concurrent_sessions_is_refused_not_misrouted() -> None:
    """Two calls in flight on one shared stdio upstream: the wire cannot say whose request it is."""
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"one": stdio(), "two": stdio()}}) as hub:
            # hold one session's call open on the upstream so that the other is not alone
            held: list[str] = []
            holder_sampling = sampler("A", Barrier(1), held)  # it could take sampling requests too
            async with Client(hub.url, mode="legacy", cache=None, sampling_callback=holder_sampling) as holder:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(holder.call_tool, "one__sleep", {"seconds": 2})
                    conn = hub.app.hub.pool.connections["one"]
                    while conn.in_flight == 0:
                        await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                    seen: list[str] = []
                    async with Client(
                        hub.url, mode="legacy", cache=None, sampling_callback=sampler("B", Barrier(1), seen)
                    ) as c:
                        with pytest.raises(MCPError) as err:
                            await c.call_tool("one__sample", {})
                        assert seen == [] and held == []  # nobody got a request that might not be theirs
                        assert "cannot tell which client" in err.value.error.message
                        assert "try again" in err.value.error.message
                        # isolation "auto": the server asked a client once, so B now gets a connection of its own
                        assert '"from B"' in text_of(await c.call_tool("one__sample", {}))
                        assert seen == ["B"] and held == []
                        assert hub.app.hub.isolated.count("one") == 1
                    tg.cancel_scope.cancel()


async def test_a_2026_caller_refused_as_ambiguous_is_told_what_helps_not_to_try_again() -> None:
    """Under `isolation: auto` a 2026-07-28 caller, which has no session, stays on the shared connection
    after it split: "try again" failed again for as long as another call was under way there (two
    2026-07-28 clients sampling at once never got through). It is told what gives it a connection."""
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"one": stdio(), "two": stdio()}}) as hub:
            async with Client(hub.url, mode="legacy", cache=None, sampling_callback=sampler("A", Barrier(1), [])) as a:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(a.call_tool, "one__sleep", {"seconds": 5})
                    while hub.app.hub.pool.connections["one"].in_flight == 0:
                        await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                    seen: list[str] = []
                    sampling = sampler("B", Barrier(1), seen)
                    async with Client(hub.url, mode="2026-07-28", cache=None, sampling_callback=sampling) as b:
                        for _ in range(2):  # and again: still the shared connection
                            with pytest.raises(MCPError) as err:
                                await b.call_tool("one__sample", {})
                            message = err.value.error.message
                            assert "cannot tell which client" in message and "try again" not in message, message
                            assert '"isolation": "session"' in message
                        assert seen == []
                    tg.cancel_scope.cancel()


async def test_isolation_shared_never_splits_and_says_how_to() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"one": stdio(isolation="shared"), "two": stdio()}}) as hub:
            async with Client(hub.url, mode="legacy", cache=None, sampling_callback=sampler("A", Barrier(1), [])) as a:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(a.call_tool, "one__sleep", {"seconds": 2})
                    while hub.app.hub.pool.connections["one"].in_flight == 0:
                        await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                    async with Client(
                        hub.url, mode="legacy", cache=None, sampling_callback=sampler("B", Barrier(1), [])
                    ) as b:
                        for _ in range(2):  # and again: still shared
                            with pytest.raises(MCPError) as err:
                                await b.call_tool("one__sample", {})
                            assert '"isolation": "auto" or "session"' in err.value.error.message
                    assert hub.app.hub.isolated.count("one") == 0
                    tg.cancel_scope.cancel()


async def test_isolation_session_gives_each_session_its_own_connection() -> None:
    with anyio.fail_after(DEADLINE):
        servers = {"iso": stdio(isolation="session"), "other": stdio()}
        async with running_hub({"mcpServers": servers}) as hub:
            results, seen_a, seen_b = await two_sessions_sampling(hub, ("iso__sample", "iso__sample"))
            assert seen_a == ["A"] and seen_b == ["B"]
            assert '"from A"' in results[0] and '"from B"' in results[1]
            # the per-session connections closed with their sessions
            while hub.app.hub.isolated.count("iso"):
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            assert hub.app.hub.pool.connections["iso"].state == "ready"  # the shared one feeds the catalog


async def test_a_sessions_own_connection_declares_what_that_client_declared() -> None:
    """The server sees the client's own capabilities, as it would directly: `sampling.tools` (it may
    then offer tools in sampling), and nothing it lacks (server-everything registers get-roots-list
    only for a client with roots, and answered a client without, through the hub, "no roots yet").
    The shared connection, which serves every client, declares all the hub forwards."""
    apps = {"io.modelcontextprotocol/ui": {"mimeTypes": ["text/html;profile=mcp-app"]}}
    declared: dict[str, Any] = {"sampling": {"tools": {}, "context": {}}, "elicitation": {"url": {}}}
    forwarded = {**declared, "extensions": apps}  # MCP Apps: a server answers an app's host with its UI
    declared["experimental"] = {"x": {}}  # not one the hub forwards
    declared["extensions"] = {**apps, "vendor/other": {}}
    everything = {"roots": {"listChanged": True}, "sampling": {}, "elicitation": {"form": {}, "url": {}}}
    servers = {"iso": stdio(isolation="session"), "shared": stdio()}
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers}) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            cases: list[tuple[dict[str, Any], dict[str, Any]]] = [(declared, forwarded), ({}, {})]
            for caps, seen in cases:
                init = {"protocolVersion": "2025-11-25", "capabilities": caps, "clientInfo": {"name": "c"}}
                request = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}
                headers = {
                    **HEADERS,
                    "mcp-session-id": (await http.post(hub.url, json=request, headers=HEADERS)).headers[
                        "mcp-session-id"
                    ],
                }
                await http.post(
                    hub.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
                )
                for server, expected in (("iso", seen), ("shared", everything)):
                    params = {"name": f"{server}__whoami", "arguments": {}}
                    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}
                    reply = (await http.post(hub.url, json=call, headers=headers)).json()
                    assert reply["result"]["structuredContent"]["capabilities"] == expected, server


async def test_isolation_session_gives_modern_calls_their_principals_connection_not_one_each() -> None:
    """A 2026-07-28 request has no session: its calls share one connection of its principal's, which
    closes when idle, rather than leaving a new upstream process behind for every request."""
    with anyio.fail_after(DEADLINE):
        servers = {"iso": stdio(isolation="session"), "other": stdio()}
        async with running_hub({"mcpServers": servers}) as hub:
            async with Client(hub.url, mode="2026-07-28", cache=None) as c:
                for n in range(4):
                    assert text_of(await c.call_tool("iso__echo", {"message": str(n)})) == str(n)
            assert hub.app.hub.isolated.count("iso") == 1
            hub.app.hub.isolated.close_idle("user:", 0)  # what the hub's sweep does after sessionIdleTimeout
            while hub.app.hub.isolated.count("iso"):
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline


@pytest.mark.parametrize("isolation", ["auto", "session"])
async def test_calls_on_a_sessions_own_connection_count_as_in_flight(isolation: str) -> None:
    """/health and /metrics, read while the upstream waits on the client, see the call: on the shared
    connection (auto, before its split) and on the session's own (session, and auto after)."""
    seen: list[tuple[int, float]] = []

    async def sampling(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        async with httpx.AsyncClient() as http:  # the call that asked is in flight until this answers
            health = (await http.get(f"{hub.base}/health")).json()["upstreams"]["one"]
            metrics = text_string_to_metric_families((await http.get(f"{hub.base}/metrics")).text)
        gauge = next(f for f in metrics if f.name == "onemcp_upstream_in_flight")
        seen.append((health["inFlight"], next(s.value for s in gauge.samples if s.labels["server"] == "one")))
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="hi"), model="m")

    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"one": stdio(isolation=isolation), "two": stdio()}}) as hub:
            async with Client(hub.url, mode="legacy", cache=None, sampling_callback=sampling) as c:
                for _ in range(2):
                    await c.call_tool("one__sample", {})
                assert hub.app.hub.isolated.count("one") == 1  # the second call went over the session's own
    assert seen == [(1, 1.0), (1, 1.0)]


async def test_roots_and_elicitation_are_forwarded() -> None:
    async def roots(context: ClientRequestContext) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///work", name="work")])

    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"a": stdio(), "b": stdio()}}) as hub:
            async with Client(hub.url, mode="legacy", cache=None, list_roots_callback=roots) as c:
                assert "file:///work" in text_of(await c.call_tool("a__roots", {}))


async def test_form_and_url_elicitation_with_completion() -> None:
    asked: list[types.ElicitRequestParams] = []
    completed = completions()

    async def elicit(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params)
        if isinstance(params, types.ElicitRequestURLParams):
            return types.ElicitResult(action="accept")
        return types.ElicitResult(action="accept", content={"colour": "teal"})

    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"a": stdio(), "b": stdio()}}) as hub:
            async with Client(
                hub.url, mode="legacy", cache=None, elicitation_callback=elicit, message_handler=completed
            ) as c:
                assert "teal" in text_of(await c.call_tool("a__elicit", {"mode": "form"}))
                assert "accept" in text_of(await c.call_tool("b__elicit", {"mode": "url"}))
                await completed.came.wait()
    assert isinstance(asked[1], types.ElicitRequestURLParams)
    assert asked[1].elicitation_id == "b:e1" == completed.values[0]  # namespaced: ids of two upstreams cannot collide


def answered_never() -> tuple[SamplingFnT, anyio.Event, list[str]]:
    """A sampling callback that never answers; the event set once it is asked, and "cancelled" noted once
    the request is withdrawn from it."""
    started = anyio.Event()
    outcome: list[str] = []

    async def sampling(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            outcome.append("cancelled")
            raise
        raise AssertionError("unreachable")

    return sampling, started, outcome


async def test_upstream_withdrawing_its_request_cancels_it_at_the_client() -> None:
    sampling, started, outcome = answered_never()

    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"a": stdio(), "b": stdio()}}) as hub:
            async with Client(hub.url, mode="legacy", cache=None, sampling_callback=sampling) as c:
                assert text_of(await c.call_tool("a__sample_withdrawn", {"after": 0.3})) == "withdrawn"
                assert started.is_set()
                while not outcome:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
    assert outcome == ["cancelled"]


async def test_an_upstream_that_dies_while_its_request_waits_on_the_client_withdraws_it_there() -> None:
    # the call's error came, but the client was never told that the sampling request it was still
    # answering (a user's dialog, a model's turn) was no one's any more
    sampling, started, outcome = answered_never()

    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"a": stdio(), "b": stdio()}}) as hub:
            async with Client(hub.url, mode="legacy", cache=None, sampling_callback=sampling) as c:
                async with anyio.create_task_group() as tg:

                    async def call() -> None:
                        with pytest.raises(MCPError) as err:
                            await c.call_tool("a__sample", {})
                        assert err.value.error.message.startswith("[a] upstream closed: ")

                    tg.start_soon(call)
                    await started.wait()
                    pid = getattr(hub.app.hub.pool.connections["a"].transport, "pid", None)
                    assert isinstance(pid, int)
                    os.kill(pid, signal.SIGKILL)
                while not outcome:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
    assert outcome == ["cancelled"]


@pytest.mark.parametrize("isolation", ["auto", "session"])
async def test_a_sessions_own_connection_is_told_its_log_level(isolation: str) -> None:
    """The level was set before the session had a connection of its own: that one is told it too."""
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"one": stdio(isolation=isolation), "two": stdio()}}) as hub:
            async with Client(hub.url, mode="legacy", cache=None, sampling_callback=sampler("A", Barrier(1), [])) as c:
                await c.set_logging_level("error")
                assert '"from A"' in text_of(await c.call_tool("one__sample", {}))  # auto: its own from now on
                seen = json.loads(text_of(await c.call_tool("one__whoami", {})))
                assert hub.app.hub.isolated.count("one") == 1
                assert seen["logLevel"] == "error"


async def test_a_url_elicitation_required_error_is_completed_to_the_client_that_got_it() -> None:
    """-32042 names URL elicitations the user must finish: their ids are namespaced like those of
    `elicitation/create`, and `notifications/elicitation/complete` for them reaches this client."""
    completed = completions()
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"a": stdio(), "b": stdio()}}) as hub:
            async with Client(hub.url, mode="legacy", cache=None, message_handler=completed) as c:
                with pytest.raises(MCPError) as err:
                    await c.call_tool("a__elicit", {"mode": "url_required"})
                assert err.value.error.code == -32042
                assert isinstance(err.value.error.data, dict)
                assert [e["elicitationId"] for e in err.value.error.data["elicitations"]] == ["a:e7"]
                await completed.came.wait()
    assert completed.values == ["a:e7"]


async def test_a_url_elicitation_required_error_reaches_a_2026_client_as_input_required() -> None:
    """-32042 is a 2025-11-25 code that 2026-07-28 forbids: that client is asked for the URL visit
    in its era's way (input_required), and its retry runs the call again; without the URL
    capability it gets -32021, which names it."""
    visits: list[str] = []

    async def visit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestURLParams)
        visits.append(params.url)
        return types.ElicitResult(action="accept")

    async def decline(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="decline")

    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"a": stdio(), "b": stdio()}}) as hub:
            async with Client(hub.url, mode="2026-07-28", cache=None) as c:  # no elicitation capability
                with pytest.raises(MCPError) as err:
                    await c.call_tool("b__elicit", {"mode": "url_once"})  # b's one ask, spent here
                assert err.value.error.code == -32021, err.value.error
            async with Client(hub.url, mode="2026-07-28", cache=None, elicitation_callback=visit) as c:
                assert text_of(await c.call_tool("a__elicit", {"mode": "url_once"})) == "authorized"
            async with Client(hub.url, mode="2026-07-28", cache=None, elicitation_callback=decline) as c:
                with pytest.raises(MCPError) as err:
                    await c.call_tool("a__elicit", {"mode": "url_required"})
                assert err.value.error.code == -32602 and "answered 'decline'" in err.value.error.message
    assert visits == ["https://example.com/authorize"]


@pytest.mark.parametrize("bad", [{"result": "not an object"}, {"error": "not an object"}, {"result": {}, "error": {}}])
async def test_a_clients_malformed_answer_ends_the_upstreams_request(bad: dict[str, Any]) -> None:
    """The upstream could not read it either: it gets an error naming what was wrong at once, and
    the call ends with the upstream's reaction, not a timeout a minute later."""
    from support.hub import HEADERS, INIT

    init = {**INIT, "params": {**INIT["params"], "capabilities": {"sampling": {}}}}
    with anyio.fail_after(DEADLINE):  # below the server's 60 s deadline: the old hang fails here
        async with running_hub({"mcpServers": {"fx": stdio()}}) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            r = await http.post(hub.url, json=init, headers=HEADERS)
            h = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
            call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "sample", "arguments": {}}}
            final: list[dict[str, Any]] = []
            async with http.stream("POST", hub.url, json=call, headers=h) as stream:
                async for line in stream.aiter_lines():
                    if not line.startswith("data:") or not line[5:].strip():
                        continue  # (the priming event has no data)
                    event = json.loads(line[5:])
                    if event.get("method") == "sampling/createMessage":
                        answer = {"jsonrpc": "2.0", "id": event["id"], **bad}
                        assert (await http.post(hub.url, json=answer, headers=h)).status_code == 202
                    elif event.get("id") == 5:
                        final.append(event)
                        break
    said = json.dumps(final)
    assert final and "the client answered with" in said and "timed out" not in said, said


async def test_an_upstreams_withdrawn_request_is_withdrawn_where_it_was_asked() -> None:
    """The sampling request went out on the call's POST stream: its notifications/cancelled goes
    there too (a client with no GET stream open used to never hear of it)."""
    from support.hub import HEADERS, INIT

    init = {**INIT, "params": {**INIT["params"], "capabilities": {"sampling": {}}}}
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"fx": stdio()}}) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            r = await http.post(hub.url, json=init, headers=HEADERS)
            h = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
            params = {"name": "sample_withdrawn", "arguments": {"after": 0.2}}
            call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params}
            seen: list[dict[str, Any]] = []
            async with http.stream("POST", hub.url, json=call, headers=h) as stream:  # no GET stream at all
                async for line in stream.aiter_lines():
                    if line.startswith("data:") and line[5:].strip():
                        seen.append(json.loads(line[5:]))
                        if seen[-1].get("id") == 5:
                            break
    asked, withdrawn, final = seen
    assert asked["method"] == "sampling/createMessage", seen
    assert withdrawn["method"] == "notifications/cancelled" and withdrawn["params"]["requestId"] == asked["id"]
    assert final["result"]["content"][0]["text"] == "withdrawn"


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # legacy-era progress
@pytest.mark.parametrize(("upstream", "entry"), [("stdio", "mcp"), ("http", "mcp"), ("sse", "sse")])
async def test_a_clients_progress_on_sampling_reaches_the_server_under_its_token(upstream: str, entry: str) -> None:
    """Client -> server progress (protocol-notes 6.2), with the SDK's own client reporting it from its
    sampling callback: over every upstream transport, through /mcp and /sse (a 2026-07-28 client is asked
    through input_required instead, and has no such request to report on)."""
    from fixtures.launch import running_http_fixture

    async def sampling(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        token = (context.meta or {}).get("progress_token")
        assert token is not None and token != "up-7"  # the hub's, not the server's
        await context.session.send_progress_notification(token, 0.5, 1.0, "thinking")
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="hi"), model="m")

    with anyio.fail_after(DEADLINE):
        async with contextlib.AsyncExitStack() as stack:
            if upstream == "stdio":
                server = stdio()
            else:
                url = await stack.enter_async_context(running_http_fixture(*(["--sse"] if upstream == "sse" else [])))
                server = {"url": url, "type": upstream}
            hub = await stack.enter_async_context(running_hub({"mcpServers": {"s": server}}))
            target = sse_client(f"{hub.base}/sse") if entry == "sse" else hub.url
            client = await stack.enter_async_context(Client(target, mode="legacy", sampling_callback=sampling))
            result = await client.call_tool("sample", {"token": "up-7"})
            heard = (result.structured_content or {}).get("progressHeard")
            assert heard == {"progressToken": "up-7", "progress": 0.5, "total": 1.0, "message": "thinking"}
