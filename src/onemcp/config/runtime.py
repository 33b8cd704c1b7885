"""Where the running hub is: reading `runtime.json`, which `onemcp serve` writes beside mcp.json.

Owns the reading side and its errors (no file, unreadable, a hub that has exited); the writing
side is `cli.serve`. Stdlib only: `onemcp run` reads this on every call.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RUNTIME = "runtime.json"
LOCK_FILE = "hub.lock"  # beside mcp.json: one HTTP hub per config directory holds it for its life
HINT = "start one with `onemcp serve`"


class NoHub(Exception):
    """No hub is running for this config directory (or it cannot be told where it is)."""


def runtime_path(config_path: Path) -> Path:
    return config_path.parent / RUNTIME


def read_runtime(config_path: Path) -> dict[str, Any]:
    """`{"url", "pid", "config"}` of the hub serving from this config's directory; NoHub otherwise."""
    runtime = runtime_path(config_path)
    try:
        doc = json.loads(runtime.read_bytes())
    except FileNotFoundError:
        raise NoHub(f"no hub is running (no {runtime}); {HINT}") from None
    except (OSError, ValueError) as exc:
        raise NoHub(f"cannot read {runtime}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("url"), str):
        raise NoHub(f"{runtime} does not say where the hub is")
    pid = doc.get("pid")
    if isinstance(pid, int) and not alive(pid):
        raise NoHub(f"no hub is running ({runtime} names pid {pid}, which has exited); {HINT}")
    return doc


def free_port_problem(runtime: dict[str, Any]) -> str | None:
    """Why no app's config should keep this hub's URL: `--port 0` chose its port (None: a fixed one)."""
    if runtime.get("freePort") is not True:
        return None
    return (
        f"the hub at {runtime.get('url')} was started with --port 0, so its port was free by chance and a new start"
        " (`onemcp stop` and `start`, a reboot) takes another: a client configured with it loses the hub; start it"
        " on a fixed port (`onemcp restart --port 3050`)"
    )


def locked(config_path: Path) -> bool:
    """Does a hub hold this config directory's lock (`cli.serve.hub_lock`)? A `runtime.json` outlives a
    killed hub, and its pid may be another process's by now: the lock ends with the hub."""
    try:
        import fcntl
    except ImportError:  # not posix: the pid check (and the HTTP answer) decide
        return True
    try:
        fd = os.open(config_path.parent / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False  # never made: no hub ever held it
    except OSError:
        return True  # another user's (0600): cannot say, so the pid (and the HTTP answer) decide
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True  # held
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def lock_holder(config_path: Path) -> int | None:
    """The pid of the hub holding this config directory's lock (`cli.serve.hub_lock` writes it there), or
    None when no hub holds it: a hub whose `runtime.json` was removed or damaged can still be stopped."""
    if not locked(config_path):
        return None
    try:
        pid = int((config_path.parent / LOCK_FILE).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None  # a hub of an older version, or another user's
    return pid if pid > 0 else None


def alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate the process on Windows; let the HTTP check decide
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True
