"""Which servers a process runs: every enabled one, or those one fixed view reaches (a stdio hub's)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from fixtures.launch import fixture_command
from onemcp.catalog.views import from_query
from onemcp.config.model import HubConfig
from onemcp.hub.served import follow, left_out, serve_view
from onemcp.reload import Reloader
from support.hub import running_hub


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


def stdio_entry(**extra: Any) -> dict[str, Any]:
    cmd = fixture_command()
    return {"command": cmd[0], "args": cmd[1:], **extra}


def write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


@pytest.mark.anyio
async def test_a_reload_says_in_words_which_servers_it_starts_and_stops_for_the_view(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stdio hub's reload that tagged a server into (or out of) its view logged only "updated fx": the
    start or stop it then did was not said. The reload's line says it now, and a presets edit's too."""
    path, presets = tmp_path / "mcp.json", tmp_path / "presets.json"
    doc = {"mcpServers": {"a": stdio_entry(tags=["web"]), "b": stdio_entry(tags=["db"])}}
    write(path, doc)
    write(presets, {"presets": {"mine": {"filter": "web"}}})
    caplog.set_level("INFO", logger="onemcp.reload")
    with anyio.fail_after(60):
        async with running_hub(doc) as running:  # (an HTTP hub starts both: the view is taken from here on)
            hub = running.app.hub
            reloader = Reloader(hub, path, sighup=False)  # no watch: each file is read when the test says
            assert reloader.load_presets()
            view = from_query("preset=mine", hub.presets)
            serve_view(hub, view)
            reloader.applied = partial(follow, hub, view)
            write(presets, {"presets": {"mine": {"filter": "db"}}})
            assert reloader.load_presets()  # a is outside the view now; b, running, is in it
            while hub.pool.busy("a"):
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
            write(path, {"mcpServers": {**doc["mcpServers"], "a": stdio_entry(tags=["web", "db"])}})
            assert await reloader.reload()
    said = [r.getMessage() for r in caplog.records if r.name == "onemcp.reload"]
    assert said == [
        "presets reloaded: stopping a (now outside this hub's view)",
        "config reloaded: updated a; starting a (now in this hub's view)",
    ], said
