"""Reload planning, in-process: `Hub.apply_config` starts, stops and restarts only what changed.

A restart is seen from the upstream's side: the transport factory makes a new fixture server.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from onemcp.config.model import HubConfig
from onemcp.demo.kit import Tool
from support.inprocess import InProcessHub, fixture, inprocess_hub, tool_call

pytestmark = pytest.mark.anyio
DEADLINE = 10.0


def config(servers: dict[str, Any]) -> HubConfig:
    return HubConfig.model_validate({"mcpServers": servers})


def servers_of(names: list[str]) -> set[str]:
    return {name.split("__", 1)[0] for name in names}


def made(h: InProcessHub) -> dict[str, int]:
    """How many servers the factory has made for each name (a restart makes one more)."""
    return {name: len(servers) for name, servers in h.upstreams.started.items()}


async def test_added_removed_and_changed_servers_and_nothing_else() -> None:
    before = {
        "alpha": fixture("--name", "alpha", tags=["blue"]),
        "beta": fixture("--name", "beta"),
        "gamma": fixture("--name", "gamma"),
        "epsilon": fixture("--name", "epsilon"),
        "zeta": fixture("--name", "zeta"),
    }
    after = {
        "alpha": fixture("--name", "alpha", tags=["red"]),  # a view field: applied in place
        "beta": fixture("--name", "beta", "--tools", "1"),  # how it runs: restarted
        "delta": fixture("--name", "delta"),  # new
        "epsilon": fixture("--name", "epsilon"),  # as it was
        "zeta": fixture("--name", "zeta", disabled=True),  # disabled: stopped
    }  # gamma: gone
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(before) as h:
            session = await h.session()
            assert made(h) == dict.fromkeys(before, 1)
            plan = await h.app.hub.apply_config(config(after))
            assert plan == {
                "added": ["delta"],
                "removed": ["gamma", "zeta"],
                "changed": ["beta"],
                "updated": ["alpha"],
                "unchanged": ["epsilon"],
            }
            await h.ready("beta")
            await h.ready("delta")
            assert made(h) == {"alpha": 1, "beta": 2, "gamma": 1, "epsilon": 1, "zeta": 1, "delta": 1}
            names = await session.tools()
            assert servers_of(names) == {"alpha", "beta", "delta", "epsilon"}
            assert "beta__tool_0" in names  # from the restarted beta
            for name in ("gamma__echo", "zeta__echo"):
                assert (await session.ask("tools/call", tool_call(name, message="x")))["error"]["code"] == -32602
                response, (modern,) = await h.client.modern("tools/call", **tool_call(name, message="x"))
                assert response.status == 400 and modern["error"]["code"] == -32602
            for name in ("alpha__echo", "beta__tool_0", "delta__echo"):
                _, (modern,) = await h.client.modern("tools/call", **tool_call(name, message="x"))
                assert "result" in modern, modern


async def test_a_view_only_change_applies_without_a_restart_and_is_announced() -> None:
    before = {"alpha": fixture("--name", "alpha", tags=["blue"]), "beta": fixture("--name", "beta", tags=["red"])}
    after = {
        "alpha": fixture("--name", "alpha", tags=["red"]),
        "beta": fixture("--name", "beta", tags=["red"], disabledTools=["sleep"], toolAliases={"echo": "say"}),
    }
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(before) as h:
            reds = await h.session(query="tags=red")
            assert servers_of(await reds.tools()) == {"beta"}
            async with reds.listen() as stream:
                plan = await h.app.hub.apply_config(config(after))
                assert plan["updated"] == ["alpha", "beta"] and not plan["changed"]
                notes = [(await stream.message())["method"] for _ in range(3)]  # alpha came into view: all its lists
                assert sorted(notes) == [
                    f"notifications/{kind}/list_changed" for kind in ("prompts", "resources", "tools")
                ]
            names = await reds.tools()
            assert servers_of(names) == {"alpha", "beta"}
            assert "beta__sleep" not in names and "beta__say" in names and "beta__echo" not in names
            reply = await reds.ask("tools/call", tool_call("beta__say", message="renamed"))
            assert reply["result"]["content"][0]["text"] == "renamed"
            _, (modern,) = await h.client.modern("tools/list", query="tags=red")
            assert [t["name"] for t in modern["result"]["tools"]] == names
            assert made(h) == {"alpha": 1, "beta": 1}  # no server was restarted


async def test_a_removed_server_leaves_no_tools_list_repairs_or_logger_behind() -> None:
    """Its last tools list (kept for screening again), its repairs report and a logger each stayed for as
    long as the hub ran, per server ever removed (soak hunt s29/p F2). Its pins stay: trust on first use
    outlives a remove and re-add (docs/pinned-tools.md)."""
    kept = {"a": fixture("--name", "a")}
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(kept) as h:
            hub = h.app.hub
            loggers = len(logging.Logger.manager.loggerDict)
            for n in range(5):
                await hub.apply_config(config({**kept, f"gone{n}": fixture("--name", f"gone{n}", "--tools", "3")}))
                await h.ready(f"gone{n}")
                assert f"gone{n}" in hub.pins.raw and f"gone{n}" in hub.catalog.repairs
                if n == 0:
                    echo = next(t for t in hub.pins.raw["gone0"] if t["name"] == "echo")
                await hub.apply_config(config(kept))
            assert set(hub.pins.raw) == {"a"} and set(hub.catalog.repairs) == {"a"}
            assert len(logging.Logger.manager.loggerDict) == loggers
            assert hub.pins.passing("gone0", [{**echo, "description": "changed"}], "withhold") == []  # still pinned


async def test_a_removed_server_that_lists_again_while_its_calls_drain_is_not_taken_back() -> None:
    """A removed server (or a stopped template instance) keeps answering its calls for the drain bound; a
    tools list it sends meanwhile was put back in the catalog and the pins, unplaced, kept until the next
    change (for an instance: never dropped at the end)."""
    kept = {"a": fixture("--name", "a")}
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({**kept, "gone": fixture("--name", "gone")}) as h:
            hub, session = h.app.hub, await h.session()
            listed = anyio.Event()
            on_list = hub.events.on_list

            def heard(conn: Any, kind: str, items: list[dict[str, Any]]) -> None:
                on_list(conn, kind, items)
                if conn.name == "gone" and any(t["name"] == "late" for t in items):
                    listed.set()

            hub.events.on_list = heard  # type: ignore[method-assign]
            async with anyio.create_task_group() as tg:
                await removed_while_calling(hub, session, tg, kept)
                assert not hub.catalog.has_lists("gone") and "gone" not in hub.pins.raw
                server = h.upstreams.current("gone")
                server.add_tool(Tool("late", "Added while its calls drain.", server.tools["echo"].handler))
                await server.broadcast("notifications/tools/list_changed")
                await listed.wait()
                assert not hub.catalog.has_lists("gone") and "gone" not in hub.pins.raw
                assert "gone__late" not in await session.tools()
                h.upstreams.let_go.set()


async def removed_while_calling(hub: Any, session: Any, tg: Any, kept: dict[str, Any]) -> None:
    """`gone__hold` called (it holds until the upstreams are let go), then a reload to `kept` removes `gone`:
    its connection drains that call."""
    tg.start_soon(session.ask, "tools/call", tool_call("gone__hold"))
    conn = hub.pool.get("gone")
    assert conn is not None
    while conn.in_flight == 0:
        await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
    await hub.apply_config(config(kept))


async def test_a_removed_server_draining_its_calls_offers_new_clients_nothing() -> None:
    """A new client's capabilities are those of the servers the catalog serves: a removed
    server's connection, kept up to the drain bound for its calls, no longer adds its own (here: tasks)."""
    kept = {"plain": fixture("--name", "plain")}
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}
    headers = {"accept": "application/json", "content-type": "application/json"}
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({**kept, "gone": fixture("--name", "gone", "--tasks")}) as h:
            hub, session = h.app.hub, await h.session()
            _, (before,) = await h.client.request("POST", headers=headers, body=body)
            assert "tasks" in before["result"]["capabilities"]  # the server's own
            async with anyio.create_task_group() as tg:
                await removed_while_calling(hub, session, tg, kept)
                assert "gone" in hub.pool.slots  # draining
                _, (after,) = await h.client.request("POST", headers=headers, body=body)
                assert "tasks" not in after["result"]["capabilities"], after
                h.upstreams.let_go.set()


async def test_a_new_timeout_applies_to_the_next_calls_without_a_restart() -> None:
    """Raising a server's `timeout` to save a long call restarted the server, cutting that very call off
    (and the server's state with it): a per-request setting now applies in place (hunt s30/e F5)."""
    before = {"a": fixture("--name", "a"), "b": fixture("--name", "b")}
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(before) as h:
            hub, session = h.app.hub, await h.session()
            replies: list[dict[str, Any]] = []

            async def held() -> None:
                replies.append(await session.ask("tools/call", tool_call("a__hold")))

            async with anyio.create_task_group() as tg:
                tg.start_soon(held)
                conn = hub.pool.get("a")
                assert conn is not None
                while conn.in_flight == 0:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                plan = await hub.apply_config(config({**before, "a": fixture("--name", "a", timeout=0.5)}))
                assert plan["updated"] == ["a"] and plan["changed"] == []
                h.upstreams.let_go.set()
            assert replies[0]["result"]["content"][0]["text"] == "let go"  # the call in flight was kept
            assert made(h) == {"a": 1, "b": 1} and hub.pool.get("a") is conn
            slow = await session.ask("tools/call", tool_call("a__sleep", seconds=3))
            assert "error" in slow and "0.5" in slow["error"]["message"], slow  # the new timeout


async def test_a_server_removed_and_added_back_before_the_removal_ran_keeps_its_tools() -> None:
    """Two reloads in a row, one removing a server and one adding it back, before the removal's
    background change ran: its connection is kept (nothing about it changed) while the catalog had
    forgotten its lists at the removal. Before: its tools stayed gone ("Tool not found") for as long
    as that connection lived; now the kept connection's lists are read again."""
    kept = {"alpha": fixture("--name", "alpha")}
    both = {**kept, "gamma": fixture("--name", "gamma")}
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(both) as h:
            await h.app.hub.apply_config(config(kept))
            await h.app.hub.apply_config(config(both))
            session = await h.session()
            reply = await session.ask("tools/call", tool_call("gamma__echo", message="back"))
            assert reply.get("result", {}).get("content") == [{"type": "text", "text": "back"}], reply
            assert "gamma__echo" in await session.tools()
            assert made(h) == {"alpha": 1, "gamma": 1}  # kept, not restarted


async def test_a_new_max_list_item_bytes_reads_the_lists_again_and_applies_without_a_restart() -> None:
    """A tool withheld for its size is shown once a reload raises `maxListItemBytes` (and withheld again
    once it lowers it): every connection reads its lists again, a session's own too (the pins' copy of the
    shared connection's tools is screened again, not a session's), announced as any change."""
    servers = {"big": fixture("--name", "big", "--echo-description", "d" * 5000, isolation="session")}
    small = HubConfig.model_validate({"mcpServers": servers, "onemcp": {"limits": {"maxListItemBytes": 4096}}})
    large = HubConfig.model_validate({"mcpServers": servers, "onemcp": {"limits": {"maxListItemBytes": 8192}}})
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(servers, {"limits": {"maxListItemBytes": 4096}}) as h:
            session = await h.session()
            await session.ask("tools/call", tool_call("sleep", seconds=0))  # its own connection is made
            assert h.app.hub.isolated.count("big") == 1
            assert "echo" not in await session.tools() and "sleep" in await session.tools()
            for new, shown in ((large, True), (small, False)):
                async with session.listen() as stream:
                    await h.app.hub.apply_config(new)
                    assert (await stream.message())["method"] == "notifications/tools/list_changed"
                assert ("echo" in await session.tools()) is shown
            assert made(h) == {"big": 2}  # the shared connection and the session's own: none restarted
