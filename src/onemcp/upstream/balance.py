"""Balancing calls over a server's replicas: which healthy member takes the next call.

Owns the algorithms, each weighted (`weights`, one per member; equal by default): smooth weighted
round-robin (nginx's), least in flight relative to weight, weighted random, and consistent hashing
on a ring of virtual nodes (`VNODES` per unit of weight, so a member joining or leaving moves only
the keys that hash next to its own nodes, about 1/N of them). Pure bookkeeping over member
indexes: which members are healthy, and what a call's hash key is, the caller decides
(`upstream/pool.py`, `hub/connections.py`).
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Callable, Sequence

VNODES = 64  # virtual nodes on the ring per unit of weight


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Balancer:
    """The state one server keeps to spread calls over its members (`ids`: each member's stable name)."""

    def __init__(self, algorithm: str, ids: Sequence[str], weights: Sequence[float] | None = None) -> None:
        self.algorithm = algorithm
        self.weights = list(weights) if weights else [1.0] * len(ids)
        assert len(self.weights) == len(ids)
        self._current = [0.0] * len(ids)  # smooth weighted round-robin
        ring: list[tuple[int, int]] = []
        for index, (member, weight) in enumerate(zip(ids, self.weights, strict=True)):
            for vnode in range(max(1, round(VNODES * weight))):
                ring.append((_hash(f"{member}#{vnode}"), index))
        ring.sort()
        self._ring_keys = [point for point, _ in ring]
        self._ring = [index for _, index in ring]
        self.random: Callable[[], float] = random.random

    def pick(self, healthy: Sequence[int], in_flight: Callable[[int], int], key: str | None = None) -> int:
        """The member (an index among `healthy`, which is not empty) that takes the next call."""
        if len(healthy) == 1:
            return healthy[0]
        if self.algorithm == "consistent-hash":
            return self.on_ring(key or "", set(healthy))
        if self.algorithm == "least-in-flight":
            return min(healthy, key=lambda i: ((in_flight(i) + 1) / self.weights[i], i))
        if self.algorithm in ("random", "weighted-random"):
            total = sum(self.weights[i] for i in healthy)
            point = self.random() * total
            for i in healthy:
                point -= self.weights[i]
                if point < 0:
                    return i
            return healthy[-1]
        return self._round_robin(healthy)

    def _round_robin(self, healthy: Sequence[int]) -> int:
        """Smooth weighted round-robin: weights 5,1,1 give a a b a c a a, not a a a a a b c."""
        total = 0.0
        best = healthy[0]
        for i in healthy:
            self._current[i] += self.weights[i]
            total += self.weights[i]
            if self._current[i] > self._current[best]:
                best = i
        self._current[best] -= total
        return best

    def on_ring(self, key: str, healthy: set[int]) -> int:
        """The first healthy member clockwise from `key`'s point on the ring."""
        start = bisect.bisect(self._ring_keys, _hash(key))
        size = len(self._ring)
        for step in range(size):
            index = self._ring[(start + step) % size]
            if index in healthy:
                return index
        return min(healthy)
