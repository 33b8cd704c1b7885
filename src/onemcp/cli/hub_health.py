"""What a running hub's /health says, read for the CLI: one GET with `$ONEMCP_TOKEN` as the bearer token,
what to say when it does not answer or refuses, and the one-line summaries of its servers and of what an
operator must act on. Used by `start`, `status`, `wait` (daemon), `mcp status` and `mcp restart`.

Does not own finding the hub (runtime.json: `daemon.running`) nor printing. Stdlib only.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from onemcp.cli.client.rpc import TOKEN_ENV

HEALTH_WAIT = 30.0  # /health's first answer may load the token counter: seconds on a busy machine
ANSWER_WAIT = 3.0  # a hub that answers not even /health/ready this long is said not to answer
# The hub is asked directly, never through $http_proxy: a proxy would be sent $ONEMCP_TOKEN, and its own
# answer (a 503 when it cannot reach the hub's 0.0.0.0) taken for the hub's
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url: str, timeout: float = ANSWER_WAIT) -> tuple[int, Any]:
    """The status and JSON body of a GET of `url`, as `$ONEMCP_TOKEN` when it is set (/health needs
    the operator or admin scope on a hub with auth); 0 and why (a string) when nothing answers."""
    request = urllib.request.Request(url, headers=auth_headers())
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, None
    except ValueError:
        return 0, "its answer was not JSON"
    except OSError as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, TimeoutError):
            return 0, f"no reply within {timeout:g}s"
        if isinstance(reason, ConnectionRefusedError):
            return 0, "the connection was refused"
        return 0, str(reason) or type(reason).__name__


def suspended(pid: object) -> bool:
    """Is the process suspended (SIGSTOP, a debugger)? It then answers nothing and handles no SIGTERM.
    False where /proc does not tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return False
    return stat.rpartition(")")[2].split()[:1] in (["T"], ["t"])


def silent(found: dict[str, Any], why: object) -> str:
    """What to say of a running hub that does not answer."""
    pid = found.get("pid")
    hint = (
        f"its process is suspended (SIGSTOP, a debugger): `kill -CONT {pid}` resumes it"
        if suspended(pid)
        else "it may be stuck or overloaded: `onemcp logs` may say why"
    )
    return (
        f"running at {found['url']} (pid {pid}), but it does not answer (/health/ready: {why}); {hint}; "
        "`onemcp stop` ends it"
    )


def auth_headers() -> dict[str, str]:
    """`Authorization: Bearer $ONEMCP_TOKEN`, when it is set (none otherwise)."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def base_of(url: str) -> str:
    return url.split("?", 1)[0].removesuffix("/mcp")


def refusal(code: int) -> str | None:
    """What to do when the hub refused /health (401, 403), else None."""
    if code == 401 and not os.environ.get(TOKEN_ENV, "").strip():
        return f"the hub requires a token for /health: set ${TOKEN_ENV} to a key with the operator or admin scope"
    if code == 401:
        return f"the hub refused ${TOKEN_ENV} (HTTP 401): it is not a key or token of this hub"
    if code == 403:
        return f"${TOKEN_ENV} lacks the operator or admin scope that /health needs (HTTP 403)"
    return None


def not_known(code: int) -> str:
    """Why a ready hub is not known to be ok: /health refused (no token, a wrong one, one without the scope)
    or gave no report, so whether a server failed is not known (`start`, `wait` and `status` exit 1)."""
    return f"whether a server failed is not known: {refusal(code) or f'/health gave no report (HTTP {code})'}"


def summary(health: dict[str, Any]) -> str:
    """ "3 servers: 2 ready, 1 failed: fetch (exited with code 1)" """
    ups: dict[str, Any] = health.get("upstreams") or {}
    states: dict[str, int] = {}
    for u in ups.values():
        states[u.get("state", "?")] = states.get(u.get("state", "?"), 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    failed = [f"{name}{_why(u)}" for name, u in ups.items() if u.get("state") == "failed"]
    retrying = [  # "starting" again and again: it never comes up, and says why
        f"{name}{_why(u)}" for name, u in ups.items() if u.get("state") == "starting" and u.get("lastError")
    ]
    stuck = [name for name, u in ups.items() if u.get("breaker") in ("open", "half-open")]
    text = f"{len(ups)} server(s): {counts or 'none'}" + (f"; failed: {', '.join(failed)}" if failed else "")
    text += f"; still trying: {', '.join(retrying)}" if retrying else ""
    return text + (f"; circuit open (it answers no call): {', '.join(stuck)}" if stuck else "")


def _why(upstream: dict[str, Any]) -> str:
    """ " (<first line of its last error>)", cut after WHY_LIMIT characters with a marker; "" when none."""
    lines = str(upstream.get("lastError") or "").strip().splitlines()
    if not lines:
        return ""
    first = lines[0]
    return f" ({first if len(first) <= WHY_LIMIT else first[:WHY_LIMIT].rstrip() + '...'})"


WHY_LIMIT = 160  # characters of a server's last error in the one-line summary (`mcp status` shows it all)


def hub_notes(health: dict[str, Any]) -> list[str]:
    """What an operator must act on that the servers' states do not say: why a hub whose servers are all
    ready is "degraded" (its config, its Redis), and tools withheld since their definition changed."""
    config: dict[str, Any] = health.get("config") or {}
    notes = []
    changed = [c for c in (health.get("pins") or {}).get("changed") or [] if c.get("mode") == "withhold"]
    if changed:
        tools = ", ".join(f"{c.get('server')}/{c.get('tool')}" for c in changed)
        notes.append(
            f"withheld from clients, their definition changed since approved: {tools} "
            "(`onemcp mcp pins` shows the change, `onemcp mcp approve SERVER[/TOOL]` approves it)"
        )
    if config.get("lastError"):
        notes.append(f"the config was refused, the hub serves the one before it: {config['lastError']}")
    if config.get("restartNeeded"):
        waiting = ", ".join(str(key) for key in config["restartNeeded"])
        notes.append(f"{waiting} changed in the config: the hub applies it when restarted (`onemcp restart`)")
    redis = (health.get("replicas") or {}).get("redis")
    if redis is not None and redis != "connected":
        notes.append(f"its Redis is {redis}: sessions and limits are this replica's alone until it is back")
    return notes
