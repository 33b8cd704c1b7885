"""`onemcp start|stop|restart|status|logs|wait|service`: the hub as a background service.

Owns running `onemcp serve` detached (its own session, output to `onemcp.log` beside the
config, rotated at 10 MiB), knowing whether it runs (`runtime.json`, whose pid is checked: a
stale file is no hub; `hub.lock` held by the serving process makes a second hub for the same
config directory refuse to start), stopping it gracefully (SIGTERM, then SIGKILL after the
grace), waiting for readiness, the log's tail, and a systemd user unit. /health is read with
`$ONEMCP_TOKEN` as the bearer token (a hub with auth shows it to the operator or admin scope
only). Stdlib only. Exit codes for scripts: `status` 0 ok, 1 running but not ready or
degraded (or /health refused), 3 not running; `wait` and `start` 0 ok, 1 not ready within the timeout, or
ready but degraded (a server failed: named, as `status` names it) or /health refused (not known to be ok).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from onemcp.cli import argtypes
from onemcp.cli.address import (
    FREE_PORT_HINT,
    OPEN_NETWORK_FLAG,
    exposed_starter,
    in_use,
    take,
    unauthenticated,
    unbracketed,
)
from onemcp.cli.hub_health import (
    ANSWER_WAIT,
    HEALTH_WAIT,
    OPENER,
    base_of,
    fetch,
    hub_notes,
    not_known,
    refusal,
    silent,
    summary,
    suspended,
)
from onemcp.config.paths import named_by, resolve_path
from onemcp.config.runtime import NoHub, alive, lock_holder, locked, read_runtime, runtime_path
from onemcp.http.guard import is_loopback

LOG_FILE = "onemcp.log"
NOT_RUNNING = 3
HOST, PORT = "127.0.0.1", 3050
LOG_LEVELS, LOG_FORMATS = ("debug", "info", "warning", "error"), ("text", "json")
UNIT = """[Unit]
Description=onemcp, one MCP hub for every client
After=network.target

[Service]
ExecStart={python} -P -m onemcp serve --config {config} --port {port}{log_format}
Restart=on-failure
RestartSec=2

[Install]
WantedBy=default.target
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser) -> None:
    start = sub.add_parser("start", parents=[config], help="run the hub in the background")
    restart = sub.add_parser("restart", parents=[config], help="stop the background hub, start it again")
    start.add_argument("--host", default=HOST, help=f"the address to bind (default {HOST})")
    start.add_argument("--port", type=argtypes.port, default=PORT, help=f"0 picks a free one (default {PORT})")
    # None: where the running hub listens (a hub started with --port N comes back at N)
    restart.add_argument("--host", help=f"the address to bind (default: the running hub's, else {HOST})")
    restart.add_argument(
        "--port", type=argtypes.port, help=f"0 picks a free one (default: the running hub's, else {PORT})"
    )
    for p in (start, restart):
        p.add_argument("--timeout", type=argtypes.seconds, default=60.0, help="seconds to wait for it to be ready (60)")
        # restart: None, the running hub's (its runtime.json), else the default
        own, said = (p is start), "" if p is start else "the running hub's, else "
        p.add_argument("--log-level", default="info" if own else None, choices=LOG_LEVELS, help=f"(default {said}info)")
        p.add_argument(
            "--log-format",
            default="text" if own else None,
            choices=LOG_FORMATS,
            help=f"text or JSON (default {said}text)",
        )
        p.add_argument(  # as `serve`'s: the hub it runs is `serve`, which refuses such an address without it
            OPEN_NETWORK_FLAG,
            dest="allow_open_network",
            action="store_true",
            help="serve a non-loopback address with no authentication (dangerous)",
        )
    stop = sub.add_parser("stop", parents=[config], help="stop the background hub (gracefully)")
    stop.add_argument("--timeout", type=argtypes.seconds, default=15.0, help="seconds before it is killed (15)")
    status = sub.add_parser("status", parents=[config], help="is the hub running and ready? (exit 0, 1 or 3)")
    status.add_argument("--json", action="store_true")
    logs = sub.add_parser("logs", parents=[config], help="the background hub's log")
    logs.add_argument("-n", "--lines", type=argtypes.count(0), default=50, help="how many of the last lines (50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    wait = sub.add_parser(
        "wait", parents=[config], help="block until the hub is ready (exit 0), or say what failed or --timeout (1)"
    )
    wait.add_argument("--timeout", type=argtypes.seconds, default=60.0, help="seconds to wait (60)")
    service = sub.add_parser("service", parents=[config], help="a systemd user unit for the hub")
    service.add_argument("action", choices=["install", "print"])
    service.add_argument(
        "--port", type=argtypes.port, default=3050, help="the port the unit's hub binds (default 3050)"
    )
    service.add_argument(
        "--log-format", default="text", choices=["text", "json"], help="the unit's hub logs as text or JSON"
    )


def run(args: argparse.Namespace) -> int:
    path = resolve_path(args.config)
    if args.command == "restart" and not path.exists() and named_by(args.config):
        return starter_if_missing(path, args.config) or 2  # refused before the running hub is stopped
    if args.command == "service" and args.action == "install":
        refused = starter_if_missing(path, args.config)
        if refused is not None:
            return refused
    try:
        if args.command == "start":
            return launch(path, args.config, args.host, args.port, args.timeout, logged(args), args.allow_open_network)
        if args.command == "stop":
            return stop(path, args.timeout)
        if args.command == "restart":
            return restart(path, args)
        if args.command == "status":
            return status(path, as_json=args.json)
        if args.command == "logs":
            return logs(path, args.lines, follow=args.follow)
        if args.command == "wait":
            return wait(path, args.timeout)
        return service(path, args.action, args.port, args.log_format)
    except KeyboardInterrupt:
        return 130


def restart(path: Path, args: argparse.Namespace) -> int:
    """Stop the running hub and start it again, at its address unless told another. What the new hub would
    refuse (an open address with no authentication and no OPEN_NETWORK_FLAG, a config it cannot load) is
    said before the running one is stopped: a restart never leaves the user with no hub for it. A hub that
    served its open address by that flag is given it again there (a restart is the same hub again), said so:
    runtime.json's `openNetwork` says it, or, in one an older onemcp wrote without the key, the hub itself
    (`serves_openly`: it answers /health there with no token, which `serve` allows only with the flag)."""
    found = running(path)
    host, port = address(found, args.host, args.port)
    open_network = args.allow_open_network
    kept = None
    if found is not None and not open_network and same_host(found, host):
        if found.get("openNetwork") is True:
            kept = f"the hub it replaces was started with it at {host}"
        elif "openNetwork" not in found and serves_openly(found):  # an older hub's runtime.json has no record
            kept = f"the hub it replaces serves {host} with no authentication, which it does only with it"
    if kept is not None:
        print(f"onemcp: {OPEN_NETWORK_FLAG} kept: {kept}", file=sys.stderr)
        open_network = True
    if found is not None and (refused := restart_refusal(path, args.config, host, open_network)) is not None:
        print(
            f"onemcp: not restarting, the running hub (pid {found['pid']}) is left as it is: {refused}", file=sys.stderr
        )
        return 2
    stop(path, 15.0)
    return launch(path, args.config, host, port, args.timeout, logged(args, found), open_network)


def same_host(found: dict[str, Any], host: str) -> bool:
    """Does the running hub (its runtime.json) listen at `host`?"""
    try:
        return urlsplit(str(found["url"])).hostname == unbracketed(host)
    except ValueError:  # a hand-edited runtime.json
        return False


def serves_openly(found: dict[str, Any]) -> bool:
    """Does the running hub serve an open (not loopback) address with no authentication, which `serve` does
    only when given OPEN_NETWORK_FLAG? Its /health, asked with no token, answers (a hub with auth: 401)."""
    try:
        host = urlsplit(str(found["url"])).hostname
    except ValueError:  # a hand-edited runtime.json
        return False
    if host is None or is_loopback(host):
        return False
    try:  # not `fetch`: that one sends $ONEMCP_TOKEN, and any hub answers a good token
        with OPENER.open(f"{base_of(found['url'])}/health", timeout=ANSWER_WAIT) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        return exc.code == 503  # degraded, yet answered with no token
    except (OSError, ValueError):  # nothing answers: nothing to tell by
        return False


def restart_refusal(path: Path, named: str | None, host: str, open_network: bool) -> str | None:
    """Why the hub `restart` would start would refuse to run (as `serve` says it), or None."""
    host = unbracketed(host)
    if not path.exists():  # the starter config (`launch` refuses a missing named one, before any stop too)
        return None if open_network else exposed_starter(path, named, host, OPEN_NETWORK_FLAG)
    from onemcp.config.load import ConfigError, load_config  # only here: the other commands stay light

    try:
        config = load_config(path)
    except ConfigError as exc:
        return f"invalid config: {exc}"
    return None if open_network else unauthenticated(host, config.hub.auth.required, override=OPEN_NETWORK_FLAG)


def logged(args: argparse.Namespace, found: dict[str, Any] | None = None) -> tuple[str, str]:
    """The log's level and format that `start` and `restart` pass to the hub they run: for `restart`, one
    not given is the running hub's (`found`, its runtime.json), said when it is not the default."""
    level = args.log_level or _recorded(found, "logLevel", LOG_LEVELS, "info")
    form = args.log_format or _recorded(found, "logFormat", LOG_FORMATS, "text")
    kept = [f"--log-level {level}"] if args.log_level is None and level != "info" else []
    kept += [f"--log-format {form}"] if args.log_format is None and form != "text" else []
    if kept:
        print(
            f"onemcp: {' '.join(kept)} kept: the hub it replaces logs so (give another to change it)", file=sys.stderr
        )
    return level, form


def _recorded(found: dict[str, Any] | None, key: str, choices: tuple[str, ...], default: str) -> str:
    """The running hub's setting `key`, when its runtime.json has one of `choices` (a hand-edited one may not)."""
    value = (found or {}).get(key)
    return value if isinstance(value, str) and value in choices else default


def launch(
    path: Path,
    named: str | None,
    host: str,
    port: int,
    timeout: float,
    log_as: tuple[str, str] = ("info", "text"),
    open_network: bool = False,
) -> int:
    """`start`, when no hub runs yet, as `serve` would: the address taken first (then let go for the hub
    it spawns), so that a busy port or a mistyped host leaves no starter config and no log behind.
    `open_network`: `serve`'s override of its refusal to serve an open address with no authentication.
    With no config yet, the hub writes the starter one, once it has the address (as `serve` does): another
    program taking the port after this check leaves none behind, nor a log (`start` says so, exit 2)."""
    if running(path) is None:
        taken = take(unbracketed(host), port, path)
        if isinstance(taken, str):
            print(f"onemcp: {taken}", file=sys.stderr)
            return 2
        taken.close()
        if not open_network and (refused_open := exposed_starter(path, named, unbracketed(host), OPEN_NETWORK_FLAG)):
            print(f"onemcp: {refused_open}", file=sys.stderr)
            return 2
        if not path.exists() and (who := named_by(named)):
            print(f"onemcp: config file {path} does not exist (named by {who})", file=sys.stderr)
            return 2
    return start(path, host, port, timeout, log_as, open_network)


def starter_if_missing(path: Path, named: str | None) -> int | None:
    """A hub about to be served, started or installed as a service needs its config: with none, the starter
    one is written, unless a missing file was named (by `named`, the --config flag, or the environment) or it
    cannot be written: the exit code then (2, before any child), else None."""
    if path.exists():
        return None
    if who := named_by(named):
        print(f"onemcp: config file {path} does not exist (named by {who})", file=sys.stderr)
        return 2
    from onemcp.config.load import write_starter  # only here: the other commands stay light

    try:
        write_starter(path)
    except OSError as exc:  # $ONEMCP_CONFIG_DIR names a file, or a directory it may not write in
        print(f"onemcp: cannot write a starter config to {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"onemcp: no config found; wrote a starter config to {path}", file=sys.stderr)
    return None


# ----------------------------------------------------------------------------- state
def running(path: Path) -> dict[str, Any] | None:
    """runtime.json of the hub serving `path`, or None (a file naming a dead pid, or a pid that no longer
    holds the directory's hub lock, is removed: what stops or waits on a hub must not take another
    process that got a killed hub's pid for it). A hub holding the lock whose runtime.json is missing or
    damaged is `{"pid": <the lock's>, "url": None, "lost": why}`: it runs, at an address nobody knows."""
    try:
        found = read_runtime(path)
    except NoHub as exc:
        runtime = runtime_path(path)
        try:
            pid = json.loads(runtime.read_bytes()).get("pid")
        except (OSError, ValueError, AttributeError):
            pid = None
        if isinstance(pid, int) and not alive(pid):
            runtime.unlink(missing_ok=True)  # stale: the hub died without cleaning up
        holder = lock_holder(path)
        return None if holder is None else {"pid": holder, "url": None, "lost": str(exc)}
    if not locked(path):  # the pid lives, but is no hub of this directory's any more
        runtime_path(path).unlink(missing_ok=True)
        return None
    if not isinstance(found.get("pid"), int):  # a hand-edited file: the lock says whose it is
        found["pid"] = lock_holder(path)
    return found


def lost(found: dict[str, Any]) -> str:
    """What to say of a running hub whose runtime.json does not say where it is."""
    return (
        f"running (pid {found['pid']}), but at an unknown address: {found['lost']}; "
        "`onemcp restart` starts it again and writes a new one"
    )


def address(found: dict[str, Any] | None, host: str | None, port: int | None) -> tuple[str, int]:
    """Where a restarted hub listens: the flags, else where the running hub listens (a hub started
    with --port N comes back at N, not at the default), else the defaults."""
    old_host, old_port = None, None
    if found is not None:
        try:
            where = urlsplit(str(found["url"]))
            old_host, old_port = where.hostname, where.port
        except ValueError:  # a hand-edited runtime.json: the defaults
            pass
    if port is None:
        port = PORT if old_port is None else old_port
    return host or old_host or HOST, port


# ----------------------------------------------------------------------------- commands
def start(
    path: Path,
    host: str,
    port: int,
    timeout: float,
    log_as: tuple[str, str] = ("info", "text"),
    open_network: bool = False,
) -> int:
    """The hub, detached, logging to onemcp.log as `log_as` says (level; format, `text` or `json`)."""
    found = running(path)
    if found is not None:
        if found["url"] is None:
            print(f"onemcp: already {lost(found)}", file=sys.stderr)
            return 1
        print(f"onemcp: already running at {found['url']} (pid {found.get('pid')})")
        return 0
    (log_level, log_format), log = log_as, path.parent / LOG_FILE
    # none yet (and none named: `launch` refused that): the hub finds the directory's own, and writes the
    # starter one once it has its address (a missing file named by --config would be refused)
    starter = not path.exists()
    # -P: not the working directory's modules (a project's own secrets.py or http.py) before the hub's own
    argv = [sys.executable, "-P", "-m", "onemcp", "serve", *([] if starter else ["--config", str(path)])]
    argv += ["--host", host, "--port", str(port), "--log-level", log_level, "--log-format", log_format]
    argv += ["--log-file", str(log)]
    argv += [OPEN_NETWORK_FLAG] if open_network else []
    made = [] if log.exists() else [log] if log.parent.exists() else [log, log.parent]  # the hub's, if it never runs
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        # owner-only when new, as the hub's own log files (observability/logs.py): the hub writes the same file
        with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
            child = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True
            )
    except OSError as exc:  # $ONEMCP_CONFIG_DIR names a file, or a directory it may not write in
        print(f"onemcp: cannot write the hub's log to {log}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exited = child.poll() is not None
        if exited and not (child.returncode == 2 and locked(path)):  # 2 and the lock held: see below
            if child.returncode == 2 and port != 0 and in_use(unbracketed(host), port):  # taken since `launch`
                for made_here in made:  # a hub that never ran leaves nothing behind (its directory only if empty)
                    with contextlib.suppress(OSError):
                        made_here.rmdir() if made_here.is_dir() else made_here.unlink()
                print(
                    f"onemcp: {host}:{port} was free when checked, but another program took it before the hub"
                    f" could bind it: nothing was started{FREE_PORT_HINT}",
                    file=sys.stderr,
                )
                return 2
            print(f"onemcp: the hub exited at start (code {child.returncode}); its log:", file=sys.stderr)
            tail(log, 15, sys.stderr)
            return 1
        found = running(path)
        if found is not None and found["url"] is None and not exited and found["pid"] == child.pid:
            found = None  # ours, between taking the lock and writing runtime.json
        if exited and found is not None:  # refused the lock: a `start` at the same time won, its hub is the one
            if found["url"] is None:  # or one that lost its runtime.json
                print(f"onemcp: already {lost(found)}", file=sys.stderr)
                return 1
            print(f"onemcp: already running at {found['url']} (pid {found.get('pid')})")
            return 0
        if found is not None and found.get("pid") == child.pid:
            code, _ = fetch(f"{base_of(found['url'])}/health/ready")
            if code == 200:
                if starter and path.exists():  # (the hub said so in its log)
                    print(f"onemcp: no config found; wrote a starter config to {path}", file=sys.stderr)
                code, health = fetch(f"{base_of(found['url'])}/health", HEALTH_WAIT)
                print(f"onemcp: started at {found['url']} (pid {child.pid}, log {log})")
                if isinstance(health, dict) and health.get("status") not in (None, "ok"):  # as `status`, `wait`
                    return not_ok("", health)
                if code != 200 or not isinstance(health, dict):  # ready, not known to be ok: exit 1, as `status`
                    print(f"onemcp: {not_known(code)}", file=sys.stderr)
                    return 1
                print(f"onemcp: {summary(health)}")
                return 0
        time.sleep(0.1)
    if child.poll() is not None:
        print(f"onemcp: another hub holds {path.parent}'s lock but wrote no runtime.json in time", file=sys.stderr)
        return 1
    print(f"onemcp: started (pid {child.pid}) but not ready within {timeout:g}s; see `onemcp logs`", file=sys.stderr)
    return 1


def stop(path: Path, timeout: float) -> int:
    found = running(path)
    if found is None:
        print("onemcp: not running")
        return 0
    pid = found["pid"]
    if not isinstance(pid, int):
        print(f"onemcp: {runtime_path(path)} names no pid, nor does the hub's lock: end it by its pid", file=sys.stderr)
        return 1
    try:
        os.kill(pid, signal.SIGTERM)
        if suspended(pid):  # a suspended process handles no SIGTERM: let it run, to stop gracefully
            os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:  # it ended between the look and the signal
        print(f"onemcp: stopped (pid {pid})")
        return 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            print(f"onemcp: stopped (pid {pid})")
            return 0
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    runtime_path(path).unlink(missing_ok=True)
    print(f"onemcp: killed (pid {pid}: not stopped within {timeout:g}s)")
    return 0


def status(path: Path, *, as_json: bool) -> int:
    found = running(path)
    if found is None:
        if as_json:
            print(json.dumps({"running": False}))
        else:
            print("onemcp: not running")
        return NOT_RUNNING
    if found["url"] is None:
        if as_json:
            said = {"running": True, "ready": False, "url": None, "pid": found["pid"], "lost": found["lost"]}
            print(json.dumps(said))
        else:
            print(f"onemcp: {lost(found)}")
        return 1
    ready, why = fetch(f"{base_of(found['url'])}/health/ready")
    if ready == 0:  # nothing answers: /health would be waited for in vain (HEALTH_WAIT)
        if as_json:
            said = {"running": True, "ready": False, "url": found["url"], "pid": found.get("pid"), "health": None}
            print(json.dumps({**said, "answers": False, "why": why, "suspended": suspended(found.get("pid"))}))
        else:
            print(f"onemcp: {silent(found, why)}")
        return 1
    code, health = fetch(f"{base_of(found['url'])}/health", HEALTH_WAIT)
    ok = ready == 200 and isinstance(health, dict) and health.get("status") == "ok"
    if as_json:
        print(
            json.dumps(
                {"running": True, "ready": ready == 200, "url": found["url"], "pid": found.get("pid"), "health": health}
            )
        )
    elif (refused := refusal(code)) is not None:  # the readiness probe is open: say that much
        print(f"onemcp: running at {found['url']} (pid {found.get('pid')}), {'ready' if ready == 200 else 'not ready'}")
        print(f"onemcp: {refused}")
    else:
        state = health.get("status") if isinstance(health, dict) else f"no answer (HTTP {code})"
        print(f"onemcp: running at {found['url']} (pid {found.get('pid')}), {state}")
        if isinstance(health, dict):
            print(f"onemcp: {summary(health)}")
            for note in hub_notes(health):  # what the servers' states do not say: why "degraded", withheld tools
                print(f"onemcp: {note}")
    return 0 if ok else 1


def tail(log: Path, lines: int, out: Any = None) -> None:
    out = out or sys.stdout
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        print(f"onemcp: no log at {log}", file=sys.stderr)
        return
    for line in text.splitlines()[-lines:] if lines else []:  # [-0:] would be every line
        print(line, file=out)


def logs(path: Path, lines: int, *, follow: bool) -> int:
    log = path.parent / LOG_FILE
    if not log.exists():
        print(f"onemcp: no log at {log} (the hub logs there when started with `onemcp start`)", file=sys.stderr)
        return 1
    tail(log, lines)
    if not follow:
        return 0
    position, inode = log.stat().st_size, log.stat().st_ino
    while True:
        time.sleep(0.25)
        try:
            stat = log.stat()
        except OSError:
            continue
        if stat.st_ino != inode or stat.st_size < position:  # rotated
            position, inode = 0, stat.st_ino
        if stat.st_size > position:
            with log.open("rb") as f:
                f.seek(position)
                sys.stdout.write(f.read().decode("utf-8", errors="replace"))
                sys.stdout.flush()
                position = f.tell()


def wait(path: Path, timeout: float) -> int:
    """Until the hub is ready (one that is starting, or about to be: a service's), up to `timeout`; then,
    if none is, why: none runs, one runs at an address nobody knows, or one runs and is not ready yet."""
    deadline = time.monotonic() + timeout
    found = None
    while time.monotonic() < deadline:
        found = running(path)
        if found is not None and found["url"] and fetch(f"{base_of(found['url'])}/health/ready")[0] == 200:
            return _ready(found["url"])
        time.sleep(0.1)
    if found is None:
        why = f"no hub is running for {path} (`onemcp start` starts one)"
    elif found["url"] is None:
        why = lost(found)
    else:
        why = f"the hub at {found['url']} (pid {found.get('pid')}) is still starting (`onemcp status` says what)"
    print(f"onemcp: not ready within {timeout:g}s: {why}", file=sys.stderr)
    return 1


def _ready(url: str) -> int:
    """Every server was tried: "ready" when the hub is ok, else what failed and exit 1, as `status` says it."""
    code, health = fetch(f"{base_of(url)}/health", HEALTH_WAIT)
    if code != 200 or not isinstance(health, dict):  # ready is all the open probe says; /health says what failed
        print(f"onemcp: ready at {url}")
        print(f"onemcp: {not_known(code)}", file=sys.stderr)  # not known to be ok: exit 1, as `status`
        return 1
    if health.get("status") in (None, "ok"):
        print(f"onemcp: ready at {url}")
        return 0
    return not_ok(f"up at {url}, but ", health)


def not_ok(before: str, health: dict[str, Any]) -> int:
    """Say on stderr why a hub that answers is not ok (`degraded: 2 server(s): 1 failed, ...`, and what else
    to act on), as `status` does; its exit code, 1."""
    print(f"onemcp: {before}{health.get('status')}: {summary(health)}", file=sys.stderr)
    for note in hub_notes(health):
        print(f"onemcp: {note}", file=sys.stderr)
    return 1


def _unit_arg(value: str) -> str:
    """One ExecStart argument as systemd reads it: quoted (a space does not split it), with its
    backslashes, quotes, `%` specifiers and `$` variables taken literally."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def service(path: Path, action: str, port: int, log_format: str = "text") -> int:
    """The systemd user unit (its hub logs to stderr, the journal: `log_format` json for a collector)."""
    unit = UNIT.format(
        python=_unit_arg(sys.executable),
        config=_unit_arg(str(path.absolute())),
        port=port,
        log_format="" if log_format == "text" else f" --log-format {log_format}",
    )
    if action == "print":
        sys.stdout.write(unit)
        return 0
    target = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user" / "onemcp.service"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(unit)
    print(f"onemcp: wrote {target}")
    print("onemcp: enable it with: systemctl --user daemon-reload && systemctl --user enable --now onemcp")
    if (found := running(path)) is not None:  # one hub per config directory: the unit's would be refused
        print(
            f"onemcp: warning: a hub already runs for {path.parent} (pid {found['pid']}); the unit's hub is "
            "refused while it does: `onemcp stop` first",
            file=sys.stderr,
        )
    return 0
