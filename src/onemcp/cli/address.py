"""The address an HTTP hub listens on: taken before anything is written, and why it cannot be had.

Owns binding the socket (not listening on it: `serve` listens once its config passed every check) and
the message for an address that cannot be had. `serve` takes it before it writes a starter config or its
lock; `start` takes it too, to fail as `serve` does before it writes the starter config or a log, and lets
it go for the hub it spawns. Also the open-network rule's words (no authentication: loopback only), which
both check before a starter config (it has no authentication) is written. Light: `start` imports it.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from onemcp.config.paths import named_by
from onemcp.config.runtime import NoHub, lock_holder, read_runtime
from onemcp.http.guard import is_loopback

OPEN_NETWORK_FLAG = "--i-know-this-is-unauthenticated-and-exposed"  # `serve`'s, `start`'s and `restart`'s
FREE_PORT_HINT = "; another program listens there: choose another --port (--port 0 takes a free one)"


def unbracketed(host: str) -> str:
    """`[::1]`, as in a URL, is the address `::1`."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def take(host: str, port: int, config_path: Path) -> socket.socket | str:
    """The address bound, not listened on yet; or why it cannot be had (a mistyped host, a busy port)."""
    try:  # first: a mistyped address must not read as some other failure
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return f"cannot bind --host {host!r}: not an address or host name ({exc})"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio then sets TCP_NODELAY
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        return refusal(host, port, exc, config_path)
    sock.set_inheritable(False)  # never a child's: an upstream holding it would keep the port after the hub
    return sock


def in_use(host: str, port: int) -> bool:
    """Is `host:port` bound by some process now (a bind of it fails so)?"""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def refusal(host: str, port: int, exc: OSError, config_path: Path) -> str:
    """Why the address cannot be had: this directory's hub has it, or some other program."""
    if exc.errno == errno.EADDRINUSE and lock_holder(config_path) not in (None, os.getpid()):
        return already_running(config_path)
    return f"cannot bind {host}:{port}: {exc.strerror}{FREE_PORT_HINT if exc.errno == errno.EADDRINUSE else ''}"


def already_running(config_path: Path) -> str:
    try:
        running = read_runtime(config_path)
        where = f" (pid {running.get('pid')}, {running.get('url')})"
    except NoHub:
        where = ""
    return f"a hub is already running for {config_path.parent}{where}; `onemcp stop` ends it"


def unauthenticated(host: str, auth_required: bool, *, override: str | None = None) -> str | None:
    """Why a hub may not listen on `host` with no authentication (anyone who reaches it could run its
    tools): None for a loopback address or a hub with auth. `override` names the flag that allows it."""
    if auth_required or is_loopback(host.strip("[]")):
        return None
    return (
        f"refusing to serve {host} with no authentication: anyone who can reach it could run your tools. "
        f"Configure onemcp.auth (apiKeys, jwt or oauth){', ' if override else ' or '}bind 127.0.0.1"
        f"{f', or pass {override}' if override else ''}."
    )


def exposed_starter(config_path: Path, named: str | None, host: str, override: str | None) -> str | None:
    """No config yet, so the starter one (no authentication) would be written, for a hub on an open address
    that is refused without it: why, before anything is written. None otherwise (a config is there, or a
    missing one was named, which is refused as such)."""
    if config_path.exists() or named_by(named):
        return None
    refused = unauthenticated(host, False, override=override)
    return refused and f"{refused} No config was found, and the starter one has no authentication: nothing was written."
