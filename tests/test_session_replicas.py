"""Two hub replicas sharing sessions through a real Redis: a session made on one continues on the other.

`redis-server` (Debian's package; scripts/test installs it) runs on a free loopback port for the
test and is stopped by its PID. Both hubs run in this process on their own ports with the same
config and `sessionStore: redis://...`, as replicas behind a load balancer would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from fixtures.launch import fixture_command
from support.hub import HEADERS, INIT, running_hub

REDIS = shutil.which("redis-server")
pytestmark = [pytest.mark.anyio, pytest.mark.skipif(REDIS is None and not os.environ.get("CI"), reason="redis-server is not installed")]
DEADLINE = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_url() -> Iterator[str]:
    assert REDIS is not None
    port = free_port()
    process = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                import time

                time.sleep(0.05)  # allowed-sleep: polling with a deadline (redis-server starting)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def config(redis_url: str) -> dict[str, Any]:
    fx = fixture_command()
    return {"mcpServers": {"fx": {"command": fx[0], "args": fx[1:]}}, "onemcp": {"sessionStore": redis_url}}


async def test_a_session_made_on_one_replica_continues_on_another(redis_url: str) -> None:
    import redis

    with anyio.fail_after(DEADLINE):
        async with (
            running_hub(config(redis_url)) as one,
            running_hub(config(redis_url)) as two,
            httpx.AsyncClient(timeout=30) as http,
        ):
            r = await http.post(one.url, json=INIT, headers=HEADERS)
            sid = r.headers["mcp-session-id"]
            headers = {**HEADERS, "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
            await http.post(one.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            call = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"message": "on two"}},
            }
            r = await http.post(two.url, json=call, headers=headers)  # the other replica: it never saw this session
            assert r.status_code == 200 and "on two" in r.text, r.text
            assert two.app.hub.find_session(sid) is not None
            store = redis.Redis.from_url(redis_url)
            ttl = store.ttl(f"onemcp:session:{sid}")
            assert 0 < ttl <= 1800  # Redis expires it after the idle timeout
            store.close()
            r = await http.post(two.url, json={**call, "id": 3}, headers={**headers, "mcp-session-id": "f" * 32})
            assert r.status_code == 404
