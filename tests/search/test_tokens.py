"""Token counts (o200k, offline): exact for known strings, JSON counted as sent."""

from __future__ import annotations

import time

from onemcp.search import tokens
from onemcp.search.tokens import count_json, count_tokens, exact


def test_o200k_counts_are_exact_and_offline() -> None:
    assert exact()
    assert count_tokens("hello world") == 2
    assert count_tokens("") == 0
    assert count_json({"tools": []}) == count_tokens('{"tools":[]}')


def test_the_vocabulary_is_given_back_when_idle_and_comes_back_on_the_next_count() -> None:
    assert count_tokens("hello world") == 2 and tokens.loaded()
    assert not tokens.release_if_idle()  # just used: kept
    assert tokens.release_if_idle(now=time.monotonic() + tokens.IDLE_RELEASE + 1)
    assert not tokens.loaded() and not tokens.release_if_idle(now=time.monotonic() + 1e6)  # once
    assert count_tokens("hello world") == 2 and tokens.loaded()  # loaded again on demand
