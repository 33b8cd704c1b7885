"""Token counts (o200k, offline): exact for known strings, JSON counted as sent."""

from __future__ import annotations

from onemcp.search.tokens import count_json, count_tokens, exact


def test_o200k_counts_are_exact_and_offline() -> None:
    assert exact()
    assert count_tokens("hello world") == 2
    assert count_tokens("") == 0
    assert count_json({"tools": []}) == count_tokens('{"tools":[]}')
