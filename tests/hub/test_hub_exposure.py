"""Tool exposure, in-process: full lists or search meta-tools, chosen per hub, preset and connection, both eras.

Covers what a client sees (the list, the instructions), that search results, schemas and calls obey
the requester's view exactly as lists and routing do, that the index follows the catalog (a tool
added upstream, a server removed by a reload), and bad input to the meta-tools and the selector.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlencode

import anyio
import pytest

from onemcp.config.model import HubConfig
from onemcp.search import meta
from support.inprocess import InProcessHub, LegacySession, fixture, inprocess_hub, modern_request, tool_call

pytestmark = pytest.mark.anyio
DEADLINE = 20.0
JSON = {"accept": "application/json", "content-type": "application/json"}  # a POST answered as one JSON body
INITIALIZE = {  # a legacy client's handshake
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}},
}
SERVERS = {
    "alpha": fixture("--name", "alpha", tags=["red"]),
    "beta": fixture("--name", "beta", "--tools", "3", tags=["blue"]),
}
NO_CACHE: dict[str, Any] = {"searchCache": False}
META = sorted(meta.NAMES)


def text(reply: dict[str, Any]) -> str:
    assert "result" in reply, reply
    return str(reply["result"]["content"][0]["text"])


def search(query: str, **more: Any) -> dict[str, Any]:
    return tool_call(meta.SEARCH, query=query, **more)


def hit_names(found: str) -> list[str]:
    """The tool names of a search result, best first."""
    return [line.split("(", 1)[0] for line in found.splitlines() if "(" in line and not line.startswith("(")]


async def modern_call(h: InProcessHub, query: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response, (reply,) = await h.client.modern("tools/call", query=query, **params)
    return response.status, reply


async def test_search_mode_lists_three_meta_tools_and_finds_calls_and_describes_tools() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, NO_CACHE) as h:
            session = await h.session(query="exposure=search")
            assert sorted(await session.tools()) == META
            found = hit_names(text(await session.ask("tools/call", search("echo a message back", limit=3))))
            assert found and found[0] in ("alpha__echo", "beta__echo"), found
            schema = text(await session.ask("tools/call", tool_call(meta.SCHEMA, name="alpha__echo")))
            assert '"inputSchema"' in schema and '"message"' in schema
            through = await session.ask(
                "tools/call", tool_call(meta.CALL, name="alpha__echo", arguments={"message": "via call_tool"})
            )
            assert text(through) == "via call_tool"
            direct = await session.ask("tools/call", tool_call("beta__echo", message="by name"))
            assert text(direct) == "by name"  # a tool found by search is callable by its hub name too
            init = await h.session(query="exposure=search")
            assert init  # and full mode stays the default for a small hub:
            assert "alpha__echo" in await (await h.session()).tools()


async def test_search_mode_serves_2026_requests_too() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, NO_CACHE) as h:
            _, (listed,) = await h.client.modern("tools/list", query="exposure=search")
            assert sorted(t["name"] for t in listed["result"]["tools"]) == META
            status, reply = await modern_call(h, "exposure=search", search("generated tool 2", limit=5))
            assert status == 200 and "beta__tool_2" in hit_names(text(reply))
            status, reply = await modern_call(
                h, "exposure=search", tool_call(meta.CALL, name="alpha__echo", arguments={"message": "m"})
            )
            assert status == 200 and text(reply) == "m"
            _, (everything,) = await h.client.modern("tools/list")
            assert "alpha__echo" in {t["name"] for t in everything["result"]["tools"]}


async def test_an_unknown_exposure_is_refused_in_both_eras() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, NO_CACHE) as h:
            body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
            response, (reply,) = await h.client.request("POST", query="exposure=lazy", headers=JSON, body=body)
            assert response.status == 400 and "exposure" in reply["error"]["message"], reply
            response, (reply,) = await h.client.modern("tools/list", query="exposure=")
            assert response.status == 400 and "full, search, auto" in reply["error"]["message"], reply
            sse = {"accept": "text/event-stream"}  # the legacy /sse stream decides it at its GET
            response, (reply,) = await h.client.request("GET", path="/sse", query="exposure=lazy", headers=sse)
            assert response.status == 400 and "full, search, auto" in reply["error"]["message"], reply


async def test_auto_searches_once_the_full_list_is_over_the_budget() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, {**NO_CACHE, "searchBudget": 100}) as h:
            assert sorted(await (await h.session()).tools()) == META
            assert "alpha__echo" in await (await h.session(query="exposure=full")).tools()
            small = urlencode({"filter": "red", "exposure": "auto"})
            assert sorted(await (await h.session(query=small)).tools()) == META  # alpha alone is > 100 tokens
        async with inprocess_hub(SERVERS, {**NO_CACHE, "searchBudget": 1_000_000}) as h:
            assert "alpha__echo" in await (await h.session()).tools()


async def test_auto_counts_each_list_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deciding `auto` counts a view's list (~10 ms for 2.7 MB): on a worker thread, once per list, for a
    session's start and for a change many views see alike."""
    from onemcp.hub import exposure as module

    real, counted_on = module.count_tokens, []

    def recorded(data: bytes | str) -> int:
        counted_on.append(threading.current_thread())
        return real(data)

    monkeypatch.setattr(module, "count_tokens", recorded)
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, {**NO_CACHE, "searchBudget": 100}) as h:
            sessions = [await h.session(query=urlencode({"filter": tag})) for tag in ("red", "blue", "red")]
            for session in sessions:
                assert sorted(await session.tools()) == META
            before = len(counted_on)
            assert "result" in await sessions[0].ask("tools/call", tool_call("alpha__add_tool", name="newcomer"))
            with anyio.fail_after(5):
                while len(counted_on) == before:
                    await anyio.sleep(0.01)  # allowed-sleep: the change's announcement counts the new list
            assert len(counted_on) >= 3 and threading.main_thread() not in counted_on, counted_on


async def test_the_hub_default_and_a_preset_choose_and_the_connection_overrides() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, {**NO_CACHE, "exposure": "search"}) as h:
            assert sorted(await (await h.session()).tools()) == META
            h.app.hub.set_presets({"plain": "red", "lean": "blue"}, {"plain": "full"})
            assert await (await h.session(query="preset=plain")).tools() == [
                n for n in await (await h.session(query="exposure=full&preset=plain")).tools()
            ]
            assert "alpha__echo" in await (await h.session(query="preset=plain")).tools()
            assert sorted(await (await h.session(query="preset=lean")).tools()) == META  # no exposure: the hub's
            assert sorted(await (await h.session(query="preset=plain&exposure=search")).tools()) == META


async def test_search_schema_and_call_obey_the_view() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, NO_CACHE) as h:
            query = urlencode({"tags": "red", "exposure": "search"})
            session = await h.session(query=query)
            found = hit_names(text(await session.ask("tools/call", search("generated tool echoes its arguments"))))
            assert found and all(name.startswith("alpha__") for name in found), found
            refused = await session.ask("tools/call", tool_call(meta.SCHEMA, name="beta__tool_1"))
            assert refused["result"]["isError"] is True and "not found" in text(refused)
            outside = tool_call(meta.CALL, name="beta__echo", arguments={"message": "x"})
            called = await session.ask("tools/call", outside)  # outside the view: as get_tool_schema, a tool error
            assert called["result"]["isError"] is True and "Tool not found: beta__echo" in text(called), called
            direct = await session.ask("tools/call", tool_call("beta__echo", message="x"))
            assert direct["error"]["code"] == -32602, direct  # called directly: no such tool, a protocol error
            by_server = await session.ask("tools/call", search("echo", server="beta"))
            assert by_server["result"]["isError"] is True and "no server 'beta' among" in text(by_server)
            status, reply = await modern_call(h, query, tool_call(meta.CALL, name="beta__echo", arguments={}))
            assert status == 200 and reply["result"]["isError"] is True, reply


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
async def test_one_name_on_two_servers_searches_as_the_requester_lists_it(era: str) -> None:
    """prefixMode never: `echo` is alpha's for everyone who reaches alpha and beta's for a view of beta
    alone; search, schema, totals and `server=` answer from the requester's own list, never the other's."""
    servers = {
        "alpha": fixture("--name", "alpha", "--echo-description", "ALPHA SECRET echo.", tags=["red"]),
        "beta": fixture("--name", "beta", "--echo-description", "BETA echo.", "--tools", "2", tags=["blue"]),
    }
    query = urlencode({"tags": "blue", "exposure": "search"})

    async def ask(h: InProcessHub, params: dict[str, Any]) -> str:
        if era == "legacy":
            return text(await (await h.session(query=query)).ask("tools/call", params))
        return text((await modern_call(h, query, params))[1])

    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(servers, {**NO_CACHE, "prefixMode": "never"}) as h:
            listed = await (await h.session(query="tags=blue")).tools()
            found = await ask(h, search("echo a message back", limit=20))
            assert "echo(message: string) - BETA echo." in found and "ALPHA" not in found, found
            assert f"of {len(listed)} tools" in found
            schema = await ask(h, tool_call(meta.SCHEMA, name="echo"))
            assert "BETA echo." in schema and "ALPHA" not in schema
            assert "BETA echo." in await ask(h, search("echo", server="beta", limit=20))
            everyone = text(await (await h.session(query="exposure=search")).ask("tools/call", search("echo back")))
            assert "ALPHA SECRET echo." in everyone and "BETA" not in everyone  # one echo per list: alpha's
            from onemcp.downstream.health import health

            upstreams = health(h.app.hub)["upstreams"]  # beta's tools cost what its own list carries: more
            assert upstreams["beta"]["toolTokens"] > upstreams["alpha"]["toolTokens"]  # tools than alpha's


async def test_meta_tool_names_stay_the_meta_tools_on_a_hub_of_one_unprefixed_server() -> None:
    """One server, names unprefixed: an unknown name is not found (not the server's to answer), an
    upstream tool named like a meta-tool is neither found nor described in search mode (calling it
    reaches the meta-tool), and in full mode the meta-tools answer by their names."""
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"solo": fixture("--name", "solo")}, NO_CACHE) as h:
            full = await h.session()
            schema = text(await full.ask("tools/call", tool_call(meta.SCHEMA, name="echo")))
            assert '"inputSchema"' in schema  # not forwarded to the upstream as a tool of its own
            session = await h.session(query="exposure=search")
            missing = await session.ask("tools/call", tool_call(meta.SCHEMA, name="nonexistent"))
            assert missing["result"]["isError"] is True and "not found" in text(missing), missing
            await session.ask("tools/call", tool_call(meta.CALL, name="add_tool", arguments={"name": meta.SEARCH}))
            with anyio.fail_after(DEADLINE):
                while meta.SEARCH not in await full.tools():
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            found = text(await session.ask("tools/call", search("added at runtime", limit=20)))
            assert f"{meta.SEARCH}(" not in found, found
            described = await session.ask("tools/call", tool_call(meta.SCHEMA, name=meta.SEARCH))
            assert described["result"]["isError"] is True
            # in full mode an upstream tool of a meta-tool's name is that tool: the meta-tool gives way
            own = text(await full.ask("tools/call", tool_call(meta.SEARCH, query="added at runtime")))
            assert own == '{"query":"added at runtime"}', own  # the upstream's tool echoing its arguments
            meta_one = text(await session.ask("tools/call", search("added at runtime")))
            assert meta_one != own and "tools" in meta_one, meta_one  # search mode: the meta-tool's answer


async def test_the_index_follows_upstream_changes_and_reloads() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, NO_CACHE) as h:
            session = await h.session(query="exposure=search")
            full = await h.session()
            before = hit_names(text(await session.ask("tools/call", search("quaternion gyroscope", limit=20))))
            assert "alpha__quaternion_gyroscope" not in before
            added = await session.ask("tools/call", tool_call("alpha__add_tool", name="quaternion_gyroscope"))
            assert "result" in added, added
            with anyio.fail_after(5):
                while "alpha__quaternion_gyroscope" not in await full.tools():
                    await anyio.sleep(0.01)  # allowed-sleep: waiting for the upstream's list_changed to land
            after = hit_names(text(await session.ask("tools/call", search("quaternion gyroscope", limit=3))))
            assert after[0] == "alpha__quaternion_gyroscope", after
            config = HubConfig.model_validate({"mcpServers": {"beta": SERVERS["beta"]}, "onemcp": NO_CACHE})
            await h.app.hub.apply_config(config)
            gone = hit_names(text(await session.ask("tools/call", search("echo a message", limit=20))))
            assert gone and all(name.startswith("beta") or "__" not in name for name in gone), gone


async def test_a_server_a_reload_removed_leaves_the_instructions_and_search_at_once() -> None:
    """Its call in flight keeps its connection draining (the drain bound); a new client's catalog summary
    and its searches no longer have it meanwhile, in both eras."""
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, NO_CACHE) as h, anyio.create_task_group() as tg:
            held = await h.session()
            tg.start_soon(held.ask, "tools/call", tool_call("alpha__hold"))
            alpha = h.app.hub.pool.get("alpha")
            assert alpha is not None
            with anyio.fail_after(5):
                while not alpha.in_flight:
                    await anyio.sleep(0.01)  # allowed-sleep: waiting for the held call to reach alpha
            await h.app.hub.apply_config(HubConfig.model_validate({"mcpServers": {"beta": SERVERS["beta"]}}))
            assert "alpha" in h.app.hub.pool.slots  # draining its call
            _, (legacy,) = await h.client.request("POST", query="exposure=search", headers=JSON, body=INITIALIZE)
            _, (modern,) = await h.client.modern("server/discover", query="exposure=search")
            for reply in (legacy, modern):
                summary = reply["result"]["instructions"]
                assert "- alpha:" not in summary and "1 MCP server(s)" in summary, summary
            found = text(await (await h.session(query="exposure=search")).ask("tools/call", search("echo", limit=20)))
            assert "alpha" not in found, found
            h.upstreams.let_go.set()


async def test_a_search_mode_session_hears_no_tools_list_changed_for_upstream_changes() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, NO_CACHE) as h:
            session = await h.session(query="exposure=search")
            before = dict(session_seen(h))
            await session.ask("tools/call", tool_call("alpha__add_tool", name="newcomer"))
            with anyio.fail_after(5):
                while "alpha__newcomer" not in await (await h.session(query="exposure=full")).tools():
                    await anyio.sleep(0.01)  # allowed-sleep: waiting for the upstream's list_changed to land
            assert session_seen(h) == before  # its tools list (the meta-tools) did not change


async def held_search(
    session: LegacySession,
    entered: threading.Event,
    release: threading.Event,
    meanwhile: Callable[[], Awaitable[None]],
    query: str = "echo a message back",
) -> list[str]:
    """A search whose work the test holds on its thread (`entered` once there, until `release`):
    `meanwhile` runs while it waits; then the search's hits, best first."""
    found: list[str] = []

    async def searching() -> None:
        found.extend(hit_names(text(await session.ask("tools/call", search(query)))))

    async with anyio.create_task_group() as tg:
        tg.start_soon(searching)
        await anyio.to_thread.run_sync(entered.wait, DEADLINE)
        try:
            await meanwhile()
        finally:
            release.set()
    return found


def session_seen(h: InProcessHub) -> dict[str, dict[str, int]]:
    return {s.id: dict(s.seen) for s in h.app.hub.sessions if s.access.exposure == "search"}


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"query": ""}, "non-empty"),
        ({"query": "   "}, "non-empty"),
        ({"query": "x" * (meta.MAX_QUERY + 1)}, "at most"),
        ({"query": "echo", "limit": 0}, "limit"),
        ({"query": "echo", "limit": "5"}, "limit"),
        ({"query": "echo", "limit": 2.5}, "limit"),  # (2.0 is 2: an integer in JSON's one number type)
        ({"query": "echo", "colour": "red"}, "unknown argument"),
        ({"query": "echo", "server": 7}, "a server's name"),
        ({}, "non-empty"),
        (0, "must be an object"),  # not taken for {}: a falsy non-object is as wrong as any other
        (False, "must be an object"),
    ],
)
async def test_bad_search_arguments_get_a_tool_error_that_says_why(arguments: Any, complaint: str) -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, NO_CACHE) as h:
            session = await h.session(query="exposure=search")
            reply = await session.ask("tools/call", {"name": meta.SEARCH, "arguments": arguments})
            assert reply["result"]["isError"] is True and complaint in text(reply), reply


async def test_instructions_and_health_report_search_and_tokens() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, NO_CACHE) as h:
            _, (searching,) = await h.client.request("POST", query="exposure=search", headers=JSON, body=INITIALIZE)
            _, (full,) = await h.client.request("POST", headers=JSON, body=INITIALIZE)
            assert meta.SEARCH in searching["result"]["instructions"]
            assert meta.SEARCH not in full["result"]["instructions"]
            from onemcp.downstream.health import health

            report = health(h.app.hub)
            assert report["upstreams"]["alpha"]["toolTokens"] > 100
            exposure = report["toolExposure"]
            assert exposure["exposure"] == "auto" and exposure["tokens"]["search"] < exposure["tokens"]["full"]
            metrics = h.app.metrics.render().decode()
            alpha = next(line for line in metrics.splitlines() if line.startswith('onemcp_tool_tokens{server="alpha"}'))
            assert float(alpha.split()[-1]) == report["upstreams"]["alpha"]["toolTokens"]


async def test_a_server_without_tools_counts_zero_tokens_in_health_and_metrics() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({**SERVERS, "dead": fixture(enabledTools=["none_of_its"])}, NO_CACHE) as h:
            from onemcp.downstream.health import health

            assert health(h.app.hub)["upstreams"]["dead"]["toolTokens"] == 0
            assert 'onemcp_tool_tokens{server="dead"} 0.0' in h.app.metrics.render().decode()
            session = await h.session(query="exposure=search")  # its name is right: why it finds nothing is said
            found = await session.ask("tools/call", search("echo", server="dead"))
            assert found["result"]["isError"] is True and "server 'dead' lists no tools now" in text(found), found


async def test_the_transformer_vectors_are_computed_in_the_background_and_follow_changes() -> None:
    from onemcp.downstream.health import health

    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, NO_CACHE) as h:
            session = await h.session(query="exposure=search")
            assert health(h.app.hub)["toolExposure"]["index"] is None  # built by the first search, not before
            first = hit_names(text(await session.ask("tools/call", search("echo a message back", limit=3))))
            assert first, first  # answered at once, by words and the static model
            await h.app.hub.exposure.transformer_settled()
            index = health(h.app.hub)["toolExposure"]["index"]
            assert index["transformer"] == "ready" and index["tools"] >= 5, index
            assert h.app.hub.exposure.index().deep_embedded == index["tools"]  # off the event loop, by the worker
            added = await session.ask("tools/call", tool_call("alpha__add_tool", name="barometric_altimeter"))
            assert "result" in added, added
            full = await h.session()
            with anyio.fail_after(5):
                while "alpha__barometric_altimeter" not in await full.tools():
                    await anyio.sleep(0.01)  # allowed-sleep: waiting for the upstream's list_changed to land
            found = hit_names(text(await session.ask("tools/call", search("barometric altimeter", limit=3))))
            assert found[0] == "alpha__barometric_altimeter", found
            await h.app.hub.exposure.transformer_settled()
            assert health(h.app.hub)["toolExposure"]["index"]["transformer"] == "ready"
            assert h.app.hub.exposure.index().deep_embedded == index["tools"] + 1  # only the new tool was encoded


async def test_a_hub_that_serves_search_builds_its_index_before_the_first_search() -> None:
    from onemcp.downstream.health import health

    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, {**NO_CACHE, "exposure": "search"}) as h:
            await h.app.hub.pool.tried.wait()
            with anyio.fail_after(5):
                while health(h.app.hub)["toolExposure"]["index"] is None:
                    await anyio.sleep(0.01)  # allowed-sleep: the warm-up task runs right after every server was tried
            await h.app.hub.exposure.transformer_settled()
            assert health(h.app.hub)["toolExposure"]["index"]["transformer"] == "ready"
            assert h.app.hub.exposure.searches == 0  # nobody searched yet
        async with inprocess_hub(SERVERS, NO_CACHE) as h:  # auto, and a list far under the budget: nothing built
            await h.app.hub.pool.tried.wait()
            assert not h.app.hub.exposure.search_likely()
            # a preset with search (a presets.json edit), then: built ahead of the first search too
            h.app.hub.set_presets({"finder": "tag:red"}, {"finder": "search"})
            with anyio.fail_after(5):
                while health(h.app.hub)["toolExposure"]["index"] is None:
                    await anyio.sleep(0.01)  # allowed-sleep: the warm-up task wakes on the change
            assert h.app.hub.exposure.searches == 0


async def test_a_search_encodes_its_query_off_the_event_loop() -> None:
    """While one search's query is being encoded (held here), the hub answers other requests."""
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, {**NO_CACHE, "exposure": "search"}) as h:
            session = await h.session()
            assert hit_names(text(await session.ask("tools/call", search("echo a message back"))))  # builds it
            await h.app.hub.exposure.transformer_settled()
            model = h.app.hub.exposure.index().transformer
            assert model is not None
            entered, release = threading.Event(), threading.Event()
            encode = model.encode

            def held(texts: Sequence[str]) -> Any:
                entered.set()
                assert release.wait(DEADLINE)  # a loop waiting here never answers the list below
                return encode(texts)

            model.encode = held  # type: ignore[method-assign]

            async def meanwhile() -> None:
                # on threads of its own: a flood of searches does not take the ones the rest of the hub uses
                assert anyio.to_thread.current_default_thread_limiter().borrowed_tokens == 0
                assert sorted(await (await h.session()).tools()) == META  # served while the search encodes

            found = await held_search(session, entered, release, meanwhile)
            assert found and found[0].endswith("__echo"), found


async def test_searches_give_the_allocators_free_pages_back_once_they_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The transformer's runs free their activations to glibc, which keeps the pages unless asked: after a
    burst of searches (a quiet spell of `trim_after` seconds) the hub asks (not only after builds)."""
    from onemcp.search import deep

    released: list[str] = []
    monkeypatch.setattr(deep, "release_memory", lambda: released.append(threading.current_thread().name))
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, {**NO_CACHE, "exposure": "search"}) as h:
            exposure = h.app.hub.exposure
            exposure.trim_after = 0.0
            session = await h.session()
            await exposure.ready_index()  # built ahead (exposure search): its vectors end with one release
            await exposure.transformer_settled()
            while not released:
                await anyio.sleep(0.01)  # allowed-sleep: the build's release, on the transformer's worker
            assert exposure.index().query_encoder() is not None
            released.clear()
            for query in ("echo a message back", "add two numbers"):
                assert hit_names(text(await session.ask("tools/call", search(query))))
            while not released:
                await anyio.sleep(0.01)  # allowed-sleep: the quiet spell (0 s here), then the release on a thread
            assert released[0] != threading.main_thread().name  # off the event loop


def held_vocabulary(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event, list[threading.Thread]]:
    """The counter's next vocabulary load, held on its thread (`entered` once there, until `release`);
    the threads it ran on."""
    import quicktok

    entered, release = threading.Event(), threading.Event()
    loading_on: list[threading.Thread] = []
    real = quicktok.Tokenizer

    def held(*args: Any) -> Any:
        loading_on.append(threading.current_thread())
        entered.set()
        assert release.wait(DEADLINE)  # on the event loop, this would stop what the test asks meanwhile
        return real(*args)

    monkeypatch.setattr(quicktok, "Tokenizer", held)
    return entered, release, loading_on


async def test_the_token_counter_is_loaded_off_the_event_loop_when_lists_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An `auto` session's mode rests on a token count; after a quiet minute the counter's vocabulary
    (~0.4 s to load) is given back. A list change then loads it on a worker thread (held here) while
    the hub answers other requests, and the change is announced once it is loaded."""
    from onemcp.search import tokens

    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, {**NO_CACHE, "searchBudget": 50}) as h:
            auto = await h.session()  # auto (the default), every list over 50 tokens
            assert sorted(await auto.tools()) == META
            full = await h.session(query="exposure=full")
            assert "alpha__echo" in await full.tools()
            assert tokens.release_if_idle(now=float("inf"))  # as after a quiet minute
            entered, release, loading_on = held_vocabulary(monkeypatch)
            assert "result" in await full.ask("tools/call", tool_call("alpha__add_tool", name="newcomer"))
            await anyio.to_thread.run_sync(entered.wait, DEADLINE)
            assert "alpha__newcomer" in await full.tools()  # served while the vocabulary loads
            seen = dict(h.app.hub.sessions.get(full.id).seen)  # type: ignore[union-attr]
            release.set()
            with anyio.fail_after(5):  # then the change goes out, counted exactly
                while h.app.hub.sessions.get(full.id).seen == seen:  # type: ignore[union-attr]
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            assert loading_on and loading_on[0] is not threading.main_thread() and tokens.loaded()
            assert sorted(await auto.tools()) == META


async def test_the_index_is_first_built_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first build (the models loaded, every tool indexed: ~0.4 s at 1,000 tools) runs on a worker
    thread: held here, the hub answers another client meanwhile, then the search it held answers."""
    from onemcp.search.index import SearchIndex

    entered, release = threading.Event(), threading.Event()
    update = SearchIndex.update

    def held(self: SearchIndex, *args: Any, **kw: Any) -> None:
        if not entered.is_set():
            entered.set()
            assert release.wait(DEADLINE)  # on the event loop, this would stop the list below
        update(self, *args, **kw)

    monkeypatch.setattr(SearchIndex, "update", held)
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, NO_CACHE) as h:
            searching, other = await h.session(query="exposure=search"), await h.session()

            async def meanwhile() -> None:
                assert "alpha__echo" in await other.tools()  # served while the index is built

            found = await held_search(searching, entered, release, meanwhile)
            assert found and found[0].endswith("__echo"), found


@pytest.mark.parametrize("work", ["prepare", "_settled"])
async def test_a_changed_server_is_indexed_off_the_event_loop(monkeypatch: pytest.MonkeyPatch, work: str) -> None:
    """After an upstream's tools change, the next search reads that server's tools (`prepare`: ~0.2 ms
    a tool) and builds what ranking needs (`_settled`: BM25's postings, the vector matrix; 10-30 ms at
    1,000 tools) on a worker thread: held there, the hub answers another client meanwhile, and the
    search then finds the new tool."""
    from onemcp.search import index as search_index

    entered, release, armed = threading.Event(), threading.Event(), threading.Event()
    ran_on: list[threading.Thread] = []
    real = getattr(search_index, work)

    def held(*args: Any, **kw: Any) -> Any:
        if armed.is_set() and not entered.is_set():
            ran_on.append(threading.current_thread())
            entered.set()
            assert release.wait(DEADLINE)  # on the event loop, this would stop the list below
        return real(*args, **kw)

    monkeypatch.setattr(search_index, work, held)
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, {**NO_CACHE, "exposure": "search"}) as h:
            session, full = await h.session(), await h.session(query="exposure=full")
            assert hit_names(text(await session.ask("tools/call", search("echo a message back"))))  # built
            await h.app.hub.exposure.transformer_settled()
            added = await session.ask("tools/call", tool_call("alpha__add_tool", name="quaternion_gyroscope"))
            assert "result" in added, added
            with anyio.fail_after(5):
                while "alpha__quaternion_gyroscope" not in await full.tools():
                    await anyio.sleep(0.01)  # allowed-sleep: waiting for the upstream's list_changed to land
            armed.set()

            async def meanwhile() -> None:
                assert "alpha__quaternion_gyroscope" in await full.tools()  # served while the index changes

            found = await held_search(session, entered, release, meanwhile, "quaternion gyroscope")
            assert found and found[0] == "alpha__quaternion_gyroscope", found
            assert ran_on and ran_on[0] is not threading.main_thread()


async def test_a_first_request_that_is_a_meta_tool_call_loads_the_counter_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 2026 client's first request may be `tools/call search_tools`, with no list or discover
    before it: whether an `auto` requester may call the meta-tools rests on a count of its list, and
    a list that changed since the last count needs the counter's vocabulary (~0.4 s to load, given
    back after a quiet minute). It is loaded on a worker thread (held here) while the hub serves on."""

    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, {**NO_CACHE, "searchBudget": 50}) as h:
            full = await uncounted_change(h)
            entered, release, loading_on = held_vocabulary(monkeypatch)
            replies: list[tuple[int, dict[str, Any]]] = []

            async def calling() -> None:
                replies.append(await modern_call(h, "", search("echo a message back")))

            async with anyio.create_task_group() as tg:
                tg.start_soon(calling)
                await anyio.to_thread.run_sync(entered.wait, DEADLINE)
                try:
                    assert "alpha__newcomer" in await full.tools()  # served while the vocabulary loads
                finally:
                    release.set()
            ((status, reply),) = replies
            assert status == 200 and hit_names(text(reply))[0].endswith("__echo"), reply
            assert loading_on and loading_on[0] is not threading.main_thread()


async def uncounted_change(h: Any) -> Any:
    """A tools list that changed since it was last counted, and the counter's vocabulary given back (as after
    a quiet minute): the next count under `auto` loads it. Returns the `exposure=full` session that made it."""
    from onemcp.search import tokens

    full = await h.session(query="exposure=full")  # no `auto` session: nothing counts on a change
    assert "result" in await full.ask("tools/call", tool_call("alpha__add_tool", name="newcomer"))
    with anyio.fail_after(5):
        while "alpha__newcomer" not in await full.tools():
            await anyio.sleep(0.01)  # allowed-sleep: waiting for the upstream's list_changed to land
    tokens.release_if_idle(now=float("inf"))
    return full


@pytest.mark.parametrize("entry", ["sse", "listen"])
async def test_a_stream_opened_before_any_list_loads_the_counter_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    """A legacy /sse stream and a 2026-07-28 `subscriptions/listen` note the lists their client sees
    (to announce changes) before it asked for any; under `auto` the tools list rests on a count, whose
    vocabulary (~0.4 s to load, given back after a quiet minute) is loaded on a worker thread (held
    here) while the hub serves on, as for an `initialize`."""

    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, {**NO_CACHE, "searchBudget": 50}) as h:
            full = await uncounted_change(h)
            entered, release, loading_on = held_vocabulary(monkeypatch)
            opened: list[int] = []

            async def opening() -> None:
                if entry == "sse":
                    stream = h.client.open("GET", path="/sse", headers={"accept": "text/event-stream"})
                else:
                    headers, body = modern_request("subscriptions/listen", notifications={"toolsListChanged": True})
                    stream = h.client.open("POST", headers=headers, body=body)
                async with stream as response:
                    opened.append(response.status)

            async with anyio.create_task_group() as tg:
                tg.start_soon(opening)
                await anyio.to_thread.run_sync(entered.wait, DEADLINE)
                try:
                    with anyio.fail_after(5):
                        assert "alpha__newcomer" in await full.tools()  # served while the vocabulary loads
                finally:
                    release.set()
            assert opened == [200]
            assert loading_on and loading_on[0] is not threading.main_thread()


async def test_a_catalog_that_never_settles_does_not_hold_a_search_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    """Changes are read off the loop a few rounds per search; a catalog that changes every instant
    (here: a new tools list each time it is asked) is then read in line, and the search answers."""
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, {**NO_CACHE, "exposure": "search"}) as h:
            session = await h.session()
            assert hit_names(text(await session.ask("tools/call", search("echo a message back"))))
            catalog = h.app.hub.exposure.catalog
            items = catalog.items

            def restless(kind: str) -> Any:
                return list(items(kind)) if kind == "tools" else items(kind)

            monkeypatch.setattr(catalog, "items", restless)
            found = hit_names(text(await session.ask("tools/call", search("echo a message back"))))
            assert found and found[0].endswith("__echo"), found


async def test_remembered_token_counts_hold_bounded_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The counts are keyed by the serialised lists: 300 changes of a 2.8 MB list held 1.2 GB."""
    from onemcp.hub import exposure as exposure_module

    monkeypatch.setattr(exposure_module, "count_tokens", len)
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, NO_CACHE) as h:
            exposure = h.app.hub.exposure
            big = 3 * 1024 * 1024
            for i in range(20):
                assert exposure.tokens(b"%d" % i + b" " * big) == big + len(b"%d" % i)
                held = sum(len(k) for k in exposure._counted)
                assert held <= exposure_module.MAX_COUNTED_BYTES, (i, held)


def test_the_embedding_cache_directory_is_the_one_the_hub_started_with(tmp_path: Any) -> None:
    """README: `searchCache` is read at start; a reload that changes it waits for a restart, even when
    no search had built the index before the reload."""
    from onemcp.catalog.catalog import Catalog
    from onemcp.hub.exposure import ToolExposure
    from onemcp.protocol.names import NameCodec, PrefixMode

    def config(cache: str) -> HubConfig:
        return HubConfig.model_validate({"mcpServers": {}, "onemcp": {"searchCache": str(tmp_path / cache)}})

    current = config("at-start")
    exposure = ToolExposure(Catalog(NameCodec("__"), PrefixMode.ALWAYS), lambda: current, dict)
    current = config("after-reload")  # a reload, before any search
    exposure.index()
    assert (tmp_path / "at-start").is_dir() and not (tmp_path / "after-reload").exists()


async def test_a_search_waiting_on_a_failed_first_build_builds_the_index_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The failed build's caller gets its error; one that waited on it builds again (it hit an
    internal assertion before)."""
    from onemcp.catalog.catalog import Catalog
    from onemcp.hub import exposure as module
    from onemcp.protocol.names import NameCodec, PrefixMode

    real, release, calls = module._built_index, threading.Event(), []

    def first_fails(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            release.wait(DEADLINE)
            raise RuntimeError("boom")
        return real(*args)

    monkeypatch.setattr(module, "_built_index", first_fails)
    config = HubConfig.model_validate({"mcpServers": {}, "onemcp": NO_CACHE})
    exposure = module.ToolExposure(Catalog(NameCodec("__"), PrefixMode.ALWAYS), lambda: config, dict)
    outcomes: list[object] = []

    async def search() -> None:
        try:
            outcomes.append(await exposure.ready_index())
        except RuntimeError as exc:
            outcomes.append(exc)

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(search)
            await anyio.wait_all_tasks_blocked()  # the first is building (on its thread)
            tg.start_soon(search)
            await anyio.wait_all_tasks_blocked()  # the second waits for that build
            release.set()
    assert isinstance(outcomes[0], RuntimeError) and outcomes[1] is exposure.index() and len(calls) == 2


async def test_search_and_schema_are_not_run_as_tasks_and_call_tool_passes_the_task_on() -> None:
    """search_tools and get_tool_schema answer at once, so a task-augmented call of them is -32601, as
    for any tool whose taskSupport is forbidden (it was answered inline, where the client waits for a
    task handle); a 2026-07-28 call's `task` is dropped, as for every call of that era."""
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, NO_CACHE) as h:
            session = await h.session(query="exposure=search")
            for params in (search("echo a message back"), tool_call(meta.SCHEMA, name="alpha__echo")):
                refused = await session.ask("tools/call", {**params, "task": {"ttl": 60_000}})
                assert refused["error"]["code"] == -32601, refused
                assert "does not run as a task" in refused["error"]["message"]
            status, reply = await modern_call(h, "exposure=search", {**search("echo"), "task": {"ttl": 60_000}})
            assert status == 200 and "alpha__echo(" in text(reply), reply
            called = tool_call(meta.CALL, name="alpha__echo", arguments={"message": "hi"})
            answered = await session.ask("tools/call", {**called, "task": {"ttl": 60_000}})
            assert "error" not in answered or answered["error"]["code"] != -32601, answered  # the tool's to say


async def test_health_waits_a_bounded_time_for_an_index_that_cannot_keep_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A catalog that changes faster than the index reads it (a server renaming its 5,000 tools on
    every list) kept `/health` waiting for the index in step (7 s to over 30 s): it waits
    `REPORT_WAIT` at most, then reports the index as it is."""
    from onemcp.downstream.health import health
    from onemcp.hub import exposure as module

    monkeypatch.setattr(module, "REPORT_WAIT", 0.05)
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, {**NO_CACHE, "exposure": "search"}) as h:
            exposure = h.app.hub.exposure
            await exposure.ready_index()
            never = anyio.Event()

            async def behind() -> Any:
                await never.wait()  # the index never catches up

            monkeypatch.setattr(exposure, "ready_index", behind)
            await exposure.ready_to_report(h.app.hub.preset_reaches())
            assert health(h.app.hub)["toolExposure"]["index"]["tools"] > 0
