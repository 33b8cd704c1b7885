"""Product kinds: the shipped gazetteer, finding a server's products, and search that uses them."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from onemcp.search import kinds
from onemcp.search.index import SearchIndex


@pytest.fixture
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A gazetteer of five products instead of the shipped one."""
    path = tmp_path / "kinds.toml"
    path.write_text(
        '[sentry]\nnames = ["sentry"]\nkind = "error tracking, crash reports"\n'
        '[google-maps]\nnames = ["google maps"]\nkind = "maps, places, directions"\n'
        '[stripe]\nnames = ["stripe"]\nkind = "payments, billing, invoices"\n'
        '[zorblat]\nnames = ["zorblat"]\nkind = "error tracking, crash reports, exceptions"\n'
        '[zorblat-vault]\nnames = ["vaultz"]\nkind = "secrets, passwords, credentials"\n'
    )
    monkeypatch.setattr(kinds, "KINDS_FILE", path)
    kinds.gazetteer.cache_clear()
    yield
    kinds.gazetteer.cache_clear()


def test_the_shipped_gazetteer_is_well_formed() -> None:
    with kinds.KINDS_FILE.open("rb") as file:
        data = tomllib.load(file)
    assert len(data) >= 1000
    seen: set[str] = set()
    for product, entry in data.items():
        assert set(entry) == {"names", "kind"}, product
        assert entry["names"] and 0 < len(entry["kind"]) <= 130, product
        for name in entry["names"]:
            assert name == " ".join(name.split()) and name.replace(" ", "").isalnum() and name == name.lower()
            assert name not in seen, f"{name} twice"
            seen.add(name)
    assert len(kinds.gazetteer().kinds) == len(data)  # and it loads


@pytest.mark.usefixtures("small")
def test_products_are_found_by_whole_words_longest_name_first() -> None:
    assert kinds.products("Search places with the Google Maps API, then bill with Stripe") == ["google-maps", "stripe"]
    assert kinds.products("sentry_find_issues") == ["sentry"]
    assert kinds.products("sentryish stripes google") == []  # no part-words, no half a name


@pytest.mark.usefixtures("small")
def test_a_server_is_its_name_and_what_most_of_its_tools_name() -> None:
    tools = [{"name": f"t{i}", "description": "Find issues in Sentry"} for i in range(3)]
    tools.append({"name": "pay", "description": "Charge the card through Stripe"})  # one tool of four: not enough
    assert kinds.server_products("crash", tools) == ["sentry"]
    assert kinds.server_products("stripe", tools) == ["stripe", "sentry"]
    assert kinds.server_products("x", tools, about="Google Maps MCP") == ["google-maps", "sentry"]
    assert kinds.kind_text(["sentry", "stripe"]) == "error tracking, crash reports; payments, billing, invoices"


@pytest.mark.usefixtures("small")
def test_a_request_for_the_kind_of_product_finds_the_brand() -> None:
    index = SearchIndex(None, model=False, transformer=False)  # words alone: the kind must be indexed
    index.update("sentry", [{"name": "sentry__find_projects", "description": "List projects in an org."}])
    index.update("gitlab", [{"name": "gitlab__list_projects", "description": "List projects in a group."}])
    assert index.search("which projects does our crash tracker know")[0].name == "sentry__find_projects"


def test_a_missing_gazetteer_only_loses_the_kinds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kinds, "KINDS_FILE", tmp_path / "absent.toml")
    kinds.gazetteer.cache_clear()
    try:
        assert kinds.products("sentry") == [] and kinds.server_products("sentry", []) == []
    finally:
        kinds.gazetteer.cache_clear()


# Brands no model has heard of: only kind words can tell what they are.
def unknown(server: str) -> list[dict[str, str]]:
    return [
        {"name": f"{server}__list_projects", "description": "List projects in an organization."},
        {"name": f"{server}__list_releases", "description": "List releases of a project."},
    ]


QUERIES = (
    "which projects does our crash tracker know",
    "releases seen by the error tracking",
    "projects in the crash reporter",
    "list the projects we track exceptions for",
    "releases of our crash reporting",
)


@pytest.mark.usefixtures("small")
def test_kind_words_move_a_servers_vectors_and_are_encoded_once_per_server() -> None:
    index = SearchIndex(None)  # the shipped models
    assert index.transformer is not None
    index.update("zorblat", unknown("zorblat"))
    index.update("quillo", unknown("quillo"))
    assert index.deep_pending() == 5  # four tool texts and one kind (quillo is in no gazetteer)
    index.fill_deep()
    assert index.deep_ready and index.deep_embedded == 5
    for query in QUERIES:
        assert index.search(query)[0].server == "zorblat", query
    index.update("zorblat", unknown("zorblat")[:1])
    assert index.deep_ready  # the same kind: nothing new to encode
    index.update("zorblat", unknown("zorblat")[:1], about="Zorblat for Stripe")
    assert index.deep_pending() == 2  # the tool's fields changed (about), and so did its kind
    index.remove("zorblat")
    assert index.deep_ready and index.deep_batch() == []  # its kind left with it


@pytest.mark.parametrize("tracker", ["zorblat", "quillo"])
def test_whichever_server_has_the_kind_words_is_found(
    tracker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same two servers with the kind given to one or the other: the kind decides, not the name
    (without kinds each wins about half of these requests)."""
    path = tmp_path / "kinds.toml"
    path.write_text(f'[{tracker}]\nnames = ["{tracker}"]\nkind = "error tracking, crash reports, exceptions"\n')
    monkeypatch.setattr(kinds, "KINDS_FILE", path)
    kinds.gazetteer.cache_clear()
    try:
        index = SearchIndex(None)
        index.update("zorblat", unknown("zorblat"))
        index.update("quillo", unknown("quillo"))
        index.fill_deep()
        assert [index.search(query)[0].server for query in QUERIES] == [tracker] * len(QUERIES)
    finally:
        kinds.gazetteer.cache_clear()


@pytest.mark.usefixtures("small")
def test_a_tool_named_for_a_product_of_its_own_gets_that_kind_first() -> None:
    index = SearchIndex(None, transformer=False)
    index.update("zorblat", [*unknown("zorblat"), {"name": "zorblat__vaultz_read", "description": "Read an entry."}])
    index.update("quillo", [{"name": "quillo__read_entry", "description": "Read an entry."}])
    assert index.embedded == 6  # four tool texts, the server's kind, and the vault tool's own kind
    assert index.search("read a stored password")[0].name == "zorblat__vaultz_read"


@pytest.mark.usefixtures("small")
def test_a_request_that_names_a_product_ranks_that_products_tools_first() -> None:
    """The transformer does not know a brand it never saw ("zorblat"); naming it still lifts its tools
    from the bottom of the six (fifth and sixth without the name) to the top, the first of them first.
    (With transformer v9 one Jira tool whose name is the request's words ranks between the two.)"""
    index = SearchIndex(None, model=False, transformer=True)
    index.update("tracker", [
        {"name": "tracker__search_issues", "description": "Search issues by text across projects."},
        {"name": "tracker__list_issues", "description": "List the issues of a project."},
    ])  # fmt: skip
    index.update("jira", [
        {"name": "jira__search_issues", "description": "Search issues with JQL."},
        {"name": "jira__search_issue_text", "description": "Search the text of issues."},
    ])  # fmt: skip
    index.update("zorblat", [
        {"name": "zorblat__find_problems", "description": "Look up problems."},
        {"name": "zorblat__resolve", "description": "Mark a problem resolved."},
    ])  # fmt: skip
    index.fill_deep()
    named = [hit.server for hit in index.search("zorblat: search issues", limit=3)]
    assert named[0] == "zorblat" and named.count("zorblat") == 2, named
    assert {hit.server for hit in index.search("search issues in zorblat", limit=2)} == {"zorblat"}
    assert index.search("search issues")[0].server != "zorblat"  # no product named: no lift
