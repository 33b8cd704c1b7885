"""Import planning: name sanitising, skip/conflict/replace decisions, numbering of duplicates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from onemcp.config.edit import Document
from onemcp.integrations.apps import Format, FoundServer, Source
from onemcp.integrations.importing import Action, apply_plan, definition, plan_import, sanitize
from onemcp.protocol.names import server_name_problem

USER = Source(Path("/home/u/.app.json"), ("mcpServers",), Format.JSON)
PROJECT = Source(Path("/home/u/.app.json"), ("projects", "/p", "mcpServers"), Format.JSON, "project /p")


def found(name: str, entry: dict[str, Any] | None, source: Source = USER, notes: tuple[str, ...] = ()) -> FoundServer:
    return FoundServer(name, source, entry, entry, notes)


@pytest.mark.parametrize(
    ("name", "separator", "expected"),
    [
        ("github", "__", "github"),
        ("brave.search", "__", "brave-search"),
        ("my server (local)", "__", "my-server-local"),
        ("a__b", "__", "a-b"),
        ("_private_", "__", "private"),
        ("my-server", "-", "my_server"),
        ("x" * 40, "__", "x" * 32),
        ("...", "__", "server"),
        ("ümlaut", "__", "mlaut"),
    ],
)
def test_sanitize(name: str, separator: str, expected: str) -> None:
    assert sanitize(name, separator) == expected
    assert server_name_problem(expected, separator) is None


def test_definition_ignores_tags_timeouts_and_the_disabled_flag() -> None:
    a = {"command": "x", "args": ["1"], "tags": ["t"], "timeout": 5, "disabled": True}
    assert definition(a) == definition({"command": "x", "args": ["1"], "env": {}})
    assert definition({"url": "https://h"}) == definition({"type": "streamable-http", "url": "https://h"})
    assert definition({"url": "https://h"}) != definition({"type": "sse", "url": "https://h"})
    assert definition({"command": "x", "env": {"A": "1"}}) != definition({"command": "x"})


def test_a_malformed_entry_in_mcp_json_is_compared_not_a_crash() -> None:
    """A hand-edited entry whose env is a list (or headers a number, args a string) made `app import` of any
    server end in a traceback, since every entry of mcp.json is compared for a twin under another name."""
    doc: Document = {
        "mcpServers": {"bad": {"command": "x", "env": ["abc"], "args": "a"}, "h": {"url": "u", "headers": 5}}
    }
    plan = plan_import([found("fetch", {"command": "uvx"})], doc, env={})
    assert [(p.name, p.action) for p in plan] == [("fetch", Action.ADD)]
    assert definition({"command": "x", "env": ["abc"]}) != definition({"command": "x"})


def existing() -> Document:
    return {"mcpServers": {"same": {"command": "x", "tags": ["mine"]}, "other": {"command": "y"}}}


def test_plan_adds_skips_and_reports_conflicts() -> None:
    plan = plan_import(
        [found("new", {"command": "n"}), found("same", {"command": "x"}), found("other", {"command": "z"})],
        existing(),
        env={},
    )
    assert [(p.name, p.action) for p in plan] == [
        ("new", Action.ADD),
        ("same", Action.SKIP),
        ("other", Action.CONFLICT),
    ]
    doc = existing()
    apply_plan(doc, plan)
    assert doc["mcpServers"] == {**existing()["mcpServers"], "new": {"command": "n"}}


def test_force_replaces_conflicts() -> None:
    plan = plan_import([found("other", {"command": "z"})], existing(), env={}, force=True)
    assert [(p.name, p.action) for p in plan] == [("other", Action.REPLACE)]
    doc = existing()
    apply_plan(doc, plan)
    assert doc["mcpServers"]["other"] == {"command": "z"}


def test_prefix_avoids_conflicts_and_is_sanitised() -> None:
    plan = plan_import([found("other", {"command": "z"})], existing(), env={}, prefix="cursor.")
    assert [(p.name, p.action, p.renamed) for p in plan] == [("cursor-other", Action.ADD, True)]


def test_a_prefix_does_not_import_again_what_mcp_json_has_under_another_name() -> None:
    """Trial s39-h4: `app import --prefix cd-`, to resolve one conflict, planned `cd-fetch` beside the `fetch`
    imported before, the same server twice (each tool listed twice)."""
    app = [found("same", {"command": "x", "tags": ["theirs"]}), found("other", {"command": "z"})]
    plan = plan_import(app, existing(), env={}, prefix="cd-")
    assert [(p.name, p.action, p.reason) for p in plan] == [
        ("cd-same", Action.SKIP, "already in mcp.json as 'same', the same definition"),
        ("cd-other", Action.ADD, ""),
    ]
    again = plan_import([found("y", {"command": "y"})], existing(), env={})  # any name: `mcp add` chose its own
    assert [(p.name, p.action) for p in again] == [("y", Action.SKIP)]


def test_same_name_twice_in_one_app_numbers_the_second_unless_identical() -> None:
    plan = plan_import(
        [
            found("git", {"command": "uvx", "args": ["mcp-server-git"]}),
            found("git", {"command": "uvx", "args": ["mcp-server-git", "--repository", "/p"]}, PROJECT),
            found("git", {"command": "uvx", "args": ["mcp-server-git"]}, PROJECT),
        ],
        {},
        env={},
    )
    assert [(p.name, p.action) for p in plan] == [("git", Action.ADD), ("git-2", Action.ADD), ("git", Action.SKIP)]


def test_entries_that_would_not_load_are_invalid_not_imported() -> None:
    plan = plan_import(
        [found("ws", None, notes=("transport type 'websocket' is not supported",)), found("bad", {"url": "ftp://h"})],
        {},
        env={},
    )
    assert [(p.action, p.reason) for p in plan] == [
        (Action.INVALID, "transport type 'websocket' is not supported"),
        (Action.INVALID, "mcpServers.bad.url: must start with http:// or https://"),
    ]
    doc: Document = {}
    apply_plan(doc, plan)
    assert doc == {"mcpServers": {}}


HUB = "http://127.0.0.1:3050/mcp"


@pytest.mark.parametrize(
    "entry",
    [
        {"url": HUB},
        {"type": "http", "url": "HTTP://localhost:3050/mcp/?preset=dev"},
        {"url": "http://[::1]:3050/mcp"},
        {"command": "/home/u/.local/bin/onemcp", "args": ["proxy"]},
        {"command": "onemcp", "args": ["proxy", "--preset", "dev"]},
        {"command": r"C:\Tools\onemcp.exe", "args": ["proxy", "--url", "http://127.0.0.1:4000/mcp"]},
        {"command": "onemcp", "args": ["proxy", "--url=http://127.0.0.1:4000/mcp"]},
        {"command": "/usr/bin/python3", "args": ["-m", "onemcp", "proxy"]},
    ],
)
def test_the_hubs_own_entry_is_skipped_with_a_note(entry: dict[str, Any]) -> None:
    """cli hunt F7: after --point-to-hub, importing the app again made the hub an upstream of itself."""
    plan = plan_import(
        [found("onemcp", entry), found("git", {"command": "g"})],
        existing(),
        env={},
        hub_urls={HUB, "http://127.0.0.1:4000/mcp"},
    )
    assert [(p.name, p.action) for p in plan] == [("onemcp", Action.SKIP), ("git", Action.ADD)]
    assert "the hub itself" in plan[0].reason and not plan[0].writes


@pytest.mark.parametrize(
    "entry",
    [
        {"url": "http://127.0.0.1:3051/mcp"},
        {"url": "https://hub.example.com/mcp"},
        {"url": "http://127.0.0.1:3050/other"},
        {"url": "http://127.0.0.1:99999/mcp"},
        {"command": "onemcp", "args": ["proxy", "--url", "https://hub.example.com/mcp"]},
        {"command": "onemcp", "args": ["serve"]},
        {"command": "npx", "args": ["proxy"]},
    ],
)
def test_another_hub_or_server_is_imported(entry: dict[str, Any]) -> None:
    plan = plan_import([found("other-hub", entry)], {}, env={})  # the default hub URL
    assert plan[0].action != Action.SKIP and "the hub itself" not in plan[0].reason, plan  # (a bad port: invalid)
