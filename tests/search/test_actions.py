"""The action words: a tool's name in everyday phrases, from the shipped lexicon."""

from __future__ import annotations

import re

import pytest

from onemcp.search import actions
from onemcp.search.actions import lexicon, say_text


def test_the_shipped_lexicon_loads_and_every_entry_is_a_word_with_phrases() -> None:
    known = lexicon()
    assert len(known) >= 400
    for word, say in known.items():
        assert re.fullmatch(r"[a-z0-9]+", word), word
        phrases = [p.strip() for p in say.split(",")]
        assert len(phrases) >= 3 and all(phrases), word
        assert len(set(phrases)) == len(phrases), word  # twice, a phrase weighs double in BM25 and in draws


def test_a_tool_name_gives_its_words_phrases_plurals_and_camel_case_included() -> None:
    assert "give to" in say_text("jira_assign_issue")
    assert "remember that" in say_text("add_observations")  # the plural's own entry
    assert say_text("createEntities").startswith(lexicon()["create"])  # camelCase split, first word first
    assert say_text("git_merge") == say_text("git_merge_merge")  # each word once
    assert say_text("xyzzy_quux") == ""


def test_a_word_gives_its_phrases_one_by_one_its_plural_too() -> None:
    assert actions.phrases_of("stash")[:2] == ["put aside", "save for later"]
    assert actions.phrases_of("records") == actions.phrases_of("record")
    assert "log entry" in actions.phrases_of("record")
    assert actions.phrases_of("xyzzy") == []


def test_a_word_s_phrases_are_stripped_and_empty_ones_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actions, "lexicon", lambda: {"zap": " blast away, , zero out ,"})
    assert actions.phrases_of("zaps") == ["blast away", "zero out"]


def test_a_missing_lexicon_is_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actions, "ACTIONS_FILE", actions.ACTIONS_FILE.with_name("no-such-file.toml"))
    actions.lexicon.cache_clear()
    actions._phrases.cache_clear()
    try:
        assert say_text("jira_assign_issue") == ""
        assert actions.phrases_of("stash") == []
        assert actions.expanded("hand over PROJ-7 to Priya") == "hand over PROJ-7 to Priya"
    finally:
        actions.lexicon.cache_clear()
        actions._phrases.cache_clear()


def test_a_request_is_expanded_with_the_words_its_phrases_stand_for() -> None:
    assert actions.said_words("put aside my edits") == ["place", "set", "write", "reserve", "stash"]
    assert actions.expanded("hand over PROJ-7 to Priya").startswith("hand over PROJ-7 to Priya (assign ")
    assert "stash" not in actions.said_words("stash my edits, put aside")  # said already
    assert "verify" in actions.said_words("double-check the totals")  # "double-check": the words double, check
    assert actions.expanded("zzzz qqqq") == "zzzz qqqq"  # nothing to add: itself
    assert "stash" not in actions.said_words("put my edits aside")  # a phrase counts word for word only
