"""Search exposure over a session's own connection's lists: search_tools finds the tools that connection
lists (a small index of those servers' tools beside the shared one), get_tool_schema describes them and
call_tool calls them; other sessions find none of them."""

from __future__ import annotations

import gc
import threading
from typing import Any

import anyio
import pytest

from onemcp.catalog.catalog import Catalog
from onemcp.catalog.reach import EVERYTHING
from onemcp.downstream.health import health
from onemcp.hub.exposure import count_tokens
from onemcp.hub.own_search import OwnSearch, allowed, entry_key, merged, tool_entries
from onemcp.protocol.names import NameCodec, PrefixMode
from onemcp.search import meta
from onemcp.search.index import Hit, SearchIndex
from support.inprocess import InProcessHub, fixture, inprocess_hub, tool_call

pytestmark = pytest.mark.anyio
DEADLINE = 30.0
SERVERS = {"iso": fixture("--name", "iso", isolation="session"), "other": fixture("--name", "other")}
SEARCH = {"searchCache": False, "exposure": "search"}
META = sorted(meta.NAMES)


def text(reply: dict[str, Any]) -> str:
    assert "result" in reply, reply
    return str(reply["result"]["content"][0]["text"])


def hit_names(found: str) -> list[str]:
    return [line.split("(", 1)[0] for line in found.splitlines() if "(" in line and not line.startswith("(")]


def with_budget(h: InProcessHub, budget: int) -> None:
    """The hub's `searchBudget` from now on (the config otherwise unchanged)."""
    hub = h.app.hub
    hub.config = hub.config.model_copy(update={"hub": hub.config.hub.model_copy(update={"search_budget": budget})})


async def test_search_finds_describes_and_calls_a_tool_only_the_sessions_own_connection_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, SEARCH) as h:
            events, listed = h.app.hub.events, anyio.Event()
            on_list = events.on_list

            def heard(conn: Any, kind: str, items: list[dict[str, Any]]) -> None:
                on_list(conn, kind, items)  # in search mode no list_changed tells the client: its list is the same
                if any(item.get("name") == "forecast_weather" for item in items):  # only an own connection lists it
                    listed.set()

            monkeypatch.setattr(events, "on_list", heard)
            mine, theirs = await h.session(), await h.session()
            added = tool_call(meta.CALL, name="iso__add_tool", arguments={"name": "forecast_weather"})
            assert text(await mine.ask("tools/call", added)) == "added forecast_weather"
            await listed.wait()  # the session's own connection listed it again
            found = hit_names(text(await mine.ask("tools/call", tool_call(meta.SEARCH, query="forecast weather"))))
            assert found[:1] == ["iso__forecast_weather"], found
            everything = text(await mine.ask("tools/call", tool_call(meta.SEARCH, query="echo", limit=20)))
            assert "other__echo" in everything and "iso__echo" in everything  # the shared index's, beside it
            view = h.app.hub.events.views.of(next(s for s in h.app.hub.sessions if s.id == mine.id))
            iso = [name for _, server, _, name in view.entries("tools") if server == "iso"]
            own = health(h.app.hub)["toolExposure"]["ownIndexes"]  # its view's small index, in /health
            assert "iso__forecast_weather" in iso and own["indexes"] == 1 and own["tools"] == len(iso), own
            schema = text(await mine.ask("tools/call", tool_call(meta.SCHEMA, name="iso__forecast_weather")))
            assert "Added at runtime" in schema
            through = tool_call(meta.CALL, name="iso__forecast_weather", arguments={"x": 1})
            assert text(await mine.ask("tools/call", through)) == '{"x":1}'
            # another session (its own connection to iso lists no such tool) finds, describes and calls none
            others = text(await theirs.ask("tools/call", tool_call(meta.SEARCH, query="forecast weather", limit=20)))
            assert "forecast_weather" not in others
            refused = await theirs.ask("tools/call", tool_call(meta.SCHEMA, name="iso__forecast_weather"))
            assert refused["result"]["isError"] is True and "Tool not found" in text(refused)
            assert "iso__forecast_weather" not in {t["name"] for t in h.app.hub.catalog.items("tools")}


async def test_a_2026_caller_searches_describes_and_calls_a_tool_only_its_principals_connection_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, SEARCH) as h:
            events, listed = h.app.hub.events, anyio.Event()
            on_list = events.on_list

            def heard(conn: Any, kind: str, items: list[dict[str, Any]]) -> None:
                on_list(conn, kind, items)
                if any(item.get("name") == "forecast_weather" for item in items):
                    listed.set()

            monkeypatch.setattr(events, "on_list", heard)

            async def ask(tool: str, /, **arguments: Any) -> str:
                _, (reply,) = await h.client.modern("tools/call", **tool_call(tool, **arguments))
                return text(reply)

            assert await ask(meta.CALL, name="iso__add_tool", arguments={"name": "forecast_weather"}) == (
                "added forecast_weather"
            )
            await listed.wait()
            assert hit_names(await ask(meta.SEARCH, query="forecast weather"))[:1] == ["iso__forecast_weather"]
            assert "Added at runtime" in await ask(meta.SCHEMA, name="iso__forecast_weather")
            assert await ask(meta.CALL, name="iso__forecast_weather", arguments={"x": 1}) == '{"x":1}'
            assert "iso__forecast_weather" not in {t["name"] for t in h.app.hub.catalog.items("tools")}  # its own


async def test_auto_decides_on_the_list_the_session_sees_and_announces_its_own_lists_crossing_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`auto` is decided by the tools list the requester gets: with a session's own connection's tools
    (not the catalog's, which it does not see), counted off the event loop; a change of its own list
    that crosses the budget changes that list (the meta-tools, or the full list again): list_changed."""
    from onemcp.hub import exposure as module

    real, counted_on = module.count_tokens, []

    def recorded(data: bytes | str) -> int:
        counted_on.append(threading.current_thread())
        return real(data)

    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, {"searchCache": False}) as h:
            hub, events, grown = h.app.hub, h.app.hub.events, anyio.Event()
            on_list = events.on_list

            def heard(conn: Any, kind: str, items: list[dict[str, Any]]) -> None:
                on_list(conn, kind, items)
                if any(item.get("name") == "grown" for item in items):  # only the session's own connection's
                    grown.set()

            monkeypatch.setattr(events, "on_list", heard)
            mine, theirs = await h.session(), await h.session()
            assert text(await mine.ask("tools/call", tool_call("iso__add_tool", name="grown"))) == "added grown"
            await grown.wait()
            session = next(s for s in hub.sessions if s.id == mine.id)
            view = events.views.of(session)
            shared = real(hub.catalog.result_json("tools"))
            own = real(view.result_json("tools", session.access.reach))
            assert own > shared
            monkeypatch.setattr(module, "count_tokens", recorded)
            with_budget(h, (shared + own) // 2)  # its own list is over, the catalog's is not
            assert sorted(await mine.tools()) == META and "iso__echo" in await theirs.tools()
            with_budget(h, own + 1)  # its own list is under again ...
            assert "iso__grown" in await mine.tools()
            counted_on.clear()
            async with mine.listen() as stream:
                added = tool_call("iso__add_tool", name="grown_again")  # ... until its own connection adds one
                assert text(await mine.ask("tools/call", added)) == "added grown_again"
                assert (await stream.message())["method"] == "notifications/tools/list_changed"
                assert sorted(await mine.tools()) == META
                assert counted_on and threading.main_thread() not in counted_on, counted_on
                conn, kinds = session.own.lists["iso"]  # and a list of fewer tools makes it full again
                on_list(conn, "tools", [t for t in kinds["tools"] if not str(t["name"]).startswith("grown")])
                assert (await stream.message())["method"] == "notifications/tools/list_changed"
                assert "iso__echo" in await mine.tools() and "iso__grown" not in await mine.tools()


async def test_a_2026_callers_auto_exposure_and_instructions_rest_on_its_principals_own_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same for a principal's own connection (a 2026-07-28 caller under `isolation: session`): its
    tools list and its `server/discover` instructions are search mode's once its own list is over the
    budget, while the catalog's is not."""
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS, {"searchCache": False}) as h:
            events, grown = h.app.hub.events, anyio.Event()
            on_list = events.on_list

            def heard(conn: Any, kind: str, items: list[dict[str, Any]]) -> None:
                on_list(conn, kind, items)
                if any(item.get("name") == "grown" for item in items):
                    grown.set()

            monkeypatch.setattr(events, "on_list", heard)
            _, (added,) = await h.client.modern("tools/call", **tool_call("iso__add_tool", name="grown"))
            assert text(added) == "added grown"
            await grown.wait()
            (lists,) = events.views.principals.values()
            view = lists.catalog(h.app.hub.catalog)
            shared, own = (count_tokens(c.result_json("tools")) for c in (h.app.hub.catalog, view))
            with_budget(h, (shared + own) // 2)  # its own list is over, the catalog's is not
            _, (listed,) = await h.client.modern("tools/list")
            assert sorted(t["name"] for t in listed["result"]["tools"]) == META
            _, (discovered,) = await h.client.modern("server/discover")
            assert meta.SEARCH in discovered["result"]["instructions"]


async def test_a_views_index_holds_its_own_servers_tools_borrows_the_hubs_vectors_and_goes_with_the_view() -> None:
    catalog = Catalog(NameCodec(), PrefixMode.ALWAYS)
    catalog.set_servers(["iso", "other"])
    echo = {"name": "echo", "description": "Echo a message back.", "inputSchema": {"type": "object"}}
    mine = {"name": "forecast", "description": "Forecast the weather of a city.", "inputSchema": {"type": "object"}}
    for server in ("iso", "other"):
        catalog.update(server, "tools", [echo])
    hub = SearchIndex(None, model=False)
    for server, items in tool_entries(catalog).by_server.items():
        hub.update(server, items, keys=tool_entries(catalog).keys[server])
    if hub.transformer is not None:
        hub.fill_deep()
    view = catalog.overlaid({"iso": {"tools": [echo, mine]}})
    assert view.own_tools == {"iso"} and catalog.own_tools == frozenset()
    own = OwnSearch(lambda server: "")
    small = await own.index(view, hub, deep=hub.transformer is not None)
    assert sorted(small._tools) == [entry_key("iso", "iso__echo"), entry_key("iso", "iso__forecast")]
    if hub.transformer is not None:  # echo's vector is the hub's: only the tool of its own was encoded
        assert small.deep_ready and small.deep_embedded == 1
    assert await own.index(view, hub, deep=hub.transformer is not None) is small  # kept with the view
    assert await own.index(view, hub, deep=False) is not small  # made again when the hub's ranking changed
    (hit,) = small.search(
        "weather forecast", limit=1, allowed=allowed(view, own.entries(view), EVERYTHING, None).__contains__
    )
    assert hit.name == entry_key("iso", "iso__forecast")
    del view, small
    gc.collect()
    assert not own._views  # dropped with the view


async def test_a_view_made_again_after_a_change_elsewhere_encodes_none_of_its_own_tools_again() -> None:
    """A view is made again whenever the catalog changes: its index re-used the vectors the last one had
    (by definition hash), encoding only a definition no index had (it encoded every own tool again)."""
    catalog = Catalog(NameCodec(), PrefixMode.ALWAYS)
    catalog.set_servers(["iso", "other"])
    echo = {"name": "echo", "description": "Echo a message back.", "inputSchema": {"type": "object"}}
    catalog.update("iso", "tools", [echo])
    catalog.update("other", "tools", [echo])
    hub = SearchIndex(None)
    if not hub.semantic:
        pytest.skip("no embedding model installed: nothing is encoded")
    for server, items in tool_entries(catalog).by_server.items():
        hub.update(server, items, keys=tool_entries(catalog).keys[server])
    if hub.transformer is not None:
        hub.fill_deep()
    deep = hub.transformer is not None

    def encoded(index: SearchIndex) -> int:
        return index.deep_embedded if deep else index.embedded

    mine = [{"name": f"forecast_{i}", "description": f"Forecast the weather, {i} days ahead."} for i in range(3)]
    own = OwnSearch(lambda server: "")
    first = await own.index(catalog.overlaid({"iso": {"tools": [echo, *mine]}}), hub, deep)
    assert encoded(first) == 3  # its own tools (echo's vectors are the hub's)
    catalog.update("other", "tools", [echo, {"name": "more", "description": "Another tool elsewhere."}])
    again = await own.index(catalog.overlaid({"iso": {"tools": [echo, *mine]}}), hub, deep)
    assert again is not first and encoded(again) == 0 and len(again) == 4
    changed = {"name": "forecast_9", "description": "Forecast the weather, 9 days ahead."}
    grown = await own.index(catalog.overlaid({"iso": {"tools": [echo, *mine, changed]}}), hub, deep)
    assert encoded(grown) == 1  # the new definition alone
    (hit,) = grown.search("weather forecast 9 days", limit=1)
    assert hit.name == entry_key("iso", "iso__forecast_9")


def test_merged_hits_rank_by_fused_score_then_key() -> None:
    a, b, c = Hit("a", "s", 0.5), Hit("b", "t", 0.7), Hit("c", "s", 0.5)
    assert merged([c, a], [b], 2) == [b, a]
