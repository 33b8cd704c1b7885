"""Supervision, in-process: an in-memory upstream that ends fails its calls, then the pool restarts it."""

from __future__ import annotations

import shlex
import socket
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from fixtures.launch import fixture_command
from onemcp.config.model import HubConfig
from onemcp.upstream import pool
from support.hub import running_hub
from support.inprocess import fixture, inprocess_hub, tool_call

pytestmark = pytest.mark.anyio
DEADLINE = 10.0
SERVERS = {"alpha": fixture("--name", "alpha"), "beta": fixture("--name", "beta")}


async def test_a_crashed_upstream_fails_its_call_and_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool, "BACKOFF_FIRST", 0.0)  # restart at once (the backoff has its own tests)
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            session = await h.session()
            restarted = h.upstreams.made
            reply = await session.ask("tools/call", tool_call("alpha__crash"))
            assert reply["error"]["code"] == -32000, reply
            assert reply["error"]["message"] == "[alpha] upstream closed: server stopped"
            beta = await session.ask("tools/call", tool_call("beta__echo", message="unaffected"))
            assert beta["result"]["content"][0]["text"] == "unaffected"
            await restarted.wait()
            await h.ready("alpha")
            again = await session.ask("tools/call", tool_call("alpha__echo", message="back"))
            assert again["result"]["content"][0]["text"] == "back"
            assert len(h.upstreams.started["alpha"]) == 2 and len(h.upstreams.started["beta"]) == 1


async def test_the_same_failure_again_and_again_is_logged_less_and_less(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash loop says its failure at the 1st, 2nd, 4th... time, with the count, not every time."""
    monkeypatch.setattr(pool, "BACKOFF_FIRST", 0.0)
    monkeypatch.setattr(pool, "BACKOFF_MAX", 0.0)
    monkeypatch.setattr(pool, "RESTART_BUDGET", 1000)  # not crash-looping's long wait
    caplog.set_level("WARNING", logger="onemcp.pool")
    crash = fixture_command("--crash-on-start")  # a real process: the in-memory fixture cannot exit
    with anyio.fail_after(60):
        async with running_hub({"mcpServers": {"dead": {"command": crash[0], "args": crash[1:]}}}, wait=False) as h:
            slot = h.app.hub.pool.slots["dead"]
            while slot.restarts < 8:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
    said = [r.getMessage() for r in caplog.records if "upstream dead stopped" in r.getMessage()]
    assert 3 <= len(said) <= 5, said  # 1, 2, 4, 8 of 8+ failures
    assert "[2 times in a row]" in said[1] and "[4 times in a row]" in said[2]


async def test_a_remote_server_that_cannot_be_reached_keeps_its_backoff_not_crash_looping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the restart budget a process that keeps dying waits 5 minutes; a remote server that is
    only down keeps retrying on the (at most 30 s) backoff, so it is back soon after it is."""
    monkeypatch.setattr(pool, "BACKOFF_FIRST", 0.0)
    monkeypatch.setattr(pool, "BACKOFF_MAX", 0.0)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    crash = fixture_command("--crash-on-start")
    servers = {
        "remote": {"url": f"http://127.0.0.1:{port}/mcp"},
        "dying": {"command": crash[0], "args": crash[1:]},
    }
    earliest = time.time()  # before the attempt is scheduled (the hub does it with the wall clock)
    with anyio.fail_after(60):
        async with running_hub({"mcpServers": servers}, wait=False) as h:
            remote, dying = h.app.hub.pool.slots["remote"], h.app.hub.pool.slots["dying"]
            while remote.restarts <= pool.RESTART_BUDGET + 2 or dying.status != "crash-looping":
                assert remote.status != "crash-looping"
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            assert remote.status in ("running", "restarting")  # trying again, or about to
            while dying.next_attempt is None:  # set just after the status
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            latest = time.time()  # after it was: scheduled between the two, however slow this machine
            assert earliest + pool.CRASH_LOOP_WAIT <= dying.next_attempt <= latest + pool.CRASH_LOOP_WAIT
            assert pool.CRASH_LOOP_WAIT == 300  # tried again in 5 minutes


async def test_a_command_not_found_waits_for_an_operator_or_a_reload_not_the_backoff(tmp_path: Path) -> None:
    """Retrying a command that does not exist cannot help (`command-not-found`, no next attempt); once it is
    installed an admin restart starts it, and a reload that changes a server's command starts that one."""
    missing = tmp_path / "bin" / "server"  # installed below, as `pip install` would
    fix = fixture_command()
    servers: dict[str, Any] = {
        "later": {"command": str(missing)},
        "typo": {"command": str(tmp_path / "no-such-server")},
    }
    with anyio.fail_after(60):
        async with running_hub({"mcpServers": servers}, wait=False) as h:
            hub = h.app.hub
            while {hub.pool.slots[n].status for n in servers} != {"command-not-found"}:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            assert {n: hub.pool.slots[n].next_attempt for n in servers} == {"later": None, "typo": None}
            missing.parent.mkdir()
            missing.write_text(f"#!/bin/sh\nexec {shlex.join(fix)}\n")
            missing.chmod(0o755)
            await hub.restart_server("later")
            fixed = {**servers, "typo": {"command": fix[0], "args": fix[1:]}}
            await hub.apply_config(HubConfig.model_validate({"mcpServers": fixed}))
            while {hub.pool.slots[n].conn.state for n in servers} != {"ready"}:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline


async def test_restarts_back_off_from_half_a_second_doubling_to_thirty_with_a_fifth_of_jitter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """server-behaviour.md: 0.5 s doubling to 30 s, ±20 % jitter. The jitter factor records the delay it
    scales and makes the wait next to nothing, so the test waits for no backoff."""
    delays: list[float] = []
    bounds: set[tuple[float, float]] = set()

    class Factor(float):
        def __rmul__(self, delay: float) -> float:  # `delay * factor`: asked of the factor first (a subclass)
            delays.append(delay)
            return 0.0

    class Jitter:
        @staticmethod
        def uniform(low: float, high: float) -> float:
            bounds.add((low, high))
            return Factor(1.0)

    monkeypatch.setattr(pool, "random", Jitter)
    monkeypatch.setattr(pool, "RESTART_BUDGET", 1000)  # not crash-looping's long wait
    crash = fixture_command("--crash-on-start")
    with anyio.fail_after(60):
        async with running_hub({"mcpServers": {"dead": {"command": crash[0], "args": crash[1:]}}}, wait=False) as h:
            while len(delays) < 9:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            assert h.app.hub.pool.slots["dead"].status in ("restarting", "running")
    assert delays[:9] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert bounds == {(0.8, 1.2)}
