"""A session's own connection's lists are that session's view of the server: what the upstream lists
to it (and lists again after its list_changed) is what its lists show and its calls find; other
sessions keep the shared connection's."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command
from onemcp.catalog.catalog import Catalog
from onemcp.hub.own_lists import OwnLists, OwnViews
from onemcp.protocol.errors import NotFound
from onemcp.protocol.names import NameCodec, PrefixMode
from support.hub import running_hub
from support.inprocess import fixture, inprocess_hub, modern_request, tool_call
from support.results import Heard, text_of

pytestmark = pytest.mark.anyio
DEADLINE = 30.0


def stdio(**extra: Any) -> dict[str, Any]:
    cmd = fixture_command()
    return {"command": cmd[0], "args": cmd[1:], **extra}


async def sampling(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> Any:
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="ok"), model="m")


def list_changed() -> Heard:
    return Heard(types.ToolListChangedNotification, lambda n: n.method)


@pytest.mark.parametrize("isolation", ["session", "auto"])
async def test_a_tool_the_upstream_adds_on_a_sessions_own_connection_is_that_sessions(isolation: str) -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"iso": stdio(isolation=isolation), "other": stdio()}}) as hub:
            heard_a, heard_b = list_changed(), list_changed()
            async with (
                Client(hub.url, mode="legacy", cache=None, sampling_callback=sampling, message_handler=heard_a) as a,
                Client(hub.url, mode="legacy", cache=None, sampling_callback=sampling, message_handler=heard_b) as b,
            ):
                for _ in range(2):  # auto: once the server asked a client, A's next call gets its own connection
                    assert text_of(await a.call_tool("iso__sample", {}))
                assert hub.app.hub.isolated.count("iso") == 1
                assert text_of(await a.call_tool("iso__add_tool", {"name": "mine"})) == "added mine"
                await heard_a.came.wait()  # to A: its view of iso changed
                names = {tool.name for tool in (await a.list_tools()).tools}
                assert "iso__mine" in names and "iso__echo" in names and "other__echo" in names
                assert text_of(await a.call_tool("iso__mine", {"x": 1})) == '{"x":1}'
                # B (on the shared connection, or its own) neither heard of it nor sees it nor can call it
                assert heard_b.values == []
                assert "iso__mine" not in {tool.name for tool in (await b.list_tools()).tools}
                with pytest.raises(MCPError, match="Tool not found: iso__mine"):
                    await b.call_tool("iso__mine", {})
                shared = hub.app.hub.pool.connections["iso"]
                assert "iso__mine" not in {t["name"] for t in hub.app.hub.catalog.items("tools")}
                assert shared.state == "ready"


async def test_a_tool_over_max_list_item_bytes_on_a_sessions_own_connection_is_left_out_too() -> None:
    """A session's own connection's lists are bounded as the shared one's: its huge tool is in no list, and a
    call to it is refused saying why (the one unprefixed server is asked for names it does not list: without
    the own connection's report the call went through to the server)."""
    config = {"onemcp": {"limits": {"maxListItemBytes": 4096}}, "mcpServers": {"iso": stdio(isolation="session")}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub:
            heard = list_changed()
            async with Client(hub.url, mode="legacy", cache=None, message_handler=heard) as a:
                assert text_of(await a.call_tool("add_tool", {"name": "huge", "description": "d" * 5000}))
                assert text_of(await a.call_tool("add_tool", {"name": "mine"})) == "added mine"
                await heard.came.wait()  # its view changed: with `mine` (`huge` alone changes nothing it is shown)
                assert hub.app.hub.isolated.count("iso") == 1
                names = {tool.name for tool in (await a.list_tools()).tools}
                assert "echo" in names and "mine" in names and "huge" not in names
                with pytest.raises(MCPError, match=r"Tool withheld: huge: its definition is \d+ bytes"):
                    await a.call_tool("huge", {})


def test_what_an_own_connection_withheld_for_its_size_is_said_by_its_reports_not_the_shared_ones() -> None:
    """A call is told "withheld" by what the caller's own connection withheld, not by what the shared one did."""
    catalog = Catalog(NameCodec(), PrefixMode.ALWAYS)
    catalog.max_item_bytes = 1024
    catalog.set_servers(["iso", "other"])
    huge = {"name": "huge", "description": "d" * 2000, "inputSchema": {"type": "object"}}
    catalog.update("iso", "tools", [huge, {"name": "shared_huge", **{k: v for k, v in huge.items() if k != "name"}}])

    class Conn:
        name = "iso"

    own, conn = OwnLists(), Conn()
    items, report = catalog.repaired("tools", [huge, {"name": "t", "inputSchema": {"type": "object"}}])
    assert own.record(conn, "tools", items, report)  # type: ignore[arg-type]
    seen = own.catalog(catalog)
    with pytest.raises(NotFound, match="Tool withheld: iso__huge"):
        seen.resolve_name("tools", "iso__huge")  # its own connection withheld it
    with pytest.raises(NotFound) as caught:
        seen.resolve_name("tools", "iso__shared_huge")  # the shared connection's: not this session's server's
    assert "withheld" not in str(caught.value)
    with pytest.raises(NotFound, match="Tool withheld: iso__shared_huge"):
        catalog.resolve_name("tools", "iso__shared_huge")
    assert own.forget(conn) and not own.reports  # type: ignore[arg-type]


def test_own_lists_replace_that_servers_lists_of_every_kind_and_nothing_else() -> None:
    catalog = Catalog(NameCodec(), PrefixMode.ALWAYS)
    catalog.set_servers(["iso", "other"])
    for server in ("iso", "other"):
        catalog.update(server, "tools", [{"name": "t", "inputSchema": {"type": "object"}}])
        catalog.update(server, "prompts", [{"name": "p"}])
        catalog.update(server, "resources", [{"uri": "file:///a", "name": "a"}])

    class Conn:
        name = "iso"

    own, conn = OwnLists(), Conn()
    assert own.catalog(catalog) is catalog  # no own connection: the catalog itself
    assert own.record(conn, "prompts", [{"name": "q"}])  # type: ignore[arg-type]
    assert own.record(conn, "resources", [{"uri": "file:///b", "name": "b"}])  # type: ignore[arg-type]
    assert not own.record(conn, "prompts", [{"name": "q"}])  # type: ignore[arg-type]
    seen = own.catalog(catalog)
    assert [p["name"] for p in seen.items("prompts")] == ["iso__q", "other__p"]
    assert seen.resolve_name("prompts", "iso__q") == ("iso", "q")
    assert seen.resolve_uri("iso+file:///b") == ("iso", "file:///b")
    assert [t["name"] for t in seen.items("tools")] == ["iso__t", "other__t"]  # not its own list: the catalog's
    assert [p["name"] for p in catalog.items("prompts")] == ["iso__p", "other__p"]  # the catalog is untouched
    assert own.catalog(catalog) is seen  # made once
    catalog.update("other", "prompts", [{"name": "p2"}])
    assert [p["name"] for p in own.catalog(catalog).items("prompts")] == ["iso__q", "other__p2"]  # made again
    assert own.forget(conn)  # type: ignore[arg-type]
    assert own.catalog(catalog) is catalog


async def test_a_tool_the_upstream_adds_on_a_principals_own_connection_is_that_principals() -> None:
    """A 2026-07-28 caller has no session: an `isolation: session` server gets one connection per principal.
    What that connection lists is the principal's view: its listen stream hears list_changed, its next
    tools/list shows the tool and its call finds it; the catalog (everyone else's) does not have it."""
    servers = {"iso": fixture("--name", "iso", isolation="session"), "other": fixture("--name", "other")}
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(servers) as h:
            headers, body = modern_request("subscriptions/listen", rid="L1", notifications={"toolsListChanged": True})
            async with h.client.open("POST", headers=headers, body=body) as stream:
                assert (await stream.message())["method"] == "notifications/subscriptions/acknowledged"
                _, (reply,) = await h.client.modern("tools/call", **tool_call("iso__add_tool", name="mine"))
                assert reply["result"]["content"][0]["text"] == "added mine"
                assert h.app.hub.isolated.held_by("user:anonymous")  # the principal's own connection took it
                note = await stream.message()
                assert note["method"] == "notifications/tools/list_changed"
            _, (listed,) = await h.client.modern("tools/list")
            names = [t["name"] for t in listed["result"]["tools"]]
            assert "iso__mine" in names and "iso__echo" in names and "other__echo" in names
            _, (called,) = await h.client.modern("tools/call", **tool_call("iso__mine", x=1))
            assert called["result"]["content"][0]["text"] == '{"x":1}'
            assert "iso__mine" not in {t["name"] for t in h.app.hub.catalog.items("tools")}  # nobody else's


def test_a_principals_own_lists_are_under_its_sessions_own() -> None:
    catalog = Catalog(NameCodec(), PrefixMode.ALWAYS)
    catalog.set_servers(["iso", "per"])
    for server in ("iso", "per"):
        catalog.update(server, "prompts", [{"name": "p"}])

    class Conn:
        def __init__(self, name: str) -> None:
            self.name = name

    class Principal:
        id = "alice"

    class Session:
        principal = Principal()
        own = OwnLists()

    views, per, iso = OwnViews(catalog), Conn("per"), Conn("iso")
    session: Any = Session()
    assert views.of(session) is catalog
    assert views.record("alice", per, "prompts", [{"name": "mine"}])  # type: ignore[arg-type]
    session.own.record(iso, "prompts", [{"name": "ours"}])
    assert [p["name"] for p in views.of(session).items("prompts")] == ["iso__ours", "per__mine"]
    assert not views.forget(iso)  # type: ignore[arg-type]  # not a principal's
    assert views.forget(per)  # type: ignore[arg-type]
    assert views.principals == {}  # nothing kept for a principal with no own connection left
    assert [p["name"] for p in views.of(session).items("prompts")] == ["iso__ours", "per__p"]


def tool(name: str) -> dict[str, Any]:
    return {"name": name, "inputSchema": {"type": "object"}}


def test_a_principals_second_connection_to_a_server_neither_replaces_its_view_nor_takes_it_away() -> None:
    """A principal's own legacy-era connection beside its 2026-07-28 one (a dual-era server with `${user:NAME}`
    values, for its legacy clients that need that era): the lists of the one that came second are kept aside,
    not swapped in (each of their lists was announced as a change), and become the view when the first stops
    (which left the principal with the shared connection's lists, made with no values, while the other ran)."""
    catalog = Catalog(NameCodec(), PrefixMode.ALWAYS)
    catalog.set_servers(["per"])
    catalog.update("per", "tools", [tool("shared")])

    class Conn:
        name, state = "per", "ready"

    first, second = Conn(), Conn()
    own = OwnLists()
    assert own.record(first, "tools", [tool("mine")])  # type: ignore[arg-type]
    assert not own.record(second, "tools", [tool("mine-legacy")])  # type: ignore[arg-type]
    assert [t["name"] for t in own.catalog(catalog).items("tools")] == ["per__mine"]
    first.state = "stopped"
    assert own.forget(first)  # type: ignore[arg-type]
    assert [t["name"] for t in own.catalog(catalog).items("tools")] == ["per__mine-legacy"]
    assert own.forget(second)  # type: ignore[arg-type]
    assert own.catalog(catalog) is catalog and own.spare == {}


def test_a_change_the_second_connection_hears_has_the_view_read_again_and_a_starting_one_takes_over() -> None:
    """The second connection's list changing (a legacy client's call over it added a tool) has the view's
    connection read that list again at once, as a companion's change does the shared connection's: it was
    kept aside unheard, and the principal's lists (both eras) and its calls' names kept the old one. And the
    second takes over when the first stops even while it is still starting (its lists come before "ready")."""
    catalog = Catalog(NameCodec(), PrefixMode.ALWAYS)
    catalog.set_servers(["per"])
    catalog.update("per", "tools", [tool("shared")])

    class Fresh:
        def __init__(self) -> None:
            self.told: list[str] = []

        def changed_elsewhere(self, kind: str) -> None:
            self.told.append(kind)

    class Conn:
        name = "per"

        def __init__(self, state: str) -> None:
            self.state, self.fresh = state, Fresh()

    first, second = Conn("ready"), Conn("starting")
    own = OwnLists()
    assert own.record(first, "tools", [tool("mine")])  # type: ignore[arg-type]
    assert not own.record(second, "tools", [tool("mine")])  # type: ignore[arg-type]
    assert not own.record(second, "tools", [tool("mine")])  # type: ignore[arg-type]
    assert first.fresh.told == []  # its first reading, and one that changed nothing
    assert not own.record(second, "tools", [tool("mine"), tool("added")])  # type: ignore[arg-type]
    assert first.fresh.told == ["tools"]
    first.state = "stopped"
    assert own.forget(first)  # type: ignore[arg-type]
    assert [t["name"] for t in own.catalog(catalog).items("tools")] == ["per__mine", "per__added"]


def test_two_connections_starting_at_once_keep_one_view() -> None:
    """A principal's legacy and 2026-07-28 clients' first calls at once: both connections list while still
    starting. The first that listed stays the view and the other is kept aside: each replaced the other's
    lists (some kinds from one, some from none)."""

    class Conn:
        name, state = "per", "starting"

    first, second = Conn(), Conn()
    own = OwnLists()
    assert own.record(first, "tools", [tool("a")])  # type: ignore[arg-type]
    assert not own.record(second, "tools", [tool("b")])  # type: ignore[arg-type]
    assert own.record(first, "prompts", [{"name": "p"}])  # type: ignore[arg-type]
    assert not own.record(second, "prompts", [{"name": "q"}])  # type: ignore[arg-type]
    held: Any = own.lists["per"]
    assert held == (first, {"tools": [tool("a")], "prompts": [{"name": "p"}]})


def test_a_third_connection_listing_while_both_others_run_keeps_the_seconds_lists_aside_too() -> None:
    """A replacement starting while the principal's two connections to the server still run (the view's
    draining after a reload, its legacy-era one live): each one's lists are kept aside (there was one place,
    and the third's took the second's), the first come shown first: when the view's stops the second's
    show, then the third's, and the shared connection's only once none is left."""
    catalog = Catalog(NameCodec(), PrefixMode.ALWAYS)
    catalog.set_servers(["per"])
    catalog.update("per", "tools", [tool("shared")])

    class Conn:
        name, state = "per", "ready"

    first, second, third = Conn(), Conn(), Conn()
    own = OwnLists()
    assert own.record(first, "tools", [tool("first")])  # type: ignore[arg-type]
    assert not own.record(second, "tools", [tool("second")])  # type: ignore[arg-type]
    assert not own.record(third, "tools", [tool("third")])  # type: ignore[arg-type]
    for gone, shown in ((first, "per__second"), (second, "per__third")):
        gone.state = "stopped"
        assert own.forget(gone)  # type: ignore[arg-type]
        assert [t["name"] for t in own.catalog(catalog).items("tools")] == [shown]
    third.state = "stopped"
    assert own.forget(third)  # type: ignore[arg-type]
    assert own.catalog(catalog) is catalog and own.spare == {} and own.lists == {}


async def test_a_tool_on_a_principals_own_connection_has_its_mcp_param_headers_checked() -> None:
    """`x-mcp-header` of a tool only the principal's own connection lists: its `Mcp-Param-*` header is
    required and checked as for any tool (it was unknown to the check, and the call went through without it)."""
    with anyio.fail_after(DEADLINE):
        servers = {"iso": fixture("--name", "iso", isolation="session"), "other": fixture("--name", "other")}
        async with inprocess_hub(servers) as h:
            _, (reply,) = await h.client.modern(
                "tools/call", **tool_call("iso__add_tool", name="mine", header="Account")
            )
            assert "result" in reply, reply
            assert reply["result"]["content"][0]["text"] == "added mine"
            _, (listed,) = await h.client.modern("tools/list")
            assert "iso__mine" in [t["name"] for t in listed["result"]["tools"]]
            headers, body = modern_request("tools/call", **tool_call("iso__mine", account="acme"))
            response, (refused,) = await h.client.request("POST", headers=headers, body=body)
            assert response.status == 400 and "Mcp-Param-Account is missing" in refused["error"]["message"]
            response, (answered,) = await h.client.request(
                "POST", headers={**headers, "mcp-param-account": "acme"}, body=body
            )
            assert answered["result"]["content"][0]["text"] == '{"account":"acme"}'
