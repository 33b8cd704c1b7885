"""Reload planning: what a new config changes, as a pure function of the old config and the new.

Owns the rule of what a change does to a server: added ones start, removed (or newly disabled) ones
stop, one whose way of connecting changed restarts, and one whose tags or tool rules changed is
updated in place, its connection and calls left alone. Also says which of the hub's own settings
(`onemcp`) changed. Does not touch anything running: `Hub.apply_config` carries a `Plan` out.
"""

from __future__ import annotations

from dataclasses import dataclass

from onemcp.config.model import HubConfig, HubSettings


@dataclass(frozen=True)
class Plan:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()  # its connection settings changed: stopped, then started anew
    updated: tuple[str, ...] = ()  # its view settings changed (tags, tool rules): applied in place
    unchanged: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()  # the `onemcp` settings that changed, by field name

    def report(self) -> dict[str, list[str]]:
        """What /health shows as the last reload's changes."""
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.restarted),
            "updated": list(self.updated),
            "unchanged": list(self.unchanged),
        }


def plan(old: HubConfig, new: HubConfig) -> Plan:
    """What going from `old` to `new` does, server by server, in the configs' order."""
    before, after = old.enabled, new.enabled
    kept = [name for name in after if name in before and after[name] != before[name]]
    return Plan(
        added=tuple(name for name in after if name not in before),
        removed=tuple(name for name in before if name not in after),
        restarted=tuple(name for name in kept if not after[name].same_connection(before[name])),
        updated=tuple(name for name in kept if after[name].same_connection(before[name])),
        unchanged=tuple(name for name in after if name in before and after[name] == before[name]),
        settings=tuple(
            field for field in HubSettings.model_fields if getattr(old.hub, field) != getattr(new.hub, field)
        ),
    )
