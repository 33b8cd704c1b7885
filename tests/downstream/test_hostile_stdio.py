"""Hostile input on stdio: whatever a client writes to `serve --transport stdio`, each line it gets back is
one well-formed JSON-RPC message, and the hub goes on serving.

`test_hostile_http.py` drives the HTTP entry points; this is the same matrix on the stdio one, where the
era is chosen message by message (`stateless.claims_modern`) and one session lives as long as the process.
One in-process hub (one in-memory fixture upstream) and one `StdioServer` serve the whole module.
Hypothesis writes a few lines per example: random bytes, random JSON (arrays: batches; scalars), and
JSON-RPC-looking objects with every field absent, right or of a wrong type (ids of every type: floats,
objects, huge integers; methods that are not strings; params that are not objects; lone surrogates
escaped in JSON, NUL; very deep nesting), some of them claiming the 2026-07-28 era. Then a ping.

Properties: every line written is a JSON object with `"jsonrpc": "2.0"` and no traceback text; an
error has an integer code and a string message, and is never -32603 (the hub's own fault) for what the
client sent; every line `jsonrpc.parse` refuses is answered under the id it read (or null); every request
is answered under its id (a hang fails the example's deadline), unless the example cancels something;
and the ping after them is answered. After the module the hub still answers a call in both eras.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from onemcp.auth.principal import ANONYMOUS
from onemcp.downstream.stdio import StdioServer
from support.hostile import DEADLINE, ENVELOPE, FUZZ, LEGACY, PV, Pipe, exchange, lines
from support.inprocess import fixture, inprocess_hub, tool_call

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


# ------------------------------------------------------------------------------------------ the target
@dataclass
class Target:
    hub: Any
    pipe: Pipe
    pings: int = 0


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[Target]:
    to_hub, from_client = anyio.create_memory_object_stream[bytes](64)
    pipe = Pipe(to_hub, from_client)
    async with to_hub, from_client, inprocess_hub({"fx": fixture()}) as hub, anyio.create_task_group() as tg:
        server = StdioServer(hub.app.hub, ANONYMOUS, pipe.read_line, pipe.write)
        tg.start_soon(server.serve)
        init = {"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {"protocolVersion": LEGACY}}
        with anyio.fail_after(DEADLINE):
            await pipe.send(orjson.dumps(init) + b"\n")
            await pipe.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
            await pipe.until(lambda: any(r.get("id") == "init" for r in pipe.replies_since(0)))
        t = Target(hub, pipe)
        yield t
        await assert_healthy(t)
        to_hub.close()  # end of input: the server drains and ends


async def ask(t: Target, msg: dict[str, Any]) -> dict[str, Any]:
    start = len(t.pipe.written)
    await t.pipe.send(orjson.dumps(msg) + b"\n")
    mine: list[dict[str, Any]] = []

    def answered() -> bool:
        mine[:] = [r for r in t.pipe.replies_since(start) if r.get("id") == msg["id"]]
        return bool(mine)

    await t.pipe.until(answered)
    return mine[0]


async def assert_healthy(t: Target) -> None:
    """The stdio session still answers: a ping, a legacy call and a 2026-07-28 call."""
    with anyio.fail_after(DEADLINE):
        t.pings += 1
        pong = await ask(t, {"jsonrpc": "2.0", "id": f"health-{t.pings}", "method": "ping"})
        assert pong.get("result") == {}, pong
        params = tool_call("echo", message="still here")
        legacy = await ask(t, {"jsonrpc": "2.0", "id": "legacy-call", "method": "tools/call", "params": params})
        assert legacy["result"]["content"][0]["text"] == "still here", legacy
        modern = {**params, "_meta": ENVELOPE}
        reply = await ask(t, {"jsonrpc": "2.0", "id": "modern-call", "method": "tools/call", "params": modern})
        assert reply["result"]["content"][0]["text"] == "still here", reply


# ------------------------------------------------------------------------------------------ the tests
@settings(FUZZ, max_examples=1500)
@given(sent=st.lists(lines, min_size=1, max_size=4))
@example(sent=[b'{"jsonrpc":"2.0","id":1.0,"method":"ping"}', b"[]", b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]'])
@example(sent=[b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping","params":{"_meta":{"' + PV.encode() + b'":1}}}'])
@example(sent=[b'{"jsonrpc":"2.0","id":{"a":1},"result":{}}', b'{"jsonrpc":"2.0","id":null,"error":{}}'])
@example(sent=[b'{"jsonrpc":"2.0","id":18446744073709551616,"method":"ping"}', b"\x00", b"\xff\xfe"])
async def test_random_lines(target: Target, sent: list[bytes]) -> None:
    target.pings += 1
    with anyio.fail_after(DEADLINE):
        await exchange(target.pipe, sent, f"after-{target.pings}")


# ------------------------------------------------------------------------------------- regressions
async def test_a_cancel_whose_request_id_is_true_cancels_no_2026_request() -> None:
    """JSON `true` is not the request whose id is 1 (True == 1 in Python): a 2026-07-28 call with id 1 is
    still answered after a `notifications/cancelled` naming `true`."""
    to_hub, from_client = anyio.create_memory_object_stream[bytes](8)
    pipe = Pipe(to_hub, from_client)
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {**tool_call("hold"), "_meta": ENVELOPE}}
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": True}}
    with anyio.fail_after(DEADLINE):
        async with to_hub, from_client, inprocess_hub({"fx": fixture()}) as hub, anyio.create_task_group() as tg:
            server = StdioServer(hub.app.hub, ANONYMOUS, pipe.read_line, pipe.write)
            tg.start_soon(server.serve)
            conn = hub.app.hub.pool.get("fx")
            assert conn is not None
            await pipe.send(orjson.dumps(call) + b"\n")
            while conn.in_flight == 0:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            await pipe.send(orjson.dumps(cancel) + b"\n")
            pong = {"jsonrpc": "2.0", "id": "pong", "method": "ping"}
            await pipe.send(orjson.dumps(pong) + b"\n")  # answered after the cancel was handled
            await pipe.until(lambda: any(r.get("id") == "pong" for r in pipe.replies_since(0)))
            hub.upstreams.let_go.set()
            await pipe.until(lambda: any(r.get("id") == 1 for r in pipe.replies_since(0)))
            to_hub.close()
    [reply] = [r for r in pipe.replies_since(0) if r.get("id") == 1]
    assert reply["result"]["content"][0]["text"] == "let go", reply
