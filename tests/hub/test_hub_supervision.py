"""Supervision, in-process: an in-memory upstream that ends fails its calls, then the pool restarts it."""

from __future__ import annotations

import anyio
import pytest

from onemcp.upstream import pool
from support.inprocess import fixture, inprocess_hub, tool_call

pytestmark = pytest.mark.anyio
DEADLINE = 10.0
SERVERS = {"alpha": fixture("--name", "alpha"), "beta": fixture("--name", "beta")}


async def test_a_crashed_upstream_fails_its_call_and_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool, "BACKOFF_FIRST", 0.0)  # restart at once (the backoff has its own tests)
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub(SERVERS) as h:
            session = await h.session()
            restarted = h.upstreams.made
            reply = await session.ask("tools/call", tool_call("alpha__crash"))
            assert reply["error"]["code"] == -32000, reply
            assert reply["error"]["message"] == "[alpha] upstream closed: server stopped"
            beta = await session.ask("tools/call", tool_call("beta__echo", message="unaffected"))
            assert beta["result"]["content"][0]["text"] == "unaffected"
            await restarted.wait()
            await h.ready("alpha")
            again = await session.ask("tools/call", tool_call("alpha__echo", message="back"))
            assert again["result"]["content"][0]["text"] == "back"
            assert len(h.upstreams.started["alpha"]) == 2 and len(h.upstreams.started["beta"]) == 1
