"""Which server named a web address (bounded, per reach), and how specific a resource template is."""

from __future__ import annotations

from onemcp.catalog.named import NamedUris, most_specific, specificity
from onemcp.catalog.reach import EVERYTHING, Reach


def test_the_last_server_to_name_a_web_address_is_remembered_per_reach() -> None:
    named = NamedUris()
    alice = Reach(servers=frozenset({"good", "evil"}))
    named.note(EVERYTHING, "good", ["https://bucket.example/r?sig=1", "file:///not-web", "good+fixture://x"])
    assert named.server_of(EVERYTHING, "https://bucket.example/r?sig=1") == "good"
    assert named.server_of(EVERYTHING, "file:///not-web") is None  # only web addresses are shown unprefixed
    assert named.server_of(alice, "https://bucket.example/r?sig=1") is None  # another view: its own memory
    named.note(EVERYTHING, "other", ["https://bucket.example/r?sig=1"])
    assert named.server_of(EVERYTHING, "https://bucket.example/r?sig=1") == "other"
    named.forget("other")  # removed: the server that named it before it
    assert named.server_of(EVERYTHING, "https://bucket.example/r?sig=1") == "good"
    named.forget("good")
    assert named.server_of(EVERYTHING, "https://bucket.example/r?sig=1") is None


def test_memory_is_bounded_per_server_least_recently_named_first() -> None:
    named = NamedUris(per_server=3, reaches=2)
    named.note(EVERYTHING, "s", [f"https://h.example/{i}" for i in range(5)])
    assert [named.server_of(EVERYTHING, f"https://h.example/{i}") for i in range(5)] == [None, None, "s", "s", "s"]
    named.note(EVERYTHING, "s", ["https://h.example/2"])  # named again: the newest
    named.note(EVERYTHING, "s", ["https://h.example/5"])
    assert named.server_of(EVERYTHING, "https://h.example/2") == "s"
    assert named.server_of(EVERYTHING, "https://h.example/3") is None
    # a server naming many addresses forgets its own, never what another server named
    named.note(EVERYTHING, "evil", [f"https://flood.example/{i}" for i in range(100)])
    assert named.server_of(EVERYTHING, "https://h.example/2") == "s"
    one, two = Reach(servers=frozenset({"a"})), Reach(servers=frozenset({"b"}))
    named.note(one, "a", ["https://h.example/a"])
    named.note(two, "b", ["https://h.example/b"])  # a third reach: the least recently used one goes
    assert named.server_of(EVERYTHING, "https://h.example/2") is None
    assert named.server_of(one, "https://h.example/a") == "a" and named.server_of(two, "https://h.example/b") == "b"


def test_a_literal_host_beats_a_variable_one_which_beats_a_variable_scheme() -> None:
    assert specificity("https://api.example/items/{id}")[0] == 0
    assert specificity("file:///{path}")[0] == 0
    assert specificity("urn:isbn:{id}")[0] == 0
    assert specificity("https://{+rest}")[0] == 1
    assert specificity("https://api.{region}.example/{x}")[0] == 1
    assert specificity("{+anything}")[0] == 2
    assert specificity("{scheme}://x/{p}")[0] == 2
    assert specificity("https://api.example/v1/{x}") < specificity("https://api.example/{x}")  # longer literal


def test_only_the_most_specific_kind_of_template_takes_a_uri() -> None:
    uri = "https://api.example/items/7"
    matches = [
        ("evil", uri, "https://{+rest}"),
        ("worse", uri, "{+anything}"),
        ("api", uri, "https://api.example/items/{id}"),
        ("wide", uri, "https://api.example/{+path}"),
    ]
    assert most_specific(matches) == [("api", uri), ("wide", uri)]  # never the catch-alls
    assert most_specific(matches[:2]) == [("evil", uri)]
    assert most_specific([]) == []
