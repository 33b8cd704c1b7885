"""Restarts and reloads of one server at once, in-process: one connection per server at any time.

A call held open by the fixture's `hold` tool (answered when the test sets `let_go`) keeps a
server draining while the other change comes in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from onemcp.config.model import HubConfig
from onemcp.protocol.errors import NotFound
from onemcp.upstream import pool
from support.inprocess import InProcessHub, LegacySession, fixture, inprocess_hub, tool_call

pytestmark = pytest.mark.anyio
DEADLINE = 10.0
SERVERS = {"alpha": fixture("--name", "alpha"), "beta": fixture("--name", "beta")}


def config(servers: dict[str, Any]) -> HubConfig:
    return HubConfig.model_validate({"mcpServers": servers})


async def until(predicate: Callable[[], object]) -> None:
    """Wait until `predicate()` holds; everything else runs meanwhile (no timing)."""
    while not predicate():
        await anyio.wait_all_tasks_blocked()


class Held:
    """A `beta__hold` call in flight, and the outcomes of what runs beside it."""

    def __init__(self, h: InProcessHub, session: LegacySession) -> None:
        self.h, self.session = h, session
        self.replies: list[dict[str, Any]] = []
        self.restarts: list[str] = []

    async def call(self) -> None:
        self.replies.append(await self.session.ask("tools/call", tool_call("beta__hold")))

    async def restart(self) -> None:
        try:
            await self.h.app.hub.restart_server("beta")
            self.restarts.append("restarted")
        except NotFound as exc:
            self.restarts.append(exc.message)

    async def reload(self, servers: dict[str, Any]) -> None:
        await self.h.app.hub.apply_config(config(servers))


async def holding(h: InProcessHub, tg: anyio.abc.TaskGroup) -> Held:
    held = Held(h, await h.session())
    tg.start_soon(held.call)
    await until(lambda: h.app.hub.state.in_flight("beta"))  # on the shared connection, or the session's own
    return held


async def draining(h: InProcessHub) -> None:
    await until(lambda: h.app.hub.pool.slots["beta"].status == "stopping")


def made(h: InProcessHub) -> int:
    return len(h.upstreams.started["beta"])


async def test_a_restart_of_a_server_a_reload_removes_meanwhile_does_not_start_it_again() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            async with anyio.create_task_group() as tg:
                held = await holding(h, tg)
                tg.start_soon(held.restart)
                await draining(h)
                tg.start_soon(held.reload, {"alpha": SERVERS["alpha"]})
                await until(lambda: "beta" not in h.app.hub.config.servers)
                await anyio.wait_all_tasks_blocked()
                h.upstreams.let_go.set()
            assert held.restarts == ["server 'beta' was removed from the config while it restarted: not started again"]
            assert held.replies[0]["result"]["content"][0]["text"] == "let go"  # the call drained
            assert "beta" not in h.app.hub.pool.slots and made(h) == 1
            await until(lambda: h.upstreams.live["beta"] == 0)


async def test_a_restart_racing_a_reload_that_changes_the_server_leaves_one_connection_with_the_new_config() -> None:
    changed = fixture("--name", "beta", "--tools", "1")
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            async with anyio.create_task_group() as tg:
                held = await holding(h, tg)
                tg.start_soon(held.restart)
                await draining(h)
                tg.start_soon(held.reload, {"alpha": SERVERS["alpha"], "beta": changed})
                await anyio.wait_all_tasks_blocked()
                h.upstreams.let_go.set()
            assert held.restarts == ["restarted"]
            assert made(h) == 2  # started once more, with the config the reload brought
            assert h.app.hub.pool.slots["beta"].config.args == changed["args"]
            await h.ready("beta")
            await until(lambda: h.upstreams.live["beta"] == 1)
            await h.app.hub.apply_config(config({"alpha": SERVERS["alpha"]}))  # and removing it stops it
            await until(lambda: h.upstreams.live["beta"] == 0)


async def test_two_restarts_at_once_run_one_after_the_other() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            async with anyio.create_task_group() as tg:
                held = await holding(h, tg)
                tg.start_soon(held.restart)
                await draining(h)
                tg.start_soon(held.restart)  # a double click
                await anyio.wait_all_tasks_blocked()
                h.upstreams.let_go.set()
            assert held.restarts == ["restarted", "restarted"]
            assert made(h) == 3
            await h.ready("beta")
            await until(lambda: h.upstreams.live["beta"] == 1)
            await h.app.hub.apply_config(config({"alpha": SERVERS["alpha"]}))
            await until(lambda: h.upstreams.live["beta"] == 0 and "beta" not in h.app.hub.pool.slots)


async def test_a_reload_does_not_wait_for_a_removed_server_s_calls_to_drain() -> None:
    gamma = fixture("--name", "gamma")
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            async with anyio.create_task_group() as tg:
                held = await holding(h, tg)
                await held.reload({"alpha": SERVERS["alpha"]})  # returns while beta's call is still in flight
                await draining(h)  # /health shows it as "stopping" meanwhile
                await held.reload({"alpha": SERVERS["alpha"], "gamma": gamma})  # the next edit applies
                await h.ready("gamma")  # started at once
                assert not held.replies
                h.upstreams.let_go.set()
            assert held.replies[0]["result"]["content"][0]["text"] == "let go"
            await until(lambda: "beta" not in h.app.hub.pool.slots and h.upstreams.live["beta"] == 0)


@pytest.mark.parametrize("isolation", ["shared", "session"])
@pytest.mark.parametrize(
    ("change", "told"),
    [
        ({"alpha": SERVERS["alpha"]}, "[beta] removed from the config by a reload"),
        ({**SERVERS, "beta": fixture("--name", "beta", "--tools", "1")}, "[beta] restarting after a config change"),
        (None, "[beta] restarting (an operator asked)"),
    ],
)
async def test_a_call_cut_off_by_a_stop_hears_why(
    monkeypatch: pytest.MonkeyPatch, isolation: str, change: dict[str, Any] | None, told: str
) -> None:
    """The same words on the shared connection and on a session's own (`isolation: session`)."""
    monkeypatch.setattr(pool, "DRAIN_SECONDS", 0.0)  # the drain bound is over at once
    servers = {name: {**server, "isolation": isolation} for name, server in SERVERS.items()}
    if change is not None:
        change = {name: {**server, "isolation": isolation} for name, server in change.items()}
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(servers) as h:
            async with anyio.create_task_group() as tg:
                held = await holding(h, tg)
                await (held.restart() if change is None else held.reload(change))
            assert held.replies[0]["error"] == {"code": -32000, "message": told}


@pytest.mark.parametrize("stop", ["removed", "changed", "restarted"])
async def test_a_call_on_a_session_s_own_connection_drains_like_a_shared_one(stop: str) -> None:
    """`isolation: session`: a reload removing or changing the server, or an admin restart, lets the
    call in flight on the session's own connection finish (not cut at once); the session's next call
    meanwhile gets a new connection, and the old one closes once its call is done."""
    servers = {name: {**server, "isolation": "session"} for name, server in SERVERS.items()}
    changed = {**servers, "beta": {**fixture("--name", "beta", "--tools", "1"), "isolation": "session"}}
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(servers) as h:
            hub = h.app.hub
            async with anyio.create_task_group() as tg:
                held = await holding(h, tg)
                own = hub.isolated.connections()
                assert [conn.name for conn in own] == ["beta"] and own[0].in_flight == 1
                if stop == "restarted":
                    await held.restart()
                else:
                    await held.reload({"alpha": servers["alpha"]} if stop == "removed" else changed)
                await anyio.wait_all_tasks_blocked()
                assert not held.replies  # still in flight: not cut off
                assert hub.state.in_flight("beta") == 1 and hub.state.session_connections("beta") == 0
                if stop != "removed":  # the session's next call: a new connection of its own
                    await h.ready("beta")
                    reply = await held.session.ask("tools/call", tool_call("beta__echo", message="hi"))
                    assert reply["result"]["content"][0]["text"] == "hi"
                    assert hub.state.session_connections("beta") == 1 and hub.state.in_flight("beta") == 1
                h.upstreams.let_go.set()
            assert held.replies[0]["result"]["content"][0]["text"] == "let go"  # the call drained
            await until(lambda: own[0] not in hub.isolated.connections())  # and its connection closed
            assert own[0].state == "stopped" and hub.state.in_flight("beta") == 0


async def test_a_call_on_a_principal_s_own_connection_drains_too() -> None:
    """A 2026-07-28 call to an `isolation: session` server runs on its principal's own connection: a
    reload removing the server lets it finish as well."""
    servers = {name: {**server, "isolation": "session"} for name, server in SERVERS.items()}
    replies: list[list[dict[str, Any]]] = []
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(servers) as h:
            hub = h.app.hub

            async def call() -> None:
                replies.append((await h.client.modern("tools/call", **tool_call("beta__hold")))[1])

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await until(lambda: hub.state.in_flight("beta"))
                assert [conn.owner for conn in hub.isolated.connections()] == [None]  # a principal's: no session
                await hub.apply_config(config({"alpha": servers["alpha"]}))
                await anyio.wait_all_tasks_blocked()
                assert not replies and hub.state.in_flight("beta") == 1
                h.upstreams.let_go.set()
            assert replies[0][-1]["result"]["content"][0]["text"] == "let go"
            await until(lambda: not hub.isolated.connections())
