"""A session's resumable streams past MAX_STREAMS (hunt-limits F3): the live GET stream was forgotten
before finished ones, and from then on kept up to 512 events outside the byte budget (600 MiB held
while its client read normally). The wire (Last-Event-ID) is in tests/downstream/test_streamable_wire.py."""

from __future__ import annotations

from onemcp.hub import replay
from onemcp.hub.replay import MAX_BYTES, MAX_STREAMS, StreamStore

MIB = 1024 * 1024
BIG = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "x" * MIB}}
ASK = {"jsonrpc": "2.0", "id": 7, "method": "elicitation/create", "params": {"message": "x" * MIB}}  # a request


def test_finished_streams_are_forgotten_before_a_live_get_stream() -> None:
    store = StreamStore()
    live = store.open("g")
    live.add(BIG)
    for _ in range(MAX_STREAMS + 8):  # calls whose replies were SSE streams, each finished
        reply = store.open("p")
        reply.add({"jsonrpc": "2.0", "id": 1, "result": {}})
        reply.finish()
    found = store.find(f"{live.id}-0")
    assert found is not None and found[0] is live  # before: forgotten, a reconnect could not resume it
    assert live.store is store
    for _ in range(3 * MAX_BYTES // MIB):  # and its events stay within the session's budget
        live.add(BIG)
    assert store.bytes <= MAX_BYTES


def test_live_reply_streams_go_before_the_get_stream_and_keep_only_their_newest_event() -> None:
    store = StreamStore()
    live = store.open("g")
    calls = [store.open("p") for _ in range(MAX_STREAMS)]  # all live: the oldest reply stream goes
    assert store.find(f"{live.id}-0") is not None and store.find(f"{calls[0].id}-0") is None
    forgotten = calls[0]
    for _ in range(40):  # still written (its call goes on), but nobody can resume it
        forgotten.add(BIG)
    assert forgotten.store is None and len(forgotten.events) == 0  # before: up to 512 events, no budget
    forgotten.add(ASK)
    assert len(forgotten.events) == 1  # only a reply or a request is kept, its newest event
    assert forgotten.after(forgotten.seq - 1)  # a follower already on it still gets it


def test_a_session_of_get_streams_only_forgets_the_oldest_and_bounds_it() -> None:
    store = StreamStore()
    first = store.open("g")
    for _ in range(MAX_STREAMS):
        store.open("g")
    assert store.find(f"{first.id}-0") is None
    for _ in range(replay.MAX_EVENTS):
        first.add(BIG)
    assert len(first.events) == 0  # notifications: sent live, none kept outside the budget


def test_the_sessions_of_a_hub_keep_at_most_the_total_budget_for_replay_the_busiest_forgetting_first() -> None:
    """Hunt B (limits): each session kept up to 8 MiB of events for replay and nothing bounded them together:
    300 sessions of one anonymous client, each given three 3 MB tool results as SSE, grew the hub by 2.2 GB
    (1,000 sessions per principal: 8 GB), held until the sessions expired."""
    budget = replay.ReplayBudget(limit=16 * MIB)
    quiet = StreamStore(budget)
    small = quiet.open("p")
    small.add({"jsonrpc": "2.0", "id": 1, "result": {}})
    small.finish()
    stores = [StreamStore(budget) for _ in range(8)]
    for store in stores:
        for _ in range(6):  # 6 MiB each: within a session's own MAX_BYTES, 48 MiB in all
            reply = store.open("p")
            reply.add(BIG)
            reply.finish()
    assert budget.bytes <= budget.limit
    assert budget.bytes == sum(s.bytes for s in [quiet, *stores])
    assert small.events and quiet in budget.holders  # the session that keeps little keeps it
    assert max(s.bytes for s in stores) <= budget.limit // len(budget.holders) + 2 * MIB
    live = stores[0].open("g")
    live.add({**ASK, "params": {"message": "y" * (budget.limit + MIB)}})  # one event over the whole budget
    assert len(live.events) == 1  # a live stream's newest reply or request is never forgotten
    for store in stores:
        store.close()  # sessions end: what they kept no longer counts
    assert budget.bytes == quiet.bytes and budget.holders == {quiet}
    live.add(BIG)
    live.add(ASK)  # still written after its session ended: outside any budget, so it keeps only its newest
    assert len(live.events) == 1 and budget.bytes == quiet.bytes


def test_a_live_streams_newest_notification_is_forgotten_past_the_budget_but_its_reply_is_not() -> None:
    """h6: a live stream's newest event was never forgotten, whatever it was. 8 calls in flight, each
    after one 60 MB progress message its client had read, held a real hub at 1 GB (the session's
    budget is 8 MiB) until they ended; 256 calls per session could hold 15 GB. A notification was
    sent live: past the budget it goes; a reply or a request (a follower, or its call, waits on it)
    is still kept."""
    budget = replay.ReplayBudget(limit=4 * MAX_BYTES)
    store = StreamStore(budget)
    huge = {**BIG, "params": {"data": "x" * (MAX_BYTES + MIB)}}  # each alone over the session's budget
    calls = [store.open("p") for _ in range(8)]
    for call in calls:
        sent = call.add(huge)
        assert len(sent) > MAX_BYTES  # sent live whole
    held = sum(len(event) for call in calls for _, event in call.events)
    assert held <= MAX_BYTES and store.bytes <= MAX_BYTES  # before: 8 times over it
    for call in calls:
        call.add({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "y" * MAX_BYTES}]}})
    assert all(len(call.events) == 1 for call in calls)  # each live stream's reply is kept for a follower
    for call in calls:
        call.finish()
    store.open("p").add(BIG)  # the next event forgets the finished replies down to the budget
    assert store.bytes <= MAX_BYTES
