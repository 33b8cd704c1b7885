"""Sandboxed stdio servers: limits and isolation a child process starts with, and a watch on what it uses.

Owns three things for one server's `sandbox` settings: the argv (wrapped in bubblewrap when
`isolate` is on: the filesystem read-only but for the working directory, `writable` paths and a
private /tmp, and no network unless `network`), what the child sets on itself between fork and
exec (rlimits for CPU seconds, open files and processes; the `user` to run as, resolved in the
hub), and the watch: every `POLL` seconds the resident memory and the number of processes of the
child's session (it and everything it started) are read from /proc and compared with
`memoryMB` / `processes`. The reasons it gives start with `OVER_LIMIT`, which the supervisor
treats as final until the config changes or an operator restarts the server. Linux only; does not
own the child's pipes or its lifetime (`transports/stdio.py`).
"""

from __future__ import annotations

import os
import pwd
import resource
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass

from onemcp.config.model import Sandbox

OVER_LIMIT = "over its sandbox limit"
POLL = 0.25  # seconds between two looks at the child's memory and processes
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class SandboxError(Exception):
    """The sandbox cannot be set up as configured (no bubblewrap, no such user)."""


@dataclass(frozen=True)
class Usage:
    rss_bytes: int
    processes: int


def argv(sandbox: Sandbox | None, command: str, args: list[str], cwd: str | None) -> list[str]:
    """The command line to start: the server's own, or inside bubblewrap."""
    if sandbox is None or not sandbox.isolate:
        return [command, *args]
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxError("sandbox.isolate needs bubblewrap (Debian: apt-get install bubblewrap)")
    wrapped = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for path in [*([cwd] if cwd else []), *sandbox.writable]:
        real = os.path.realpath(os.path.expanduser(path))
        wrapped += ["--bind", real, real]
    if not sandbox.network:
        wrapped.append("--unshare-net")
    wrapped += ["--die-with-parent", "--", command, *args]  # no --new-session: the watch follows the session
    return wrapped


def preexec(sandbox: Sandbox | None, then: Callable[[], None]) -> Callable[[], None]:
    """What the child runs between fork and exec: `then` (die with the hub), its rlimits, its user."""
    if sandbox is None:
        return then
    user = None
    if sandbox.user is not None:
        try:
            user = pwd.getpwnam(sandbox.user)  # looked up here: NSS in a forked child can hang
        except KeyError:
            raise SandboxError(f"sandbox.user: no user {sandbox.user!r} on this machine") from None
        if os.geteuid() != 0 and user.pw_uid != os.geteuid():
            raise SandboxError(f"sandbox.user {sandbox.user!r}: the hub must run as root to switch users")
    limits: list[tuple[int, tuple[int, int]]] = []
    if sandbox.cpu_seconds is not None:  # SIGXCPU at the soft limit, SIGKILL a second later
        limits.append((resource.RLIMIT_CPU, (sandbox.cpu_seconds, sandbox.cpu_seconds + 1)))
    if sandbox.open_files is not None:
        limits.append((resource.RLIMIT_NOFILE, (sandbox.open_files, sandbox.open_files)))
    if sandbox.processes is not None:  # the kernel counts per user, and not for root: see `watch` too
        limits.append((resource.RLIMIT_NPROC, (sandbox.processes, sandbox.processes)))

    def run() -> None:
        then()
        for which, value in limits:
            resource.setrlimit(which, value)
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

    return run


def child_env_for(sandbox: Sandbox | None, env: dict[str, str]) -> dict[str, str]:
    """The environment, with HOME/USER/LOGNAME of the `user` it runs as (not the hub's)."""
    if sandbox is None or sandbox.user is None:
        return env
    user = pwd.getpwnam(sandbox.user)
    return {**env, "HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name}


def usage(session: int) -> Usage:
    """Resident memory and process count of every process in `session` (the child started one)."""
    rss = processes = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            if int(fields[3]) != session:  # after the command: state, ppid, pgrp, session
                continue
            with open(f"/proc/{entry.name}/statm", "rb") as statm:
                rss += int(statm.read().split()[1]) * PAGE
            processes += 1
        except (OSError, IndexError, ValueError):
            continue  # it ended while being read
    return Usage(rss, processes)


def over(sandbox: Sandbox, now: Usage) -> str | None:
    """Why the child must stop (None: within its limits)."""
    if sandbox.memory_mb is not None and now.rss_bytes > sandbox.memory_mb * 1024 * 1024:
        used = now.rss_bytes / (1024 * 1024)
        return f"{OVER_LIMIT}: memory {used:.0f} MiB > sandbox.memoryMB {sandbox.memory_mb}"
    if sandbox.processes is not None and now.processes > sandbox.processes:
        return f"{OVER_LIMIT}: {now.processes} processes > sandbox.processes {sandbox.processes}"
    return None


def exit_reason(sandbox: Sandbox | None, code: int | None) -> str | None:
    """The limit a child's death shows it ran into, if any (CPU time: SIGXCPU or the SIGKILL after it)."""
    if sandbox is None or sandbox.cpu_seconds is None or code is None:
        return None
    if code in (-signal.SIGXCPU, -signal.SIGKILL):
        return f"{OVER_LIMIT}: CPU time > sandbox.cpuSeconds {sandbox.cpu_seconds}"
    return None


def watched(sandbox: Sandbox | None) -> bool:
    return sandbox is not None and (sandbox.memory_mb is not None or sandbox.processes is not None)
