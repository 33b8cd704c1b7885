"""Other tools' config shapes, mapped to ours where they map cleanly and refused where they do not.

Owns the document-level rewrites before validation: VS Code's `servers` key, keys other MCP
clients write into a server entry for themselves (ignored, listed in `FOREIGN_SERVER_KEYS`),
the `["K=V"]` env list form, and 1MCP's settings (`serverDefaults`, `requestTimeout` and
`connectionTimeout` in milliseconds, `timeout` in milliseconds in a 1MCP file, a ${VAR} in those
too, `restartOnExit`, `inheritParentEnv`, `envFilter`). Every refusal says how to write the setting
here. Returns the problems found (all of them); does not validate what remains (`model`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from onemcp.config import values
from onemcp.config.base import TIMEOUT_MAX

# Keys other clients keep in a server entry for their own use: not ours, not an error.
FOREIGN_SERVER_KEYS = frozenset({"autoApprove", "alwaysAllow", "description", "notes", "transportType", "icon"})
# Top-level keys that are not ours but belong in such a file: for editors, and VS Code's prompts.
FOREIGN_TOP_KEYS = ("$schema", "inputs")
STDIO_ONLY = frozenset({"env", "args", "cwd", "inheritParentEnv", "envFilter"})  # serverDefaults for a command
URL_ONLY = frozenset({"headers", "oauth"})  # serverDefaults for a url
ONE_MCP_KEYS = frozenset({"requestTimeout", "connectionTimeout", "restartOnExit", "inheritParentEnv", "envFilter"})
TIMEOUT_HINT_ABOVE = TIMEOUT_MAX  # a `timeout` above this many seconds is most likely milliseconds
MS_KEYS = ("timeout", "requestTimeout", "connectionTimeout")  # milliseconds in a 1MCP file
Resolve = Callable[[str, str], str]  # (a string value, where it is) -> the value with its ${VAR}s filled in
ONE_SECOND_MS = 1000  # a 1MCP `timeout` below this (milliseconds) is most likely seconds: never taken silently


def normalise(doc: dict[str, Any], resolve: Resolve | None = None) -> list[str]:
    """Rewrite `doc` in place into this hub's shape; the problems that cannot be mapped. `resolve` fills in
    the ${VAR}s of a 1MCP file's millisecond values first, so that `"${T}"` converts as the number would."""
    problems: list[str] = []
    if "mcpServers" not in doc and isinstance(doc.get("servers"), dict):
        doc["mcpServers"] = doc.pop("servers")  # VS Code's spelling
    servers = doc.get("mcpServers")
    defaults = doc.pop("serverDefaults", None)
    one_mcp = "serverDefaults" if defaults is not None else None  # why the file reads as 1MCP's (ms timeouts)
    for name, entry in servers.items() if isinstance(servers, dict) else ():
        if isinstance(entry, dict) and ONE_MCP_KEYS & set(entry) and one_mcp is None:
            one_mcp = f"mcpServers.{name}.{sorted(ONE_MCP_KEYS & set(entry))[0]}"
    if defaults is not None and not isinstance(defaults, dict):
        problems.append("serverDefaults: must be an object of server settings")
        defaults = None
    for section in ("mcpServers", "mcpTemplates"):
        entries = doc.get(section)
        if not isinstance(entries, dict):
            continue
        for name, entry in entries.items():
            if not isinstance(entry, dict):
                continue
            if defaults:
                stdio = "command" in entry  # a default of the other transport does not apply (1MCP ignores it)
                for key, value in defaults.items():
                    if key not in (URL_ONLY if stdio else STDIO_ONLY):
                        entry.setdefault(key, value)
            if one_mcp and resolve is not None:  # a ${VAR} in milliseconds converts as the number would
                for key in MS_KEYS:
                    if isinstance(entry.get(key), str):  # (one written in quotes by hand is refused later)
                        entry[key] = _number(resolve(entry[key], f"{section}.{name}.{key}"))
            problems += _server(f"{section}.{name}", entry, one_mcp=one_mcp)
    return problems


def _number(text: str) -> float | str:
    """A millisecond value a ${VAR} filled in: its number, else the text (refused later, as is one written
    in quotes by hand: nothing is taken silently)."""
    if not isinstance(text, values.FromEnv):
        return text
    try:
        return float(text)
    except ValueError:
        return text


def _server(where: str, entry: dict[str, Any], *, one_mcp: str | None) -> list[str]:
    """`one_mcp`: what makes the file a 1MCP config (its `timeout`s are milliseconds), if anything."""
    problems: list[str] = []
    for key in FOREIGN_SERVER_KEYS & set(entry):
        del entry[key]
    env = entry.get("env")
    if isinstance(env, list):  # ["KEY=value", ...]
        mapped: dict[str, Any] = {}
        for i, item in enumerate(env):
            if not isinstance(item, str) or "=" not in item:
                problems.append(f'{where}.env[{i}]: expected "NAME=value" (or write env as an object)')
                continue
            key, _, value = item.partition("=")
            mapped[key] = value
        entry["env"] = mapped
    timeout = entry.get("timeout")
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        if one_mcp and timeout < ONE_SECOND_MS:  # seconds, most likely, in a file that also has 1MCP's keys
            problems.append(
                f"{where}.timeout: {timeout:g} would be {timeout:g} ms: this file reads as a 1MCP config ({one_mcp}), "
                "whose timeouts are milliseconds; write the seconds as requestTimeout in milliseconds "
                f"({timeout * 1000:g}), or drop the 1MCP keys"
            )
        elif one_mcp:
            entry["timeout"] = timeout / 1000  # 1MCP: milliseconds
        elif TIMEOUT_HINT_ABOVE < timeout < math.inf:  # (NaN and infinity: the model's "finite number")
            problems.append(
                f"{where}.timeout: {timeout:g} seconds is over an hour (at most {TIMEOUT_MAX}); timeouts here are"
                f" in seconds (1MCP's are milliseconds: {timeout:g} ms is {timeout / 1000:g})"
            )
            del entry["timeout"]  # said once, here (the model would refuse it again, without the hint)
    for key, target in (("requestTimeout", "timeout"), ("connectionTimeout", "startupTimeout")):
        value = entry.pop(key, None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            problems.append(f"{where}.{key}: must be a positive number of milliseconds")
        else:
            entry.setdefault(target, value / 1000)
    restart = entry.pop("restartOnExit", None)
    if restart is False:
        problems.append(
            f"{where}.restartOnExit: onemcp always restarts a server that exits (with backoff); remove the key, "
            'or set "disabled": true to not run it'
        )
    inherit = entry.pop("inheritParentEnv", None)
    if inherit is True:
        problems.append(
            f"{where}.inheritParentEnv: a server gets a short allow-list of variables (PATH, HOME, locale, proxies) "
            'plus its env; pass what it needs explicitly: "env": {"NAME": "${NAME}"}'
        )
    if "envFilter" in entry:
        del entry["envFilter"]
        problems.append(f'{where}.envFilter: list the variables to pass in env instead: "env": {{"NAME": "${{NAME}}"}}')
    return problems
