"""The reverse path, in-process: an upstream's request reaches the session whose call it serves, and back.

Legacy sessions are asked on the call's SSE reply or on their GET stream; a 2026-07-28 client is
asked through an input_required result and answers by calling again.
"""

from __future__ import annotations

import anyio
import pytest

from onemcp.hub import reverse
from onemcp.hub.session import Session
from support.inprocess import Json, fixture, inprocess_hub, tool_call

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
