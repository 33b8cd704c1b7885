"""The balancing algorithms: weighted round-robin, least in flight, weighted random, consistent hashing."""

from __future__ import annotations

import random
from collections import Counter

from onemcp.upstream.balance import Balancer

IDS = ["http://a/mcp", "http://b/mcp", "http://c/mcp", "http://d/mcp"]


def never_busy(index: int) -> int:
    return 0


def test_smooth_weighted_round_robin_interleaves_by_weight() -> None:
    balancer = Balancer("round-robin", IDS[:3], [5, 1, 1])
    picks = [balancer.pick([0, 1, 2], never_busy) for _ in range(7)]
    assert picks == [0, 0, 1, 0, 2, 0, 0]  # 5:1:1, the heavy one spread out, not five in a row
    equal = Balancer("round-robin", IDS[:3])
    assert [equal.pick([0, 1, 2], never_busy) for _ in range(6)] == [0, 1, 2, 0, 1, 2]
    assert Counter(equal.pick([0, 2], never_busy) for _ in range(10)) == {0: 5, 2: 5}  # only the healthy


def test_least_in_flight_counts_relative_to_weight() -> None:
    busy = {0: 3, 1: 1, 2: 1}
    balancer = Balancer("least-in-flight", IDS[:3], [4, 1, 1])
    assert balancer.pick([0, 1, 2], busy.__getitem__) == 0  # (3+1)/4 = 1 < (1+1)/1 = 2
    assert Balancer("least-in-flight", IDS[:3]).pick([0, 1, 2], busy.__getitem__) == 1


def test_weighted_random_follows_the_weights() -> None:
    balancer = Balancer("weighted-random", IDS[:2], [3, 1])
    balancer.random = random.Random(7).random
    counts = Counter(balancer.pick([0, 1], never_busy) for _ in range(4000))
    assert 0.70 < counts[0] / 4000 < 0.80  # 3:1 is 75%
    plain = Balancer("random", IDS[:2])
    plain.random = random.Random(7).random
    assert 0.45 < Counter(plain.pick([0, 1], never_busy) for _ in range(4000))[0] / 4000 < 0.55


def test_consistent_hashing_is_stable_and_moves_only_what_it_must() -> None:
    balancer = Balancer("consistent-hash", IDS)
    keys = [f"session-{i}" for i in range(2000)]
    before = {k: balancer.pick([0, 1, 2, 3], never_busy, k) for k in keys}
    assert before == {k: balancer.pick([0, 1, 2, 3], never_busy, k) for k in keys}  # the same key, the same member
    assert all(300 < n < 700 for n in Counter(before.values()).values())  # about a quarter each
    after = {k: balancer.pick([0, 1, 3], never_busy, k) for k in keys}  # member 2 is out
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == 2 for k in moved)  # only its keys moved; every other key stayed
    back = {k: balancer.pick([0, 1, 2, 3], never_busy, k) for k in keys}
    assert back == before  # and they come back when it does
    heavy = Balancer("consistent-hash", IDS[:2], [3, 1])
    share = Counter(heavy.pick([0, 1], never_busy, k) for k in keys)[0] / len(keys)
    assert 0.65 < share < 0.85  # weights scale the ring
