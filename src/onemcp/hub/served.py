"""Which configured servers this process runs: every enabled one, or only those one fixed view reaches.

An HTTP hub serves every view (each request's query string chooses its own), so it runs every enabled
server. A stdio hub (`serve --transport stdio --tags/--filter/--preset`) has one client and one view for
its life: a server outside that view could never be listed or called, so it is not started (each stdio
server is a process, and one with a broken command would only log errors). Owns that decision, a pure
function of the config, the view and the presets as they are now, and keeping the running servers to it
(`follow`, after each reload of mcp.json or presets.json: a server tagged into the view starts, one
tagged out stops). The hub still knows every server (names are prefixed, tags and views read, as over
HTTP); only the pool is told which to start (`Pool.runs`). Not what a client may reach (`auth.access`
decides that, by the same view), nor reading a view (`catalog.views`). Template instances are not
touched: they start only when a session's context renders them.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from onemcp.catalog.views import View, ViewError, preset_view
from onemcp.config.model import HubConfig, ServerConfig
from onemcp.hub.core import Hub


def left_out(config: HubConfig, view: View | None, presets: Mapping[str, str]) -> frozenset[str]:
    """The enabled servers `view` does not reach now (a preset as it is defined now; one deleted since
    reaches nothing, as `Access.rebuilt` sees nothing); none without a view."""
    if view is None:
        return frozenset()
    try:
        current = preset_view(view.preset, presets) if view.preset is not None else view
    except ViewError:
        return frozenset(config.enabled)
    return frozenset(config.enabled) - current.servers({name: s.tags for name, s in config.enabled.items()})


def serve_view(hub: Hub, view: View | None) -> None:
    """From now on `hub` starts only the servers `view` reaches (before `hub.run`: the first start too)."""
    hub.pool.runs = partial(_runs, hub, view)


def follow(hub: Hub, view: View | None) -> list[str]:
    """After a reload (or a presets change): start the servers now in the view, stop those now outside it
    (in the background, one change per server at a time: a stopped one's calls get the pool's drain bound).
    What it does, in words, for the reload's log line: "starting fx (now in this hub's view)"."""
    outside, said = left_out(hub.config, view, hub.presets), []
    for name in hub.config.enabled:
        if hub.pool.busy(name) == (name in outside):  # running though outside, or in the view and not running
            hub.pool.restart_soon(name, partial(_wanted, hub, view, name), on_stopped=partial(_dropped, hub))
            said.append(
                f"stopping {name} (now outside this hub's view)"
                if name in outside
                else f"starting {name} (now in this hub's view)"
            )
    return said


def _runs(hub: Hub, view: View | None, name: str) -> bool:
    return name not in left_out(hub.config, view, hub.presets)  # (a template instance never is)


def _wanted(hub: Hub, view: View | None, name: str) -> ServerConfig | None:
    """What `name` should run with now: its config while the view reaches it, else nothing."""
    return hub.config.enabled.get(name) if _runs(hub, view, name) else None


def _dropped(hub: Hub, name: str) -> None:
    """A server stopped: its lists go (clients are told), as `Hub` does for one a reload removed."""
    hub.announcements.announce(hub.catalog.drop(name))
