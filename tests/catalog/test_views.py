"""Views end to end: selectors, the filter language, presets that change, overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command
from onemcp.catalog import views
from onemcp.catalog.reach import Reach
from onemcp.config.filters import FilterError, parse
from onemcp.config.model import HubConfig
from support.hub import HEADERS, INIT, running_hub

DEADLINE = 30.0


def stdio(*args: str, **extra: Any) -> dict[str, Any]:
    cmd = fixture_command(*args)
    return {"command": cmd[0], "args": cmd[1:], **extra}


SERVERS = {
    "web": stdio(tags=["net", "prod"]),
    "git": stdio(tags=["dev", "vcs"]),
    "db": stdio(tags=["dev", "prod"]),
}


@pytest.mark.parametrize(
    ("expr", "tags", "expected"),
    [
        ("dev", {"dev"}, True),
        ("dev,net", {"net"}, True),
        ("dev+prod", {"dev"}, False),
        ("dev and not prod", {"dev", "vcs"}, True),
        ("!prod", {"dev", "prod"}, False),
        ("-prod", {"dev"}, True),
        ("not dev or prod", {"dev"}, False),  # not binds tighter than or
        ("dev or net and prod", {"dev"}, True),  # and binds tighter than or
        ("(dev or net) and prod", {"dev"}, False),
    ],
)
def test_filter_language(expr: str, tags: set[str], expected: bool) -> None:
    assert parse(expr).matches(tags) is expected


@pytest.mark.parametrize(("expr", "position"), [("dev and", 7), ("(dev", 4), ("dev )", 4), ("dev $", 4), ("", 0)])
def test_filter_errors_say_where(expr: str, position: int) -> None:
    with pytest.raises(FilterError) as err:
        parse(expr)
    assert err.value.position == position and f"position {position}" in str(err.value)


@pytest.mark.parametrize(
    ("query", "said"),
    [
        # `+` is the filter's `and`, but a URL's query reads it as a space: `dev prod`, whose error named a
        # `prod` the user never wrote apart
        ("filter=dev+prod", "unexpected 'prod' at position 4 (a '+' in a URL's query is a space: write 'and', or %2B"),
        ("filter=dev%2Bprod%20and", "found end of filter at position 12"),  # no '+' written as is: no hint
        ("filter=dev%20-prod", "unexpected '-' at position 4"),  # the operator as written, not as read ('!')
        ("filter=(dev%20OR", "found end of filter at position 7"),
        ("filter=dev%20OR%20-", "found end of filter at position 8"),
        ("filter=-AND", "expected a tag, 'not' or '(' but found 'AND' at position 1"),
        ("=x", "unknown query parameter(s): ''; the MCP endpoint takes"),  # a parameter with no name: shown
        ("preset=" + "p" * 5000, "characters); presets: work"),  # the caller's text, cut
        ("exposure=" + "e" * 5000, "characters); expected one of full, search, auto"),
    ],
)
def test_a_selectors_error_says_what_was_written_and_what_to_write(query: str, said: str) -> None:
    with pytest.raises(views.ViewError) as err:
        views.check_query(query)
        views.from_query(query, {"work": "dev"}, frozenset({"dev", "prod"}))
        views.exposure_from_query(query)
    assert said in str(err.value) and len(str(err.value)) < 500, str(err.value)
    assert ("a '+' in a URL" in str(err.value)) is ("+" in query)


async def names(c: Client) -> set[str]:
    return {t.name for t in (await c.list_tools()).tools}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("query", "servers"),
    [
        ("tags=vcs", {"git"}),
        ("tags=net,vcs", {"web", "git"}),
        ("filter=dev%2B!prod", {"git"}),
        ("preset=work", {"git", "db"}),
    ],
)
async def test_selectors_shape_lists_and_routing(tmp_path: Path, query: str, servers: set[str]) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": SERVERS}))
    (tmp_path / "presets.json").write_text(json.dumps({"presets": {"work": {"filter": "dev"}}}))
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": SERVERS}, config_path=path) as hub:
            for mode in ("legacy", "auto"):
                async with Client(f"{hub.url}?{query}", mode=mode, cache=None) as c:
                    listed = await names(c)
                    assert {n.split("__")[0] for n in listed} == servers
                    outside = next(iter({"web", "git", "db"} - servers))
                    with pytest.raises(MCPError) as err:
                        await c.call_tool(f"{outside}__echo", {"message": "x"})
                    assert err.value.error.code == -32602  # refused as unknown
                    inside = next(iter(servers))
                    result = await c.call_tool(f"{inside}__echo", {"message": "in"})
                    assert isinstance(result.content[0], types.TextContent) and result.content[0].text == "in"


@pytest.mark.anyio
async def test_bad_selectors_are_400() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": SERVERS}) as hub, httpx.AsyncClient() as http:
            for query, text in (
                ("tags=a&filter=b", "conflicting"),
                ("filter=dev%20and", "position 7"),
                ("preset=nope", "unknown preset 'nope'; this hub has no presets"),  # it said no more
                ("tags=", "needs a value"),  # blank selects nothing, never everything
                ("filter=", "needs a value"),
                ("preset=", "needs a value"),
                ("tags=a&tags=b", "given 2 times"),  # which one would win is a guess
                ("exposure=bogus&exposure=search", "given 2 times"),
                # a tag no server has would be an empty view: a typo says so (the tags in use listed)
                ("tags=vsc", "no server has the tag(s) 'vsc'; the tags in use: dev, net, prod, vcs"),
                ("tags=dev,DEV", "no server has the tag(s) 'DEV'"),
                ("filter=dev%20and%20!nightly", "'nightly'"),
            ):
                r = await http.post(f"{hub.url}?{query}", json=INIT, headers=HEADERS)
                assert r.status_code == 400 and text in r.json()["error"]["message"], query


MODERN_LIST = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/list",
    "params": {
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    },
}


@pytest.mark.anyio
@pytest.mark.parametrize("entry", ["legacy", "modern", "sse"])
async def test_an_unknown_query_parameter_is_a_400_at_every_http_entry(entry: str) -> None:
    """A misspelt selector (`tag=` for `tags=`) would select every tool if ignored: it fails closed."""
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": SERVERS}) as hub, httpx.AsyncClient() as http:
            for query in ("tag=net", "tags=net&colour=red"):
                if entry == "sse":
                    r = await http.get(f"{hub.base}/sse?{query}", headers={"accept": "text/event-stream"})
                elif entry == "modern":
                    headers = {**HEADERS, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
                    r = await http.post(f"{hub.url}?{query}", json=MODERN_LIST, headers=headers)
                else:
                    r = await http.post(f"{hub.url}?{query}", json=INIT, headers=HEADERS)
                assert r.status_code == 400, (query, r.text)
                assert "unknown query parameter(s)" in r.json()["error"]["message"], r.text
            if entry != "sse":  # the selectors it knows still work
                r = await http.post(f"{hub.url}?tags=net&exposure=full", json=INIT, headers=HEADERS)
                assert r.status_code == 200, r.text


@pytest.mark.anyio
async def test_a_sessions_view_is_chosen_once() -> None:
    """Requests on a legacy session may repeat its query (in any order) or leave it out; another view,
    another exposure or an unknown parameter is a 400, never served under the session's view."""
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": SERVERS}) as hub, httpx.AsyncClient() as http:
            r = await http.post(f"{hub.url}?tags=net&exposure=full", json=INIT, headers=HEADERS)
            assert r.status_code == 200, r.text
            h = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
            listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
            for same in ("?tags=net&exposure=full", "?exposure=full&tags=net", ""):
                r = await http.post(f"{hub.url}{same}", json=listing, headers=h)
                assert r.status_code == 200 and {t["name"].split("__")[0] for t in r.json()["result"]["tools"]} == {
                    "web"
                }, (same, r.text)
            for other, said in (
                ("?tags=dev", "another view or exposure needs a new session"),
                ("?tags=net&exposure=search", "another view or exposure needs a new session"),
                ("?tags=net&colour=red", "unknown query parameter(s)"),
            ):
                r = await http.post(f"{hub.url}{other}", json=listing, headers=h)
                assert r.status_code == 400 and said in r.json()["error"]["message"], (other, r.text)
                r = await http.get(f"{hub.url}{other}", headers={**h, "accept": "text/event-stream"})
                assert r.status_code == 400, (other, r.text)
            r = await http.delete(f"{hub.url}?tags=dev", headers=h)
            assert r.status_code == 400
            assert (await http.delete(hub.url, headers=h)).status_code == 200


@pytest.mark.anyio
async def test_editing_a_preset_tells_only_its_sessions(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": SERVERS}))
    presets = tmp_path / "presets.json"
    presets.write_text(json.dumps({"presets": {"work": {"filter": "vcs"}}}))
    got: dict[str, anyio.Event] = {"preset": anyio.Event(), "all": anyio.Event()}

    def handler(key: str) -> Any:
        async def on_message(message: Any) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                got[key].set()

        return on_message

    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": SERVERS}, config_path=path) as hub:
            async with (
                Client(f"{hub.url}?preset=work", mode="legacy", cache=None, message_handler=handler("preset")) as p,
                Client(hub.url, mode="legacy", cache=None, message_handler=handler("all")) as a,
            ):
                assert {n.split("__")[0] for n in await names(p)} == {"git"}
                tmp = presets.with_suffix(".tmp")
                tmp.write_text(json.dumps({"presets": {"work": {"filter": "prod"}}}))
                tmp.replace(presets)
                await got["preset"].wait()
                assert {n.split("__")[0] for n in await names(p)} == {"web", "db"}
                assert len(await names(a)) > 0
                assert not got["all"].is_set()  # the unfiltered session's list did not change


@pytest.mark.anyio
async def test_tool_overrides() -> None:
    servers = {
        "a": stdio(toolAliases={"echo": "say"}, disabledTools=["fail"], toolDescriptions={"sleep": "Nap."}),
        "b": stdio(enabledTools=["echo"]),
    }
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers}) as hub, Client(hub.url, mode="legacy", cache=None) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            assert "a__say" in tools and "a__echo" not in tools  # renamed; the old name is not exposed
            assert "a__fail" not in tools
            assert tools["a__sleep"].description == "Nap."
            assert {n for n in tools if n.startswith("b__")} == {"b__echo"}
            said = await c.call_tool("a__say", {"message": "aliased"})
            assert isinstance(said.content[0], types.TextContent) and said.content[0].text == "aliased"
            for refused in ("a__echo", "a__fail", "b__sleep"):
                with pytest.raises(MCPError) as err:
                    await c.call_tool(refused, {})
                assert err.value.error.code == -32602


@pytest.mark.anyio
async def test_instructions_summarise_the_view() -> None:
    servers = {
        "web": stdio("--instructions", "Fetch pages politely.", tags=["net"]),
        "git": stdio("--instructions", "Commit with care.", tags=["vcs"], instructions="Only on branches."),
    }
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers}) as hub:
            async with Client(f"{hub.url}?tags=vcs", mode="legacy", cache=None) as c:
                text = c.instructions or ""
                assert '<server name="git">' in text and "Only on branches." in text  # the override
                assert "web" not in text and "Commit with care." not in text
            async with Client(hub.url, mode="legacy", cache=None) as c:
                text = c.instructions or ""
                assert "Fetch pages politely." in text and "2 MCP server(s)" in text


def test_a_template_that_renders_its_tags_lets_any_tag_be_named() -> None:
    """Its instances' tags are known only once rendered: no tag can be called unknown ahead of them."""
    plain = HubConfig.model_validate({"mcpServers": {"web": {"command": "x", "tags": ["net"]}}})
    assert views.known_tags(plain) == frozenset({"net"})
    with pytest.raises(views.ViewError, match="'nope'"):
        views.from_query("tags=nope", {}, views.known_tags(plain))
    assert views.from_query("preset=p", {"p": "nope"}, views.known_tags(plain)) is not None  # the operator's
    templated = {"web": {"command": "x", "tags": ["net"]}}
    rendered = HubConfig.model_validate(
        {"mcpServers": templated, "templates": {"t": {"command": "x", "tags": ["{{project.name}}"]}}}
    )
    assert views.known_tags(rendered) is None
    assert views.from_query("tags=anything", {}, None) is not None


def test_a_view_keeps_what_a_scope_grants_of_a_template() -> None:
    """A scope names a template (`fz`), a view its instances (`fz@<hash>`, by their rendered tags):
    the requester sees the instances the view selects, whole or the granted tool, and no other."""
    bound = frozenset({"fz@abc", "fz@def"})
    view = frozenset({"fz@abc", "time"})
    whole = Reach(frozenset({"fz"}), frozenset(), bound).within(view)
    assert whole.shows("tools", "fz@abc", "echo") and whole.shows("prompts", "fz@abc", "")
    assert not whole.shows("tools", "fz@def", "echo")  # an instance the view did not select
    assert not whole.shows("tools", "time", "now")  # a server the scope did not grant
    one = Reach(frozenset(), frozenset({("fz", "echo")}), bound).within(view)
    assert one.shows("tools", "fz@abc", "echo")
    assert not one.shows("tools", "fz@abc", "other") and not one.shows("tools", "fz@def", "echo")
    assert Reach(None, frozenset(), bound).within(view).shows("tools", "fz@abc", "echo")


@pytest.mark.parametrize(
    "reach",
    [
        Reach(None, frozenset(), frozenset({"t@aaa"})),  # mcp / admin
        Reach(frozenset({"t"}), frozenset(), frozenset({"t@aaa"})),  # server:t
        Reach(frozenset({"t@aaa"}), frozenset(), frozenset({"t@aaa"})),  # tag:<a tag the instance rendered>
        Reach(frozenset(), frozenset({("t", "echo")}), frozenset({"t@aaa"})),  # tool:t/echo
    ],
)
def test_an_instance_a_reach_shows_anything_of_it_touches(reach: Reach) -> None:
    """`touches` (log lines, logging/setLevel, tasks) agrees with `shows` (lists, calls) on a bound instance,
    however the scopes granted it; an instance not bound is neither."""
    assert reach.shows("tools", "t@aaa", "echo") and reach.touches("t@aaa")
    assert not reach.shows("tools", "t@bbb", "echo") and not reach.touches("t@bbb")
