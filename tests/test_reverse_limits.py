"""Server->client requests a client leaves unanswered are capped per session and per upstream connection.

An upstream flooding sampling requests at a client that declared sampling and never answers gets
the excess refused at once; the hub holds at most the limit, keeps serving everyone else, and takes
new requests again once the client has answered (issue 20, finding 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext

from fixtures.launch import fixture_command
from support.hub import RunningHub, running_hub

pytestmark = pytest.mark.anyio
DEADLINE = 20.0
FLOOD = 2000


def stdio(**extra: Any) -> dict[str, Any]:
    cmd = fixture_command("--flood-tool")
    return {"command": cmd[0], "args": cmd[1:], "timeout": 10, **extra}


def config(per_connection: int, per_session: int) -> dict[str, Any]:
    limits = {"maxPendingClientRequests": per_connection, "maxPendingClientRequestsPerSession": per_session}
    return {"mcpServers": {"one": stdio(isolation="shared"), "two": stdio()}, "onemcp": {"limits": limits}}


class SilentClient:
    """A sampling callback that holds every request until released (a client that does not answer)."""

    def __init__(self) -> None:
        self.asked = 0
        self.release = anyio.Event()

    async def __call__(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.asked += 1
        await self.release.wait()
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="hi"), model="m")


async def flood(c: Client, keep: int) -> dict[str, Any]:
    result = await c.call_tool("one__flood", {"count": FLOOD, "keep": keep, "within": 3})
    item = result.content[0]
    assert isinstance(item, types.TextContent) and not result.is_error, result
    seen: dict[str, Any] = json.loads(item.text)
    return seen


async def still_served(hub: RunningHub) -> None:
    """Another session's calls, to the flooding server and to another, are answered."""
    async with Client(hub.url, mode="legacy", cache=None) as other:
        for tool in ("one__echo", "two__echo"):
            result = await other.call_tool(tool, {"message": "still here"})
            assert not result.is_error and result.content[0] == types.TextContent(type="text", text="still here")


async def test_a_silent_client_holds_at_most_its_session_limit() -> None:
    silent = SilentClient()
    with anyio.fail_after(DEADLINE):
        async with running_hub(config(per_connection=16, per_session=8)) as hub:
            async with Client(hub.url, mode="legacy", cache=None, sampling_callback=silent) as c:
                seen = await flood(c, keep=8)
                assert seen["waiting"] == 8 and seen["refused"] == FLOOD - 8  # the excess refused at once
                assert all("too many requests to" in m and "are waiting (limit" in m for m in seen["messages"])
                assert "onemcp: too many requests to this client are waiting (limit 8 per session)" in seen["messages"]
                session = next(iter(hub.app.hub.sessions))
                conn = hub.app.hub.pool.connections["one"]
                assert len(session.reverse) == 8 and conn.reverse_open == 8
                await still_served(hub)
                # the client answers: what it held is released, and new requests are taken again
                silent.release.set()
                while session.reverse or conn.reverse_open:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                sampled = await c.call_tool("one__sample", {})
                assert not sampled.is_error and '"hi"' in str(sampled.content[0])
            assert silent.asked == 9  # the 8 held, then the one after


async def test_a_silent_client_holds_at_most_the_connection_limit() -> None:
    silent = SilentClient()
    with anyio.fail_after(DEADLINE):
        async with running_hub(config(per_connection=16, per_session=1000)) as hub:
            async with Client(hub.url, mode="legacy", cache=None, sampling_callback=silent) as c:
                seen = await flood(c, keep=16)
                assert seen["waiting"] == 16 and seen["refused"] == FLOOD - 16
                assert seen["messages"] == [
                    "onemcp: too many requests to clients are waiting (limit 16 for server 'one')"
                ]
                assert hub.app.hub.pool.connections["one"].reverse_open == 16
                await still_served(hub)
                silent.release.set()
            assert silent.asked == 16


async def test_a_principal_s_abandoned_2026_rounds_are_capped_and_leave_room_for_others(tmp_path: Path) -> None:
    """A 2026-07-28 caller has no session: each round it never retries parks the legacy upstream's call.
    One principal may hold at most `maxPendingClientRequestsPerSession` of them; past it its new rounds are
    refused at once, and another principal's rounds, and the first one's retries, still go on."""
    import base64
    import time

    import httpx

    from downstream.test_modern import headers, modern
    from onemcp.auth.keys import KeyStore

    cmd = fixture_command()
    fixture = {"command": cmd[0], "args": cmd[1:], "timeout": 30}
    limits = {"maxPendingClientRequestsPerSession": 3}
    config = {"mcpServers": {"fx": fixture}, "onemcp": {"auth": {"apiKeys": True}, "limits": limits}}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config))
    with anyio.fail_after(DEADLINE):
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            keys = KeyStore(tmp_path / "keys.db")
            greedy, other = keys.create("greedy", ["mcp"]), keys.create("other", ["mcp"])
            caps: dict[str, Any] = {
                "io.modelcontextprotocol/clientCapabilities": {"sampling": {}, "elicitation": {"form": {}}}
            }

            async def call(key: str, tool: str = "sample", **extra: Any) -> dict[str, Any]:
                r = await http.post(
                    hub.url,
                    json=modern("tools/call", meta=caps, name=tool, arguments={}, **extra),
                    headers={**headers("tools/call", tool), "authorization": f"Bearer {key}"},
                )
                body: dict[str, Any] = r.json()
                return body

            rounds = [(await call(greedy))["result"] for _ in range(3)]  # never retried
            assert all(r["resultType"] == "input_required" for r in rounds)
            refused = await call(greedy)
            assert refused["error"]["code"] == -32603, refused
            assert "(limit 3 per principal)" in refused["error"]["message"]
            core = hub.app.hub
            fx = [core.pool.connections["fx"], *(c for (_, s), (c, _) in core.isolated._conns.items() if s == "fx")]
            assert sum(c.reverse_open for c in fx) == 3  # the refused one holds nothing
            assert (await call(other))["result"]["resultType"] == "input_required"  # another principal's: asked
            # the greedy principal's retry of one of its rounds is answered, and makes room for a new round
            (key,) = rounds[0]["inputRequests"]
            answer = {key: {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"}}
            done = await call(greedy, inputResponses=answer, requestState=rounds[0]["requestState"])
            assert '"hi"' in done["result"]["content"][0]["text"], done
            again = (await call(greedy))["result"]
            assert again["resultType"] == "input_required"

            # a sampling round waits the server's `timeout` (as a legacy client has), an elicitation 10 minutes
            def expiry(state: str) -> float:
                body = state.removeprefix("onemcp1.").rpartition(".")[0]
                return float(json.loads(base64.urlsafe_b64decode(body))["e"]) - time.time()

            assert expiry(again["requestState"]) <= 31
            asked = (await call(other, "elicit"))["result"]
            assert expiry(asked["requestState"]) > 500


async def test_replies_an_upstream_does_not_read_are_held_up_to_max_queued_replies() -> None:
    """Pings and refusals wait in one queue per upstream, written one at a time: an upstream that reads
    none of them holds MAX_QUEUED_REPLIES (the rest are dropped), and once it reads, all held ones go."""
    from onemcp.upstream.replies import MAX_QUEUED_REPLIES, ReplyQueue

    reading = anyio.Event()
    written: list[Any] = []

    async def respond(upstream_id: Any, reply: Any) -> None:
        await reading.wait()
        written.append(upstream_id)

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            queue = ReplyQueue(respond, lambda: tg)
            for n in range(MAX_QUEUED_REPLIES + 100):
                queue.put(n, {"jsonrpc": "2.0", "id": n, "result": {}})
            reading.set()
    assert written == list(range(MAX_QUEUED_REPLIES))  # the writer starts only after the puts: none was taken


def byte_config(per_session: int, together: int) -> dict[str, Any]:
    limits = {"maxPendingClientRequestBytesPerSession": per_session, "maxPendingClientRequestBytes": together}
    return {"mcpServers": {"one": stdio(isolation="shared"), "two": stdio()}, "onemcp": {"limits": limits}}


async def flooded(c: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await c.call_tool(tool, {"within": 1, **args})
    item = result.content[0]
    assert isinstance(item, types.TextContent) and not result.is_error, result
    seen: dict[str, Any] = json.loads(item.text)
    return seen


async def test_the_requests_held_for_a_silent_client_are_bounded_in_bytes() -> None:
    """h8: only counted, a session held 32 requests of up to maxResponseBytes (64 MiB) each, 2 GiB (measured:
    32 of 1 MB held 72 MiB), and every session as much. Past `maxPendingClientRequestBytesPerSession` a
    session's further ones are refused at once (one alone always may be held)."""
    silent = SilentClient()
    with anyio.fail_after(DEADLINE):
        async with running_hub(byte_config(per_session=1_000_000, together=100_000_000)) as hub:
            async with Client(hub.url, mode="legacy", cache=None, sampling_callback=silent) as c:
                seen = await flooded(c, "one__flood", count=10, keep=3, within=5, bytes=300_000)
                assert seen["waiting"] == 3 and seen["refused"] == 7, seen
                assert seen["messages"] == [
                    "onemcp: the requests waiting for this client would be over 1000000 bytes (limit per session)"
                ]
                assert hub.app.hub.reverse._held_total < 1_000_000
                silent.release.set()
            while hub.app.hub.reverse._held_total:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline


async def test_one_client_holding_its_most_leaves_the_others_their_share_of_the_bytes_for_all() -> None:
    """h13: past `maxPendingClientRequestBytes` (all clients together) everyone was refused, so one client (or
    one principal's many sessions) at its own bound could make every other client's sampling refused. Now,
    as the sessions' outboxes: past it only a client holding more than its share (the budget over the clients
    holding any) is refused, and past twice the budget everyone is."""
    silent = SilentClient()
    with anyio.fail_after(DEADLINE):
        async with running_hub(byte_config(per_session=1_000_000, together=1_000_000)) as hub:
            async with Client(hub.url, mode="legacy", cache=None, sampling_callback=silent) as greedy:
                seen = await flooded(greedy, "one__flood", count=10, keep=3, within=5, bytes=300_000)
                assert seen["waiting"] == 3 and seen["refused"] == 7, seen  # its most: 900,000 and more
                async with Client(hub.url, mode="legacy", cache=None, sampling_callback=silent) as other:
                    seen = await flooded(other, "two__flood", count=1, bytes=300_000)
                    assert seen == {"refused": 0, "waiting": 1, "messages": []}  # still served: held, asked
                    assert silent.asked == 4
                    # past the budget, the greedy one is over its share (1,000,000 / 2): even a small one refused
                    seen = await flooded(greedy, "one__flood", count=1, bytes=1_000)
                    assert seen["messages"] == [
                        "onemcp: the requests waiting for clients would be over 1000000 bytes together,"
                        " this client's over its share (500000)"
                    ]
                    # past twice the budget, everyone is refused, a client holding nothing too
                    async with Client(hub.url, mode="legacy", cache=None, sampling_callback=silent) as third:
                        seen = await flooded(third, "two__flood", count=1, bytes=900_000)
                        assert seen["messages"] == [
                            "onemcp: the requests waiting for clients would be over 2000000 bytes together"
                        ]
                silent.release.set()
            while hub.app.hub.reverse._held_total:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline


async def test_a_2026_caller_s_byte_bound_is_said_to_be_per_principal() -> None:
    """h13: a 2026-07-28 caller has no session, so its requests' bytes count per principal; the refusal said
    "(limit per session)"."""
    import httpx

    from downstream.test_modern import headers, modern

    cmd = fixture_command()
    fixture = {"command": cmd[0], "args": cmd[1:], "timeout": 30}
    config = {"mcpServers": {"fx": fixture}, "onemcp": {"limits": {"maxPendingClientRequestBytesPerSession": 1024}}}
    caps: dict[str, Any] = {"io.modelcontextprotocol/clientCapabilities": {"sampling": {}}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:

            async def call() -> dict[str, Any]:
                request = modern("tools/call", meta=caps, name="sample", arguments={"prompt": "x" * 800})
                r = await http.post(hub.url, json=request, headers=headers("tools/call", "sample"))
                body: dict[str, Any] = r.json()
                return body

            assert (await call())["result"]["resultType"] == "input_required"  # alone: held whatever its size
            refused = await call()
            assert refused["error"] == {
                "code": -32603,
                "message": "[fx] onemcp: the requests waiting for this client would be over 1024 bytes"
                " (limit per principal)",
            }
