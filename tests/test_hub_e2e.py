"""The hub end to end, driven by the official SDK client in legacy mode, with fixture upstreams."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command, running_http_fixture
from onemcp.observability.limits import HITS
from support.hub import RunningHub, running_hub
from support.results import text_of

pytestmark = pytest.mark.anyio
DEADLINE = 30.0


def stdio(*args: str, **extra: Any) -> dict[str, Any]:
    cmd = fixture_command(*args)
    return {"command": cmd[0], "args": cmd[1:], **extra}


@asynccontextmanager
async def hub_client(
    servers: dict[str, Any], settings: dict[str, Any] | None = None, **client_options: Any
) -> AsyncIterator[tuple[RunningHub, Client]]:
    async with running_hub({"mcpServers": servers, "onemcp": settings or {}}) as hub:
        async with Client(hub.url, mode="legacy", cache=None, **client_options) as client:
            yield hub, client


async def test_two_upstreams_one_down_namespaced_and_routed() -> None:
    servers = {
        "alpha": stdio("--name", "alpha"),
        "beta": stdio("--name", "beta", "--tools", "2"),
        "broken": stdio("--crash-on-start"),
    }
    with anyio.fail_after(DEADLINE):
        async with hub_client(servers) as (hub, c):
            assert c.server_info is not None and c.server_info.name == "onemcp"
            names = [t.name for t in (await c.list_tools()).tools]
            assert "alpha__echo" in names and "beta__echo" in names and "beta__tool_1" in names
            assert not any(n.startswith("broken__") for n in names)
            # deterministic order: config order, then upstream order
            assert names.index("alpha__echo") < names.index("beta__echo")
            assert text_of(await c.call_tool("alpha__echo", {"message": "a"})) == "a"
            assert text_of(await c.call_tool("beta__echo", {"message": "b"})) == "b"
            state = hub.app.hub.pool.connections["broken"]
            assert state.state == "failed" and state.last_error
            # why it broke, from its own stderr, is in the error every report shows
            assert "its stderr ended: fixture: crashing on start as requested" in state.last_error


async def test_unknown_tool_is_invalid_params_naming_it() -> None:
    with anyio.fail_after(DEADLINE):
        async with hub_client({"a": stdio(), "b": stdio()}) as (_, c):
            with pytest.raises(MCPError) as err:
                await c.call_tool("a__nope", {})
            assert err.value.error.code == -32602
            assert "a__nope" in err.value.error.message


async def test_upstream_error_keeps_code_and_names_server() -> None:
    with anyio.fail_after(DEADLINE):
        async with hub_client({"a": stdio(), "b": stdio()}) as (_, c):
            with pytest.raises(MCPError) as err:
                await c.call_tool("b__error", {})
            assert err.value.error.code == -32000
            assert "boom" in err.value.error.message and "[b]" in err.value.error.message
            failed = await c.call_tool("b__fail", {})
            assert failed.is_error


async def test_single_upstream_is_unprefixed_in_conditional_mode() -> None:
    with anyio.fail_after(DEADLINE):
        async with hub_client({"only": stdio()}) as (_, c):
            names = {t.name for t in (await c.list_tools()).tools}
            assert "echo" in names and not any("__" in n for n in names)
            resources = {str(r.uri) for r in (await c.list_resources()).resources}
            assert "fixture://static" in resources
            read = await c.read_resource("fixture://item/42")
            assert str(read.contents[0].uri) == "fixture://item/42"


async def test_prompts_and_resources_are_namespaced_and_routed() -> None:
    with anyio.fail_after(DEADLINE):
        async with hub_client({"a": stdio(), "b": stdio()}) as (_, c):
            prompts = {p.name for p in (await c.list_prompts()).prompts}
            assert {"a__simple", "b__with_args"} <= prompts
            got = await c.get_prompt("b__with_args", {"topic": "cats"})
            assert got.messages
            resources = {str(r.uri) for r in (await c.list_resources()).resources}
            assert {"a+fixture://static", "b+fixture://static"} <= resources
            read = await c.read_resource("b+fixture://static")
            assert str(read.contents[0].uri) == "b+fixture://static"
            templates = {t.uri_template for t in (await c.list_resource_templates()).resource_templates}
            assert "a+fixture://item/{id}" in templates
            read = await c.read_resource("a+fixture://item/7")
            assert str(read.contents[0].uri) == "a+fixture://item/7"
            with pytest.raises(MCPError) as err:
                await c.read_resource("zzz+fixture://static")
            assert err.value.error.code == -32602 and "zzz+fixture://static" in err.value.error.message


async def test_unknown_fields_pass_through_untouched() -> None:
    """The SDK client drops unknown fields, so this one looks at the raw wire."""
    import httpx

    from support.hub import raw_session

    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"x": stdio("--extra-fields")}}) as hub:
            async with httpx.AsyncClient() as http:
                headers = await raw_session(http, hub.url)
                r = await http.post(hub.url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=headers)
                tools = r.json()["result"]["tools"]
                echo = next(t for t in tools if t["name"] == "echo")
                assert echo["x-vendor"] == {"k": 1}
                call = {
                    "jsonrpc": "2.0",
                    "id": "s-3",
                    "method": "tools/call",
                    "params": {
                        "name": "whoami",
                        "arguments": {"q": 1},
                        "_meta": {"vendor/trace": "t1"},
                        "futureField": [1, 2],
                    },
                }
                r = await http.post(hub.url, json=call, headers=headers)
                reply = r.json()
                assert reply["id"] == "s-3"  # the client's id, type preserved
                result = reply["result"]
                assert result["vendorExtra"] == 42 and result["_meta"]["vendor/meta"] == "v"
                seen = json.loads(result["content"][0]["text"])
                assert seen["meta"]["vendor/trace"] == "t1"


async def test_progress_tokens_are_remapped_both_ways() -> None:
    seen: list[float] = []
    done = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)
        if len(seen) == 3:
            done.set()

    with anyio.fail_after(DEADLINE):
        async with hub_client({"a": stdio(), "b": stdio()}) as (_, c):
            result = await c.call_tool("a__progress", {}, progress_callback=on_progress)
            assert not result.is_error
            await done.wait()
    assert seen == [1.0, 2.0, 3.0]


async def test_upstream_log_reaches_client_with_server_name() -> None:
    got: list[types.LoggingMessageNotificationParams] = []
    arrived = anyio.Event()

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        got.append(params)
        arrived.set()

    with anyio.fail_after(DEADLINE):
        async with hub_client({"a": stdio(), "b": stdio()}, logging_callback=on_log) as (_, c):
            await c.set_logging_level("debug")
            await c.call_tool("b__log", {})
            await arrived.wait()
    assert got[0].logger is not None and got[0].logger.startswith("b")


async def test_sampling_request_reaches_the_calling_client() -> None:
    async def sampling(
        ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="sampled!"), model="test-model"
        )

    with anyio.fail_after(DEADLINE):
        async with hub_client({"a": stdio(), "b": stdio()}, sampling_callback=sampling) as (_, c):
            result = await c.call_tool("a__sample", {})
            assert "sampled!" in text_of(result)


async def test_sampling_without_client_capability_errors_at_once() -> None:
    with anyio.fail_after(DEADLINE):
        async with hub_client({"a": stdio()}) as (_, c):
            # the fixture turns the error the hub answered it with into its own tool error
            with pytest.raises(MCPError) as err:
                await c.call_tool("sample", {})
            assert "did not declare the 'sampling' capability" in err.value.error.message


async def test_list_changed_from_upstream_reaches_client_and_list_updates() -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    with anyio.fail_after(DEADLINE):
        async with hub_client({"a": stdio(), "b": stdio()}, message_handler=on_message) as (_, c):
            await c.call_tool("a__add_tool", {"name": "fresh"})
            await changed.wait()
            names = {t.name for t in (await c.list_tools()).tools}
            assert "a__fresh" in names


async def test_a_list_right_after_a_call_that_changed_it_is_fresh() -> None:
    """A server that announces list_changed before it answers the call that changed its list (adding a
    tool, a resource) is listed again before the call's answer goes out: a client that lists at once
    sees the change, as it would directly (it saw the old list: the refresh came after the answer)."""
    with anyio.fail_after(DEADLINE):
        # shared, and the session's own connection (isolation: session), whose lists are the session's view
        slow = ("--slow-relist", "0.5")  # the list read again after list_changed comes 0.5 s late
        async with hub_client({"a": stdio(*slow), "s": stdio(*slow, isolation="session")}) as (_, c):
            for server in ("a", "s"):
                for name in ("fresh", "fresher", "freshest"):
                    await c.call_tool(f"{server}__add_tool", {"name": name})
                    assert f"{server}__{name}" in {t.name for t in (await c.list_tools()).tools}


async def test_deadline_cancels_slow_call_with_clear_error() -> None:
    with anyio.fail_after(DEADLINE):
        async with hub_client({"slow": stdio(timeout=0.5), "other": stdio()}) as (hub, c):
            with pytest.raises(MCPError) as err:
                await c.call_tool("slow__sleep", {"seconds": 30})
            assert "timed out" in err.value.error.message and "[slow]" in err.value.error.message
            # the upstream is still usable and nothing is left in flight
            assert text_of(await c.call_tool("slow__echo", {"message": "still here"})) == "still here"
            assert hub.app.hub.pool.connections["slow"].in_flight == 0
            # the deadline cancelled the upstream's work too (notifications/cancelled upstream)
            while text_of(await c.call_tool("slow__running", {})) != "0":
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline


async def test_progress_restarts_the_deadline_up_to_max_total_timeout() -> None:
    """`timeout` bounds the server's silence, not the call's length: a tool reporting progress more often
    than `timeout` runs past it (a direct client with resetTimeoutOnProgress would let it), and
    `maxTotalTimeout` still ends one that never stops."""

    async def ignore(progress: float, total: float | None, message: str | None) -> None:
        return None

    servers = {
        "chatty": stdio(timeout=1),  # 6 steps 0.25 s apart: 1.25 s in all, never 1 s without word
        "endless": stdio(timeout=1, maxTotalTimeout=1.5),  # 40 steps: 10 s in all
    }
    with anyio.fail_after(DEADLINE):
        async with hub_client(servers) as (_, c):
            args = {"steps": 6, "pause": 0.25}
            result = await c.call_tool("chatty__progress", args, progress_callback=ignore)
            assert text_of(result) == "progress done"
            with pytest.raises(MCPError) as err:
                await c.call_tool("endless__progress", {"steps": 40, "pause": 0.25}, progress_callback=ignore)
            assert "[endless]" in err.value.error.message
            assert "still running at maxTotalTimeout (1.5s)" in err.value.error.message


async def test_upstream_crash_mid_call_gives_error_and_others_keep_serving() -> None:
    with anyio.fail_after(DEADLINE):
        async with hub_client({"doomed": stdio(), "fine": stdio()}) as (hub, c):
            with pytest.raises(MCPError) as err:
                await c.call_tool("doomed__crash", {})
            assert "[doomed]" in err.value.error.message
            assert text_of(await c.call_tool("fine__echo", {"message": "ok"})) == "ok"
            with pytest.raises(MCPError) as err:
                await c.call_tool("fine__nope", {})
            # supervised: it is restarted, and its tools come back
            while hub.app.hub.pool.slots["doomed"].restarts == 0:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            # listed is not yet callable: the restarted process may still be starting (then the call is a
            # clear "server is starting"), as CI under load once saw
            while hub.app.hub.pool.slots["doomed"].conn.state != "ready" or "doomed__echo" not in {
                t.name for t in (await c.list_tools()).tools
            }:
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
            assert text_of(await c.call_tool("doomed__echo", {"message": "back"})) == "back"


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
@pytest.mark.parametrize("flags", [(), ("--http",), ("--http", "--sse-responses"), ("--sse",)])
async def test_an_upstream_that_dies_mid_call_is_the_same_error_over_every_transport(
    flags: tuple[str, ...], mode: str
) -> None:
    # the same event (the server went away with the call in flight) had been -32603 over Streamable HTTP
    # and -32000 over stdio and HTTP+SSE
    with anyio.fail_after(DEADLINE):
        async with contextlib.AsyncExitStack() as stack:
            if flags:
                url = await stack.enter_async_context(running_http_fixture(*flags))
                doomed = {"url": url, "type": "sse" if "--sse" in flags else "http"}
            else:
                doomed = stdio()
            hub = await stack.enter_async_context(running_hub({"mcpServers": {"s": doomed, "t": stdio()}}))
            c = await stack.enter_async_context(Client(hub.url, mode=mode, cache=None))
            with pytest.raises(MCPError) as err:
                await c.call_tool("s__crash", {})
            assert err.value.error.code == -32000, err.value.error
            assert err.value.error.message.startswith("[s] upstream closed: "), err.value.error


async def test_many_sessions_share_one_upstream() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"a": stdio(), "b": stdio()}}) as hub:
            results: dict[int, str] = {}

            async def one(i: int) -> None:
                async with Client(hub.url, mode="legacy", cache=None) as c:
                    r = await c.call_tool("a__sleep", {"seconds": 0.2, "tag": i})
                    assert not r.is_error
                    results[i] = text_of(await c.call_tool("a__echo", {"message": f"m{i}"}))

            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(one, i)
            assert results == {i: f"m{i}" for i in range(6)}


@pytest.mark.parametrize("flags", [("--http",), ("--http", "--sse-responses"), ("--sse",)])
async def test_http_upstreams(flags: tuple[str, ...]) -> None:
    seen: list[float] = []
    changed = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async def sampling(
        ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="hi"), model="m")

    with anyio.fail_after(DEADLINE):
        async with running_http_fixture(*flags) as url:
            servers = {"remote": {"url": url, "type": "sse" if "--sse" in flags else "http"}, "local": stdio()}
            async with hub_client(servers, message_handler=on_message, sampling_callback=sampling) as (hub, c):
                assert hub.app.hub.pool.connections["remote"].state == "ready"
                assert text_of(await c.call_tool("remote__echo", {"message": "over http"})) == "over http"
                result = await c.call_tool("remote__progress", {}, progress_callback=on_progress)
                assert not result.is_error
                # a server->client request from an HTTP upstream reaches the client and back
                assert '"hi"' in text_of(await c.call_tool("remote__sample", {}))
                # list_changed from the upstream (GET stream or SSE stream) becomes the hub's own
                await c.call_tool("remote__add_tool", {"name": "added"})
                await changed.wait()
                assert "remote__added" in {t.name for t in (await c.list_tools()).tools}


async def test_upstream_stderr_goes_to_the_log_under_its_name(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="onemcp.upstream.noisy")
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"noisy": stdio("--stderr-noise")}}) as hub:
            assert hub.app.hub.pool.connections["noisy"].state == "ready"
            while not any(r.name == "onemcp.upstream.noisy" for r in caplog.records):
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
    lines = [r.getMessage() for r in caplog.records if r.name == "onemcp.upstream.noisy"]
    assert all(line.startswith("stderr: ") for line in lines)


async def test_http_upstream_session_expiry_reinitializes(caplog: pytest.LogCaptureFixture) -> None:
    # The upstream forgets a session after 6 requests. After each new session the hub reads the
    # server's three lists again (a new session may be a new server), so a session of 3 requests could
    # be spent on those re-reads alone, again and again, with the call never served (it was, now and
    # then): 6 leaves the call room, and 12 calls still need several new sessions.
    # Nor are those re-reads paced as a server that keeps changing its lists is: nothing changed, and
    # paused they held the calls (CI timed out under load).
    caplog.set_level("INFO", logger="onemcp.upstream")
    paced = HITS.counts["list_refreshes"]
    with anyio.fail_after(DEADLINE):
        async with running_http_fixture("--http", "--expire-sessions-after", "6") as url:
            async with hub_client({"remote": {"url": url}}) as (_, c):
                for i in range(12):
                    assert text_of(await c.call_tool("echo", {"message": f"n{i}"})) == f"n{i}"
    assert sum("session expired, re-initializing" in r.getMessage() for r in caplog.records) >= 2
    assert HITS.counts["list_refreshes"] == paced


async def test_legacy_sse_downstream() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"a": stdio(), "b": stdio()}}) as hub:
            async with Client(sse_client(f"{hub.base}/sse"), mode="legacy", cache=None) as c:
                names = {t.name for t in (await c.list_tools()).tools}
                assert "a__echo" in names
                assert text_of(await c.call_tool("b__echo", {"message": "old client"})) == "old client"


async def test_sdk_client_in_auto_mode_discovers_the_modern_era() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"a": stdio()}}) as hub:
            async with Client(hub.url, cache=None) as c:  # mode="auto": probes server/discover first
                assert c.protocol_version == "2026-07-28"
                assert text_of(await c.call_tool("echo", {"message": "auto"})) == "auto"


async def test_paginated_upstream_lists_are_collected_whole() -> None:
    with anyio.fail_after(DEADLINE):
        async with hub_client({"p": stdio("--page-size", "2", "--tools", "7"), "q": stdio()}) as (_, c):
            listed = await c.list_tools()
            names = [t.name for t in listed.tools]
            assert listed.next_cursor is None
            assert {f"p__tool_{i}" for i in range(7)} <= set(names)
            assert len(names) == len(set(names))


async def test_completion_is_routed_by_prompt_name() -> None:
    with anyio.fail_after(DEADLINE):
        async with hub_client({"a": stdio(), "b": stdio()}) as (_, c):
            ref = types.PromptReference(type="ref/prompt", name="b__with_args")
            result = await c.complete(ref, {"name": "topic", "value": "c"})
            assert result.completion is not None
            with pytest.raises(MCPError) as err:
                await c.complete(types.PromptReference(type="ref/prompt", name="zz__x"), {"name": "t", "value": ""})
            assert err.value.error.code == -32602


async def test_prefix_mode_never_reports_collisions() -> None:
    with anyio.fail_after(DEADLINE):
        async with hub_client({"one": stdio(), "two": stdio()}, {"prefixMode": "never"}) as (hub, c):
            names = [t.name for t in (await c.list_tools()).tools]
            assert names.count("echo") == 1
            collisions = hub.app.hub.catalog.collisions["tools"]
            assert any("'echo'" in line and "two" in line for line in collisions)


async def test_an_upstream_that_stops_answering_is_recycled() -> None:
    servers = {"hung": stdio(timeout=1, pingInterval=0.2), "fine": stdio()}
    with anyio.fail_after(DEADLINE):
        async with hub_client(servers) as (hub, c):
            with pytest.raises(MCPError) as err:
                await c.call_tool("hung__freeze", {})  # the whole process hangs
            assert "timed out" in err.value.error.message
            slots = hub.app.hub.pool.slots
            while slots["hung"].restarts == 0 or hub.app.hub.pool.connections["hung"].state != "ready":
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
            # (a hung process never exits by itself: only the keep-alive can have recycled it)
            assert text_of(await c.call_tool("hung__echo", {"message": "alive"})) == "alive"


async def test_the_first_list_waits_for_upstreams_still_starting() -> None:
    """A client connecting the moment the hub listens gets whole lists, not empty ones (issue 12, item 5)."""
    import httpx

    from fixtures.launch import fixture_command
    from support.hub import raw_session

    fx = fixture_command()
    dead = fixture_command("--crash-on-start")
    hung = fixture_command("--hang-on-start")
    servers = {
        "a": {"command": fx[0], "args": fx[1:]},
        "b": {"command": fx[0], "args": fx[1:]},
        "dead": {"command": dead[0], "args": dead[1:]},  # tried and failed: never waited for
    }
    with anyio.fail_after(30):
        async with running_hub({"mcpServers": servers}, wait=False) as hub, httpx.AsyncClient() as http:
            headers = await raw_session(http, hub.url)
            listed = await http.post(hub.url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=headers)
            names = {t["name"] for t in listed.json()["result"]["tools"]}
            assert {"a__echo", "b__echo"} <= names
    servers = {"a": {"command": fx[0], "args": fx[1:]}, "hung": {"command": hung[0], "args": hung[1:]}}
    config = {"mcpServers": servers, "onemcp": {"firstListWait": 0.5}}
    with anyio.fail_after(30):
        async with running_hub(config, wait=False) as hub, httpx.AsyncClient() as http:
            headers = await raw_session(http, hub.url)
            listed = await http.post(hub.url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=headers)
            assert "result" in listed.json()
            assert hub.app.hub.pool.connections["hung"].state == "starting"  # the wait is bounded
