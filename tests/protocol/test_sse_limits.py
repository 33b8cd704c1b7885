"""The SSE decoder's bounds (issue 20, finding 3): linear in what it is fed, and never holding more than its limit.

Linearity is measured without a clock: tracemalloc counts the bytes allocated while each chunk is fed
(the peak during the feed above what was held before it). A decoder that re-copies its pending line on
every chunk allocates O(n²) for one n-byte event; a linear one allocates a few times n.
"""

from __future__ import annotations

import tracemalloc

import pytest

from onemcp.protocol import sse

KiB = 1024


def allocated_while_feeding(decoder: sse.Decoder, chunks: list[bytes]) -> tuple[int, list[sse.Event]]:
    """Bytes allocated by `decoder.feed` over all `chunks` (summed per feed), and the events it gave."""
    events: list[sse.Event] = []
    total = 0
    tracemalloc.start()
    try:
        for chunk in chunks:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            events += decoder.feed(chunk)
            _, peak = tracemalloc.get_traced_memory()
            total += peak - before
    finally:
        tracemalloc.stop()
    return total, events


def test_one_big_event_fed_in_small_chunks_costs_linear_allocation() -> None:
    size = 2 * 1024 * KiB
    stream = b"data: " + b"x" * size + b"\n\n"
    chunks = [stream[i : i + 4 * KiB] for i in range(0, len(stream), 4 * KiB)]
    total, events = allocated_while_feeding(sse.Decoder(), chunks)
    assert len(events) == 1 and len(events[0].data) == size
    # a linear decoder: the pieces once, joined once, decoded once, the event's data once (~4n)
    assert total < 8 * size, f"{total / size:.0f}x the event's size allocated: quadratic"


def test_an_event_over_the_limit_is_refused_and_dropped() -> None:
    decoder = sse.Decoder(limit=64 * KiB)
    with pytest.raises(sse.TooLarge) as refused:
        for _ in range(256):
            decoder.feed(b"data: " + b"x" * (4 * KiB - 7) + b"\n")  # many lines, one event
    assert refused.value.limit == 64 * KiB
    # what it held is gone: the next event stands alone
    assert [ev.data for ev in decoder.feed(b"\ndata: ok\n\n")] == ["ok"]


def test_a_line_that_never_ends_is_refused_at_the_limit() -> None:
    decoder = sse.Decoder(limit=64 * KiB)
    fed = 0
    with pytest.raises(sse.TooLarge):
        while fed < 1024 * KiB:
            decoder.feed(b"x" * (4 * KiB))
            fed += 4 * KiB
    assert fed <= 64 * KiB  # refused as soon as it passed the limit, not at the end


def test_events_completed_before_the_refused_one_are_kept() -> None:
    decoder = sse.Decoder(limit=1024)
    with pytest.raises(sse.TooLarge) as refused:
        decoder.feed(b"data: first\n\ndata: " + b"y" * 2048)
    assert [ev.data for ev in refused.value.events] == ["first"]


def test_comments_and_many_small_events_do_not_add_up() -> None:
    decoder = sse.Decoder(limit=1024)
    events: list[sse.Event] = []
    for _ in range(100):
        events += decoder.feed(b": keep-alive\ndata: " + b"z" * 500 + b"\n\n")
    assert len(events) == 100


def test_no_limit_by_default() -> None:
    decoder = sse.Decoder()
    [event] = decoder.feed(b"data: " + b"x" * (1024 * KiB) + b"\n\n")
    assert len(event.data) == 1024 * KiB
