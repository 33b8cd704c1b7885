"""A clock a test moves by hand: `clock.now += 5` (the monotonic time a pacer, budget or cache reads)."""

from __future__ import annotations


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
