"""stdio upstream transport: a child process speaking newline-delimited JSON-RPC.

Owns the child: spawn with an explicit environment, read stdout lines, copy stderr into
the hub's log under the server's name, and stop it (close stdin, SIGTERM, SIGKILL).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess

import anyio
import orjson
from anyio.abc import Process, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

from onemcp.config.model import ServerConfig
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream.transport import Deliver, Fail, Transport, TransportError

MAX_LINE = 64 * 1024 * 1024
# What a child inherits from the hub unless the config sets it: enough to find programs
# and a home directory, nothing that could carry the hub's own secrets.
INHERITED_ENV = (
    "HOME",
    "LOGNAME",
    "PATH",
    "SHELL",
    "TERM",
    "USER",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "TZ",
    "SYSTEMROOT",
    "APPDATA",
    "LOCALAPPDATA",
    "PROGRAMDATA",
    "USERPROFILE",
    "VIRTUAL_ENV",
    "NODE_PATH",
    "NVM_DIR",
    "PYTHONPATH",
    "UV_CACHE_DIR",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_RUNTIME_DIR",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
STOP_GRACE = 2.0


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k in INHERITED_ENV if (v := os.environ.get(k)) is not None}
    env.update(extra)
    return env


class StdioTransport(Transport):
    kind = "stdio"

    def __init__(self, name: str, config: ServerConfig) -> None:
        super().__init__()
        self.name = name
        self.config = config
        self._proc: Process | None = None
        self._log = logging.getLogger(f"onemcp.upstream.{name}")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def open(self, tg: TaskGroup, deliver: Deliver, fail: Fail) -> None:
        assert self.config.command is not None
        argv = [self.config.command, *self.config.args]
        try:
            self._proc = await anyio.open_process(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=child_env(self.config.env),
                cwd=self.config.cwd,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise TransportError(f"command not found: {self.config.command}") from None
        except PermissionError:
            raise TransportError(f"command not executable: {self.config.command}") from None
        except OSError as exc:
            raise TransportError(f"cannot start {self.config.command}: {exc}") from None
        tg.start_soon(self._read_stdout, deliver)
        tg.start_soon(self._read_stderr)

    async def _read_stdout(self, deliver: Deliver) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        reader = BufferedByteReceiveStream(self._proc.stdout)
        try:
            while True:
                line = await reader.receive_until(b"\n", MAX_LINE)
                if not line.strip():
                    continue
                try:
                    msg = orjson.loads(line)
                except orjson.JSONDecodeError:
                    self._log.warning("non-JSON line on stdout ignored: %.200r", line)
                    continue
                if isinstance(msg, dict):
                    deliver(msg, None)
                else:
                    self._log.warning("non-object JSON on stdout ignored: %.200r", line)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        except anyio.DelimiterNotFound:
            self._log.error("a line on stdout exceeded %d bytes; closing", MAX_LINE)
        code = await self._proc.wait() if self._proc.returncode is None else self._proc.returncode
        self._mark_closed(f"process exited with code {code}")

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        reader = BufferedByteReceiveStream(self._proc.stderr)
        try:
            while True:
                line = await reader.receive_until(b"\n", 1024 * 1024)
                self._log.info("stderr: %s", line.decode(errors="replace").rstrip())
        except (
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.ClosedResourceError,
            anyio.BrokenResourceError,
            anyio.DelimiterNotFound,
        ):
            pass

    async def send(self, message: Message, body: bytes) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or self.closed.is_set():
            raise TransportError(self.close_reason or "not connected")
        try:
            # One write per message (asyncio writes are not interleaved, and concurrent
            # drains are allowed), so no lock is needed.
            await proc.stdin.send(body + b"\n")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise TransportError(f"cannot write to the process: {exc!r}") from None

    async def aclose(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with anyio.CancelScope(shield=True):
            if proc.stdin is not None:
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    await proc.stdin.aclose()
            for step in (None, proc.terminate, proc.kill):
                if step is not None and proc.returncode is None:
                    try:
                        step()
                    except ProcessLookupError:
                        break
                with anyio.move_on_after(STOP_GRACE):
                    await proc.wait()
                if proc.returncode is not None:
                    break
            await proc.aclose()
        self._mark_closed("stopped")
