"""The hub-wide budget of reply bytes written to clients and not yet taken (`onemcp.limits.maxUnsentBytes`).

A reply is written whole into its connection's transport; a client that reads slowly, or not at all,
makes the hub hold what it has not taken (`sendTimeout` bounds for how long, this budget how much, over
all connections of one server together). Owns only the ledger: which connections hold bytes, how many,
and which to drop when they hold too many together. Does not own the connections (http/server.py asks
and obeys) nor a per-connection bound.

Only a connection whose transport paused writing (more than its high-water mark, 64 KiB, waiting)
enters the ledger: a small reply, or any reply to a client that keeps up, never does, so the budget
costs nothing on the hot path.
"""

from __future__ import annotations

from typing import Protocol


class Holder(Protocol):
    """A connection that holds unsent bytes."""

    def unsent(self) -> int:
        """Bytes written to it and not yet taken by its client, now."""
        ...

    def drop_unsent(self) -> None:
        """Close it at once, dropping what it holds (its client sees the connection end)."""
        ...


class UnsentBudget:
    """The connections holding unsent bytes, with what each held when last counted.

    The count of a connection is taken when its writing pauses; it only falls until writing resumes
    (nothing more is written to a paused connection), so the sum is an upper bound, counted again
    from the transports before anything is dropped for it.
    """

    def __init__(self) -> None:
        self._held: dict[Holder, int] = {}
        self._total = 0

    @property
    def total(self) -> int:
        """Bytes held, as last counted."""
        return self._total

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, conn: Holder, size: int, budget: int) -> list[Holder]:
        """`conn` paused holding `size` bytes: past `budget` together, the connections holding the most are
        dropped until the rest fit (which may be `conn` itself); the dropped, in order. One connection alone
        is never dropped for the budget: a single reply may be larger (`sendTimeout` still bounds it)."""
        self._total += size - self._held.get(conn, 0)
        self._held[conn] = size
        if self._total <= budget:
            return []
        for holder in self._held:  # counted again: readers that kept up have taken theirs meanwhile
            self._held[holder] = holder.unsent()
        self._total = sum(self._held.values())
        dropped: list[Holder] = []
        while self._total > budget and len(self._held) > 1:
            victim = max(self._held, key=self._held.__getitem__)
            self.release(victim)
            dropped.append(victim)
            victim.drop_unsent()
        return dropped

    def release(self, conn: Holder) -> None:
        """`conn` resumed writing (its client took most of it) or ended: it holds nothing that counts."""
        self._total -= self._held.pop(conn, 0)
