"""A server with replica URLs: calls balanced, sessions sticky, one replica down keeps serving."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from fixtures.launch import fixture_command, running_http_fixture
from support.hub import RunningHub, running_hub

pytestmark = pytest.mark.anyio


async def test_replicas_balance_stick_and_survive_one_down() -> None:
    with anyio.fail_after(60):
        async with running_http_fixture() as first, running_http_fixture() as second:
            config = {"mcpServers": {"r": {"url": first, "replicas": [second], "timeout": 5}}}
            async with running_hub(config) as hub:
                slot = hub.app.hub.pool.slots["r"]
                assert [m.conn.state for m in slot.members] == ["ready", "ready"]
                async with (
                    Client(hub.url, mode="legacy", cache=None) as a,
                    Client(hub.url, mode="legacy", cache=None) as b,
                ):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(a.call_tool, "sleep", {"seconds": 0.5})
                        tg.start_soon(b.call_tool, "sleep", {"seconds": 0.5})
                        while sum(m.conn.in_flight for m in slot.members) < 2:
                            await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                        # two sessions, two replicas: one call on each
                        assert [m.conn.in_flight for m in slot.members] == [1, 1]
                    pins = [s.replica_pins["r"] for s in hub.app.hub.sessions]
                    assert sorted(pins) == [0, 1]
                    # a session sticks to its replica
                    for _ in range(3):
                        await a.call_tool("echo", {"message": "x"})
                    assert sorted(s.replica_pins["r"] for s in hub.app.hub.sessions) == [0, 1]
                    # take one replica down: its session moves to the other, nothing fails
                    down = slot.members[0]
                    down.conn.transport.abort("test: replica down")
                    while down.conn.state == "ready":
                        await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                    for _ in range(4):
                        assert not (await a.call_tool("echo", {"message": "a"})).is_error
                        assert not (await b.call_tool("echo", {"message": "b"})).is_error
                    assert "echo" in {t.name for t in (await a.list_tools()).tools}  # the catalog stayed


def stdio(*args: str, **extra: Any) -> dict[str, Any]:
    cmd = fixture_command(*args)
    return {"command": cmd[0], "args": cmd[1:], **extra}


async def replicas(hub: RunningHub, name: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        found: list[dict[str, Any]] = (await http.get(f"{hub.base}/health")).json()["upstreams"][name]["replicas"]
        return found


async def test_stdio_replicas_are_processes_of_one_command_balanced_by_weight() -> None:
    servers = {"w": stdio(replicas=3, weights=[2, 1, 1]), "h": stdio(replicas=3, balance="consistent-hash")}
    servers["h"]["hashKey"] = "argument:message"
    with anyio.fail_after(60):
        async with running_hub({"mcpServers": servers}) as hub, Client(hub.url, cache=None) as modern:
            members = await replicas(hub, "w")
            assert len({m["pid"] for m in members}) == 3 and all(m["state"] == "ready" for m in members)
            for _ in range(8):  # 2026-07-28 requests: no session to stick to, each call is balanced
                assert not (await modern.call_tool("w__echo", {"message": "x"})).is_error
            assert [m["calls"] for m in await replicas(hub, "w")] == [4, 2, 2]
            for key in ("alice", "bob", "carol"):
                for _ in range(3):
                    await modern.call_tool("h__echo", {"message": key})
            calls = [m["calls"] for m in await replicas(hub, "h")]
            assert sum(calls) == 9 and all(c % 3 == 0 for c in calls), calls  # each key always on one process
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(f"{hub.base}/metrics")).text
            assert 'onemcp_upstream_replica_calls_total{replica="#0",server="w"} 4.0' in metrics


async def test_an_active_probe_takes_a_replica_out_and_brings_it_back() -> None:
    probe = {"path": "/health", "interval": 0.05, "timeout": 2, "healthyThreshold": 2, "unhealthyThreshold": 2}
    with anyio.fail_after(60):
        async with running_http_fixture() as first, running_http_fixture() as second:
            config = {"mcpServers": {"r": {"url": first, "replicas": [second], "probe": probe}}}
            async with running_hub(config) as hub, Client(hub.url, cache=None) as modern, httpx.AsyncClient() as http:
                origin = first.removesuffix("/mcp")
                with anyio.fail_after(10):
                    while [m["probe"] for m in await replicas(hub, "r")] != ["up", "up"]:
                        await anyio.sleep(0.02)  # allowed-sleep: polling /health with a deadline
                await http.post(f"{origin}/health/sick")  # the MCP endpoint still answers; its health says no
                with anyio.fail_after(10):
                    while (await replicas(hub, "r"))[0]["probe"] != "down":
                        await anyio.sleep(0.02)  # allowed-sleep: polling /health with a deadline
                before = [m["calls"] for m in await replicas(hub, "r")]
                for _ in range(6):
                    assert not (await modern.call_tool("echo", {"message": "x"})).is_error
                after = [m["calls"] for m in await replicas(hub, "r")]
                assert after[0] == before[0] and after[1] == before[1] + 6  # none to the replica that is out
                await http.post(f"{origin}/health/heal")
                with anyio.fail_after(10):
                    while (await replicas(hub, "r"))[0]["probe"] != "up":
                        await anyio.sleep(0.02)  # allowed-sleep: polling /health with a deadline
                for _ in range(6):
                    await modern.call_tool("echo", {"message": "x"})
                again = [m["calls"] for m in await replicas(hub, "r")]
                assert again[0] == after[0] + 3 and again[1] == after[1] + 3  # back in the rotation


async def test_replica_urls_are_shown_without_their_credentials() -> None:
    """/metrics labels and /health's replicas[].url showed a URL's password and `api_key=`/`token=` values
    raw (Prometheus keeps label values; the log scrubs them; hunt-ops F9): scheme, host, port and path
    only (a key in the path masked), and `#<index>` for replicas those leave alike."""
    primary = "http://user:s3cretpw@127.0.0.1:1/mcp?api_key=SECRETKEY1"
    keyed = "http://127.0.0.1:1/s/sk-ak-0Xo1vJgC7bWcO4PfGq3/mcp"  # a hosted server's key in its path
    config = {"mcpServers": {"r": {"url": primary, "replicas": ["http://127.0.0.1:1/mcp?token=SECRETKEY2", keyed]}}}
    with anyio.fail_after(60):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=10) as http:
            health = (await http.get(f"{hub.base}/health")).text
            metrics = (await http.get(f"{hub.base}/metrics")).text
            assert [m["url"] for m in await replicas(hub, "r")] == [
                "http://127.0.0.1:1/mcp",
                "http://127.0.0.1:1/mcp#1",
                "http://127.0.0.1:1/s/***/mcp",
            ]
    for text in (health, metrics):
        assert not any(secret in text for secret in ("s3cretpw", "SECRETKEY1", "SECRETKEY2", "sk-ak-0Xo1")), text
    assert 'onemcp_upstream_replica_up{replica="http://127.0.0.1:1/mcp#1",server="r"} 0.0' in metrics


async def test_a_probe_answered_a_byte_at_a_time_counts_as_failed() -> None:
    """A health endpoint that drips its answer (each byte well within httpx's per-read timeout) must fail
    the probe at its `timeout`, not hold it (and the replica's verdict) for as long as it drips."""
    from support.credentials import loopback_asgi

    stop = anyio.Event()

    async def dripping(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/health":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100000")]})
        while not stop.is_set():
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            with anyio.move_on_after(0.01):
                await stop.wait()

    probe = {"path": "/health", "interval": 0.05, "timeout": 1, "healthyThreshold": 1, "unhealthyThreshold": 1}
    with anyio.fail_after(60):
        async with running_http_fixture() as first, loopback_asgi(dripping) as slow:
            config = {"mcpServers": {"r": {"url": first, "replicas": [f"{slow}/mcp"], "probe": probe}}}
            try:
                async with running_hub(config, wait=False) as hub:
                    with anyio.fail_after(15):
                        while (await replicas(hub, "r"))[1]["probe"] != "down":
                            await anyio.sleep(0.05)  # allowed-sleep: polling /health with a deadline
            finally:
                stop.set()
