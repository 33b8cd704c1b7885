"""The legacy HTTP+SSE transport (/sse, /messages): every request gets its reply, however full the
session's queue is, and a session's requests in flight are bounded (hunt-limits F2: 947 of 2,000
replies were dropped from a full queue, and nothing bounded the calls one POST after another started).
The SDK client's round trip is in tests/test_hub_e2e.py."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command
from onemcp.auth.access import SSE, decide
from onemcp.auth.principal import ANONYMOUS
from onemcp.downstream import legacy_sse
from onemcp.hub.session import OUTBOX_BYTES, Session
from onemcp.observability.limits import HITS
from onemcp.protocol import jsonrpc
from onemcp.search import meta
from support.hub import RunningHub, running_hub
from support.results import text_of

pytestmark = pytest.mark.anyio
DEADLINE = 20.0
MIB = 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def config(**limits: Any) -> dict[str, Any]:
    cmd = fixture_command()
    return {
        "mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}},
        "onemcp": {"prefixMode": "always", "limits": limits},
    }


def sse_session(hub: RunningHub) -> Session:
    """An /sse session whose stream nobody reads: what is queued for it stays queued."""
    return hub.app.hub.create_session("sse", decide(ANONYMOUS, SSE, None, {}, {}))


def req(rid: int, method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


async def replies(session: Session, wanted: int) -> list[dict[str, Any]]:
    """What the session's stream would carry, read until the reply to `wanted`."""
    assert session.outbox is not None
    got: list[dict[str, Any]] = []
    while not got or got[-1].get("id") != wanted:
        got.append(await session.outbox.receive())
    return got


async def test_a_reply_is_queued_past_the_queue_s_byte_bound() -> None:
    note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "x" * MIB}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            session = sse_session(hub)
            url = f"{hub.base}/messages?session_id={session.id}"
            for _ in range(OUTBOX_BYTES // MIB + 2):
                session.post(note)  # the queue is over its bytes: the last ones are dropped
            rest = OUTBOX_BYTES - session.queued_bytes - len(jsonrpc.dumps(note)) + MIB - 5
            session.post({**note, "params": {"data": "y" * rest}})  # 5 bytes short of the bound
            assert OUTBOX_BYTES - session.queued_bytes == 5
            r = await http.post(url, json=req(5, "ping"))
            assert r.status_code == 202
            got = await replies(session, 5)  # before: dropped ("outbound queue over ... bytes, dropped None")
            assert got[-1] == {"jsonrpc": "2.0", "id": 5, "result": {}}
            assert session.queued_bytes == 0


async def test_a_reply_waits_for_room_in_a_full_queue() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config(maxQueuedMessages=16)) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            session = sse_session(hub)
            url = f"{hub.base}/messages?session_id={session.id}"
            for n in range(16):
                session.post({"jsonrpc": "2.0", "method": "notifications/message", "params": {"n": n}})
            assert session.outbox is not None and session.outbox.queued() == 16
            for rid in (1, 2, 3):
                assert (await http.post(url, json=req(rid, "ping"))).status_code == 202
            assert session.outbox is not None
            got = [await session.outbox.receive() for _ in range(16 + 3)]  # before: the replies were dropped
            assert sorted(m["id"] for m in got if "id" in m) == [1, 2, 3]


async def test_a_session_s_requests_in_flight_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(legacy_sse, "MAX_CALLS", 2)
    before = HITS.counts["calls_per_session"]
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            session = sse_session(hub)
            url = f"{hub.base}/messages?session_id={session.id}"
            slow = {"name": "fx__sleep", "arguments": {"seconds": 3600}}
            for rid in (1, 2):
                assert (await http.post(url, json=req(rid, "tools/call", **slow))).status_code == 202
            r = await http.post(url, json=req(3, "tools/call", **slow))
            assert r.status_code == 429 and r.headers["retry-after"]
            body = r.json()
            assert body["id"] == 3 and body["error"]["code"] == -32000
            assert body["error"]["data"] == {"limit": "calls_per_session"}
            assert HITS.counts["calls_per_session"] == before + 1
            other = sse_session(hub)  # the bound is per session
            r = await http.post(f"{hub.base}/messages?session_id={other.id}", json=req(4, "ping"))
            assert r.status_code == 202 and (await replies(other, 4))[-1]["id"] == 4
            hub.app.hub.end_session(session.id)  # its calls end, and give back their places
            with anyio.fail_after(5):
                while session.id in hub.app.legacy._calls:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline


async def test_an_sse_session_whose_stream_closes_cancels_its_calls_upstream() -> None:
    """An /sse session is its stream: when the client drops it mid-call, the call is cancelled upstream (there
    is nowhere left to answer it), and the session is gone."""
    from support.hub import raw_session

    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            conn = hub.app.hub.pool.connections["fx"]
            async with http.stream("GET", f"{hub.base}/sse", headers={"accept": "text/event-stream"}) as stream:
                lines = stream.aiter_lines()
                async for line in lines:
                    if line.startswith("data: /messages"):
                        endpoint = line.removeprefix("data: ")
                        break
                url = f"{hub.base}{endpoint}"
                slow = {"name": "fx__sleep", "arguments": {"seconds": 3600}}
                assert (await http.post(url, json=req(1, "tools/call", **slow))).status_code == 202
                while conn.in_flight == 0:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            while conn.in_flight:  # the stream closed: the hub gave the call up
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            assert (await http.post(url, json=req(2, "ping"))).status_code == 404  # the session went with it
            headers = await raw_session(http, hub.url)
            running = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "fx__running"}}
            while (await http.post(hub.url, json=running, headers=headers)).json()["result"]["content"][0][
                "text"
            ] != "0":
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the cancel is a notification)


async def test_an_sse_client_chooses_its_view_and_exposure_in_the_stream_s_query() -> None:
    """server-behaviour.md: views and `exposure=` apply at /sse as at /mcp (the /messages POSTs take
    session_id only: the stream's query decides for the whole session)."""
    cmd = fixture_command()
    servers = {
        "fx": {"command": cmd[0], "args": cmd[1:], "tags": ["in"]},
        "other": {"command": cmd[0], "args": cmd[1:], "tags": ["out"]},
    }
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers}) as hub:
            async with Client(sse_client(f"{hub.base}/sse?tags=in"), mode="legacy", cache=None) as c:
                assert {t.name.split("__")[0] for t in (await c.list_tools()).tools} == {"fx"}
                with pytest.raises(MCPError) as err:
                    await c.call_tool("other__echo", {"message": "x"})
                assert err.value.error.code == -32602  # outside the view: unknown
            query = "filter=in%20or%20out&exposure=search"
            async with Client(sse_client(f"{hub.base}/sse?{query}"), mode="legacy", cache=None) as c:
                assert {t.name for t in (await c.list_tools()).tools} == set(meta.NAMES)
                found = await c.call_tool(meta.SEARCH, {"query": "echo a message", "server": "other"})
                assert "other__echo(" in text_of(found)
