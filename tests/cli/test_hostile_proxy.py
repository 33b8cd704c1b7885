"""Hostile input through `onemcp proxy`: whatever a stdio client writes, each line the proxy writes back is
one well-formed JSON-RPC message, every request is answered, and the proxy and the hub go on serving.

The same lines as `tests/downstream/test_hostile_stdio.py` (`support.hostile`), here read by the proxy
and forwarded to a real hub (one fixture upstream) over HTTP: a legacy session's requests, 2026-07-28
requests one POST each, notifications and responses in the client's order. One hub and one proxy serve
the whole module; after it a call still works in both eras.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fixtures.launch import fixture_command
from onemcp.cli.proxy import Proxy
from onemcp.cli.target import Endpoint
from support.hostile import DEADLINE, ENVELOPE, FUZZ, LEGACY, Pipe, exchange, line, lines
from support.hub import running_hub

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Target:
    pipe: Pipe
    pings: int = 0


async def ask(pipe: Pipe, msg: dict[str, Any]) -> dict[str, Any]:
    start = len(pipe.written)
    await pipe.send(line(msg))
    await pipe.until(lambda: any(r.get("id") == msg["id"] for r in pipe.replies_since(start)))
    return next(r for r in pipe.replies_since(start) if r.get("id") == msg["id"])


async def assert_healthy(pipe: Pipe) -> None:
    with anyio.fail_after(DEADLINE):
        params = {"name": "echo", "arguments": {"message": "still here"}}
        legacy = await ask(pipe, {"jsonrpc": "2.0", "id": "legacy-call", "method": "tools/call", "params": params})
        assert legacy["result"]["content"][0]["text"] == "still here", legacy
        modern = {**params, "_meta": ENVELOPE}
        reply = await ask(pipe, {"jsonrpc": "2.0", "id": "modern-call", "method": "tools/call", "params": modern})
        assert reply["result"]["content"][0]["text"] == "still here", reply


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[Target]:
    cmd = fixture_command()
    to_hub, from_client = anyio.create_memory_object_stream[bytes](64)
    pipe = Pipe(to_hub, from_client)
    config = {"mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:], "timeout": 15}}}
    async with to_hub, from_client, running_hub(config) as hub, anyio.create_task_group() as tg:
        tg.start_soon(Proxy(Endpoint(hub.url), pipe.read_line, pipe.write, wait=5.0).run)
        with anyio.fail_after(DEADLINE):
            init = {"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {"protocolVersion": LEGACY}}
            assert "result" in await ask(pipe, init)
            await pipe.send(line({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        yield Target(pipe)
        await assert_healthy(pipe)
        to_hub.close()  # end of input: the proxy drains, ends its session and returns


@settings(FUZZ, max_examples=300)
@given(sent=st.lists(lines, min_size=1, max_size=4))
@example(sent=[b'{"jsonrpc":"2.0","id":1.0,"method":"ping"}', b"[]", b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]'])
@example(sent=[b'{"jsonrpc":"2.0","id":{"a":1},"result":{}}', b'{"jsonrpc":"2.0","id":null,"error":{}}'])
@example(sent=[b'{"jsonrpc":"2.0","id":18446744073709551616,"method":"ping"}', b"\x00", b"\xff\xfe"])
async def test_random_lines(target: Target, sent: list[bytes]) -> None:
    target.pings += 1
    with anyio.fail_after(DEADLINE):
        await exchange(target.pipe, sent, f"after-{target.pings}")
