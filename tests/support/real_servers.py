"""Locate and start real, third-party MCP servers for integration tests.

The npm servers (``@modelcontextprotocol/server-everything`` and ``server-memory``) are
pinned in ``tests/npm/package.json`` and installed into ``tests/npm/node_modules`` by
``scripts/test``. The Python servers (``mcp-server-time``, ``mcp-server-git``) come from
the project's virtualenv.

Everything here binds to loopback only: the HTTP server is started with the
``bind-loopback.cjs`` preload, which forces every ``net.Server#listen`` onto 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

import anyio
from anyio.abc import Process

__all__ = [
    "BIND_LOOPBACK_PRELOAD",
    "LOOPBACK_HOST",
    "NODE_MODULES",
    "RealServerUnavailableError",
    "everything_stdio_command",
    "free_loopback_port",
    "git_stdio_command",
    "memory_env",
    "memory_stdio_command",
    "node_binary",
    "running_everything_http",
    "time_stdio_command",
]

LOOPBACK_HOST = "127.0.0.1"

_SUPPORT_DIR = Path(__file__).resolve().parent
REPO_ROOT = _SUPPORT_DIR.parent.parent
NPM_DIR = REPO_ROOT / "tests" / "npm"
NODE_MODULES = NPM_DIR / "node_modules"
BIND_LOOPBACK_PRELOAD = _SUPPORT_DIR / "bind-loopback.cjs"

_EVERYTHING_ENTRY = NODE_MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
_MEMORY_ENTRY = NODE_MODULES / "@modelcontextprotocol" / "server-memory" / "dist" / "index.js"

_POLL_INTERVAL = 0.05
_STOP_TIMEOUT = 5.0
_PORT_ATTEMPTS = 3


class RealServerUnavailableError(RuntimeError):
    """A real test server cannot be started because something is not installed."""


def node_binary() -> str:
    """Path of the ``node`` executable (``ONEMCP_TEST_NODE`` overrides the PATH lookup)."""
    found = os.environ.get("ONEMCP_TEST_NODE") or shutil.which("node")
    if not found:
        raise RealServerUnavailableError(
            "`node` was not found on PATH; the npm MCP test servers need Node.js >= 20. "
            "Run scripts/test, which installs it (as root) and the npm test servers."
        )
    return found


def _npm_entry(entry: Path) -> str:
    if not entry.is_file():
        raise RealServerUnavailableError(
            f"{entry} does not exist: the npm MCP test servers are not installed. "
            "Run scripts/test (it runs `npm ci` in tests/npm)."
        )
    return str(entry)


def everything_stdio_command() -> list[str]:
    """Command line for ``@modelcontextprotocol/server-everything`` over stdio."""
    return [node_binary(), _npm_entry(_EVERYTHING_ENTRY), "stdio"]


def memory_stdio_command() -> list[str]:
    """Command line for ``@modelcontextprotocol/server-memory`` over stdio.

    Without ``MEMORY_FILE_PATH`` the server keeps its graph next to its own code inside
    node_modules; tests that write to it should pass :func:`memory_env` as the environment.
    """
    return [node_binary(), _npm_entry(_MEMORY_ENTRY)]


def memory_env(memory_file: Path) -> dict[str, str]:
    """Extra environment that points server-memory's store at ``memory_file`` (a .jsonl path)."""
    return {"MEMORY_FILE_PATH": str(memory_file.resolve())}


def time_stdio_command() -> list[str]:
    """Command line for the ``mcp-server-time`` package installed in this interpreter."""
    return [sys.executable, "-m", "mcp_server_time"]


def git_stdio_command(repo: Path) -> list[str]:
    """Command line for the ``mcp-server-git`` package, serving the git repository ``repo``."""
    return [sys.executable, "-m", "mcp_server_git", "--repository", str(repo)]


def free_loopback_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK_HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def _read_log(log: IO[bytes]) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode("utf-8", errors="replace").strip()


class _PortTakenError(RuntimeError):
    """The server lost the race for its port (EADDRINUSE) before it could listen."""


async def _wait_until_listening(process: Process, port: int, log: IO[bytes], limit_s: float) -> None:
    try:
        with anyio.fail_after(limit_s):
            while True:
                if process.returncode is not None:
                    output = _read_log(log)
                    error = _PortTakenError if "already in use" in output else RuntimeError
                    raise error(
                        f"server-everything (pid {process.pid}) exited with code {process.returncode} "
                        f"before accepting connections on {LOOPBACK_HOST}:{port}. Output:\n{output}"
                    )
                try:
                    stream = await anyio.connect_tcp(LOOPBACK_HOST, port)
                except OSError:
                    await anyio.sleep(_POLL_INTERVAL)
                else:
                    await stream.aclose()
                    return
    except TimeoutError:
        raise RuntimeError(
            f"server-everything (pid {process.pid}) did not accept connections on "
            f"{LOOPBACK_HOST}:{port} within {limit_s}s. Output:\n{_read_log(log)}"
        ) from None


async def _stop(process: Process) -> None:
    """Terminate ``process`` by PID, wait with a deadline, then kill; safe under cancellation."""
    with anyio.CancelScope(shield=True):
        if process.returncode is None:
            process.terminate()
            with anyio.move_on_after(_STOP_TIMEOUT):
                await process.wait()
        if process.returncode is None:
            process.kill()
            with anyio.move_on_after(_STOP_TIMEOUT):
                await process.wait()
        await process.aclose()


@asynccontextmanager
async def running_everything_http(
    *, startup_timeout: float = 30.0, port: int | None = None, transport: str = "http"
) -> AsyncIterator[str]:
    """Run server-everything in ``streamableHttp`` mode on a free loopback port (or on `port`: a restart);
    `transport="sse"`: in its legacy HTTP+SSE mode instead.

    Yields the MCP endpoint URL, ``http://127.0.0.1:<port>/mcp`` (``.../sse``); the server is stopped on exit.
    If another process grabs the chosen port before the server binds it, a new port is tried
    (not when `port` was given).
    """
    entry = _npm_entry(_EVERYTHING_ENTRY)
    if transport not in ("http", "sse"):
        raise ValueError(f"transport must be 'http' or 'sse', not {transport!r}")
    mode, path = ("sse", "/sse") if transport == "sse" else ("streamableHttp", "/mcp")
    command = [node_binary(), "--require", str(BIND_LOOPBACK_PRELOAD), entry, mode]
    # The server logs every request to stdout; a file (not a pipe nobody reads) can't fill up and block it.
    with tempfile.TemporaryFile(prefix="server-everything-") as log:
        attempts = 1 if port is not None else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            chosen = port or free_loopback_port()
            log.seek(0)
            log.truncate()
            process = await anyio.open_process(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PORT": str(chosen)},
                cwd=str(NPM_DIR),
            )
            try:
                try:
                    await _wait_until_listening(process, chosen, log, startup_timeout)
                except _PortTakenError:
                    if attempt == attempts:
                        raise
                    continue
                yield f"http://{LOOPBACK_HOST}:{chosen}{path}"
                return
            finally:
                await _stop(process)
