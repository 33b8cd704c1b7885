"""A stdio server that echoes its input (`cat`): its failure says so, not 'onemcp cannot forward initialize'."""

from __future__ import annotations

import shutil

import anyio
import pytest

from onemcp.upstream.call import Call
from onemcp.upstream.echo import sent_back
from support.hub import running_hub


def _waiting(method: str, hub_id: int) -> Call:
    call = Call("s", hub_id, None, 5.0)
    call.method = method
    call.request = {"jsonrpc": "2.0", "id": hub_id, "method": method, "params": {"protocolVersion": "2025-11-25"}}
    return call


def test_the_hubs_own_request_sent_back_is_an_error_for_its_call() -> None:
    call = _waiting("initialize", 3)
    reply = sent_back(dict(call.request), {3: call})
    assert reply is not None and reply["id"] == 3
    assert reply["error"]["message"].startswith("the server sent the hub's own initialize request back")


@pytest.mark.parametrize(
    "msg",
    [
        {"jsonrpc": "2.0", "id": 3, "method": "ping"},  # the server's own request that shares the id
        {"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {}},  # not the very message sent
        {"jsonrpc": "2.0", "id": 4, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}},
        {"jsonrpc": "2.0", "id": [3], "method": "initialize"},  # an id no call has (unhashable)
        {"jsonrpc": "2.0", "id": True, "method": "initialize"},
    ],
)
def test_a_servers_own_request_is_not_taken_for_an_echo(msg: dict[str, object]) -> None:
    assert sent_back(msg, {3: _waiting("initialize", 3)}) is None


@pytest.mark.anyio
async def test_a_server_that_echoes_its_input_fails_saying_so() -> None:
    """`cat` as a server: it was 'initialize failed: onemcp cannot forward initialize (-32601)' (hunt s38 h5 #14)."""
    cat = shutil.which("cat")
    assert cat is not None
    with anyio.fail_after(20):
        async with running_hub({"mcpServers": {"catty": {"command": cat, "startupTimeout": 10}}}) as hub:
            conn = hub.app.hub.pool.connections["catty"]
            while conn.last_error is None:
                await anyio.sleep(0.02)  # allowed-sleep: polling for the failure, within fail_after
    assert "the server sent the hub's own initialize request back instead of answering it" in conn.last_error
    assert "repeats what it reads (as `cat` does)" in conn.last_error and "cannot forward" not in conn.last_error
