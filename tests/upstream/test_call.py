"""A forwarded call's mailbox: related messages for a client that does not read are bounded in
bytes as well as in number (hunt-limits F1: 256 progress messages of 2 MiB made one call hold half a
gigabyte), and what a call waits on is never dropped. The end-to-end order (progress, then the
reply) is in tests/hub/test_hub_rewriting.py."""

from __future__ import annotations

import anyio
import pytest

from onemcp.observability.limits import HITS
from onemcp.upstream.call import MAX_RELATED, MAX_RELATED_BYTES, Call

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
