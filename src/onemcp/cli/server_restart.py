"""`onemcp mcp restart NAME...`: stop servers of the running hub and start them again, then say how they came up.

For a server the hub does not retry by itself (a command that was not installed, one stopped at its
sandbox limit) or one waiting out its crash-loop backoff, once its cause is fixed. Talks to the admin
API (`POST /api/v1/servers/{name}/restart`, `$ONEMCP_TOKEN` with the admin scope on a hub with auth),
then reads `/health` until each server is ready or failed, up to `--timeout`. Owns the command's
arguments and output; the restart itself is the hub's (`Hub.restart_server`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from onemcp.cli import argtypes

POLL = 0.1  # seconds between reads of /health while the servers start
REQUEST_TIMEOUT = 10.0


class RestartError(Exception):
    """Said on stderr as it is; exit 1."""


def add_parser(actions: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser) -> None:
    restart = actions.add_parser(
        "restart", parents=[config], help="stop servers of the running hub and start them again"
    )
    restart.add_argument("names", nargs="+", metavar="NAME")
    restart.add_argument(
        "--timeout", type=argtypes.seconds, default=60.0, metavar="S", help="how long to wait for them (60)"
    )


def run(args: argparse.Namespace, config_path: Path, base: str) -> int:
    """Restart `args.names` on the hub at `base`; 0 when every one came up ready."""
    import httpx

    from onemcp.cli.hub_health import auth_headers

    with httpx.Client(timeout=REQUEST_TIMEOUT, trust_env=False, headers=auth_headers()) as client:
        for name in args.names:  # one at a time: each is stopped and started before the next
            said = _post(client, f"{base}/api/v1/servers/{name}/restart", name, config_path)
            if said is not None:
                raise RestartError(said)
        states = _wait(client, f"{base}/health", args.names, args.timeout)
    code = 0
    for name in args.names:
        state, error = states.get(name, ("starting", None))
        print(f"onemcp: {name}: {state}{f' ({error})' if error and state != 'ready' else ''}")
        code = code or (0 if state == "ready" else 1)
    return code


def _post(client: Any, url: str, name: str, config_path: Path) -> str | None:
    import httpx

    try:
        response = client.post(url, json={})
    except httpx.HTTPError as exc:
        return f"no hub answers at {url}: {exc}"
    if response.status_code in (401, 403):
        return f"the hub refused (HTTP {response.status_code}): set ONEMCP_TOKEN to a key with the admin scope"
    # 404: the hub has no such server; 400: it has it, disabled (or the request was bad: the hub's word then)
    if response.status_code in (400, 404) and (why := _not_served(name, config_path, response.status_code)):
        return f"{name}: {why}"
    if response.status_code != 200:
        try:
            error = response.json().get("error")
        except ValueError:
            error = None
        return f"{name}: {error or f'HTTP {response.status_code}'}"
    return None


def _not_served(name: str, config_path: Path, status: int) -> str | None:
    """Why the running hub has no enabled server `name` (its answer was `status`), as mcp.json tells; None
    when it cannot be read or does not tell."""
    from onemcp.config.edit import EditError, read_document, servers_of
    from onemcp.config.load import ConfigError

    try:
        doc = read_document(config_path, to_edit=False)
        servers = servers_of(doc)
    except (ConfigError, EditError, OSError):
        return None
    templates = doc.get("mcpTemplates")
    if isinstance(templates, dict) and name.partition("@")[0] in templates:
        return None  # a template or one of its instances: the hub says which run (mcp.json cannot)
    entry = servers.get(name)
    if status == 400 and not (isinstance(entry, dict) and entry.get("disabled") is True):
        return None
    if entry is None:
        return f"no server {name!r} in {config_path} (configured: {', '.join(sorted(servers)) or 'none'})"
    if isinstance(entry, dict) and entry.get("disabled") is True:
        return f"it is disabled in {config_path}: `onemcp mcp enable {name}` switches it on (the hub then starts it)"
    return (
        f"the running hub has no such server yet: it applies {config_path} by itself when it sees it change"
        " (`onemcp status` says whether it took it, or why not)"
    )


def _wait(client: Any, url: str, names: list[str], timeout: float) -> dict[str, tuple[str, str | None]]:
    """Each server's state and last error once none is starting any more, or when `timeout` ran out."""
    import httpx

    deadline = time.monotonic() + timeout
    states: dict[str, tuple[str, str | None]] = {}
    while True:
        try:
            ups: dict[str, Any] = client.get(url).json().get("upstreams") or {}
        except (httpx.HTTPError, ValueError, AttributeError):
            ups = {}
        states = {n: (str(ups[n].get("state")), ups[n].get("lastError")) for n in names if n in ups}
        starting = [n for n in names if states.get(n, ("starting", None))[0] in ("starting", "stopped")]
        if not starting or time.monotonic() > deadline:
            return states
        time.sleep(POLL)
