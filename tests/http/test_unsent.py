"""The unsent-reply budget's ledger (http/unsent.py), with connections that are plain counters.

The wire is tested in tests/http/test_server.py (two real connections that do not read)."""

from __future__ import annotations

from onemcp.http.unsent import UnsentBudget


class Conn:
    def __init__(self, unsent: int) -> None:
        self.now = unsent
        self.dropped = False

    def unsent(self) -> int:
        return self.now

    def drop_unsent(self) -> None:
        self.dropped = True


def test_under_the_budget_nothing_is_counted_again_or_dropped() -> None:
    budget = UnsentBudget()
    a, b = Conn(0), Conn(0)  # what they hold now is never asked while the sum fits
    assert budget.hold(a, 40, 100) == []
    assert budget.hold(b, 50, 100) == []
    assert budget.total == 90 and len(budget) == 2


def test_past_the_budget_the_largest_holders_are_dropped_until_the_rest_fit() -> None:
    budget = UnsentBudget()
    small, large, newest = Conn(10), Conn(60), Conn(50)
    budget.hold(small, 10, 100)
    budget.hold(large, 60, 100)
    assert budget.hold(newest, 50, 100) == [large]
    assert large.dropped and not small.dropped and not newest.dropped
    assert budget.total == 60 and len(budget) == 2


def test_holders_are_counted_again_before_any_is_dropped() -> None:
    """A reader that kept up has taken its bytes since its writing paused: it is not dropped for them."""
    budget = UnsentBudget()
    fast, slow = Conn(0), Conn(70)
    budget.hold(fast, 70, 100)
    assert budget.hold(slow, 70, 100) == []  # counted again: 0 + 70
    assert budget.total == 70


def test_one_connection_alone_is_never_dropped_for_the_budget() -> None:
    budget = UnsentBudget()
    alone = Conn(500)
    assert budget.hold(alone, 500, 100) == []
    assert not alone.dropped


def test_release_gives_the_bytes_back_once() -> None:
    budget = UnsentBudget()
    a = Conn(30)
    budget.hold(a, 30, 100)
    budget.hold(a, 40, 100)  # paused again: its new count replaces the old
    assert budget.total == 40
    budget.release(a)
    budget.release(a)  # resumed, then lost: nothing given back twice
    assert budget.total == 0 and len(budget) == 0
