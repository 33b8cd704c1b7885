"""`hub/plan.py`: what a reload does, decided from the old and new config alone."""

from __future__ import annotations

from typing import Any

from onemcp.config.model import HubConfig
from onemcp.hub.plan import Plan, plan


def config(servers: dict[str, dict[str, Any]], settings: dict[str, Any] | None = None) -> HubConfig:
    return HubConfig.model_validate({"mcpServers": servers, "onemcp": settings or {}})


ECHO = {"command": "echo", "args": ["a"]}
REMOTE = {"url": "https://mcp.example/mcp"}


def test_same_config_changes_nothing() -> None:
    old = config({"a": ECHO, "b": REMOTE})
    assert plan(old, config({"a": ECHO, "b": REMOTE})) == Plan(unchanged=("a", "b"))


def test_added_and_removed_servers() -> None:
    result = plan(config({"a": ECHO, "b": REMOTE}), config({"b": REMOTE, "c": ECHO}))
    assert result.added == ("c",)
    assert result.removed == ("a",)
    assert result.unchanged == ("b",)
    assert result.restarted == result.updated == ()


def test_disabling_a_server_removes_it_and_enabling_adds_it() -> None:
    on = config({"a": ECHO, "b": REMOTE})
    off = config({"a": {**ECHO, "disabled": True}, "b": REMOTE})
    assert plan(on, off).removed == ("a",)
    assert plan(off, on).added == ("a",)


def test_a_change_to_how_it_connects_restarts() -> None:
    result = plan(config({"a": ECHO}), config({"a": {"command": "echo", "args": ["b"]}}))
    assert result.restarted == ("a",)
    assert result.updated == result.unchanged == ()


def test_tags_and_tool_rules_apply_in_place() -> None:
    old = config({"a": ECHO, "b": REMOTE})
    new = config({"a": {**ECHO, "tags": ["dev"]}, "b": {**REMOTE, "disabledTools": ["drop_table"]}})
    result = plan(old, new)
    assert result.updated == ("a", "b")
    assert result.restarted == ()


def test_settings_that_changed_are_named() -> None:
    old = config({"a": ECHO})
    new = config({"a": ECHO}, {"separator": "-", "sessionIdleTimeout": 60})
    result = plan(old, new)
    assert set(result.settings) == {"separator", "session_idle_timeout"}
    assert result.unchanged == ("a",)
    assert plan(old, old).settings == ()


def test_report_keeps_the_reload_status_shape() -> None:
    result = plan(config({"a": ECHO, "b": REMOTE}), config({"a": {"command": "other"}, "c": ECHO}))
    assert result.report() == {
        "added": ["c"],
        "removed": ["b"],
        "changed": ["a"],
        "updated": [],
        "unchanged": [],
    }
