"""The reverse path, in-process: an upstream's request reaches the session whose call it serves, and back.

Legacy sessions are asked on the call's SSE reply or on their GET stream; a 2026-07-28 client is
asked through an input_required result and answers by calling again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp_types import ListRootsResult, Root

from fixtures.launch import fixture_command
from onemcp.auth.keys import KeyStore
from onemcp.hub import reverse
from onemcp.hub.session import Session
from support.hub import HEADERS, INIT, raw_session, running_hub
from support.inprocess import Json, fixture, inprocess_hub, tool_call
from support.real_servers import everything_stdio_command
from support.results import text_of

pytestmark = pytest.mark.anyio
DEADLINE = 10.0
SERVERS = {"alpha": fixture("--name", "alpha"), "beta": fixture("--name", "beta")}
CAPABILITIES: Json = {"sampling": {}, "elicitation": {"form": {}}}


def sampled(text: str) -> Json:
    return {"role": "assistant", "content": {"type": "text", "text": text}, "model": "test-model"}


async def test_sampling_goes_to_the_calling_session_and_only_its_answer_counts() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            caller, bystander = await h.session(capabilities=CAPABILITIES), await h.session(capabilities=CAPABILITIES)
            async with caller.call("tools/call", tool_call("beta__sample", prompt="hello?"), rid=7) as response:
                ask = await response.message()  # on the call's own reply stream
                assert ask["method"] == "sampling/createMessage"
                assert ask["params"]["messages"][0]["content"]["text"] == "hello?"
                # another session cannot answer for it: ignored, the call still waits
                assert await bystander.post({"jsonrpc": "2.0", "id": ask["id"], "result": sampled("forged")}) == 202
                assert await caller.post({"jsonrpc": "2.0", "id": ask["id"], "result": sampled("genuine")}) == 202
                reply = await response.message()
            assert reply["id"] == 7 and reply["result"]["structuredContent"] == sampled("genuine")


async def test_a_clients_progress_on_a_servers_request_reaches_that_server_under_its_token() -> None:
    """Client -> server progress (protocol-notes 6.2): the client is given the hub's token for the request
    (two servers may use the same one), and its progress goes to the server that asked, under that server's
    token; another session using the token is not heard (it was dropped: the server heard nothing)."""
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            caller, bystander = await h.session(capabilities=CAPABILITIES), await h.session(capabilities=CAPABILITIES)
            async with caller.call("tools/call", tool_call("beta__sample", token="up-1"), rid=7) as response:
                ask = await response.message()
                assert ask["method"] == "sampling/createMessage"
                token = ask["params"]["_meta"]["progressToken"]
                assert token == ask["id"]  # the hub's, not the server's
                progress = {"progressToken": token, "progress": 0.5, "total": 1, "message": "thinking"}
                note = {"jsonrpc": "2.0", "method": "notifications/progress"}
                assert await caller.post({**note, "params": progress}) == 202
                assert await bystander.post({**note, "params": {**progress, "message": "forged"}}) == 202
                assert await caller.post({"jsonrpc": "2.0", "id": ask["id"], "result": sampled("done")}) == 202
                reply = await response.message()
            assert reply["id"] == 7
            heard = reply["result"]["structuredContent"]["progressHeard"]
            assert heard == {**progress, "progressToken": "up-1"}


async def test_a_clients_progress_on_a_servers_elicitation_reaches_that_server_under_its_token() -> None:
    """The same for `elicitation/create` (a person may take a while, and say so): asked on the session's
    GET stream, as a reply that cannot stream has it; the progress reaches alpha under alpha's token."""
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            session = await h.session(capabilities=CAPABILITIES)
            replies: list[Json] = []
            async with session.listen() as stream, anyio.create_task_group() as tg:

                async def call() -> None:
                    args = tool_call("alpha__elicit", token=41)
                    replies.append(await session.ask("tools/call", args, accept="application/json"))

                tg.start_soon(call)
                ask = await stream.message()
                assert ask["method"] == "elicitation/create"
                token = ask["params"]["_meta"]["progressToken"]
                assert token == ask["id"]  # the hub's, not the server's
                progress = {"progressToken": token, "progress": 1, "message": "typing"}
                note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": progress}
                assert await session.post(note) == 202
                answer = {"action": "accept", "content": {"colour": "teal"}}
                assert await session.post({"jsonrpc": "2.0", "id": ask["id"], "result": answer}) == 202
            (reply,) = replies
            heard = {**progress, "progressToken": 41}  # alpha's own
            assert reply["result"]["structuredContent"] == {**answer, "progressHeard": heard}


async def test_elicitation_goes_to_the_get_stream_when_the_reply_cannot_stream() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            session = await h.session(capabilities=CAPABILITIES)
            replies: list[Json] = []
            async with session.listen() as stream, anyio.create_task_group() as tg:

                async def call() -> None:
                    replies.append(
                        await session.ask("tools/call", tool_call("alpha__elicit"), accept="application/json")
                    )

                tg.start_soon(call)
                ask = await stream.message()
                assert ask["method"] == "elicitation/create" and ask["params"]["message"] == "Favourite colour?"
                answer = {"action": "accept", "content": {"colour": "teal"}}
                assert await session.post({"jsonrpc": "2.0", "id": ask["id"], "result": answer}) == 202
            (reply,) = replies
            assert reply["result"]["structuredContent"] == answer


async def test_a_session_that_cannot_be_asked_gets_an_error_at_once() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            session = await h.session()  # no sampling capability
            reply = await session.ask("tools/call", tool_call("alpha__sample"))
            assert reply["error"]["code"] == -32601 and "sampling" in reply["error"]["message"]
            assert reply["error"]["message"].startswith("[alpha] ")


async def test_once_an_upstream_asks_each_session_that_can_answer_gets_its_own_connection() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            first, second = await h.session(capabilities=CAPABILITIES), await h.session(capabilities=CAPABILITIES)
            for round_, session in enumerate((first, second, first)):
                async with session.call("tools/call", tool_call("beta__sample")) as response:
                    ask = await response.message()
                    answer = sampled(f"round {round_}")
                    assert await session.post({"jsonrpc": "2.0", "id": ask["id"], "result": answer}) == 202
                    assert (await response.message())["result"]["structuredContent"] == answer
            # the shared connection, then one of its own for each session (made by the same factory)
            assert len(h.upstreams.started["beta"]) == 3 and len(h.upstreams.started["alpha"]) == 1


async def test_a_modern_client_is_asked_through_input_required_and_its_retry_resumes_the_call() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            params = tool_call("alpha__sample", prompt="modern?")
            _, (first,) = await h.client.modern("tools/call", capabilities={"sampling": {}}, rid="r1", **params)
            result = first["result"]
            assert first["id"] == "r1" and result["resultType"] == "input_required"
            ((key, request),) = result["inputRequests"].items()
            assert request["method"] == "sampling/createMessage"
            assert request["params"]["messages"][0]["content"]["text"] == "modern?"
            _, (done,) = await h.client.modern(
                "tools/call",
                capabilities={"sampling": {}},
                rid="r2",
                inputResponses={key: sampled("answered")},
                requestState=result["requestState"],
                **params,
            )
            assert done["id"] == "r2" and done["result"]["structuredContent"] == sampled("answered")


async def test_a_modern_client_without_the_capability_is_told_which_one() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            _, (reply,) = await h.client.modern("tools/call", **tool_call("beta__sample"))
            assert reply["error"]["code"] == -32021 and "sampling" in reply["error"]["message"], reply


async def test_url_elicitations_are_bounded_per_session_and_forgotten_when_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """hunt-limits F6: MAX_ELICITATIONS was one hub-wide FIFO: one client's elicitations made another's
    `notifications/elicitation/complete` undeliverable, and an ended session's stayed until pushed out."""
    monkeypatch.setattr(reverse, "MAX_SESSION_ELICITATIONS", 2)
    monkeypatch.setattr(reverse, "MAX_ELICITATIONS", 4)
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            hub, conn = h.app.hub, h.app.hub.pool.get("alpha")
            assert conn is not None
            victim, flooder, other = [hub.sessions.get((await h.session()).id) for _ in range(3)]
            assert victim is not None and flooder is not None and other is not None

            def ask(session: Session, *ids: str) -> None:
                items = [{"mode": "url", "elicitationId": i, "url": "https://example.com/"} for i in ids]
                hub.reverse.url_required(
                    conn, session, {"code": -32042, "message": "go", "data": {"elicitations": items}}
                )

            def waiting() -> set[str]:
                return {visible for _, visible in hub.reverse._elicitations.values()}

            ask(victim, "v")
            ask(flooder, *(f"f{n}" for n in range(5)))  # beyond its bound: its own oldest are forgotten
            assert waiting() == {"alpha:v", "alpha:f3", "alpha:f4"}
            ask(other, "o1", "o2")  # over the hub-wide bound: the session waiting on the most gives way
            assert waiting() == {"alpha:v", "alpha:f4", "alpha:o1", "alpha:o2"}
            hub.end_session(victim.id)
            assert waiting() == {"alpha:f4", "alpha:o1", "alpha:o2"}


async def test_a_url_elicitation_error_naming_many_costs_only_the_ones_a_session_can_wait_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """h7: each of a -32042 error's elicitations was expected in turn, each a pass over every wait: a server's
    error naming 200,000 (20 MB) held the event loop 4 s (every client's calls with it). Only the newest
    MAX_SESSION_ELICITATIONS ids can be waited on; the client still gets every elicitation, namespaced."""
    monkeypatch.setattr(reverse, "MAX_SESSION_ELICITATIONS", 3)
    passes = 0
    expect = reverse.ReversePath._expect

    def counted(self: reverse.ReversePath, *args: Any) -> str:
        nonlocal passes
        passes += 1
        return expect(self, *args)

    monkeypatch.setattr(reverse.ReversePath, "_expect", counted)
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            hub, conn = h.app.hub, h.app.hub.pool.get("alpha")
            assert conn is not None
            session = hub.sessions.get((await h.session()).id)
            assert session is not None
            ids = [f"e{n}" for n in range(10_000)] + ["e9998", "e5", "e9999"]  # asked again: the newest
            items: list[Any] = [{"mode": "url", "elicitationId": i, "url": "https://example.com/"} for i in ids]
            error = {"code": -32042, "message": "go", "data": {"elicitations": [*items, "odd", {"mode": "url"}]}}
            shown = hub.reverse.url_required(conn, session, error)["data"]["elicitations"]
            assert [item["elicitationId"] for item in shown[:-2]] == [f"alpha:{i}" for i in ids]
            assert shown[-2:] == ["odd", {"mode": "url"}]
            assert {visible for _, visible in hub.reverse._elicitations.values()} == {
                "alpha:e9998",
                "alpha:e5",
                "alpha:e9999",
            }
            assert passes == 3, passes


async def test_a_url_elicitation_id_too_long_to_keep_is_refused_and_nothing_is_kept() -> None:
    """URL-elicitation ids had no length bound (task ids had, rewrite.long_id): a server's elicitation/create, or
    its -32042 error, naming a 60 MB id made the hub keep it twice (its own and the client's) until completed,
    up to 1,024 of them. The request is refused to the server (-32602), the error to the client (-32603)."""
    capabilities: Json = {"elicitation": {"form": {}, "url": {}}}
    long = "x" * 1025
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            hub, conn = h.app.hub, h.app.hub.pool.get("alpha")
            assert conn is not None
            client = await h.session(capabilities=capabilities)
            async with client.call("tools/call", tool_call("alpha__elicit", mode="url", id=long), rid=1) as call:
                (reply,) = await call.messages()  # no elicitation/create first: the server was refused at once
            assert reply["id"] == 1 and reply["error"]["code"] == -32602, reply  # the server's, as it was told
            assert "onemcp: elicitationId is 1025 characters long, over the hub's 1024" in reply["error"]["message"]
            assert hub.reverse._elicitations == {}
            session = hub.sessions.get(client.id)
            assert session is not None
            items = [{"mode": "url", "elicitationId": i, "url": "https://example.com/"} for i in ("ok", long)]
            error = {"code": -32042, "message": "go", "data": {"elicitations": items}}
            assert hub.reverse.url_required(conn, session, error) == {
                "code": -32603,
                "message": "[alpha] the server's -32042 error (URL elicitations required) cannot be passed on: "
                "elicitations[1].elicitationId is 1025 characters long, over the hub's 1024",
            }
            assert hub.reverse._elicitations == {}
            # an id of 1,024 is kept, and its completion reaches the client
            async with client.call("tools/call", tool_call("alpha__elicit", mode="url", id="y" * 1024), rid=2) as call:
                ask = await call.message()
                assert ask["params"]["elicitationId"] == "alpha:" + "y" * 1024
                assert await client.post({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept"}}) == 202
                assert (await call.message())["id"] == 2


async def test_a_url_elicitations_completion_reaches_only_the_session_its_connection_asked() -> None:
    """hunt-auth F1: completions were looked up by the id the client sees (`alpha:e1`), which two
    connections of one server (`isolation: session`) mint alike: the second client's wait took the
    first's place, so the first client's completion went to the second client and its own to no one."""
    servers = {"alpha": fixture("--name", "alpha", isolation="session"), "beta": fixture("--name", "beta")}
    capabilities: Json = {"elicitation": {"form": {}, "url": {}}}
    answer: Json = {"action": "accept"}
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(servers) as h:
            first, second = await h.session(capabilities=capabilities), await h.session(capabilities=capabilities)
            async with (
                first.listen() as first_stream,
                second.listen() as second_stream,
                first.call("tools/call", tool_call("alpha__elicit", mode="url"), rid=1) as first_call,
                second.call("tools/call", tool_call("alpha__elicit", mode="url"), rid=2) as second_call,
            ):
                first_ask, second_ask = await first_call.message(), await second_call.message()
                assert first_ask["params"]["elicitationId"] == second_ask["params"]["elicitationId"] == "alpha:e1"
                assert await first.post({"jsonrpc": "2.0", "id": first_ask["id"], "result": answer}) == 202
                assert (await first_call.message())["result"]["structuredContent"] == answer
                done = await first_stream.message()  # the first connection's completion: the first client's
                assert done["method"] == "notifications/elicitation/complete"
                assert done["params"]["elicitationId"] == "alpha:e1"
                assert await second.post({"jsonrpc": "2.0", "id": second_ask["id"], "result": answer}) == 202
                assert (await second_call.message())["result"]["structuredContent"] == answer
                assert (await second_stream.message())["params"]["elicitationId"] == "alpha:e1"  # its own, once
            assert h.app.hub.reverse._elicitations == {}


@asynccontextmanager
async def heard(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> AsyncIterator[Any]:
    """A session's GET stream, open: each message it carries, in order."""
    send, receive = anyio.create_memory_object_stream[Json](100)
    opened = anyio.Event()

    async def read() -> None:
        async with http.stream("GET", url, headers={**headers, "accept": "text/event-stream"}) as r:
            opened.set()
            async for line in r.aiter_lines():
                if line.startswith("data:") and line[5:].strip():
                    await send.send(json.loads(line[5:]))

    async with send, receive, anyio.create_task_group() as tg:
        tg.start_soon(read)
        await opened.wait()
        yield receive
        tg.cancel_scope.cancel()


async def test_a_principals_own_connection_is_heard_only_by_that_principals_sessions(tmp_path: Path) -> None:
    """hunt-auth F4: a log line that a principal's own connection (a server taking `${user:TOKEN}`, run
    with that principal's value) sent outside any call went to every session reaching the server, other
    principals' too; so would a server->client request have, with no call in flight."""
    alpha, beta = fixture_command("--name", "alpha"), fixture_command("--name", "beta")
    servers = {
        "alpha": {"command": alpha[0], "args": alpha[1:], "env": {"SECRET": "${user:TOKEN}"}},
        "beta": {"command": beta[0], "args": beta[1:]},
    }
    config = {"mcpServers": servers, "onemcp": {"auth": {"apiKeys": True}, "searchCache": False}}
    (tmp_path / "mcp.json").write_text(json.dumps(config))
    keys = KeyStore(tmp_path / "keys.db")
    owner, other = keys.create("owner", ["mcp"]), keys.create("other", ["mcp"])
    with anyio.fail_after(60):
        async with running_hub(config, config_path=tmp_path / "mcp.json") as hub, httpx.AsyncClient(timeout=30) as http:
            sessions = []
            for key in (owner, other):
                bearer = {"authorization": f"Bearer {key}"}
                value = {"value": f"{key[:20]}-value-of-its-own"}
                assert (await http.put(f"{hub.base}/me/secrets/TOKEN", json=value, headers=bearer)).status_code == 200
                http.headers.update(bearer)
                sessions.append({**await raw_session(http, hub.url), **bearer})
            http.headers.pop("authorization")
            mine, theirs = sessions

            async def log(headers: dict[str, str], tool: str, message: str) -> None:
                call = {"name": tool, "arguments": {"detached": True, "message": message}}
                body = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": call}
                assert "result" in (await http.post(hub.url, json=body, headers={**HEADERS, **headers})).json()

            async with heard(http, hub.url, mine) as my_stream, heard(http, hub.url, theirs) as their_stream:
                await log(mine, "alpha__log", "the owner's own")  # on the owner's own connection, after the reply
                assert (await my_stream.receive())["params"]["data"] == "the owner's own"
                await log(theirs, "beta__log", "shared")  # a shared connection: heard by both
                assert (await their_stream.receive())["params"]["data"] == "shared"  # and nothing before it


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # roots/list_changed
async def test_a_clients_roots_do_not_stay_on_the_shared_connection_for_other_clients() -> None:
    """server-everything keeps the roots it is given per connection. A client's roots/list_changed reaches
    the shared connection too, whose server asks again outside any call: the hub answers it with none
    (it once asked the only session that declared roots, whose roots then answered everyone who uses
    that connection: a client without roots, a 2026-07-28 one, another principal's)."""
    asked = anyio.Event()
    times: list[str] = []

    async def roots(context: object) -> ListRootsResult:
        times.append("asked")
        if len(times) >= 2:
            asked.set()
        return ListRootsResult(roots=[Root(uri="file:///home/alice/secret")])

    cmd = everything_stdio_command()
    servers = {name: {"command": cmd[0], "args": cmd[1:]} for name in ("every", "other")}
    with anyio.fail_after(60):
        async with running_hub({"mcpServers": servers}) as hub:
            shared = hub.app.hub.pool.connections["every"]
            while not shared.asks_clients:  # it asks for roots once initialized (in vain: no session yet)
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            async with Client(hub.url, mode="legacy", cache=None, list_roots_callback=roots) as alice:
                # over her own connection (the shared one split), which asks her at once
                assert "file:///home/alice/secret" in text_of(await alice.call_tool("every__get-roots-list", {}))
                await alice.send_roots_list_changed()
                await asked.wait()  # asked again on her own connection: her roots stay hers there
                assert "file:///home/alice/secret" in text_of(await alice.call_tool("every__get-roots-list", {}))
            for mode in ("legacy", "2026-07-28"):
                async with Client(hub.url, mode=mode, cache=None) as bob:  # no roots of his own
                    seen = text_of(await bob.call_tool("every__get-roots-list", {}))
                    assert "alice" not in seen and "no roots" in seen, mode


async def test_a_tool_the_server_offers_only_to_clients_with_a_capability_is_a_clear_error_on_its_own_connection() -> (
    None
):
    """server-everything lists `trigger-sampling-request` only to a client that declared sampling. The hub's
    shared connection declares it (it relays), so a client without sampling was listed the tool, and its call,
    over the connection of its own made with its capabilities, came back as the server's "Tool
    trigger-sampling-request not found" (the upstream's name). Now the hub reads that connection's list first,
    answers the hub's "Tool not found" naming the capability it did not declare, and its list follows."""
    cmd = everything_stdio_command()
    servers = {name: {"command": cmd[0], "args": cmd[1:]} for name in ("every", "other")}
    with anyio.fail_after(60):
        async with running_hub({"mcpServers": servers}) as hub, httpx.AsyncClient(timeout=60) as http:
            shared = hub.app.hub.pool.connections["every"]
            while not shared.asks_clients:  # it asks for roots once initialized: the shared connection splits
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            init = {**INIT, "params": {**INIT["params"], "capabilities": {"roots": {}}}}  # as the Inspector CLI
            r = await http.post(hub.url, json=init, headers=HEADERS)
            headers = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
            await http.post(hub.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            listed = (await http.post(hub.url, json=_req("tools/list"), headers=headers)).json()["result"]["tools"]
            assert "every__trigger-sampling-request" in {t["name"] for t in listed}  # the shared connection's list
            call = _req("tools/call", name="every__trigger-sampling-request", arguments={"prompt": "hi"})
            reply = (await http.post(hub.url, json=call, headers=headers)).json()
            assert "error" in reply, reply
            error = reply["error"]
            assert error["code"] == -32602
            assert error["message"].startswith("Tool not found: every__trigger-sampling-request"), error
            assert "sampling" in error["message"]
            listed = (await http.post(hub.url, json=_req("tools/list"), headers=headers)).json()["result"]["tools"]
            names = {t["name"] for t in listed}
            assert "every__trigger-sampling-request" not in names and "every__echo" in names  # its own view now
            call = _req("tools/call", name="every__echo", arguments={"message": "still here"})
            assert "still here" in str((await http.post(hub.url, json=call, headers=headers)).json()["result"])


def _req(method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}


async def test_a_question_left_unanswered_when_its_call_times_out_is_withdrawn_from_the_client() -> None:
    """The call ends at its deadline (here `maxTotalTimeout`, half a second after its server's sampling request)
    while that request waits for the client: the client is told the request is withdrawn, on the call's stream
    or, once that has ended, on its GET stream. It was told on the call's stream after nobody read it any
    more (here, and whenever both waits ended together): the client went on asking its user or model."""
    with anyio.fail_after(DEADLINE):
        slow = fixture("--name", "slow", timeout=1, maxTotalTimeout=1)
        async with inprocess_hub({"slow": slow}) as h:
            session = await h.session(capabilities=CAPABILITIES)
            async with session.listen() as stream:
                async with session.call("tools/call", tool_call("sample", wait=0.5), rid=4) as response:
                    ask, *related, reply = await response.messages()
                assert ask["method"] == "sampling/createMessage"
                assert reply["id"] == 4 and reply["error"]["code"] == -32001, reply
                told = related or [await stream.message()]
    assert [(m["method"], m["params"]["requestId"]) for m in told] == [("notifications/cancelled", ask["id"])]


async def test_a_request_onemcp_cannot_forward_is_refused_naming_its_method_in_short() -> None:
    """An upstream's request with a method the hub does not forward is answered -32601 at once; the
    method, the upstream's own text of any length, is repeated cut to its start and its length."""
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            conn = h.app.hub.pool.connections["alpha"]
            reply = await h.app.hub.reverse.request(conn, {"jsonrpc": "2.0", "id": 1, "method": "x" * 100_000}, None)
            assert reply is not None
            message = reply["error"]["message"]
            assert reply["error"]["code"] == -32601 and message.startswith("onemcp cannot forward xxx")
            assert "(100000 characters)" in message and len(message) < 400
