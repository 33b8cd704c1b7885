"""A circuit breaker per upstream: fail fast while it is failing, probe it back to health.

Closed: calls go through; `threshold` consecutive failures open it. A failure is evidence
that the upstream itself is down or hung, not that one call went wrong: a call that timed
out or could not be carried (lost connection, transport error) counts only when the
upstream has answered nothing since that call was sent and does not answer a ping within a
short deadline either (`Pool.judge` decides, in the background). A call that failed while
the upstream is otherwise answering, which one client's arguments alone can cause, is a
success here; so is an error the upstream answered. Open: calls fail at once with a clear
error for `cooldown` seconds. Half-open: one probe call goes through; its success closes the
breaker, its failure opens it again.
"""

from __future__ import annotations

import time
from typing import Literal

State = Literal["closed", "open", "half-open"]


class Breaker:
    def __init__(self, threshold: int = 5, cooldown: float = 30.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.opened_at: float | None = None
        self._probing = False
        self._probe_at = 0.0

    @property
    def state(self) -> State:
        if self.opened_at is None:
            return "closed"
        if time.monotonic() - self.opened_at >= self.cooldown:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """May a call go through now? (In half-open, only one probe at a time.)"""
        state = self.state
        if state == "closed":
            return True
        now = time.monotonic()
        if state == "half-open" and (not self._probing or now - self._probe_at > self.cooldown):
            self._probing, self._probe_at = True, now  # a probe that never reports expires
            return True
        return False

    def retry_in(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (time.monotonic() - self.opened_at))

    def record(self, ok: bool) -> None:
        self._probing = False
        if ok:
            self.failures = 0
            self.opened_at = None
            return
        self.failures += 1
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = time.monotonic()
