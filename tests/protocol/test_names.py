"""NameCodec and server-name rules: prefixing, sanitising, shortening, and reversible decoding."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onemcp.catalog.catalog import Catalog
from onemcp.protocol.names import (
    DEFAULT_SEPARATOR,
    TOOL_NAME_MAX,
    URI_SEPARATOR,
    NameCodec,
    PrefixMode,
    separator_problem,
    server_name_problem,
)

VALID_TOOL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# --------------------------------------------------------------------------- name()
def test_prefixed_name_is_server_separator_name() -> None:
    codec = NameCodec()
    assert codec.name("git", "status", prefixed=True) == "git__status"


def test_unprefixed_valid_name_is_unchanged() -> None:
    codec = NameCodec()
    assert codec.name("git", "status", prefixed=False) == "status"


def test_custom_separator_is_used() -> None:
    codec = NameCodec("-")
    assert codec.name("git", "status", prefixed=True) == "git-status"


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        ("read.file", "s__read_file"),
        ("a b", "s__a_b"),
        ("héllo", "s__h_llo"),
        ("x/y:z", "s__x_y_z"),
    ],
)
def test_invalid_characters_are_replaced_with_underscore(tool: str, expected: str) -> None:
    assert NameCodec().name("s", tool, prefixed=True) == expected


def test_sanitised_unprefixed_name_is_valid() -> None:
    visible = NameCodec().name("s", "get.weather", prefixed=False)
    assert visible == "get_weather"
    assert VALID_TOOL.match(visible)


def test_empty_unprefixed_name_becomes_a_valid_name() -> None:
    visible = NameCodec().name("s", "", prefixed=False)
    assert VALID_TOOL.match(visible)


def test_name_of_exactly_64_chars_is_kept() -> None:
    tool = "t" * (TOOL_NAME_MAX - len("s__"))
    visible = NameCodec().name("s", tool, prefixed=True)
    assert visible == f"s__{tool}"
    assert len(visible) == TOOL_NAME_MAX


def test_long_name_is_shortened_to_64_chars_with_readable_head() -> None:
    tool = "x" * 100
    visible = NameCodec().name("server", tool, prefixed=True)
    assert len(visible) == TOOL_NAME_MAX
    assert visible.startswith("server__xxxx")
    assert VALID_TOOL.match(visible)


def test_shortening_is_deterministic() -> None:
    tool = "very_long_tool_name_" * 5
    assert NameCodec().name("s", tool, prefixed=True) == NameCodec().name("s", tool, prefixed=True)


def test_long_names_sharing_a_60_char_head_stay_distinct() -> None:
    head = "h" * 60
    codec = NameCodec()
    a = codec.name("s", head + "_alpha_tail", prefixed=True)
    b = codec.name("s", head + "_beta_tail", prefixed=True)
    assert a != b
    assert len(a) == len(b) == TOOL_NAME_MAX
    assert VALID_TOOL.match(a) and VALID_TOOL.match(b)


def test_long_name_with_invalid_chars_is_sanitised_and_shortened() -> None:
    visible = NameCodec().name("s", "a.b" * 40, prefixed=True)
    assert len(visible) <= TOOL_NAME_MAX
    assert VALID_TOOL.match(visible)


# ---------------------------------------------------------------------- split_name()
def test_split_name_inverts_a_prefixed_name() -> None:
    assert NameCodec().split_name("git__status") == ("git", "status")


def test_split_name_keeps_separators_inside_the_tool_name() -> None:
    codec = NameCodec()
    assert codec.split_name(codec.name("git", "__a__b__", prefixed=True)) == ("git", "__a__b__")


@pytest.mark.parametrize("visible", ["status", "git__", ""])
def test_split_name_rejects_names_without_a_server_and_tool(visible: str) -> None:
    assert NameCodec().split_name(visible) is None


# -------------------------------------------------------------------------- URIs
def test_prefixed_uri_uses_plus() -> None:
    assert NameCodec.uri("time", "file:///x", prefixed=True) == f"time{URI_SEPARATOR}file:///x"


def test_unprefixed_uri_is_unchanged() -> None:
    assert NameCodec.uri("time", "file:///x", prefixed=False) == "file:///x"


@pytest.mark.parametrize("visible", ["file:///x", "test://a+b", "a/b+c", "time+"])
def test_split_uri_rejects_unprefixed_uris(visible: str) -> None:
    assert NameCodec.split_uri(visible) is None


# ------------------------------------------------------------------- server names
@pytest.mark.parametrize("name", ["git", "my-server", "a_b", "A1", "x" * 32, "-lead-dash-ok"])
def test_valid_server_names(name: str) -> None:
    assert server_name_problem(name, DEFAULT_SEPARATOR) is None


@pytest.mark.parametrize(
    ("name", "separator", "fragment"),
    [
        ("", "__", "empty"),
        ("a__b", "__", "separator"),
        ("a-b", "-", "separator"),
        ("_git", "__", "start or end"),
        ("git_", "__", "start or end"),
        ("-git", "-_", "start or end"),
        ("git-", "_-", "start or end"),
        ("git.hub", "__", "letters, digits"),
        ("git hub", "__", "letters, digits"),
        ("gït", "__", "letters, digits"),
        ("a+b", "__", "letters, digits"),
        ("x" * 33, "__", "32"),
    ],
)
def test_invalid_server_names_are_explained(name: str, separator: str, fragment: str) -> None:
    problem = server_name_problem(name, separator)
    assert problem is not None
    assert fragment in problem


@pytest.mark.parametrize("separator", ["", ".", "a b", "::"])
def test_bad_separators(separator: str) -> None:
    assert separator_problem(separator) is not None


@pytest.mark.parametrize("separator", ["__", "-", "_x_"])
def test_good_separators(separator: str) -> None:
    assert separator_problem(separator) is None


# ------------------------------------------------------------------ properties
SEPARATORS = st.sampled_from(["__", "_", "-", "--", "_-", "x"])
TOOLS = st.from_regex(r"\A[A-Za-z0-9_-]{1,40}\Z")
RAW_SERVERS = st.from_regex(r"\A[A-Za-z0-9_-]{1,32}\Z")


@st.composite
def server_and_separator(draw: st.DrawFn) -> tuple[str, str]:
    separator = draw(SEPARATORS)
    server = draw(RAW_SERVERS.filter(lambda s: server_name_problem(s, separator) is None))
    return server, separator


# Valid default-separator server names built independently of server_name_problem:
# segments of [A-Za-z0-9-] joined by single underscores (no "__", no leading/trailing "_").
DEFAULT_SERVERS = (
    st.lists(st.from_regex(r"\A[A-Za-z0-9-]{1,8}\Z"), min_size=1, max_size=4)
    .map("_".join)
    .filter(lambda s: len(s) <= 32)
)


@given(DEFAULT_SERVERS)
def test_independently_built_server_names_are_accepted(server: str) -> None:
    assert server_name_problem(server, DEFAULT_SEPARATOR) is None


@given(DEFAULT_SERVERS, TOOLS)
def test_split_name_round_trips_with_default_separator(server: str, tool: str) -> None:
    codec = NameCodec()
    visible = codec.name(server, tool, prefixed=True)
    if len(server) + len(DEFAULT_SEPARATOR) + len(tool) <= TOOL_NAME_MAX:
        assert codec.split_name(visible) == (server, tool)
    else:
        # Too long to keep: shortened, so only the catalog's reverse map can decode it.
        assert len(visible) == TOOL_NAME_MAX


@given(server_and_separator(), TOOLS)
def test_split_name_round_trips_for_any_valid_server_name(pair: tuple[str, str], tool: str) -> None:
    server, separator = pair
    codec = NameCodec(separator)
    visible = codec.name(server, tool, prefixed=True)
    assert VALID_TOOL.match(visible)
    if len(server) + len(separator) + len(tool) <= TOOL_NAME_MAX:
        assert visible == f"{server}{separator}{tool}"
        assert codec.split_name(visible) == (server, tool)


@given(server_and_separator(), TOOLS)
def test_catalog_resolves_every_prefixed_name_even_when_shortened(pair: tuple[str, str], tool: str) -> None:
    server, separator = pair
    catalog = Catalog(NameCodec(separator), PrefixMode.ALWAYS)
    catalog.set_servers([server])
    catalog.update(server, "tools", [{"name": tool}])
    (item,) = catalog.items("tools")
    assert catalog.resolve_name("tools", item["name"]) == (server, tool)


URIS = st.one_of(
    st.sampled_from(["file:///x", "test://a/b?c", "test://a+b/c", "https://example.com/p?q=1#f", "urn:x:y"]),
    st.from_regex(r"\A[a-z][a-z0-9+.-]{0,8}://[A-Za-z0-9/?=&+%._~-]{1,30}\Z"),
)


@given(server_and_separator(), URIS)
def test_split_uri_round_trips(pair: tuple[str, str], uri: str) -> None:
    server, _ = pair
    shown = NameCodec.uri(server, uri, prefixed=True)
    if uri.lower().startswith(("http://", "https://")):  # a web address is shown as it is, never split
        assert shown == uri and NameCodec.split_uri(shown) is None
    else:
        assert NameCodec.split_uri(shown) == (server, uri)
