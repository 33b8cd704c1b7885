"""Three hub replicas behind nginx, sessions in Redis: kill -9 one under steady load, no session is lost.

Real parts only: Debian's nginx (the settings of docs/deployment.md) and redis-server, three
`onemcp serve` processes with the same config (each its own config directory: one hub per
directory), and official SDK clients (legacy era, so each has a session) calling a tool in a
loop. One replica is killed with SIGKILL mid-run; every client keeps its session and finishes,
and the only calls that may fail are those that were on the dead replica when it died.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command
from support.hub_process import HubProcess
from support.services import NGINX, REDIS, free_port, nginx_balancing, redis_server

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
    pytest.mark.skipif((REDIS is None or NGINX is None) and not os.environ.get("CI"), reason="needs redis and nginx"),
]
CLIENTS = 3
CALLS = 40
DEADLINE = 180.0
CALL_DEADLINE = 60.0  # a call the SDK never answers (its transport died silently) fails, not hangs


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[list[HubProcess], str]]:
    fx = fixture_command()
    with redis_server() as redis_url:
        config = {"mcpServers": {"fx": {"command": fx[0], "args": fx[1:]}}, "onemcp": {"sessionStore": redis_url}}
        hubs = []
        for i in range(3):
            folder = tmp_path / f"replica-{i}"
            folder.mkdir()
            (folder / "mcp.json").write_text(json.dumps(config))
            hubs.append(HubProcess(folder / "mcp.json", port=free_port()))
        try:
            for hub in hubs:
                hub.start()
            for hub in hubs:
                hub.wait_ready()
            with nginx_balancing([hub.port for hub in hubs], tmp_path / "nginx") as base:
                yield hubs, f"{base}/mcp"
        finally:
            for hub in hubs:
                hub.stop()


async def test_killing_one_of_three_replicas_loses_no_session(replicas: tuple[list[HubProcess], str]) -> None:
    hubs, url = replicas
    failures: list[str] = []
    reconnects: list[str] = []
    done = [0] * CLIENTS
    killed = anyio.Event()

    async def client(n: int) -> None:
        i = 0
        while i < CALLS:
            try:
                async with Client(url, mode="legacy", cache=None) as c:
                    while i < CALLS:
                        if n == 0 and i == CALLS // 3 and not killed.is_set():
                            assert hubs[0].process is not None
                            hubs[0].process.send_signal(signal.SIGKILL)  # mid-run, while the others call too
                            killed.set()
                        try:
                            with anyio.fail_after(CALL_DEADLINE):
                                result = await c.call_tool("echo", {"message": f"{n}-{i}"})
                            item = result.content[0]
                            assert isinstance(item, types.TextContent) and item.text == f"{n}-{i}"
                            done[n] += 1
                        except MCPError as exc:
                            failures.append(f"client {n} call {i}: {exc}")
                        i += 1
            except Exception as exc:  # the SDK's transport gave up: see below
                if not killed.is_set() or not _transport_failure(exc):
                    raise
                reconnects.append(f"client {n} call {i}: {exc!r}")
                i += 1  # the call cut off is lost; the client goes on in a new session

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            for n in range(CLIENTS):
                tg.start_soon(client, n)
    assert killed.is_set()
    # every session carried on: each client finished, and at most the calls in flight on the dead replica failed
    assert sum(done) >= CLIENTS * CALLS - CLIENTS, (done, failures)
    assert all(d >= CALLS - 1 for d in done), (done, failures)
    assert hubs[0].process is not None  # dead; on a loaded machine it may not be reaped yet: wait, with a deadline
    assert hubs[0].process.wait(timeout=DEADLINE) == -signal.SIGKILL
    revived = sum((h.config.parent / "hub.log").read_text().count("revived") for h in hubs[1:])
    assert revived >= 1  # the other replicas carried sessions they had not made
    # a call cut off by the dead replica is an error to its client (nginx answers 502; the SDK says
    # "Server returned an error response"), never a hang and never the next call's failure. If the
    # replica died between writing a reply's headers and its body, nginx passes on the headers and
    # then cuts the body: the SDK (1.x) catches that as no error and closes its transport, so that
    # client alone starts a new session (the hub kept the old one; the SDK does not resume it).
    assert len(failures) + len(reconnects) <= CLIENTS, (failures, reconnects)


def _transport_failure(exc: BaseException) -> bool:
    """Is `exc` (or every exception in its group) the SDK's HTTP client failing, or a call's deadline?"""
    if isinstance(exc, BaseExceptionGroup):
        return all(_transport_failure(e) for e in exc.exceptions)
    return isinstance(exc, httpx2.TransportError | TimeoutError)
