"""A forwarded call's mailbox: related messages for a client that does not read are bounded in
bytes as well as in number (hunt-limits F1: 256 progress messages of 2 MiB made one call hold half a
gigabyte), and over all calls (fairly: calls that are not read cannot starve those that are), and
what a call waits on is never dropped. The end-to-end order (progress, then the
reply) is in tests/hub/test_hub_rewriting.py."""

from __future__ import annotations

import gc

import anyio
import pytest

from onemcp.observability.limits import HITS
from onemcp.upstream import call as call_module
from onemcp.upstream.call import MAX_RELATED, MAX_RELATED_BYTES, Call, RelatedBytes

pytestmark = pytest.mark.anyio
MIB = 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def progress(n: int, size: int = MIB) -> dict[str, object]:
    params = {"progressToken": "p", "progress": n, "message": "x" * size}
    return {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}


async def test_a_slow_client_s_call_holds_a_bounded_number_of_bytes() -> None:
    call = Call(server="up", hub_id=1, downstream_id=7, timeout=60)
    before = HITS.counts["related_messages"]
    for n in range(100):  # the client reads nothing meanwhile
        call.push(progress(n))
    assert 0 < call.held <= MAX_RELATED_BYTES  # before: 100 MiB
    kept = call.held // (MIB + 100)
    assert kept == MAX_RELATED_BYTES // (MIB + 100)
    assert HITS.counts["related_messages"] == before + 100 - kept  # each drop is counted
    # what the call waits on still goes through, and so does the reply
    request = {"jsonrpc": "2.0", "id": "onemcp-1", "method": "sampling/createMessage", "params": {}}
    call.push(request)
    call.push({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "onemcp-1"}})
    call.finish({"jsonrpc": "2.0", "id": 7, "result": {}})
    with anyio.fail_after(5):
        got = [await call.receive() for _ in range(kept + 3)]
    assert [m["params"]["progress"] for m, _ in got[:kept]] == list(range(kept))  # the oldest kept, in order
    assert got[kept][0] is request and got[kept + 1][0]["method"] == "notifications/cancelled"
    assert got[-1] == ({"jsonrpc": "2.0", "id": 7, "result": {}}, True)
    assert call.held == 0


async def test_one_message_alone_is_never_refused_for_its_size_and_reading_makes_room() -> None:
    call = Call(server="up", hub_id=1, downstream_id=7, timeout=60)
    call.push(progress(0, MAX_RELATED_BYTES + MIB))  # up to maxResponseBytes may come: it is what there is
    call.push(progress(1, 10))
    assert call.held > MAX_RELATED_BYTES and len(call._queue) == 1
    with anyio.fail_after(5):
        assert (await call.receive())[0]["params"]["progress"] == 0
    for n in range(MAX_RELATED + 10):
        call.push(progress(n, 10))
    assert len(call._queue) == MAX_RELATED  # the count bound holds as before


@pytest.fixture
def budget(monkeypatch: pytest.MonkeyPatch) -> int:
    """All calls' budget cut to 8 MiB, counted from nothing (calls of other tests are gone first)."""
    gc.collect()
    monkeypatch.setattr(RelatedBytes, "used", 0)
    monkeypatch.setattr(RelatedBytes, "holders", 0)
    monkeypatch.setattr(call_module, "RELATED_TOTAL_BYTES", 8 * MIB)
    return 8 * MIB


async def test_calls_that_are_not_read_hold_a_bounded_total_and_cannot_starve_another(budget: int) -> None:
    """Many calls each under their own 16 MiB could hold gigabytes together; past the budget only a call
    over its share (the budget over the calls holding any) loses messages."""
    before = HITS.counts["related_messages"]
    quarter = MIB // 4
    stuck = [Call(server="up", hub_id=n, downstream_id=n, timeout=60) for n in range(3)]
    for n in range(40):
        for call in stuck:
            call.push(progress(n, quarter))
    assert all(call.held < MAX_RELATED_BYTES for call in stuck)  # under their own bound, not the total's
    assert budget - quarter < RelatedBytes.used <= budget + quarter  # was 30 MiB
    assert RelatedBytes.holders == 3
    assert HITS.counts["related_messages"] > before  # each drop is counted
    read = Call(server="up", hub_id=9, downstream_id=9, timeout=60)
    for n in range(40):
        read.push(progress(n, quarter))  # its share of the budget (a quarter of it), though the budget is spent
        for call in stuck:
            call.push(progress(99, quarter))  # over their share: dropped
    assert budget // 4 - 2 * quarter < read.held <= budget // 4
    assert all(call._queue[-1][0]["params"]["progress"] != 99 for call in stuck)
    with anyio.fail_after(5):
        await read.receive()  # its reader makes room for more
    read.push(progress(40, quarter))
    assert read._queue[-1][0]["params"]["progress"] == 40
    request = {"jsonrpc": "2.0", "id": "onemcp-1", "method": "sampling/createMessage", "params": {}}
    stuck[0].push(request)  # what a call waits on is never dropped
    assert stuck[0]._queue[-1][0] is request


async def test_twice_the_budget_refuses_every_call(budget: int) -> None:
    calls = [Call(server="up", hub_id=n, downstream_id=n, timeout=60) for n in range(20)]
    for call in calls:
        call.push(progress(0))  # one each: a message alone is always taken, below twice the budget
    assert RelatedBytes.used <= 2 * budget + MIB
    assert any(not call._queue for call in calls)


async def test_a_call_dropped_with_messages_queued_gives_their_bytes_back(budget: int) -> None:
    call = Call(server="up", hub_id=1, downstream_id=7, timeout=60)
    for n in range(3):
        call.push(progress(n))
    assert RelatedBytes.used == call.held > 3 * MIB and RelatedBytes.holders == 1
    with anyio.fail_after(5):
        await call.receive()
    assert RelatedBytes.used == call.held
    del call  # its client went away: nobody reads the rest
    gc.collect()
    assert RelatedBytes.used == 0 and RelatedBytes.holders == 0


async def test_an_answer_made_before_a_resume_goes_under_the_retry_s_id() -> None:
    """A call parked for a 2026-07-28 client's input whose upstream died meanwhile was failed under the
    id of the request that parked it; the client's retry (another id) waited for an answer to its own."""
    call = Call(server="up", hub_id=1, downstream_id=1, timeout=60)
    call.finish({"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "[up] upstream closed"}})
    call.downstream_id = 2  # the retry that carries the client's answer
    msg, final = await call.receive()
    assert final and msg["id"] == 2
