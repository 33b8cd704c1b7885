"""list_changed, in-process: an upstream's change reaches the clients whose visible list changed, and no others."""

from __future__ import annotations

import anyio
import pytest

from support.inprocess import fixture, inprocess_hub, modern_request, tool_call

pytestmark = pytest.mark.anyio
DEADLINE = 10.0
SERVERS = {"alpha": fixture("--name", "alpha", tags=["red"]), "beta": fixture("--name", "beta", tags=["blue"])}


async def test_a_legacy_session_hears_list_changed_only_when_its_view_changed() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            everyone, reds = await h.session(), await h.session(query="tags=red")
            async with everyone.listen() as all_stream, reds.listen() as red_stream:
                await everyone.ask("tools/call", tool_call("beta__add_tool", name="fresh"))
                note = await all_stream.message()
                assert note["method"] == "notifications/tools/list_changed"
                assert "beta__fresh" in await everyone.tools()
                assert "beta__fresh" not in await reds.tools()
                # The announcement went out to every session at once: the red view's stream got nothing,
                # so the next thing on it is this log line (related to a call that cannot stream).
                await reds.ask("tools/call", tool_call("alpha__log", message="marker"), accept="application/json")
                logged = await red_stream.message()
                assert logged["method"] == "notifications/message" and logged["params"]["data"] == "marker"


async def test_a_modern_listen_stream_hears_list_changed_for_its_view() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            headers, body = modern_request("subscriptions/listen", rid="L1", notifications={"toolsListChanged": True})
            async with h.client.open("POST", query="tags=blue", headers=headers, body=body) as stream:
                assert stream.status == 200
                ack = await stream.message()
                assert ack["method"] == "notifications/subscriptions/acknowledged"
                _, (reply,) = await h.client.modern("tools/call", **tool_call("beta__add_tool", name="fresh"))
                assert "error" not in reply
                note = await stream.message()
                assert note["method"] == "notifications/tools/list_changed"
                assert note["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == "L1"
            _, (listed,) = await h.client.modern("tools/list", query="tags=blue")
            assert "beta__fresh" in [t["name"] for t in listed["result"]["tools"]]


async def test_a_session_not_yet_initialized_hears_no_list_changed() -> None:
    """server-behaviour.md: a session's unrelated messages go out only once it is initialized (stdio's one
    legacy session, which a 2026-07-28 client never initializes, gets nothing it did not ask for)."""
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            everyone = await h.session()
            silent = await h.session()
            waiting = h.app.hub.find_session(silent.id)
            assert waiting is not None
            waiting.initialized = False  # as after `initialize` and before `notifications/initialized`
            async with everyone.listen() as stream:
                await everyone.ask("tools/call", tool_call("beta__add_tool", name="fresh"))
                assert (await stream.message())["method"] == "notifications/tools/list_changed"
                assert waiting.queued_bytes == 0  # announced to every session at once: none for it
                assert await silent.post({"jsonrpc": "2.0", "method": "notifications/initialized"}) == 202
                await everyone.ask("tools/call", tool_call("beta__add_tool", name="later"))
                assert (await stream.message())["method"] == "notifications/tools/list_changed"
                assert waiting.queued_bytes > 0  # initialized now: its list_changed waits on its stream
