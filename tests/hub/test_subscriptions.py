"""Resource subscriptions are held where the session's calls go, and only servers that take them are asked.

The matrix the protocol-transparency audit found holes in: a legacy client whose calls go over a
connection of its own (`isolation: session`, or `auto` once the server asked a client something)
must hear the updates of that connection, before and after its calls moved there; its
`roots/list_changed` must reach that connection too; and a server without subscriptions answers
as it would directly.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import mcp_types as types
import orjson
import pytest
from mcp import Client, StdioServerParameters
from mcp.client import ClientRequestContext
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command
from support.hub import running_hub
from support.inprocess import modern_request
from support.results import Heard, text_of

if TYPE_CHECKING:
    from onemcp.demo.kit import McpServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),  # resources/subscribe
]
DEADLINE = 30.0
STATIC = "fixture://static"  # as the upstream knows it
VISIBLE = "demo+fixture://static"  # as the hub shows it (prefixed by its server)
SDK_UPSTREAM = [sys.executable, str(Path(__file__).parents[1] / "fixtures" / "sdk_upstream.py")]


def hold(server: McpServer, method: str) -> tuple[anyio.Event, anyio.Event]:
    """Holds `method` at an in-process server: (arrived, answer). `arrived` is set when the request comes; it is
    answered, as the server ever would, once the test sets `answer`."""
    handler = server.methods[method]
    arrived, answer = anyio.Event(), anyio.Event()

    async def holding(call: Any) -> dict[str, Any]:
        arrived.set()
        await answer.wait()
        return await handler(call)

    server.methods[method] = holding
    return arrived, answer


def watch(server: McpServer, method: str) -> anyio.Event:
    """Set when `method` comes to an in-process server (answered as ever)."""
    handler = server.methods[method]
    came = anyio.Event()

    async def seeing(call: Any) -> dict[str, Any]:
        came.set()
        return await handler(call)

    server.methods[method] = seeing
    return came


def stdio(**extra: Any) -> dict[str, Any]:
    cmd = fixture_command()
    return {"command": cmd[0], "args": cmd[1:], **extra}


async def sampling(
    context: ClientRequestContext, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult:
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="ok"), model="m")


def updates() -> Heard:
    """What a client hears of `notifications/resources/updated`: the URIs."""
    return Heard(types.ResourceUpdatedNotification, lambda n: str(n.params.uri))


@pytest.mark.parametrize("isolation", ["auto", "session"])
@pytest.mark.parametrize("subscribe_first", [False, True])
async def test_updates_come_from_the_connection_the_sessions_calls_go_to(isolation: str, subscribe_first: bool) -> None:
    """`subscribe_first`: subscribed while its calls still went to the shared connection (under auto)."""
    heard = updates()
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"demo": stdio(isolation=isolation), "other": stdio()}}) as hub:
            async with Client(
                hub.url, mode="legacy", cache=None, sampling_callback=sampling, message_handler=heard
            ) as c:
                if subscribe_first:
                    await c.subscribe_resource(VISIBLE)
                assert '"ok"' in text_of(await c.call_tool("demo__sample", {}))  # the server asks a client
                if not subscribe_first:
                    await c.subscribe_resource(VISIBLE)
                # calls now go over the session's own connection (auto: the server asked a client once)
                assert text_of(await c.call_tool("demo__touch", {"uri": STATIC})) == f"touched {STATIC}"
                assert hub.app.hub.isolated.count("demo") == 1
                await heard.came.wait()
                assert heard.values == [VISIBLE]
                await c.unsubscribe_resource(VISIBLE)
                assert text_of(await c.call_tool("demo__touch", {"uri": STATIC})) == f"not subscribed: {STATIC}"


async def test_an_update_on_one_sessions_own_connection_reaches_that_session_only() -> None:
    mine, theirs = updates(), updates()
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"demo": stdio(isolation="session"), "other": stdio()}}) as hub:
            async with (
                Client(hub.url, mode="legacy", cache=None, sampling_callback=sampling, message_handler=mine) as a,
                Client(hub.url, mode="legacy", cache=None, sampling_callback=sampling, message_handler=theirs) as b,
            ):
                await a.subscribe_resource(VISIBLE)
                await b.subscribe_resource(VISIBLE)
                assert text_of(await a.call_tool("demo__touch", {"uri": STATIC})) == f"touched {STATIC}"
                await mine.came.wait()
                assert text_of(await b.call_tool("demo__touch", {"uri": STATIC})) == f"touched {STATIC}"
                await theirs.came.wait()
                await a.send_ping()  # anything still on its way to a has arrived by now
                assert mine.values == [VISIBLE] and theirs.values == [VISIBLE]


async def test_a_new_own_connection_is_subscribed_again() -> None:
    """The session's own connection died and a new one took over: the subscription follows."""
    heard = updates()
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"demo": stdio(isolation="session"), "other": stdio()}}) as hub:
            async with Client(hub.url, mode="legacy", cache=None, message_handler=heard) as c:
                await c.subscribe_resource(VISIBLE)
                session = next(iter(hub.app.hub.sessions))
                first = hub.app.hub.isolated.ready(session.id, "demo")
                assert first is not None
                await first.transport.aclose()
                while first.state == "ready":
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                assert text_of(await c.call_tool("demo__touch", {"uri": STATIC})) == f"touched {STATIC}"
                assert hub.app.hub.isolated.ready(session.id, "demo") is not first
                await heard.came.wait()


async def test_roots_changed_reaches_the_sessions_own_connection() -> None:
    roots = [types.Root(uri="file:///one", name="one")]

    async def list_roots(context: ClientRequestContext) -> types.ListRootsResult:
        return types.ListRootsResult(roots=roots)

    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"demo": stdio(isolation="session"), "other": stdio()}}) as hub:
            async with Client(hub.url, mode="legacy", cache=None, list_roots_callback=list_roots) as c:
                assert "file:///one" in text_of(await c.call_tool("demo__roots", {}))
                await c.send_roots_list_changed()
                await c.send_ping()  # the notification was handled before the ping's answer
                for server in ("demo", "other"):  # its own connection, and the shared one as before
                    seen = orjson.loads(text_of(await c.call_tool(f"{server}__whoami", {})))
                    assert seen["heard"].get("notifications/roots/list_changed") == 1, server


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
async def test_subscribing_where_the_server_takes_no_subscriptions_fails_as_it_does_directly(era: str) -> None:
    """The SDK's own server declares no `resources.subscribe` and answers -32601: so does the hub."""
    direct = StdioServerParameters(command=SDK_UPSTREAM[0], args=SDK_UPSTREAM[1:])
    with anyio.fail_after(DEADLINE):
        async with Client(direct, mode="legacy", cache=None) as c:
            with pytest.raises(MCPError) as plain:
                await c.subscribe_resource("sdk://note")
        servers = {"sdk": {"command": SDK_UPSTREAM[0], "args": SDK_UPSTREAM[1:], "protocol": "legacy"}}
        async with running_hub({"mcpServers": {**servers, "other": stdio()}}) as hub:
            async with Client(hub.url, mode="legacy", cache=None) as c:
                listed = [str(r.uri) for r in (await c.list_resources()).resources]
                assert "sdk+sdk://note" in listed
                with pytest.raises(MCPError) as via_hub:
                    await c.subscribe_resource("sdk+sdk://note")
                assert text_of(await c.call_tool("other__echo", {"message": "still fine"})) == "still fine"
    assert plain.value.error.code == via_hub.value.error.code == -32601


async def advertised(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The resources capability the hub offers in each era: (server/discover, initialize)."""
    headers, body = modern_request("server/discover")
    async with httpx.AsyncClient(timeout=DEADLINE) as http:
        discovered = (await http.post(url, json=body, headers=headers)).json()["result"]["capabilities"]
    async with Client(url, mode="legacy", cache=None) as c:
        initialized = c.server_capabilities.model_dump(by_alias=True, exclude_none=True)
    return discovered["resources"], initialized["resources"]


async def test_both_eras_offer_subscriptions_only_when_an_upstream_takes_them() -> None:
    with anyio.fail_after(DEADLINE):
        # legacy: in 2026-07-28 the SDK's server takes subscriptions (on subscriptions/listen)
        servers = {"sdk": {"command": SDK_UPSTREAM[0], "args": SDK_UPSTREAM[1:], "protocol": "legacy"}}
        async with running_hub({"mcpServers": servers}) as hub:
            assert await advertised(hub.url) == ({"listChanged": True}, {"listChanged": True})
        async with running_hub({"mcpServers": {**servers, "demo": stdio()}}) as hub:
            with_subscribe = {"listChanged": True, "subscribe": True}
            assert await advertised(hub.url) == (with_subscribe, with_subscribe)


async def test_a_legacy_client_is_offered_subscriptions_a_dual_era_server_takes_in_that_era_alone() -> None:
    """The hub's initialize advertised `resources.subscribe` from the era it speaks to each server: with a
    dual-era server that takes subscriptions in the legacy era alone as the only one, it did not, though it
    takes them (over the legacy-era companion), so a client that honours capabilities never subscribed
    (s33/c). It offers them to legacy clients while such a server may take them, and once its companion ran,
    as that one declared; a 2026-07-28 client is offered what that era takes, as directly."""
    modern_server = str(Path(__file__).parents[1] / "fixtures" / "modern_server.py")
    dual = {"command": sys.executable, "args": [modern_server]}
    plain = {"command": sys.executable, "args": [modern_server, "--no-subscribe"]}
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"dual": dual}}) as hub:
            assert await advertised(hub.url) == ({"listChanged": True}, {"listChanged": True, "subscribe": True})
            assert hub.app.hub.isolated.count("dual") == 0  # said before any companion ran: no process for it
        async with running_hub({"mcpServers": {"plain": plain}}) as hub:
            async with Client(hub.url, mode="legacy", cache=None) as c:
                assert c.server_capabilities.resources is not None and c.server_capabilities.resources.subscribe
                with pytest.raises(MCPError) as refused:  # its companion says it takes none: -32601, as directly
                    await c.subscribe_resource("plain+modern://note")
                assert refused.value.error.code == -32601
            assert await advertised(hub.url) == ({"listChanged": True}, {"listChanged": True})  # learned


async def test_a_dual_era_servers_legacy_companion_holds_the_subscription_and_hears_the_roots() -> None:
    """A legacy client that can be asked back calls a dual-era server over the legacy-era companion
    connection: its subscription and its roots changes must reach that connection, not only the
    2026-07-28 one the catalog uses."""
    heard = updates()

    async def list_roots(context: ClientRequestContext) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///srv", name="srv")])

    dual = {"command": sys.executable, "args": [str(Path(__file__).parents[1] / "fixtures" / "modern_server.py")]}
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"dual": dual, "other": stdio()}}) as hub:
            assert hub.app.hub.pool.connections["dual"].era == "modern"
            async with Client(
                hub.url, mode="legacy", cache=None, list_roots_callback=list_roots, message_handler=heard
            ) as c:
                await c.subscribe_resource("dual+modern://note")
                touched = text_of(await c.call_tool("dual__touch", {"uri": "modern://note"}))
                assert touched == "touched modern://note"
                await heard.came.wait()
                assert heard.values == ["dual+modern://note"]
                await c.send_roots_list_changed()
                await c.send_ping()
                assert text_of(await c.call_tool("dual__heard", {})) == "1"


async def test_a_dual_era_server_takes_a_legacy_clients_subscription_in_the_era_that_offers_it() -> None:
    """The fixture takes `resources/subscribe` in the legacy era only (2026-07-28: on no listen), and the hub
    speaks 2026-07-28 to it: a legacy client that declared nothing it could be asked got -32601, though the
    same server takes the subscription directly. Its subscription, and its calls while it holds one, go over
    the legacy-era companion, so the change a call makes is heard."""
    heard = updates()
    dual = {"command": sys.executable, "args": [str(Path(__file__).parents[1] / "fixtures" / "modern_server.py")]}
    with anyio.fail_after(DEADLINE):
        async with Client(StdioServerParameters(**dual), mode="legacy", cache=None) as direct:
            await direct.subscribe_resource("modern://note")
            assert text_of(await direct.call_tool("touch", {"uri": "modern://note"})) == "touched modern://note"
        async with running_hub({"mcpServers": {"dual": dual, "other": stdio()}}) as hub:
            shared = hub.app.hub.pool.connections["dual"]
            assert shared.era == "modern"
            async with Client(hub.url, mode="legacy", cache=None, message_handler=heard) as c:
                assert text_of(await c.call_tool("dual__echo", {})) == "{}"
                assert hub.app.hub.isolated.count("dual") == 0  # no use for a second connection yet
                await c.subscribe_resource("dual+modern://note")
                touched = text_of(await c.call_tool("dual__touch", {"uri": "modern://note"}))
                assert touched == "touched modern://note"
                await heard.came.wait()
                assert heard.values == ["dual+modern://note"]
                assert hub.app.hub.isolated.count("dual") == 1
                await c.unsubscribe_resource("dual+modern://note")
                untouched = text_of(await c.call_tool("dual__touch", {"uri": "modern://note"}))
                assert untouched == "not subscribed: modern://note"
            async with Client(hub.url, cache=None) as modern:  # 2026-07-28: the server takes none, as directly
                async with modern.listen(resource_subscriptions=["dual+modern://note"]) as sub:
                    assert sub.honored.resource_subscriptions in (None, [])


async def test_a_revived_sessions_subscription_to_a_dual_era_server_is_held_where_it_is_heard() -> None:
    """A session revived from sessions.db got its subscriptions back on the shared connection, which speaks
    2026-07-28 to a dual-era server that takes them in the legacy era alone: inert there until the session's
    next call to that server moved them to the legacy-era companion (`follow`), so an update another client's
    call made meanwhile was not heard (s33/c). They are held again where a subscribe would hold them."""
    heard = updates()
    dual = {"command": sys.executable, "args": [str(Path(__file__).parents[1] / "fixtures" / "modern_server.py")]}
    key = ("dual", "modern://note")
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"dual": dual, "other": stdio()}}) as hub:
            core = hub.app.hub
            async with Client(hub.url, mode="legacy", cache=None, message_handler=heard) as revived:
                (session,) = list(core.sessions)
                core.subscriptions.restore(session, [key])  # what reviving it after a restart does
                with anyio.move_on_after(10):
                    while session.subscriptions.get(key) is None:  # still on the shared connection
                        await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline (its companion starts)
                await touched_and_heard(hub.url, heard)
                assert text_of(await revived.call_tool("other__echo", {"message": "m"})) == "m"
            assert core.isolated.count("dual") == 1  # the companion: one for every legacy client


async def test_a_revived_sessions_subscriptions_failing_to_move_for_any_reason_leave_the_hub_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Moving a revived session's subscriptions runs on the hub's task group, and finding the connection they
    move to may fail with more than a hub error (a principal's values read from a `user-secrets.db` that is not
    a database: `sqlite3.DatabaseError`). It is logged; it ended the hub's task group, and the hub with it."""
    dual = {"command": sys.executable, "args": [str(Path(__file__).parents[1] / "fixtures" / "modern_server.py")]}
    failed = anyio.Event()

    async def broken_store(*args: Any, **kwargs: Any) -> Any:
        failed.set()
        raise sqlite3.DatabaseError("file is not a database")

    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"dual": dual, "other": stdio()}}) as hub:
            core = hub.app.hub
            monkeypatch.setattr(core.subscriptions, "route", broken_store)
            async with Client(hub.url, mode="legacy", cache=None) as revived:
                (session,) = list(core.sessions)
                core.subscriptions.restore(session, [("dual", "modern://note")])  # what reviving it does
                await failed.wait()
                assert text_of(await revived.call_tool("other__echo", {"message": "m"})) == "m"  # still serving


async def touched_and_heard(url: str, heard: Heard) -> None:
    """Another legacy client subscribes to the dual-era server's note and touches it: the update reaches
    `heard` (the revived session's handler) too, so its subscription is where updates are heard."""
    async with Client(url, mode="legacy", cache=None) as other:
        await other.subscribe_resource("dual+modern://note")
        assert text_of(await other.call_tool("dual__touch", {"uri": "modern://note"})) == "touched modern://note"
        with anyio.move_on_after(5):
            await heard.came.wait()
    assert heard.values == ["dual+modern://note"]


# a server whose process fails at once until its marker file exists, then is the dual-era fixture
FAILS_UNTIL = "import os, sys; os.path.exists(sys.argv[1]) or sys.exit(1); os.execv(sys.executable, sys.argv[2:])"


async def test_a_revived_sessions_subscription_waits_for_a_server_whose_first_start_failed(tmp_path: Path) -> None:
    """The same, where the server's first start failed: it was waited for (its first settling) only, so once
    supervision brought it up its revived sessions' subscriptions stayed on the shared connection, inert, until
    their next call to it (s34/q). They move where they are heard once it is ready."""
    heard = updates()
    marker = tmp_path / "up"
    modern_server = str(Path(__file__).parents[1] / "fixtures" / "modern_server.py")
    dual = {"command": sys.executable, "args": ["-c", FAILS_UNTIL, str(marker), sys.executable, modern_server]}
    key = ("dual", "modern://note")
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"dual": dual, "other": stdio()}}) as hub:
            core = hub.app.hub

            def current() -> Any:  # the server's shared connection now (each start of it is a new one)
                return core.pool.connections["dual"]

            assert current().state == "failed"
            async with Client(hub.url, mode="legacy", cache=None, message_handler=heard) as revived:
                (session,) = list(core.sessions)
                core.subscriptions.restore(session, [key])  # what reviving it after a restart does
                marker.touch()
                core.pool.retry_now("dual")  # supervision's next start, without its backoff
                with anyio.move_on_after(10):
                    while session.subscriptions.get(key) is None:  # still on the shared connection
                        await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline (its companion starts)
                while current().state != "ready":
                    await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline (it is up)
                assert current().era == "modern"
                await touched_and_heard(hub.url, heard)
                assert text_of(await revived.call_tool("other__echo", {"message": "m"})) == "m"


async def test_a_legacy_client_never_sees_the_id_of_the_hubs_own_listen() -> None:
    """An update a 2026-07-28 upstream sends on the hub's own listen stream carries that stream's
    subscriptionId: the hub's, a 2026-07-28 key; a legacy session gets the update without it."""
    from onemcp.hub.connections import LEGACY_COMPANION

    metas: list[Any] = []

    def seen(n: types.ResourceUpdatedNotification) -> str:
        metas.append(n.params.meta)
        return str(n.params.uri)

    heard = Heard(types.ResourceUpdatedNotification, seen)

    async def list_roots(context: ClientRequestContext) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[])

    dual = {"command": sys.executable, "args": [str(Path(__file__).parents[1] / "fixtures" / "modern_server.py")]}
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"dual": dual, "other": stdio()}}) as hub:
            async with Client(
                hub.url, mode="legacy", cache=None, list_roots_callback=list_roots, message_handler=heard
            ) as c:
                await c.subscribe_resource("dual+modern://note")  # held on the legacy-era companion
                conn = hub.app.hub.isolated.ready(LEGACY_COMPANION, "dual")
                assert conn is not None
                meta = {"io.modelcontextprotocol/subscriptionId": 35, "kept": 1}
                update = {"jsonrpc": "2.0", "method": "notifications/resources/updated",
                          "params": {"uri": "modern://note", "_meta": meta}}  # fmt: skip
                hub.app.hub.reverse.notification(conn, update, None)  # as a listen stream delivers one
                await heard.came.wait()
    assert heard.values == ["dual+modern://note"] and metas == [{"kept": 1}], metas


async def test_a_uri_too_long_to_hold_is_refused_in_both_eras(tmp_path: Path) -> None:
    """Hunt G: any URI under a server's prefix is taken for a subscription and held (here and upstream) for as
    long as it lasts; with only the body limit, 100 subscriptions of 2 MB URIs grew the hub by 210 MB (1,000 of
    4 MiB: 4 GB, per session). A URI longer than MAX_URI is -32602, and a listen does not honour it."""
    from onemcp.hub.subscriptions import MAX_URI
    from support.entries import Refused, Target, legacy_http, modern_http

    long_uri = "demo+fixture://x/" + "y" * MAX_URI
    fine_uri = "demo+fixture://x/" + "y" * (MAX_URI - 20)
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"demo": stdio(), "other": stdio()}}) as hub:
            async with httpx.AsyncClient(timeout=DEADLINE) as http:
                target = Target(hub, tmp_path / "mcp.json", http, None)
                async with legacy_http(target) as legacy:
                    with pytest.raises(Refused, match=r"-32602.*at most 8192"):
                        await legacy.request("resources/subscribe", {"uri": long_uri})
                    assert await legacy.request("resources/subscribe", {"uri": fine_uri}) == {}
                async with modern_http(target) as modern:
                    assert await modern.listen([long_uri, fine_uri]) == [fine_uri]


async def frozen(tg: Any, http: httpx.AsyncClient, url: str, conn: Any, thawed: anyio.Event) -> None:
    """The fixture server `demo` stops answering for 5 s (a 2026-07-28 call of `freeze`, in `tg`): returns
    once the call is in flight; `thawed` is set when it answers again."""
    from downstream.test_modern import headers, modern

    async def freeze() -> None:
        call = modern("tools/call", name="demo__freeze", arguments={"seconds": 5})
        await http.post(url, json=call, headers=headers("tools/call", "demo__freeze"))
        thawed.set()

    tg.start_soon(freeze)
    while not conn.in_flight:
        await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline


async def test_an_ended_listen_forgets_its_subscriptions_without_waiting_on_a_server_that_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ended listen's unsubscribes went one after another, shielded, each waiting up to its server's
    `timeout`: a server that stopped answering held the ended listen (its principal's stream) and the hub's
    shutdown that long per URI. Its servers are told for UNSUBSCRIBE_WAIT at most; the rest is forgotten."""
    from downstream.test_modern import headers, modern
    from onemcp.hub import subscriptions

    monkeypatch.setattr(subscriptions, "UNSUBSCRIBE_WAIT", 0.3)
    uris = [f"demo+fixture://x/{n}" for n in range(3)]
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"demo": stdio(timeout=30), "other": stdio()}}) as hub:
            held = hub.app.hub.subscriptions._subscribers
            thawed = anyio.Event()
            async with httpx.AsyncClient(timeout=DEADLINE) as http, anyio.create_task_group() as tg:
                listen = modern("subscriptions/listen", notifications={"resourceSubscriptions": uris})
                async with http.stream("POST", hub.url, json=listen, headers=headers("subscriptions/listen")) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data:"):  # the acknowledgement: subscribed
                            break
                    assert len(held) == 3

                    await frozen(tg, http, hub.url, hub.app.hub.pool.connections["demo"], thawed)
                # the listen ended: its subscriptions are forgotten while the server is still frozen
                while held:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                assert not thawed.is_set()


async def test_a_listen_is_acknowledged_without_waiting_on_a_server_that_does_not_answer(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A listen subscribed to its URIs one after another, each waiting up to its server's `timeout`: its
    acknowledgement waited that long per URI of a server that stopped answering (3 URIs, `timeout` 4: 12 s).
    The servers are asked at once, each subscription within SUBSCRIBE_WAIT, and a server that lets one pass
    is asked no more: the others' subscriptions are held, that one's are left out, logged. The acknowledgement
    names only those held: it listed every URI asked, the ones left out too (hunt s33/b)."""
    from downstream.test_modern import headers, modern
    from onemcp.hub import subscriptions

    monkeypatch.setattr(subscriptions, "SUBSCRIBE_WAIT", 0.3)
    uris = [f"demo+fixture://x/{n}" for n in range(3)] + ["other+fixture://x/0"]
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"demo": stdio(timeout=30), "other": stdio()}}) as hub:
            thawed = anyio.Event()
            async with httpx.AsyncClient(timeout=DEADLINE) as http, anyio.create_task_group() as tg:
                await frozen(tg, http, hub.url, hub.app.hub.pool.connections["demo"], thawed)
                listen = modern("subscriptions/listen", notifications={"resourceSubscriptions": uris})
                async with http.stream("POST", hub.url, json=listen, headers=headers("subscriptions/listen")) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data:"):  # the acknowledgement
                            ack = orjson.loads(line[5:])
                            break
                    assert not thawed.is_set()
                    assert list(hub.app.hub.subscriptions._subscribers) == [("other", "fixture://x/0")]
                    assert ack["method"] == "notifications/subscriptions/acknowledged"
                    assert ack["params"]["notifications"]["resourceSubscriptions"] == ["other+fixture://x/0"]
    assert "listen: demo did not take a subscription in time (0.3s at most): 3 of its 3 left out" in caplog.text


async def test_a_subscription_is_counted_per_uri_and_released_upstream_by_its_last_subscriber() -> None:
    """On one connection (the shared one) two sessions' subscriptions to a URI are one upstream: the first
    `resources/subscribe` goes upstream, the first `unsubscribe` does not release it, the last one does."""
    heard = updates()
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"demo": stdio(), "other": stdio()}}) as hub:
            async with (
                Client(hub.url, mode="legacy", cache=None) as a,
                Client(hub.url, mode="legacy", cache=None, message_handler=heard) as b,
            ):
                await a.subscribe_resource(VISIBLE)
                await b.subscribe_resource(VISIBLE)
                await a.unsubscribe_resource(VISIBLE)
                assert text_of(await a.call_tool("demo__touch", {"uri": STATIC})) == f"touched {STATIC}"  # b holds it
                await heard.came.wait()
                assert heard.values == [VISIBLE]
                await b.unsubscribe_resource(VISIBLE)
                assert text_of(await a.call_tool("demo__touch", {"uri": STATIC})) == f"not subscribed: {STATIC}"
            assert hub.app.hub.isolated.count("demo") == 0  # all on the shared connection


async def test_a_session_that_ends_subscribed_lets_go_upstream_of_what_it_alone_held() -> None:
    """Clients seldom unsubscribe before they go: a session that ended (DELETE) holding the only subscription
    to a URI had the server go on watching it, and sending updates no one heard, for as long as the connection
    lived. Its end releases upstream what it alone held, not what another session still holds, and a later
    subscriber gets it again."""
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"demo": stdio(), "other": stdio()}}) as hub:
            async with Client(hub.url, mode="legacy", cache=None) as b:

                async def touched() -> str:
                    return text_of(await b.call_tool("demo__touch", {"uri": STATIC}))

                async with Client(hub.url, mode="legacy", cache=None) as a:
                    await a.subscribe_resource(VISIBLE)
                    await b.subscribe_resource(VISIBLE)
                assert await touched() == f"touched {STATIC}"  # a went; b holds it still
                await b.unsubscribe_resource(VISIBLE)
                async with Client(hub.url, mode="legacy", cache=None) as a:
                    await a.subscribe_resource(VISIBLE)
                    assert await touched() == f"touched {STATIC}"
                while await touched() != f"not subscribed: {STATIC}":  # a's end lets it go, in the background
                    await anyio.sleep(0.02)  # allowed-sleep: polling the upstream's state, within fail_after
                await b.subscribe_resource(VISIBLE)
                assert await touched() == f"touched {STATIC}"


async def test_a_first_subscribe_goes_upstream_after_the_unsubscribe_in_flight_before_it() -> None:
    """A's unsubscribe (the last subscriber's) in flight and B's new first subscribe to the same URI went as
    two requests at once; a server taking them in either order (two POSTs to a Streamable HTTP one; here one
    that answers each as it comes, the unsubscribe held) ended unsubscribed while the hub counted B, who then
    heard no update again. B's subscribe goes upstream only once the unsubscribe has been answered."""
    from support.inprocess import fixture, inprocess_hub, tool_call

    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"demo": fixture(), "other": fixture()}) as h:
            arrived, answer = hold(h.upstreams.current("demo"), "resources/unsubscribe")
            a, b = await h.session(), await h.session()
            assert "result" in await a.ask("resources/subscribe", {"uri": VISIBLE})
            async with anyio.create_task_group() as tg:
                tg.start_soon(a.ask, "resources/unsubscribe", {"uri": VISIBLE})
                await arrived.wait()
                tg.start_soon(b.ask, "resources/subscribe", {"uri": VISIBLE})
                await anyio.wait_all_tasks_blocked()  # B's subscribe: answered upstream, or waiting its turn
                answer.set()
            touched = await b.ask("tools/call", tool_call("demo__touch", uri=STATIC))
            assert touched["result"]["content"][0]["text"] == f"touched {STATIC}"
            assert h.app.hub.subscriptions._turns == {}  # nothing kept once the turns are over


async def test_a_revived_sessions_subscription_goes_upstream_after_the_unsubscribe_in_flight_before_it() -> None:
    """The same order for a revived session's subscription (asked of a ready server on the hub's task group):
    it went upstream at once, alongside the last subscriber's unsubscribe, and could arrive before it."""
    from support.inprocess import fixture, inprocess_hub, tool_call

    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"demo": fixture(), "other": fixture()}) as h:
            arrived, answer = hold(h.upstreams.current("demo"), "resources/unsubscribe")
            a, b = await h.session(), await h.session()
            revived = h.app.hub.sessions.get(b.id)
            assert revived is not None
            assert "result" in await a.ask("resources/subscribe", {"uri": VISIBLE})
            async with anyio.create_task_group() as tg:
                tg.start_soon(a.ask, "resources/unsubscribe", {"uri": VISIBLE})
                await arrived.wait()
                h.app.hub.subscriptions.restore(revived, [("demo", STATIC)])  # what reviving it does
                await anyio.wait_all_tasks_blocked()  # its subscribe: answered upstream, or waiting its turn
                answer.set()
            while h.app.hub.subscriptions._turns:  # its turn, after the unsubscribe's
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            touched = await b.ask("tools/call", tool_call("demo__touch", uri=STATIC))
            assert touched["result"]["content"][0]["text"] == f"touched {STATIC}"


async def test_a_session_that_ends_while_its_subscribe_is_in_flight_is_not_left_holding_it() -> None:
    """A session ended (DELETE) while its first `resources/subscribe` was still unanswered upstream: its end
    found nothing to let go, and the subscribe's answer then counted it, so the hub held the subscription for
    a session that was gone and never unsubscribed upstream. The late answer lets it go upstream at once."""
    from support.inprocess import fixture, inprocess_hub, tool_call

    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"demo": fixture(), "other": fixture()}) as h:
            upstream = h.upstreams.current("demo")
            arrived, answer = hold(upstream, "resources/subscribe")
            unsubscribed = watch(upstream, "resources/unsubscribe")
            a, b = await h.session(), await h.session()
            replies: list[dict[str, Any]] = []

            async def subscribing() -> None:
                replies.append(await a.ask("resources/subscribe", {"uri": VISIBLE}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(subscribing)
                await arrived.wait()
                response, _ = await h.client.request("DELETE", headers=a.headers())
                assert response.status == 200
                answer.set()
            await unsubscribed.wait()
            assert "the session ended while it was asked for" in replies[0]["error"]["message"]
            assert h.app.hub.subscriptions._subscribers == {}
            touched = await b.ask("tools/call", tool_call("demo__touch", uri=STATIC))
            assert touched["result"]["content"][0]["text"] == f"not subscribed: {STATIC}"


async def test_a_listen_cancelled_while_its_subscriptions_are_asked_lets_go_of_those_already_held() -> None:
    """2026-07-28 has no session: a listen stream's subscriptions live as long as it does. A stdio client that
    cancelled its listen while the hub still asked its servers (one slow to answer) left the subscriptions
    already taken (the other server's) held for a listen that was gone: its end let go of nothing, since it
    had not been acknowledged. They are let go upstream too."""
    from onemcp.auth.principal import ANONYMOUS
    from onemcp.downstream.stdio import StdioServer
    from support.inprocess import MODERN, fixture, inprocess_hub
    from support.lines import Lines

    envelope = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    uris = ["other+fixture://x/0", "demo+fixture://x/0"]
    listen = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "subscriptions/listen",
        "params": {"notifications": {"resourceSubscriptions": uris}, "_meta": envelope},
    }
    with anyio.fail_after(DEADLINE), Lines() as pipe:
        async with inprocess_hub({"demo": fixture(), "other": fixture()}) as h:
            arrived, answer = hold(h.upstreams.current("demo"), "resources/subscribe")  # slow to answer
            unsubscribed = watch(h.upstreams.current("other"), "resources/unsubscribe")
            server = StdioServer(h.app.hub, ANONYMOUS, pipe.read_line, pipe.write)
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve)
                await pipe.send(listen)
                await arrived.wait()
                while ("other", "fixture://x/0") not in h.app.hub.subscriptions._subscribers:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                await pipe.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}})
                await unsubscribed.wait()
                answer.set()
                pipe.close()
            assert h.app.hub.subscriptions._subscribers == {}
            assert pipe.replies(7) == []  # a cancelled request is not answered
