"""Catalog: merging upstream lists, prefix modes, collisions, routing, and cached list results."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from onemcp.catalog.catalog import Catalog, Overrides
from onemcp.catalog.reach import EVERYTHING, Reach
from onemcp.protocol.errors import INVALID_PARAMS, NotFound
from onemcp.protocol.methods import KIND_BY_METHOD
from onemcp.protocol.names import NameCodec, PrefixMode


def make(mode: PrefixMode, *servers: str) -> Catalog:
    catalog = Catalog(NameCodec(), mode)
    catalog.set_servers(servers)
    return catalog


def tools(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "inputSchema": {"type": "object"}} for n in names]


def names(catalog: Catalog, kind: str = "tools") -> list[str]:
    return [str(item["name"]) for item in catalog.items(kind)]


def uris(catalog: Catalog, kind: str = "resources") -> list[str]:
    key = "uri" if kind == "resources" else "uriTemplate"
    return [str(item[key]) for item in catalog.items(kind)]


# ------------------------------------------------------------------------- order
def test_merge_order_is_config_order_then_upstream_order() -> None:
    catalog = make(PrefixMode.ALWAYS, "b", "a")
    catalog.update("a", "tools", tools("a2", "a1"))
    catalog.update("b", "tools", tools("b2", "b1"))
    assert names(catalog) == ["b__b2", "b__b1", "a__a2", "a__a1"]


def test_merge_order_does_not_depend_on_update_order() -> None:
    first = make(PrefixMode.ALWAYS, "x", "y")
    first.update("x", "tools", tools("t"))
    first.update("y", "tools", tools("t"))
    second = make(PrefixMode.ALWAYS, "x", "y")
    second.update("y", "tools", tools("t"))
    second.update("x", "tools", tools("t"))
    assert names(first) == names(second) == ["x__t", "y__t"]
    assert first.result_json("tools") == second.result_json("tools")


def test_reordering_servers_reorders_the_merged_list() -> None:
    catalog = make(PrefixMode.ALWAYS, "a", "b")
    catalog.update("a", "tools", tools("t"))
    catalog.update("b", "tools", tools("t"))
    changed = catalog.set_servers(["b", "a"])
    assert "tools" in changed
    assert names(catalog) == ["b__t", "a__t"]


# ------------------------------------------------------------------- prefix modes
def test_always_prefixes_a_single_server() -> None:
    catalog = make(PrefixMode.ALWAYS, "only")
    catalog.update("only", "tools", tools("t"))
    assert catalog.prefixed
    assert names(catalog) == ["only__t"]


def test_conditional_with_one_server_is_unprefixed() -> None:
    catalog = make(PrefixMode.CONDITIONAL, "only")
    catalog.update("only", "tools", tools("t"))
    assert not catalog.prefixed
    assert names(catalog) == ["t"]


def test_conditional_with_two_servers_is_prefixed() -> None:
    catalog = make(PrefixMode.CONDITIONAL, "a", "b")
    catalog.update("a", "tools", tools("t"))
    catalog.update("b", "tools", tools("u"))
    assert catalog.prefixed
    assert names(catalog) == ["a__t", "b__u"]


def test_conditional_switches_when_a_second_server_is_enabled() -> None:
    catalog = make(PrefixMode.CONDITIONAL, "a")
    catalog.update("a", "tools", tools("t"))
    assert names(catalog) == ["t"]
    changed = catalog.set_servers(["a", "b"])
    assert "tools" in changed
    assert names(catalog) == ["a__t"]
    assert catalog.resolve_name("tools", "a__t") == ("a", "t")
    with pytest.raises(NotFound):
        catalog.resolve_name("tools", "t")


def test_never_leaves_names_unprefixed_with_many_servers() -> None:
    catalog = make(PrefixMode.NEVER, "a", "b")
    catalog.update("a", "tools", tools("t"))
    catalog.update("b", "tools", tools("u"))
    assert not catalog.prefixed
    assert names(catalog) == ["t", "u"]
    assert catalog.resolve_name("tools", "u") == ("b", "u")


def test_prompts_are_prefixed_like_tools() -> None:
    catalog = make(PrefixMode.ALWAYS, "a")
    catalog.update("a", "prompts", [{"name": "greet", "arguments": []}])
    assert names(catalog, "prompts") == ["a__greet"]
    assert catalog.resolve_name("prompts", "a__greet") == ("a", "greet")


def test_resources_and_templates_get_uri_prefix() -> None:
    catalog = make(PrefixMode.ALWAYS, "a")
    catalog.update("a", "resources", [{"uri": "file:///x", "name": "x"}])
    catalog.update("a", "resourceTemplates", [{"uriTemplate": "test://t/{id}", "name": "t"}])
    assert uris(catalog) == ["a+file:///x"]
    assert uris(catalog, "resourceTemplates") == ["a+test://t/{id}"]
    # The human-readable name of a resource is not a routing key: left alone.
    assert catalog.items("resources")[0]["name"] == "x"


def test_a_tools_ui_resource_uri_is_shown_as_the_hub_shows_that_resource() -> None:
    """MCP Apps: a host reads the `ui://` resource a tool's `_meta.ui.resourceUri` names. With prefixed
    URIs it named one the hub does not know ("Resource not found: ui://clock/app.html"), so no app
    showed through a hub of two servers. The older flat key and the OpenAI Apps SDK's template too."""
    catalog = make(PrefixMode.ALWAYS, "clock", "other")
    meta: dict[str, Any] = {"ui": {"resourceUri": "ui://clock/app.html", "visibility": ["model"]}}
    meta |= {
        "ui/resourceUri": "ui://clock/a",
        "openai/outputTemplate": "ui://widget/w.html",
        "vendor": {"resourceUri": "ui://left/alone"},
    }
    catalog.update("clock", "tools", [{"name": "get_time", "inputSchema": {"type": "object"}, "_meta": meta}])
    catalog.update("clock", "resources", [{"uri": "ui://clock/app.html", "name": "app"}])
    shown = catalog.items("tools")[0]["_meta"]
    assert shown["ui"] == {"resourceUri": "clock+ui://clock/app.html", "visibility": ["model"]}
    assert shown["ui/resourceUri"] == "clock+ui://clock/a"
    assert shown["openai/outputTemplate"] == "clock+ui://widget/w.html"
    assert shown["vendor"] == {"resourceUri": "ui://left/alone"}  # no other key is touched
    assert catalog.resolve_uri(shown["ui"]["resourceUri"]) == ("clock", "ui://clock/app.html")
    assert meta["ui"]["resourceUri"] == "ui://clock/app.html"  # the server's own list is not changed
    unprefixed = make(PrefixMode.CONDITIONAL, "clock")
    unprefixed.update("clock", "tools", [{"name": "get_time", "inputSchema": {"type": "object"}, "_meta": meta}])
    assert unprefixed.items("tools")[0]["_meta"] == meta


def test_sanitised_name_resolves_to_original() -> None:
    catalog = make(PrefixMode.NEVER, "a")
    catalog.update("a", "tools", tools("get.weather"))
    assert names(catalog) == ["get_weather"]
    assert catalog.resolve_name("tools", "get_weather") == ("a", "get.weather")


def test_shortened_name_resolves_to_original() -> None:
    long_name = "t" * 80
    catalog = make(PrefixMode.ALWAYS, "a")
    catalog.update("a", "tools", tools(long_name))
    (visible,) = names(catalog)
    assert len(visible) == 64
    assert catalog.resolve_name("tools", visible) == ("a", long_name)


# -------------------------------------------------------------------- collisions
def test_never_mode_collision_first_server_wins_and_is_reported() -> None:
    catalog = make(PrefixMode.NEVER, "first", "second")
    catalog.update("second", "tools", [{"name": "search", "description": "from second"}])
    catalog.update("first", "tools", [{"name": "search", "description": "from first"}])
    assert names(catalog) == ["search"]
    assert catalog.items("tools")[0]["description"] == "from first"
    assert catalog.resolve_name("tools", "search") == ("first", "search")
    (report,) = catalog.collisions["tools"]
    assert "'search'" in report
    assert "second" in report
    assert "first" in report


def test_never_mode_collision_keeps_non_colliding_items() -> None:
    catalog = make(PrefixMode.NEVER, "a", "b")
    catalog.update("a", "tools", tools("x", "shared"))
    catalog.update("b", "tools", tools("shared", "y"))
    assert names(catalog) == ["x", "shared", "y"]
    assert len(catalog.collisions["tools"]) == 1


def test_every_hidden_item_is_reported() -> None:
    catalog = make(PrefixMode.NEVER, "a", "b", "c")
    for server in ("a", "b", "c"):
        catalog.update(server, "tools", tools("dup"))
    visible = len(catalog.items("tools"))
    hidden = len(catalog.collisions["tools"])
    assert (visible, hidden) == (1, 2)


def test_a_sanitised_name_that_another_has_gets_a_digest_unprefixed_too() -> None:
    catalog = make(PrefixMode.NEVER, "a")
    catalog.update("a", "tools", tools("a_b", "a.b"))
    first, second = names(catalog)
    assert first == "a_b" and second.startswith("a_b_") and len(second) == len("a_b_") + 8
    assert catalog.resolve_name("tools", second) == ("a", "a.b") and catalog.collisions["tools"] == []


def test_resource_uri_collision_is_reported() -> None:
    catalog = make(PrefixMode.NEVER, "a", "b")
    catalog.update("a", "resources", [{"uri": "file:///same", "name": "a"}])
    catalog.update("b", "resources", [{"uri": "file:///same", "name": "b"}])
    assert uris(catalog) == ["file:///same"]
    assert catalog.resolve_uri("file:///same") == ("a", "file:///same")
    assert len(catalog.collisions["resources"]) == 1


def test_collision_clears_when_the_duplicate_goes_away() -> None:
    catalog = make(PrefixMode.NEVER, "a", "b")
    catalog.update("a", "tools", tools("dup"))
    catalog.update("b", "tools", tools("dup"))
    assert catalog.collisions["tools"]
    catalog.update("b", "tools", tools("other"))
    assert catalog.collisions["tools"] == []


def test_prefixed_mode_has_no_collisions_for_equal_names() -> None:
    catalog = make(PrefixMode.ALWAYS, "a", "b")
    catalog.update("a", "tools", tools("dup"))
    catalog.update("b", "tools", tools("dup"))
    assert names(catalog) == ["a__dup", "b__dup"]
    assert catalog.collisions["tools"] == []


# ----------------------------------------------------------------- update / drop
def test_update_reports_a_change() -> None:
    catalog = make(PrefixMode.ALWAYS, "a")
    assert catalog.update("a", "tools", tools("t")) is True


def test_update_with_identical_items_returns_false() -> None:
    catalog = make(PrefixMode.ALWAYS, "a")
    catalog.update("a", "tools", tools("t"))
    before = catalog.result_json("tools")
    assert catalog.update("a", "tools", tools("t")) is False
    assert catalog.result_json("tools") == before


def test_update_with_empty_list_for_new_server_returns_false() -> None:
    catalog = make(PrefixMode.ALWAYS, "a")
    assert catalog.update("a", "tools", []) is False


def test_update_hidden_by_collision_returns_false() -> None:
    catalog = make(PrefixMode.NEVER, "a", "b")
    catalog.update("a", "tools", tools("dup"))
    assert catalog.update("b", "tools", tools("dup")) is False


def test_a_server_no_longer_placed_leaves_nothing_behind_and_its_owner_is_told() -> None:
    """A removed server's or a stopped instance's repairs report and withheld tools stayed for good (a
    template instance is placed off, never dropped: soak hunt s29/p F1); `forgotten` hears each one
    whose lists go, so what the hub keeps beside them (its last tools list for pins) goes too."""
    catalog = make(PrefixMode.ALWAYS, "a", "b@1", "b@2")
    told: list[str] = []
    catalog.forgotten = told.append
    for server in ("a", "b@1", "b@2"):
        catalog.update(server, "tools", tools("t", "t"))  # listed twice: a repair is reported
        catalog.withheld[server] = {"t"}
    catalog.set_servers(["a", "b@2"])
    assert set(catalog.repairs) == set(catalog.withheld) == {"a", "b@2"} and told == ["b@1"]
    assert not catalog.has_lists("b@1")
    assert catalog.drop("b@2") == {"tools"} and told == ["b@1", "b@2"]
    assert set(catalog.repairs) == {"a"}


def test_update_of_unknown_server_is_invisible() -> None:
    catalog = make(PrefixMode.ALWAYS, "a")
    assert catalog.update("ghost", "tools", tools("t")) is False
    assert names(catalog) == []


def test_update_of_one_kind_leaves_other_kinds() -> None:
    catalog = make(PrefixMode.ALWAYS, "a")
    catalog.update("a", "prompts", [{"name": "p"}])
    catalog.update("a", "tools", tools("t"))
    assert names(catalog, "prompts") == ["a__p"]


def test_drop_removes_a_servers_items_and_reports_kinds() -> None:
    catalog = make(PrefixMode.ALWAYS, "a", "b")
    catalog.update("a", "tools", tools("t"))
    catalog.update("a", "resources", [{"uri": "file:///x", "name": "x"}])
    catalog.update("a", "prompts", [])
    catalog.update("b", "tools", tools("u"))
    assert catalog.drop("a") == {"tools", "resources"}
    assert names(catalog) == ["b__u"]
    assert catalog.items("resources") == []
    with pytest.raises(NotFound):
        catalog.resolve_name("tools", "a__t")
    assert catalog.counts("a") == {"tools": 0, "prompts": 0, "resources": 0, "resourceTemplates": 0}


def test_drop_unknown_or_empty_server_changes_nothing() -> None:
    catalog = make(PrefixMode.ALWAYS, "a")
    assert catalog.drop("a") == set()
    assert catalog.drop("nobody") == set()


def test_drop_reveals_an_item_previously_hidden() -> None:
    catalog = make(PrefixMode.NEVER, "a", "b")
    schema = {"type": "object"}
    catalog.update("a", "tools", [{"name": "dup", "description": "a", "inputSchema": schema}])
    catalog.update("b", "tools", [{"name": "dup", "description": "b", "inputSchema": schema}])
    assert catalog.drop("a") == {"tools"}
    assert catalog.items("tools") == [{"name": "dup", "description": "b", "inputSchema": schema}]
    assert catalog.resolve_name("tools", "dup") == ("b", "dup")
    assert catalog.collisions["tools"] == []


def test_drop_reroutes_even_when_the_visible_list_is_byte_identical() -> None:
    catalog = make(PrefixMode.NEVER, "a", "b")
    catalog.update("a", "tools", tools("dup"))
    catalog.update("b", "tools", tools("dup"))
    # Nothing a client can see changed, so no kind is reported, but routing must follow.
    assert catalog.drop("a") == set()
    assert catalog.resolve_name("tools", "dup") == ("b", "dup")


def test_set_servers_forgets_removed_servers() -> None:
    catalog = make(PrefixMode.ALWAYS, "a", "b")
    catalog.update("b", "tools", tools("t"))
    catalog.set_servers(["a"])
    assert names(catalog) == []
    catalog.set_servers(["a", "b"])
    assert names(catalog) == []


def test_counts_are_per_server_upstream_counts() -> None:
    catalog = make(PrefixMode.NEVER, "a", "b")
    catalog.update("a", "tools", tools("dup", "x"))
    catalog.update("b", "tools", tools("dup"))
    assert catalog.counts("a")["tools"] == 2
    assert catalog.counts("b")["tools"] == 1


# ------------------------------------------------------------------------ resolve
def test_resolve_name_unknown_tool() -> None:
    catalog = make(PrefixMode.ALWAYS, "a")
    catalog.update("a", "tools", tools("t"))
    with pytest.raises(NotFound) as info:
        catalog.resolve_name("tools", "a__missing")
    assert info.value.code == INVALID_PARAMS == -32602
    assert "a__missing" in info.value.message
    assert "Tool" in info.value.message
    assert info.value.to_error()["code"] == -32602


def test_resolve_name_unknown_prompt_says_prompt() -> None:
    catalog = make(PrefixMode.ALWAYS, "a")
    with pytest.raises(NotFound) as info:
        catalog.resolve_name("prompts", "nope")
    assert "Prompt" in info.value.message
    assert "nope" in info.value.message


def test_resolve_name_before_any_list_is_not_found() -> None:
    catalog = Catalog(NameCodec(), PrefixMode.ALWAYS)
    with pytest.raises(NotFound):
        catalog.resolve_name("tools", "x")


def test_a_single_server_answers_for_unlisted_names_but_not_for_tools_its_rules_hide() -> None:
    """One unprefixed server may be asked for a tool it did not list (some serve more than they list),
    but not for one the operator disabled, left out of enabledTools, or renamed (its old name)."""
    rules = Overrides(disabled=frozenset({"crash"}), aliases={"identity": "whoami"})
    catalog = Catalog(NameCodec(), PrefixMode.CONDITIONAL)
    catalog.set_servers(["solo"], {"solo": rules})
    catalog.update("solo", "tools", tools("echo", "crash", "identity"))
    assert names(catalog) == ["echo", "whoami"]
    assert catalog.resolve_name("tools", "whoami") == ("solo", "identity")
    assert catalog.resolve_name("tools", "unlisted") == ("solo", "unlisted")
    for hidden in ("crash", "identity"):
        with pytest.raises(NotFound):
            catalog.resolve_name("tools", hidden)
    only = Catalog(NameCodec(), PrefixMode.NEVER)
    only.set_servers(["solo"], {"solo": Overrides(enabled=frozenset({"echo"}))})
    only.update("solo", "tools", tools("echo", "other"))
    with pytest.raises(NotFound):
        only.resolve_name("tools", "other")
    assert only.resolve_name("tools", "echo") == ("solo", "echo")


def test_a_withheld_tool_is_named_only_to_those_who_reach_its_server() -> None:
    """ "Tool withheld" says the tool exists: to a requester outside its server, it is "not found"."""
    catalog = make(PrefixMode.ALWAYS, "a", "b")
    catalog.update("a", "tools", tools("t"))
    catalog.update("b", "tools", tools("echo"))
    catalog.withheld = {"b": {"changed"}}
    with pytest.raises(NotFound, match="Tool withheld"):
        catalog.resolve_name("tools", "b__changed")
    for reach in (Reach(frozenset({"a"})), Reach(frozenset(), frozenset({("b", "echo")}))):
        with pytest.raises(NotFound) as info:
            catalog.resolve_name("tools", "b__changed", reach)
        assert "withheld" not in info.value.message and info.value.data is None
    with pytest.raises(NotFound, match="Tool withheld"):
        catalog.resolve_name("tools", "b__changed", Reach(frozenset({"b"})))


def test_shown_counts_are_what_a_reach_lists() -> None:
    catalog = Catalog(NameCodec(), PrefixMode.ALWAYS)
    catalog.set_servers(["a", "b"], {"a": Overrides(disabled=frozenset({"off"}))})
    catalog.update("a", "tools", tools("t", "u", "off"))
    catalog.update("b", "tools", tools("x", "y"))
    catalog.update("b", "prompts", [{"name": "p"}])
    assert catalog.shown_counts(EVERYTHING) == {"a": {"tools": 2, "prompts": 0}, "b": {"tools": 2, "prompts": 1}}
    assert catalog.shown_counts(Reach(frozenset(), frozenset({("b", "x")}))) == {"b": {"tools": 1, "prompts": 0}}


def test_resolve_listed_uri_prefixed() -> None:
    catalog = make(PrefixMode.ALWAYS, "a")
    catalog.update("a", "resources", [{"uri": "file:///x", "name": "x"}])
    assert catalog.resolve_uri("a+file:///x") == ("a", "file:///x")


def test_resolve_unlisted_prefixed_uri_routes_by_prefix() -> None:
    catalog = make(PrefixMode.ALWAYS, "a", "b")
    assert catalog.resolve_uri("b+test://template/7/data") == ("b", "test://template/7/data")


def test_resolve_prefixed_uri_of_unknown_server_is_not_found() -> None:
    catalog = make(PrefixMode.ALWAYS, "a")
    with pytest.raises(NotFound) as info:
        catalog.resolve_uri("zzz+file:///x")
    assert info.value.code == -32602
    assert "zzz+file:///x" in info.value.message
    assert info.value.data == {"uri": "zzz+file:///x"}


def test_resolve_template_match_unprefixed() -> None:
    catalog = make(PrefixMode.NEVER, "a", "b")
    catalog.update("a", "resources", [{"uri": "file:///a", "name": "a"}])
    catalog.update("b", "resources", [{"uri": "file:///b", "name": "b"}])
    catalog.update("b", "resourceTemplates", [{"uriTemplate": "test://template/{id}/data", "name": "t"}])
    assert catalog.resolve_uri("test://template/42/data") == ("b", "test://template/42/data")
    assert catalog.resolve_uri("file:///a") == ("a", "file:///a")


def test_template_variable_does_not_cross_path_segments() -> None:
    catalog = make(PrefixMode.NEVER, "a", "b")
    catalog.update("a", "resources", [{"uri": "file:///a", "name": "a"}])
    catalog.update("b", "resources", [{"uri": "file:///b", "name": "b"}])
    catalog.update("b", "resourceTemplates", [{"uriTemplate": "test://template/{id}/data", "name": "t"}])
    with pytest.raises(NotFound):
        catalog.resolve_uri("test://template/1/2/data")


def test_template_match_first_server_wins() -> None:
    catalog = make(PrefixMode.NEVER, "a", "b")
    template = [{"uriTemplate": "test://template/{id}/data", "name": "t"}]
    catalog.update("b", "resourceTemplates", template)
    catalog.update("a", "resourceTemplates", template)
    assert catalog.resolve_uri("test://template/1/data") == ("a", "test://template/1/data")


def test_resolve_unknown_uri_with_one_server_goes_to_it() -> None:
    catalog = make(PrefixMode.CONDITIONAL, "only")
    assert catalog.resolve_uri("file:///anything") == ("only", "file:///anything")


def test_resolve_unknown_uri_goes_to_the_only_server_with_resources() -> None:
    catalog = make(PrefixMode.NEVER, "a", "b")
    catalog.update("b", "resources", [{"uri": "file:///listed", "name": "l"}])
    assert catalog.resolve_uri("file:///unlisted") == ("b", "file:///unlisted")


def test_resolve_unknown_uri_ambiguous_is_not_found() -> None:
    catalog = make(PrefixMode.NEVER, "a", "b")
    catalog.update("a", "resources", [{"uri": "file:///a", "name": "a"}])
    catalog.update("b", "resources", [{"uri": "file:///b", "name": "b"}])
    with pytest.raises(NotFound) as info:
        catalog.resolve_uri("file:///c")
    assert info.value.code == -32602
    assert "file:///c" in info.value.message


def test_visible_uri_follows_prefixing() -> None:
    assert make(PrefixMode.ALWAYS, "a").visible_uri("a", "file:///x") == "a+file:///x"
    assert make(PrefixMode.NEVER, "a").visible_uri("a", "file:///x") == "file:///x"


# ------------------------------------------------------------------ result_json
def test_result_json_preserves_unknown_fields() -> None:
    catalog = make(PrefixMode.ALWAYS, "a")
    item = {
        "name": "t",
        "title": "T",
        "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}},
        "annotations": {"readOnlyHint": True},
        "_meta": {"vendor/x": [1, 2]},
        "futureField": {"nested": None},
    }
    catalog.update("a", "tools", [item])
    doc = orjson.loads(catalog.result_json("tools"))
    assert doc == {"tools": [{**item, "name": "a__t"}]}


def test_update_does_not_mutate_upstream_items() -> None:
    catalog = make(PrefixMode.ALWAYS, "a")
    items = tools("t")
    catalog.update("a", "tools", items)
    assert items[0]["name"] == "t"


def test_result_json_before_any_update_is_an_empty_list() -> None:
    catalog = Catalog(NameCodec(), PrefixMode.ALWAYS)
    for kind in ("tools", "prompts", "resources", "resourceTemplates"):
        assert orjson.loads(catalog.result_json(kind)) == {kind: []}


def test_result_json_for_templates_uses_result_key() -> None:
    catalog = make(PrefixMode.NEVER, "a")
    catalog.update("a", "resourceTemplates", [{"uriTemplate": "x://{y}", "name": "y"}])
    assert orjson.loads(catalog.result_json("resourceTemplates")) == {
        "resourceTemplates": [{"uriTemplate": "x://{y}", "name": "y"}]
    }


def test_kind_by_method() -> None:
    assert KIND_BY_METHOD == {
        "tools/list": "tools",
        "prompts/list": "prompts",
        "resources/list": "resources",
        "resources/templates/list": "resourceTemplates",
    }


def test_tool_rules_naming_no_listed_tool_are_noted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    rules = Overrides(
        disabled=frozenset({"crash", "crsh"}),
        enabled=frozenset({"echo", "crash", "ehco"}),
        aliases={"identity": "whoami", "idnetity": "me"},
        descriptions={"echo": "says it back", "gone": "x"},
    )
    catalog = Catalog(NameCodec(), PrefixMode.ALWAYS)
    catalog.set_servers(["solo", "plain"], {"solo": rules})
    assert catalog.unmatched == {"solo": [], "plain": []}  # no list yet: nothing to compare with
    with caplog.at_level(logging.WARNING, logger="onemcp.catalog"):
        catalog.update("solo", "tools", tools("echo", "crash", "identity"))
        catalog.update("plain", "tools", tools("echo"))
        catalog.update("solo", "tools", tools("echo", "crash", "identity", "extra"))  # the same rules unmatched
    expected = ["disabledTools: crsh", "enabledTools: ehco", "toolAliases: idnetity", "toolDescriptions: gone"]
    assert catalog.unmatched == {"solo": expected, "plain": []}
    logged = [r.getMessage() for r in caplog.records if "name no tool" in r.getMessage()]
    assert logged == [f"upstream solo: tool rules name no tool it lists: {'; '.join(expected)}"]
    catalog.update("solo", "tools", tools("echo", "crash", "crsh", "ehco", "identity", "idnetity", "gone"))
    assert catalog.unmatched["solo"] == []


@pytest.mark.parametrize("order", [("a.b", "a_b", "a/b"), ("a_b", "a/b", "a.b")])
def test_names_sanitised_into_anothers_stay_reachable(order: tuple[str, ...]) -> None:
    """`a.b`, `a_b` and `a/b` are three tools (all valid names): the one shown as it is keeps its
    name, the sanitised ones are told apart by a digest, and each routes to its own tool."""
    catalog = make(PrefixMode.ALWAYS, "col")
    catalog.update("col", "tools", tools(*order))
    shown = names(catalog)
    assert len(shown) == 3 and "col__a_b" in shown
    assert catalog.resolve_name("tools", "col__a_b") == ("col", "a_b")
    others = {catalog.resolve_name("tools", name)[1] for name in shown if name != "col__a_b"}
    assert others == {"a.b", "a/b"}
    assert catalog.collisions.get("tools") == []


def test_each_instance_of_a_template_shows_a_sanitised_name_alike() -> None:
    """Two instances of one template list `get.weather`: each user sees `t__get_weather`, whatever
    other instances run (a digest for the later ones made a user's tool name depend on others')."""
    catalog = make(PrefixMode.ALWAYS, "t@aaa", "t@bbb")
    catalog.update("t@aaa", "tools", tools("get.weather"))
    catalog.update("t@bbb", "tools", tools("get.weather"))
    alice = Reach(frozenset({"t"}), frozenset(), frozenset({"t@aaa"}))
    bob = Reach(frozenset({"t"}), frozenset(), frozenset({"t@bbb"}))
    assert catalog.result_json("tools", alice) == catalog.result_json("tools", bob)
    assert b'"t__get_weather"' in catalog.result_json("tools", bob)


def test_a_hidden_tools_name_forces_no_digest_on_its_neighbour() -> None:
    catalog = Catalog(NameCodec(), PrefixMode.ALWAYS)
    catalog.set_servers(["s"], {"s": Overrides(disabled=frozenset({"a_b"}))})
    catalog.update("s", "tools", tools("a_b", "a.b"))
    assert names(catalog) == ["s__a_b"] and catalog.resolve_name("tools", "s__a_b") == ("s", "a.b")


def test_an_instances_unlisted_uri_routes_to_the_requesters_own_instance() -> None:
    """`t+mem://item/3` (expanded from the instance's template, or handed out in its tool results) is
    read from the requester's instance of `t`; another requester's instance is never a candidate."""
    catalog = make(PrefixMode.ALWAYS, "s", "t@aaa", "t@bbb")
    for server in ("t@aaa", "t@bbb"):
        catalog.update(server, "resourceTemplates", [{"uriTemplate": "mem://item/{id}", "name": "item"}])
    alice = Reach(None, frozenset(), frozenset({"t@aaa"}))
    bob = Reach(None, frozenset(), frozenset({"t@bbb"}))
    assert catalog.resolve_uri("t+mem://item/3", alice) == ("t@aaa", "mem://item/3")
    assert catalog.resolve_uri("t+mem://item/3", bob) == ("t@bbb", "mem://item/3")
    with pytest.raises(NotFound, match="Resource not found"):
        catalog.resolve_uri("t+mem://item/3", EVERYTHING)  # bound to no instance of `t`


def test_a_tool_withheld_from_ones_own_instance_says_withheld_though_another_instance_lists_it() -> None:
    """Instances whose definitions differ by context: the pin passes the first, withholds the second.
    The second's requester hears "Tool withheld", not "not found" (the first's is a candidate too)."""
    catalog = make(PrefixMode.ALWAYS, "t@aaa", "t@bbb")
    catalog.update("t@aaa", "tools", tools("echo"))
    catalog.withheld = {"t@bbb": {"echo"}}
    alice = Reach(None, frozenset(), frozenset({"t@aaa"}))
    bob = Reach(None, frozenset(), frozenset({"t@bbb"}))
    assert catalog.resolve_name("tools", "t__echo", alice) == ("t@aaa", "echo")
    with pytest.raises(NotFound, match="Tool withheld: t__echo") as info:
        catalog.locate_name("tools", "t__echo", bob)
    assert "onemcp mcp approve t/echo" in info.value.message


def test_a_web_address_is_shown_as_it_is_and_routed_by_the_lists() -> None:
    # the spec has a client fetch http(s) resources itself: a prefix would make the address unfetchable
    catalog = make(PrefixMode.ALWAYS, "docs", "api", "files")
    catalog.update("docs", "resources", [{"uri": "https://docs.example/a", "name": "a"}])
    catalog.update("api", "resourceTemplates", [{"uriTemplate": "HTTPS://api.example/items/{id}", "name": "i"}])
    catalog.update("files", "resources", [{"uri": "file:///x", "name": "x"}])
    assert uris(catalog) == ["https://docs.example/a", "files+file:///x"]
    assert uris(catalog, "resourceTemplates") == ["HTTPS://api.example/items/{id}"]
    assert catalog.visible_uri("files", "http://example.com/linked") == "http://example.com/linked"
    assert catalog.resolve_uri("https://docs.example/a") == ("docs", "https://docs.example/a")
    assert catalog.resolve_uri("HTTPS://api.example/items/7") == ("api", "HTTPS://api.example/items/7")
    assert catalog.resolve_uri("files+file:///x") == ("files", "file:///x")
    # an address only a tool result named: two servers with resources could have it, so neither is guessed
    with pytest.raises(NotFound):
        catalog.resolve_uri("https://elsewhere.example/b")
    # within a reach of one server that has resources, that one
    only_docs = Reach(servers=frozenset({"docs"}))
    assert catalog.resolve_uri("https://elsewhere.example/b", only_docs) == ("docs", "https://elsewhere.example/b")
    with pytest.raises(NotFound):
        catalog.resolve_uri("https://docs.example/a", Reach(servers=frozenset({"files"})))


@pytest.mark.parametrize("mode", [PrefixMode.ALWAYS, PrefixMode.NEVER])
def test_a_catch_all_web_template_never_takes_what_a_result_or_a_literal_host_names(mode: PrefixMode) -> None:
    catalog = make(mode, "evil", "good", "api")
    catalog.update("evil", "resourceTemplates", [{"uriTemplate": "https://{+rest}", "name": "web"}])
    catalog.update("good", "resources", [{"uri": "https://good.example/page", "name": "p"}])
    catalog.update("api", "resourceTemplates", [{"uriTemplate": "https://api.example/items/{id}", "name": "i"}])
    # listed, or a literal host's template: evil's catch-all (first in config order) is not asked
    assert catalog.resolve_uri("https://good.example/page") == ("good", "https://good.example/page")
    assert catalog.resolve_uri("https://api.example/items/7") == ("api", "https://api.example/items/7")
    # a presigned address good's result handed a client of this reach: good's, for this reach only
    signed = "https://bucket.s3.example/report.pdf?X-Amz-Signature=SECRET"
    catalog.named.note(EVERYTHING, "good", [signed])
    assert catalog.resolve_uri(signed) == ("good", signed)
    other = Reach(servers=frozenset({"evil", "good"}))
    assert catalog.resolve_uri(signed, other) == ("evil", signed)  # named by nobody it was given: templates
    assert catalog.overlaid({}).resolve_uri(signed) == ("good", signed)  # a session's own view remembers too
    catalog.set_servers(["evil", "api"])  # good removed: what it named goes by the templates again
    catalog.set_servers(["evil", "good", "api"])
    assert catalog.resolve_uri(signed) == ("evil", signed)


def test_an_entry_over_max_item_bytes_is_left_out_and_a_call_to_it_refused_saying_why() -> None:
    """One server's huge tool or prompt is in no list (its server's other entries are); calling it is
    "withheld" naming the bound, also where the one unprefixed server would be asked for names it lacks,
    and only to a requester that reaches it."""
    huge = {"name": "big", "description": "x" * 5000, "inputSchema": {"type": "object"}}
    solo = make(PrefixMode.CONDITIONAL, "s")
    solo.max_item_bytes = 4096
    solo.update("s", "tools", [*tools("small"), huge])
    solo.update("s", "prompts", [{"name": "p"}, {"name": "big", "description": "x" * 5000}])
    assert names(solo) == ["small"] and names(solo, "prompts") == ["p"]
    assert b"xxxx" not in solo.result_json("tools") + solo.result_json("prompts")
    for kind, what in (("tools", "Tool"), ("prompts", "Prompt")):
        with pytest.raises(NotFound, match=f"{what} withheld: big: its definition is 50.. bytes") as info:
            solo.resolve_name(kind, "big")
        assert "maxListItemBytes" in info.value.message and info.value.data == {"withheld": True}
    assert solo.resolve_name("tools", "unlisted") == ("s", "unlisted")  # the one server still answers for those
    both = Catalog(NameCodec(), PrefixMode.ALWAYS)
    both.set_servers(["a", "b"], {"b": Overrides(aliases={"big": "large"})})
    both.max_item_bytes = 4096
    both.update("a", "tools", tools("t"))
    both.update("b", "tools", [huge])
    with pytest.raises(NotFound, match="Tool withheld: b__large"):
        both.resolve_name("tools", "b__large")
    with pytest.raises(NotFound) as outside:
        both.resolve_name("tools", "b__large", Reach(frozenset({"a"})))
    assert "withheld" not in outside.value.message
    both.max_item_bytes = 8192  # a reload's larger bound: the list read again shows it
    both.update("b", "tools", [huge])
    assert names(both) == ["a__t", "b__large"]
