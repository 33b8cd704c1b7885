"""`protocol/capabilities.py`: what the hub advertises, from its ready upstreams' capabilities."""

from __future__ import annotations

from typing import Any

from onemcp.protocol.capabilities import advertised, merge_capabilities

LISTS = {
    "tools": {"listChanged": True},
    "prompts": {"listChanged": True},
    "resources": {"listChanged": True},
    "logging": {},
}


def test_lists_and_logging_always() -> None:
    assert advertised([]) == LISTS


def test_subscriptions_completions_and_tasks_when_an_upstream_has_them() -> None:
    caps = advertised(
        [
            {"resources": {"subscribe": True}},
            {"completions": {}, "tasks": {"list": {}}},
            {"tasks": {"cancel": {}}, "resources": "malformed"},
        ]
    )
    assert caps["resources"] == {"listChanged": True, "subscribe": True}
    assert caps["completions"] == {}
    assert caps["tasks"] == {"list": {}, "cancel": {}}


def test_a_false_subscribe_is_not_advertised() -> None:
    assert advertised([{"resources": {"subscribe": False}}]) == LISTS


def test_merge_keeps_the_first_scalar_and_merges_objects() -> None:
    assert merge_capabilities([{"a": 1, "b": {"x": 1}}, {"a": 2, "b": {"y": 2}}]) == {"a": 1, "b": {"x": 1, "y": 2}}


def test_the_mcp_apps_extension_when_an_upstream_has_it_and_no_extension_the_hub_cannot_serve() -> None:
    """MCP Apps (`io.modelcontextprotocol/ui`) needs nothing of the hub but tools and resources: a host
    that looks for it in the server's capabilities found none. An extension with methods of its own (the
    tasks extension, a vendor's) is not advertised: the hub would answer them -32601."""
    ui: dict[str, Any] = {"io.modelcontextprotocol/ui": {}}
    caps = advertised(
        [
            {"extensions": ui},
            {"extensions": {"io.modelcontextprotocol/tasks": {}, "io.modelcontextprotocol/ui": {"x": 1}}},
            {"extensions": "malformed"},
        ]
    )
    assert caps["extensions"] == {"io.modelcontextprotocol/ui": {"x": 1}}
    assert "extensions" not in advertised([{"extensions": {"io.modelcontextprotocol/tasks": {}}}])
    assert "experimental" not in advertised([{"experimental": {"vendor": {}}}])


def test_a_servers_tasks_capability_is_advertised_as_far_as_the_hub_routes_it_and_no_further() -> None:
    """h7: an upstream's `tasks` capability was merged in whole: a server's 5 MB of it (any key, any
    content) was in every client's `initialize`, 5 MB each. Only what the spec's `tasks` says, and the hub
    routes, is advertised (`list`, `cancel`, `requests.tools.call`), each as the spec has it (`{}`)."""
    junk = "x" * 100_000
    caps = advertised(
        [
            {"tasks": {"list": {"junk": junk}, "vendor": {"junk": junk}, "requests": {"tools": {"call": {"a": 1}}}}},
            {"tasks": {"cancel": {}, "requests": {"sampling": {"createMessage": {}}, "tools": "malformed"}}},
            {"tasks": {"list": "malformed"}},
        ]
    )
    assert caps["tasks"] == {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
    assert advertised([{"tasks": {"vendor": {}}}])["tasks"] == {}


def test_an_extensions_settings_are_passed_on_up_to_a_bound() -> None:
    """h7: the MCP Apps extension's settings were passed on whole: a server's 5 MB of them were in every
    client's `initialize` and `server/discover`. Over MAX_EXTENSION_SETTINGS (16 KiB) the extension is advertised
    with none."""
    ui = "io.modelcontextprotocol/ui"
    small = {"mimeTypes": ["text/html;profile=mcp-app"]}
    assert advertised([{"extensions": {ui: small}}])["extensions"] == {ui: small}
    big = {"mimeTypes": ["x" * 1_000_000]}
    assert advertised([{"extensions": {ui: big}}])["extensions"] == {ui: {}}
    assert advertised([{"extensions": {ui: big}}, {"extensions": {ui: small}}])["extensions"] == {ui: small}
