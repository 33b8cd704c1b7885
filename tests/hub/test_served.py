"""Which servers a process runs: every enabled one, or those one fixed view reaches (a stdio hub's)."""

from __future__ import annotations

from typing import Any

from onemcp.catalog.views import from_query
from onemcp.config.model import HubConfig
from onemcp.hub.served import left_out


def config(**servers: dict[str, Any]) -> HubConfig:
    return HubConfig.model_validate({"mcpServers": {name: {"command": "x", **s} for name, s in servers.items()}})


HUB = config(fs={"tags": ["fs"]}, web={"tags": ["web"]}, plain={}, off={"tags": ["fs"], "disabled": True})


def test_without_a_view_every_server_runs() -> None:
    assert left_out(HUB, None, {}) == frozenset()


def test_a_view_leaves_out_every_enabled_server_outside_it() -> None:
    assert left_out(HUB, from_query("tags=fs", {}), {}) == {"web", "plain"}  # (a disabled one never runs)
    assert left_out(HUB, from_query("filter=!web", {}), {}) == {"web"}  # untagged ones are reached too


def test_a_preset_is_read_as_it_is_defined_now() -> None:
    view = from_query("preset=mine", {"mine": "fs"})
    assert left_out(HUB, view, {"mine": "fs"}) == {"web", "plain"}
    assert left_out(HUB, view, {"mine": "web"}) == {"fs", "plain"}  # edited since
    assert left_out(HUB, view, {}) == {"fs", "web", "plain"}  # deleted since: nothing, rather than everything
