"""The search index: ranking, incremental updates, the disk cache, `allowed`, the lexical fallback."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from onemcp.search import embed, kinds, text
from onemcp.search import index as index_module
from onemcp.search.index import SearchIndex
from onemcp.search.text import stem, words

TIME = [
    {"name": "time__get_current_time", "description": "Get current time in a specific timezone",
     "inputSchema": {"type": "object", "properties": {"timezone": {"type": "string"}}}},
    {"name": "time__convert_time", "description": "Convert time between timezones",
     "inputSchema": {"type": "object", "properties": {"time": {"type": "string"}}}},
]  # fmt: skip
FILES = [
    {"name": "fs__read_file", "description": "Read the complete contents of a file from the file system."},
    {"name": "fs__list_directory", "description": "Get a detailed listing of all files and directories in a path."},
    {"name": "fs__move_file", "description": "Move or rename files and directories."},
]
MAIL = [{"name": "mail__send_email", "description": "Send an email message to one or more recipients."}]


GIT = [
    {"name": "git__git_stash", "description": "Stash the changes in a dirty working directory away"},
    {"name": "git__git_checkout", "description": "Switches branches"},
]


@pytest.fixture(autouse=True)
def no_kinds(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Any:
    """No product kinds here: the counts below are of tool texts (kinds: test_kinds.py)."""
    monkeypatch.setattr(kinds, "KINDS_FILE", tmp_path_factory.mktemp("kinds") / "absent.toml")
    kinds.gazetteer.cache_clear()
    yield
    kinds.gazetteer.cache_clear()


def build(cache: Path | None = None, model: Any = True, transformer: Any = True) -> SearchIndex:
    index = SearchIndex(cache, model=model, transformer=transformer)
    index.update("time", TIME)
    index.update("fs", FILES)
    index.update("mail", MAIL)
    return index


def names(index: SearchIndex, query: str, **kw: Any) -> list[str]:
    return [hit.name for hit in index.search(query, **kw)]


def test_the_static_model_is_loaded_only_without_the_transformer() -> None:
    both = build()
    assert both.transformer is not None and both.model is None  # the transformer ranks: no static model
    alone = build(transformer=False)
    assert alone.transformer is None and alone.model is not None


def test_until_the_transformer_ranks_words_alone_rank() -> None:
    index = build()
    assert not index.deep_ready
    assert names(index, "current time in Tokyo")[0] == "time__get_current_time"
    assert names(index, "write to my colleague") == []  # no word in common, and no model ranks yet
    index.fill_deep()
    assert names(index, "write to my colleague")[0] == "mail__send_email"


def test_the_shipped_static_model_loads_and_ranks_by_words_and_by_meaning() -> None:
    index = build(transformer=False)
    assert index.semantic and len(index) == 6
    assert names(index, "current time in Tokyo")[0] == "time__get_current_time"
    assert names(index, "show me what is inside this document")[0] == "fs__read_file"
    assert names(index, "rename a file")[0] == "fs__move_file"
    assert names(index, "write to my colleague")[0] == "mail__send_email"  # no word in common: meaning alone


def test_only_new_definitions_are_embedded_and_the_disk_cache_serves_a_restart(tmp_path: Path) -> None:
    index = build(tmp_path, transformer=False)
    assert index.embedded == 6
    index.update("fs", FILES)  # unchanged
    assert index.embedded == 6
    index.update("fs", [*FILES[:2], {**FILES[2], "description": "Move a file somewhere else."}])
    assert index.embedded == 7  # just the changed one
    index.cache.close()
    again = build(tmp_path, transformer=False)
    assert again.embedded == 0  # the old and the new definition were both cached
    again.cache.close()
    third = build(tmp_path, transformer=False)
    assert third.embedded == 0  # a restart embeds nothing
    third.cache.close()


def test_allowed_and_remove_decide_what_is_found() -> None:
    index = build()
    index.fill_deep()  # every ranking, words and meaning, answers to `allowed`
    found = names(index, "file", limit=10, allowed=lambda name: not name.startswith("fs__"))
    assert found and not any(name.startswith("fs__") for name in found)
    index.remove("fs")
    assert len(index) == 3 and not any(name.startswith("fs__") for name in names(index, "read a file", limit=10))


def test_without_the_model_search_runs_on_words(tmp_path: Path) -> None:
    assert embed.load(tmp_path) is None  # no model files here
    index = build(model=None, transformer=None)
    assert not index.semantic
    assert names(index, "convert timezones")[0] == "time__convert_time"
    assert names(index, "") == [] and names(index, "zzzz qqqq") == []


# Requests in the user's words where the transformer puts the right tool first and BM25 with the
# static model does not (checked both ways below, so the test shows what the transformer adds).
PARAPHRASED = [
    ("is it already evening for people in Osaka", "time__get_current_time"),
    ("is it morning yet in Sydney", "time__get_current_time"),
]
# ... and one the request's action words bring up (`actions.expanded`: "retitle" says rename):
# `move_file` passes `list_directory`, which BM25 puts first ("folder" is an action word of directory)
# and which leads the fused ranking too without the request's second vector. (Until v10, session 22:
# "give the report folder a better title"; v10 ranks it list_directory first either way.)
EXPANDED = [("retitle the quarterly report folder", "fs__move_file")]
# ... and one the words find too, through the action words of the tool's name (stash: "put aside")
BY_ACTION_WORDS = [("put my unfinished edits aside for now", "git__git_stash")]


def test_the_transformer_ranks_once_every_tool_has_its_vector() -> None:
    index = build()
    index.update("git", GIT)
    assert index.transformer is not None and not index.deep_ready and index.deep_pending() == 8
    static = build(transformer=False)
    static.update("git", GIT)
    before = {query: names(static, query)[0] for query, _ in PARAPHRASED + EXPANDED}  # BM25 and the static model
    batch = index.deep_batch(5)
    assert len(batch) == 5 and all(isinstance(text, str) and text for _, text in batch)
    index.deep_install([digest for digest, _ in batch], index.transformer.encode([text for _, text in batch]))
    assert index.deep_pending() == 3 and not index.deep_ready  # no mixed ranking: all tools or none
    index.fill_deep()
    assert index.deep_ready and index.deep_embedded == 8
    for query, expected in PARAPHRASED:
        assert names(index, query)[0] == expected, query
        assert before[query] != expected, query
    words_only = build(model=None, transformer=None)
    words_only.update("git", GIT)
    for query, expected in EXPANDED:
        assert names(index, query)[0] == expected and before[query] != expected, query
        assert names(words_only, query)[0] == "fs__list_directory", query
    for query, expected in BY_ACTION_WORDS:
        assert names(index, query)[0] == expected == names(static, query)[0], query
        assert names(words_only, query)[0] == expected, query  # BM25 alone: the phrases are its terms
    index.update("mail", [{**MAIL[0], "description": "Send a message by email."}])
    assert not index.deep_ready and index.deep_pending() == 1  # only the changed definition waits


def test_what_waits_for_the_transformer_is_counted_once_per_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every search asks whether the transformer ranks (`deep_ready`): a count walks every tool, so it is
    counted again only after the tools or their vectors changed, and stays right through each change."""
    index = build()
    assert index.transformer is not None
    counts: list[int] = []
    count = index._count_pending

    def counted() -> int:
        counts.append(count())
        return counts[-1]

    monkeypatch.setattr(index, "_count_pending", counted)
    index.update("git", GIT)
    assert index.deep_pending() == 8 and index.deep_pending() == 8 and not index.deep_ready
    assert counts == [8]  # asked three times, counted once
    batch = index.deep_batch(5)
    index.deep_install([digest for digest, _ in batch], index.transformer.encode([text for _, text in batch]))
    assert index.deep_pending() == 3 and counts == [8, 3]
    index.fill_deep()
    for query, _ in PARAPHRASED:
        assert index.deep_ready and names(index, query)
    assert counts == [8, 3, 0]
    index.update("mail", [{**MAIL[0], "description": "Send a message by email."}])
    assert index.deep_pending() == 1 and counts == [8, 3, 0, 1]
    index.remove("mail")
    assert index.deep_ready and counts == [8, 3, 0, 1, 0]
    lender = build()
    lender.update("git", GIT)
    index.keep(lender, 4, besides=build(transformer=False))  # 4 vectors kept of 8: not a new generation
    assert index.deep_pending() == 4 and counts[-1] == 4 and len(counts) == 6


def test_the_request_with_its_action_words_is_a_second_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    index = build()
    index.update("git", GIT)
    index.fill_deep()
    query, expected = EXPANDED[0]
    encode = index.query_encoder()
    assert encode is not None
    vectors = encode(query)
    assert vectors.shape == (2, 384) and float(vectors[0] @ vectors[1]) < 0.99  # it said more
    assert names(index, query, vector=vectors)[0] == expected == names(index, query)[0]
    plain = encode("zzzz qqqq")  # no phrase of the lexicon: its one vector, twice
    assert (plain[0] == plain[1]).all()
    long = encode("hand over the report " * 40)  # its own tokens fill the run: the added words would be cut
    assert (long[0] == long[1]).all()
    assert names(index, query, vector=vectors[0])[0] == names(index, query, vector=vectors[[0, 0]])[0]  # one row
    monkeypatch.setattr(index_module, "EXPANDED_WEIGHT", 0.0)
    assert names(index, query)[0] != expected  # without the second vector, list_directory leads


@pytest.mark.parametrize("transformer", [True, False])
def test_what_a_search_builds_first_can_be_built_elsewhere_and_is_dropped_if_stale(transformer: bool) -> None:
    """`settling` hands out the postings and matrices to build on another thread; `settle` installs
    them only if the index did not change meanwhile, and searches rank exactly as if built in line."""
    inline, index = build(transformer=transformer), build(transformer=transformer)
    for built in (inline, index):
        if transformer:
            built.fill_deep()
    work = index.settling()
    assert work is not None
    index.settle(work())
    assert index.lexical.built and index.settling() is None  # nothing left for the next search to build
    for query in ("what time is it in Tokyo", "list the files in a folder", "email the team"):
        assert index.search(query) == inline.search(query), query
    stale = index.settling()
    assert stale is None
    index.update("git", GIT)  # a change between the snapshot and `settle`
    stale = index.settling()
    assert stale is not None
    result = stale()
    index.update("mail", [])
    index.settle(result)  # built from tools the index no longer has: dropped
    assert not index.lexical.built
    assert "mail__send_email" not in names(index, "send an email message", limit=10)


def test_transformer_vectors_are_cached_and_a_restart_encodes_nothing(tmp_path: Path) -> None:
    index = build(tmp_path)
    index.fill_deep()
    assert index.deep_embedded == 6
    index.cache.close()
    again = build(tmp_path)
    assert again.deep_ready and again.deep_embedded == 0 and again.deep_batch() == []
    again.cache.close()
    # written ahead to a log, synced at checkpoints: a batch's commit (on the hub's event loop) waits
    # for no fsync (~0.2 ms against 10-25 ms here)
    with contextlib.closing(sqlite3.connect(tmp_path / "embeddings.sqlite3")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize(
    "damage",
    [b"\x01\x02\x03", b"\x00" * 100, b"\x00\x00\xc0\x7f" * 384],  # not float32s; too few; the right number, all NaN
)
def test_a_damaged_cached_vector_is_encoded_again_not_trusted(tmp_path: Path, damage: bytes) -> None:
    index = build(tmp_path)
    index.fill_deep()
    index.cache.close()
    db = sqlite3.connect(tmp_path / "embeddings.sqlite3")
    with db:
        db.execute("UPDATE vectors SET vector = ? WHERE rowid = (SELECT MIN(rowid) FROM vectors)", (damage,))
    db.close()
    again = build(tmp_path)
    assert again.deep_embedded == 0 and again.deep_pending() == 1  # that one only, in the encoding queue
    again.fill_deep()
    assert again.deep_ready and names(again, "what time is it in Tokyo")[0] == "time__get_current_time"
    again.cache.close()
    healed = build(tmp_path)  # and its row was replaced
    assert healed.deep_ready and healed.deep_embedded == 0
    healed.cache.close()


def test_a_cache_another_process_holds_locked_still_lets_search_work(tmp_path: Path) -> None:
    build(tmp_path).cache.close()
    holder = sqlite3.connect(tmp_path / "embeddings.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # neither read nor written by anyone else until it ends
    try:
        index = build(tmp_path)  # reads fail at once: everything is encoded (and not written)
        assert index.deep_pending() == 6
        index.fill_deep()
        assert index.deep_ready and names(index, "send an email")[0] == "mail__send_email"
        index.cache.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_server_removed_before_its_vectors_leaves_nothing_to_encode() -> None:
    index = build()
    index.update("git", GIT)
    index.remove("git")
    index.remove("fs")
    assert {text.split(".")[0] for _, text in index.deep_batch(100)} == {
        "time get current time",
        "time convert time",
        "mail send email",
    }


def test_without_any_model_nothing_waits_for_vectors() -> None:
    index = build(model=None, transformer=None)
    assert index.deep_pending() == 0 and not index.deep_ready and index.deep_batch() == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("getFileInfo", ["get", "file", "info"]),
        ("list_directory", ["list", "directory"]),
        ("git-diff.v2", ["git", "diff", "v2"]),
    ],
)
def test_identifiers_split_into_words(text: str, expected: list[str]) -> None:
    assert words(text) == expected


def test_stemming_meets_word_forms() -> None:
    assert stem("files") == stem("file") and stem("listing") == stem("list") and stem("queries") == "query"


def test_a_server_whose_tools_keep_changing_does_not_grow_the_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """Vectors of definitions no tool has any more are dropped once they outnumber the live ones
    (10,000 were held for 50 tools after 200 versions)."""
    monkeypatch.setattr(index_module, "KEEP_UNUSED", 4)
    index = build(transformer=False)
    for version in range(30):
        index.update("fs", [{**tool, "description": f"{tool['description']} v{version}"} for tool in FILES])
        assert len(index._memory) <= 2 * len(index) + 4 + len(FILES), (version, len(index._memory))
    assert names(index, "move a file")  # still ranks


def test_a_change_of_a_big_server_keeps_the_vectors_of_its_unchanged_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server's list changes (one tool more): its other tools keep their vectors (they were all
    dropped, then encoded again, while it was out of the index for the replacement)."""
    monkeypatch.setattr(index_module, "KEEP_UNUSED", 4)
    index = build(transformer=False)
    many = [{"name": f"tool_{i}", "description": f"Does thing number {i}."} for i in range(40)]
    index.update("big", many)
    before = index.embedded
    index.update("big", [*many, {"name": "tool_new", "description": "Does a new thing."}])
    assert index.embedded == before + 1


def test_an_index_keeps_another_ones_vectors_its_third_lacks_newest_last_and_lends_them() -> None:
    """`keep` (a view's vectors kept for its next index, `hub/own_search.py`): bounded, the oldest dropped,
    none the `besides` index has; a new index with it among its `lenders` encodes none of them."""
    hub = SearchIndex(None, transformer=False)
    hub.update("fs", FILES)
    model = hub.model
    own = SearchIndex(None, model=model, transformer=False, lenders=(hub,))
    own.update("fs", FILES)
    own.update("mail", MAIL)
    own.update("git", GIT)
    assert own.embedded == 3  # FILES' were the hub's
    kept = SearchIndex(None, model=model, transformer=False)
    kept.keep(own, limit=2, besides=hub)
    assert len(kept._memory) == 2  # of MAIL's one and GIT's two, the oldest dropped
    again = SearchIndex(None, model=model, transformer=False, lenders=(hub, kept))
    again.update("git", GIT)
    assert again.embedded == 0
    other = SearchIndex(None, model=False, transformer=False)
    other.keep(own, limit=10, besides=hub)
    assert other._memory == {}  # another model's vectors are not kept


def test_a_tool_is_searched_by_the_start_of_each_of_its_fields_only() -> None:
    """A description, title, name or parameter list of any length is searched by its start (text.py's
    MAX_*_TEXT): a server's one tool with 20 MB of distinct words held the hub 800 MB of terms."""
    filler = " ".join(f"w{i}" for i in range(text.MAX_DESCRIPTION_TEXT // 4))  # past the bound, distinct words
    props = {f"p{i}": {"type": "string"} for i in range(text.MAX_PARAM_NAMES_TEXT // 3)}
    huge = {
        "name": "reports__quarterly",
        "title": f"Quarterly {filler} unicornish",
        "description": f"Reads quarterly reports. {filler} zebracorn",
        "inputSchema": {"type": "object", "properties": {**props, "narwhalish": {"type": "string"}}},
    }
    index = SearchIndex(None, model=False, transformer=False)
    index.update("reports", [huge, *FILES])
    assert names(index, "quarterly reports")[0] == "reports__quarterly"
    for past_the_bound in ("zebracorn", "unicornish", "narwhalish"):
        assert names(index, past_the_bound) == [], past_the_bound
    held = len(index.lexical.snapshot()["reports__quarterly"][0])  # distinct terms the tool's document keeps
    assert held < (2 * text.MAX_NAME_TEXT + text.MAX_DESCRIPTION_TEXT + text.MAX_PARAM_NAMES_TEXT) // 2


def test_a_servers_tools_are_searched_within_a_budget_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past `MAX_SERVER_TEXT` characters together, each of a server's tools is searched by an equal
    share, its name first: 10,000 tools of 5,000 characters of distinct words grew the hub to 3 GB.
    A server within it is searched whole (every real one is)."""
    monkeypatch.setattr(text, "MAX_SERVER_TEXT", 20 * text.MIN_TOOL_TEXT)  # 10 tools of 1,000 chars: 4 times over
    many = [
        {"name": f"tool_{i}", "description": f"Opens ledger {i}. {' '.join(f'w{i}x{j}' for j in range(150))} quokka{i}"}
        for i in range(10)
    ]
    index = SearchIndex(None, model=False, transformer=False)
    index.update("big", many)
    index.update("fs", [{**FILES[0], "description": f"{FILES[0]['description']} {'filler ' * 600} wombat"}])
    assert names(index, "ledger 3")[0] == "tool_3"  # the start of each is searched
    assert names(index, "quokka3") == []  # past its share: not
    assert names(index, "wombat") == ["fs__read_file"]  # another server within the budget: searched whole
    held = sum(len(doc[0]) for name, doc in index.lexical.snapshot().items() if name.startswith("tool_"))
    assert held < 1000  # of the 1,530 distinct words the ten sent, half a share's worth each
