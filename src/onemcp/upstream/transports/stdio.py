"""stdio upstream transport: a child process speaking newline-delimited JSON-RPC.

Owns the child: spawn with an explicit environment, split stdout into messages (in the
event loop's pipe callback, so a reply reaches its caller without a reader task in
between), copy stderr into the hub's log under the server's name, and stop it (close
stdin, SIGTERM, SIGKILL). Like `h1`, it uses asyncio's protocols directly: this is the
forwarding hot path.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import os
import signal
import sys
import time
from typing import cast

import anyio
import orjson
from anyio.abc import TaskGroup

from onemcp.config.model import MAX_RESPONSE_BYTES, Sandbox, ServerConfig
from onemcp.observability.limits import count, hit
from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import INTERNAL_ERROR
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream import sandbox
from onemcp.upstream.transports.base import Deliver, Fail, Transport, TransportClosed, TransportError

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
PR_SET_PDEATHSIG = 1
WRITE_HIGH_WATER = 1024 * 1024
STDERR_TAIL = 40  # the last lines of a server's stderr kept for /api/v1/servers (across restarts)
STDERR_LINES_PER_SECOND = 100  # of one server's stderr written to the hub's log; the rest counted
STDERR_LINE_BYTES = 4096  # of one stderr line, logged (100 lines a second: 400 KB a second at most)
# A child that exits closes its stdout first: its exit, arriving within this, says why (code, stderr);
# past it, the end of stdout alone ends the connection (the process lives on, mute). One whose stderr
# ended too is most likely exiting (a slow exit: atexit handlers, a loaded machine): it gets STOP_GRACE more.
STDOUT_EOF_GRACE = 1.0
STDOUT_CLOSED = "stdout closed while the process was still running"
# A child that dies at once closes its stdin before its exit is seen: a send waits this long for the exit,
# whose code and last stderr line say why ("not connected" said nothing, in /health and the log)
EXIT_WAIT = 1.0


def die_with_parent() -> None:
    """In the child, before exec: on Linux, be killed when the hub dies, however it dies; and keep
    nothing of the hub's but its stdin, stdout and stderr (`only_stdio`).

    Graceful stops close stdin, then SIGTERM, then SIGKILL; this covers the hub itself
    being killed (no orphans, ever). Elsewhere it does nothing.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    only_stdio()


def only_stdio() -> None:
    """In the child, before exec: every descriptor past stderr closes at the exec.

    uvloop (the loop `onemcp serve` runs on) has no `close_fds`: a child kept a second copy of each
    end of its own stdin, stdout and stderr (fds 13, 17, 19, say), so a server that closed its stdout
    never reached end of file (it needs every copy closed) and was taken for ready until a call's
    timeout, and whatever it started held the hub's pipes too. This runs before the loop puts the
    pipes on 0, 1 and 2 (those copies are made without the flag). asyncio's own close_fds makes it a
    no-op there."""
    try:
        names = os.listdir("/proc/self/fd")  # the descriptors open, not every number up to the fd limit
    except OSError:
        return  # no /proc (macOS): the loop's own rules apply
    for name in names:
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):  # the directory listdir read, closed by now
                os.set_inheritable(fd, False)


def _signal_group(pid: int, sig: int) -> bool:
    """Signal the process group a child leads (each runs in its own session); False when none of it is
    left (or the platform has no process groups)."""
    killpg = getattr(os, "killpg", None)
    if killpg is None:
        return False
    try:
        killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k in INHERITED_ENV if (v := os.environ.get(k)) is not None}
    env.update(extra)
    return env


OVER_ENDS = 256  # bytes kept of each end of a line past the limit: enough to tell whose reply it is


def _ends(pieces: list[bytes]) -> tuple[bytes, bytes]:
    """The first and the last OVER_ENDS bytes of the line held in `pieces` (never joined whole)."""
    head = tail = b""
    for piece in pieces:
        head += piece[: OVER_ENDS - len(head)]
        if len(head) >= OVER_ENDS:
            break
    for piece in reversed(pieces):
        tail = piece[-(OVER_ENDS - len(tail)) :] + tail
        if len(tail) >= OVER_ENDS:
            break
    return head, tail


class _Over:
    """A line past the limit, read on to its end without being held: a reply's id (once known), its last bytes."""

    def __init__(self, head: bytes, tail: bytes, rid: jsonrpc.RequestId | None) -> None:
        self.head, self.tail, self.rid = head, tail, rid

    def more(self, data: bytes) -> None:
        self.tail = data[-OVER_ENDS:] if len(data) >= OVER_ENDS else (self.tail + data)[-OVER_ENDS:]


class _ChildProtocol(asyncio.SubprocessProtocol):
    """Pipe callbacks: stdout lines become messages, stderr lines become log records.

    Linear in what the child writes: an unfinished stdout line is kept in the pieces it came in
    (joined once, when it ends), and only new bytes are searched for line ends. A line past the
    limit is a reply too large to forward: its call fails with the reason, the rest of the line is
    read and dropped, and the server goes on serving the other calls; a line past the limit that is
    not plainly a reply stops the server (nothing else can be told of it).
    """

    def __init__(self, owner: StdioTransport, deliver: Deliver) -> None:
        self.owner = owner
        self.deliver = deliver
        self.limit = owner.config.max_response_bytes or MAX_RESPONSE_BYTES  # of one line
        self._out: list[bytes] = []  # the unfinished stdout line
        self._out_size = 0
        self._refused = False  # a line passed the limit: the child is being stopped
        self._over: _Over | None = None  # a reply past the limit, read on to its end
        self._err = b""
        # a server's stderr is logged at most STDERR_LINES_PER_SECOND lines a second; the rest counted
        self._err_window, self._err_logged, self._err_dropped = 0.0, 0, 0
        self.exited = asyncio.Event()
        self.drained = asyncio.Event()  # stdin holds at most WRITE_HIGH_WATER unread (clear: a writer waits)
        self.drained.set()
        self._process: asyncio.SubprocessTransport | None = None
        self._eof: asyncio.TimerHandle | None = None
        self._stderr_open = True
        self._read_on_later: asyncio.TimerHandle | None = None  # stdout's reading stopped until then
        self._held = b""  # the rest of the read that overdrew the budget, handled when the pause is over

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self._stdout(data)
        else:
            self._stderr(data)

    def _stdout_pipe(self) -> asyncio.ReadTransport | None:
        pipe = self._process.get_pipe_transport(1) if self._process is not None else None
        return cast(asyncio.ReadTransport, pipe) if pipe is not None and not pipe.is_closing() else None

    def _pause(self, wait: float, held: bytes) -> None:
        """A line overdrew the server's message budget: the rest of this read (`held`) waits `wait` seconds,
        and stdout is not read meanwhile (the pipe fills and the child waits to write; `budget.py`)."""
        self._held = held
        if (pipe := self._stdout_pipe()) is not None:
            pipe.pause_reading()
        self._read_on_later = asyncio.get_running_loop().call_later(wait, self._read_on)

    def _read_on(self) -> None:
        """The pause is over: what was held first (it may pause again), then stdout again."""
        self._read_on_later = None
        held, self._held = self._held, b""
        if held and not self.owner.closed.is_set():  # closed meanwhile (it exited, it was stopped): dropped
            self._stdout(held)
        if self._read_on_later is None and (pipe := self._stdout_pipe()) is not None:
            pipe.resume_reading()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        """The end of stdout is the end of the conversation, as for any MCP client: nothing the server
        says can arrive any more. Unless the child's exit follows at once (it says why), close."""
        if fd == 2:
            self._stderr_open = False
        elif fd == 1:
            self._last_line()
            if not self.exited.is_set():
                self._eof = asyncio.get_running_loop().call_later(STDOUT_EOF_GRACE, self._stdout_closed, True)

    def _last_line(self) -> None:
        """The end of stdout ends its last line too: a server's final reply, written without a newline
        as it exits, is still its reply."""
        if self._over is not None and not self._refused:
            self._over_ended()
        elif self._out and not self._refused:
            line, self._out, self._out_size = b"".join(self._out), [], 0
            self._line(line)

    def _stdout_closed(self, first: bool) -> None:
        if first and not self._stderr_open and not self.exited.is_set():
            self._eof = asyncio.get_running_loop().call_later(STOP_GRACE, self._stdout_closed, False)
        elif not self.exited.is_set():
            self.owner.log.warning("%s: stopping it", STDOUT_CLOSED)
            self.owner.abort(STDOUT_CLOSED)  # the connection fails its calls; `aclose` stops the process group

    def _stdout(self, data: bytes) -> None:
        if self._refused:
            return
        if self._over is not None:  # the rest of a reply past the limit: read, not held
            end = data.find(b"\n")
            self._over.more(data if end < 0 else data[:end])
            if end < 0:
                return
            self._over_ended()
            if self._refused:
                return
            data = data[end + 1 :]
        lines = data.split(b"\n")
        tail = lines.pop()
        if lines and self._out:
            self._out.append(lines[0])
            lines[0] = b"".join(self._out)
            self._out, self._out_size = [], 0
        budget = self.owner.budget
        for i, line in enumerate(lines):
            if len(line) > self.limit:
                self._passed_limit(line[:OVER_ENDS], line[-OVER_ENDS:])
                if self._over is not None:
                    self._over_ended()
            else:
                self._line(line)
            if self._refused:
                return
            if wait := budget.owed():  # the rest of this read waits, unparsed: the pause is one line's debt
                self._pause(wait, b"".join(rest + b"\n" for rest in lines[i + 1 :]) + tail)
                return
        if tail:
            self._out.append(tail)
            self._out_size += len(tail)
            if self._out_size > self.limit:
                ends = _ends(self._out)
                self._out, self._out_size = [], 0
                self._passed_limit(*ends)

    def _line(self, line: bytes) -> None:
        """One line of stdout (within the limit): its message is delivered; anything else is logged."""
        if not line.strip():
            return
        try:
            msg = jsonrpc.load_bounded(line, f"upstream {self.owner.name}")
        except orjson.JSONDecodeError:
            self.owner.stray_stdout = line[:200]  # a server logging to stdout: why its start may time out
            self.owner.log.ignored("non-JSON line on stdout ignored: %.200r", line)
            return
        except jsonrpc.TooDeep as exc:
            self.owner.log.ignored("a message on stdout was ignored: it %s", exc)
            return
        if isinstance(msg, dict):
            self.deliver(msg, None)
        else:
            self.owner.log.ignored("non-object JSON on stdout ignored: %.200r", line)

    def _passed_limit(self, head: bytes, tail: bytes) -> None:
        """A line passed the limit: a reply fails its call (now, when its head names it, else at its end),
        and the rest of it is read unheld; anything else stops the server."""
        hit("response_bytes", "upstream %s sent a message over %d bytes", self.owner.name, self.limit)
        reply, rid = jsonrpc.reply_head(head)
        if not reply:
            self._refuse()
            return
        self._over = _Over(head, tail, rid)
        if rid is not None:
            self._too_large(rid)

    def _over_ended(self) -> None:
        over, self._over = self._over, None
        assert over is not None
        if over.rid is not None:
            return  # its call was told when the line passed the limit
        rid = jsonrpc.reply_id(over.head + over.tail)  # written result first: its id ends it
        if rid is None:
            self._refuse()
        else:
            self._too_large(rid)

    def _too_large(self, rid: jsonrpc.RequestId) -> None:
        why = f"response exceeded maxResponseBytes ({self.limit} bytes)"
        self.deliver(jsonrpc.error(rid, {"code": INTERNAL_ERROR, "message": why}), None)

    def _refuse(self) -> None:
        """A message passed the limit: drop what is held and stop the child, saying why."""
        self._refused = True
        self._out, self._out_size = [], 0
        self.owner.stop(f"stopped: a message on stdout exceeded maxResponseBytes ({self.limit} bytes)")

    def _stderr(self, data: bytes) -> None:
        *lines, self._err = (self._err + data).split(b"\n")
        if len(self._err) > 65536:
            lines.append(self._err)
            self._err = b""
        for line in lines:
            now = time.monotonic()
            if now - self._err_window >= 1.0:
                self._flush_dropped()
                self._err_window, self._err_logged = now, 0
            text = line[:STDERR_LINE_BYTES].decode(errors="replace").rstrip()
            if len(line) > STDERR_LINE_BYTES:  # a line of megabytes (or none at all) logs its start
                text += f" ... ({len(line)} bytes in all)"
            self.owner.stderr_tail.append(text[:1000])  # every line: the last ones say why it died
            if self._err_logged < STDERR_LINES_PER_SECOND:
                self._err_logged += 1
                self.owner.log.info("stderr: %s", text)
            else:
                self._err_dropped += 1

    def _flush_dropped(self) -> None:
        if self._err_dropped:
            count("log_lines", self._err_dropped)
            self.owner.log.warning("stderr: %d more lines were not logged (flood)", self._err_dropped)
            self._err_dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._process = cast(asyncio.SubprocessTransport, transport)

    def pause_writing(self) -> None:  # stdin's buffer passed its high water (set to WRITE_HIGH_WATER)
        self.drained.clear()

    def resume_writing(self) -> None:  # the child read it back down to WRITE_HIGH_WATER
        self.drained.set()

    def process_exited(self) -> None:
        self._flush_dropped()  # a flood that ended with the process is still counted
        self.exited.set()
        if self._eof is not None:
            self._eof.cancel()
        # the code from the process's own transport: a child that exits at once may do so before the
        # spawn returned it to the owner
        self.owner.child_exited(self._process.get_returncode() if self._process is not None else None)


def _exit_said(code: int | None) -> str:
    """ "process exited with code 1", or for a negative code, the signal that ended it (an operator's kill,
    the OOM killer): "process was killed by signal 9 (SIGKILL)"."""
    if code is None or code >= 0:
        return f"process exited with code {code}"
    try:
        name = f" ({signal.Signals(-code).name})"
    except ValueError:
        name = ""
    return f"process was killed by signal {-code}{name}"


class StdioTransport(Transport):
    kind = "stdio"

    def __init__(self, name: str, config: ServerConfig) -> None:
        super().__init__(name, config)
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)  # for the operator
        self.stray_stdout: bytes | None = None  # the last line on stdout that was not JSON
        self._proc: asyncio.SubprocessTransport | None = None
        self._protocol: _ChildProtocol | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._waiting = anyio.Lock()  # writers waiting for a child slow to read its stdin, one at a time

    @property
    def pid(self) -> int | None:
        return self._proc.get_pid() if self._proc is not None else None

    async def open(self, tg: TaskGroup, deliver: Deliver, fail: Fail) -> None:
        assert self.config.command is not None
        loop = asyncio.get_running_loop()
        protocol = _ChildProtocol(self, self.budget.counted(deliver))
        box = self.config.sandbox
        try:
            command = sandbox.argv(box, self.config.command, self.config.args, self.config.cwd)
            setup = sandbox.preexec(box, die_with_parent)
            env = sandbox.child_env_for(box, child_env(self.config.env))
        except sandbox.SandboxError as exc:
            raise TransportError(str(exc)) from None
        try:
            # Shielded: cancelled halfway, asyncio kills the child but its wait for the exit is cancelled
            # too, and the unreaped child leaks. Spawning is quick; a cancel lands right after, and
            # `aclose` then stops the child it knows about.
            with anyio.CancelScope(shield=True):
                proc, _ = await loop.subprocess_exec(
                    lambda: protocol,
                    *command,
                    env=env,
                    cwd=self.config.cwd,
                    start_new_session=True,
                    preexec_fn=setup,
                )
        except FileNotFoundError:
            cwd = self.config.cwd
            if cwd is not None and not await anyio.Path(cwd).is_dir():  # the spawn says the same of a missing cwd
                raise TransportError(f"working directory not found: {cwd}") from None
            raise TransportError(f"command not found: {self.config.command}") from None
        except PermissionError:
            raise TransportError(f"command not executable: {self.config.command}") from None
        except OSError as exc:
            raise TransportError(f"cannot start {self.config.command}: {exc}") from None
        self._proc = proc
        self._protocol = protocol
        self._stdin = cast(asyncio.WriteTransport, proc.get_pipe_transport(0))
        # uvloop: a child that exited at once may have closed its stdin pipe before the spawn returned, and
        # the pipe then refuses this (RuntimeError); nothing will be written to it, and its exit is reported
        with contextlib.suppress(RuntimeError):
            self._stdin.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_HIGH_WATER)  # `protocol.drained`
        if proc.get_returncode() is not None:
            self.child_exited()
        elif box is not None and sandbox.watched(box):
            tg.start_soon(self._watch, box, proc.get_pid())

    async def _watch(self, box: Sandbox, pid: int) -> None:
        """Stop the child once it (with everything it started) is over its memory or process limit."""
        while not self.closed.is_set():
            reason = sandbox.over(box, await anyio.to_thread.run_sync(sandbox.usage, pid))
            if reason is not None:
                self.stderr_tail.append(f"[onemcp] {reason}")
                self.stop(reason)
                return
            with anyio.move_on_after(sandbox.POLL):
                await self.closed.wait()

    def did_not_start(self) -> str:
        said = super().did_not_start()
        last = next((line for line in reversed(self.stderr_tail) if line.strip()), None)
        if last is not None:
            said += f"; its last stderr line: {last.strip()[:300]}"
        if self.stray_stdout is not None:  # the hub reads only JSON-RPC there: its logs belong on stderr
            said += f"; on stdout, not JSON-RPC: {self.stray_stdout.decode(errors='replace').strip()[:200]!r}"
        return said

    def child_exited(self, code: int | None = None) -> None:
        if code is None and self._proc is not None:
            code = self._proc.get_returncode()
        limit = sandbox.exit_reason(self.config.sandbox, code)
        if limit is not None:
            self._mark_closed(limit)
            return
        last = next((line for line in reversed(self.stderr_tail) if line.strip()), None)
        said = f"; its stderr ended: {last.strip()[:300]}" if last else ""  # "API_KEY is not set" is the why
        self._mark_closed(f"{_exit_said(code)}{said}")

    def _mark_closed(self, reason: str) -> None:
        super()._mark_closed(reason)
        if self._protocol is not None:  # a writer waiting for the child to read its stdin: it never will
            self._protocol.drained.set()

    def stop(self, reason: str) -> None:
        """Kill the child; `reason` (not its exit code) is what the connection and its callers see."""
        self._mark_closed(reason)
        if self._proc is not None and self._proc.get_returncode() is None:
            self._proc.kill()
        if self._proc is not None:  # and whatever it started (a shell wrapper's server): its own group
            _signal_group(self._proc.get_pid(), signal.SIGKILL)

    async def send(self, message: Message, body: bytes) -> None:
        stdin = self._stdin
        if stdin is None or stdin.is_closing() or self.closed.is_set():
            raise await self._gone_why()
        if stdin.get_write_buffer_size() <= WRITE_HIGH_WATER and not self._waiting.locked():
            stdin.write(body + b"\n")  # synchronous: the pipe transport buffers what the child has not read yet
            return
        await self._send_when_read(body)

    async def _gone_why(self) -> TransportClosed:
        """Why a send cannot be made: a child whose stdin closed is most likely exiting (EXIT_WAIT for it)."""
        if self._stdin is not None and not self.closed.is_set():
            with anyio.move_on_after(EXIT_WAIT):
                await self.closed.wait()
        return self.gone(None if self.closed.is_set() else "its stdin is closed")

    async def _send_when_read(self, body: bytes) -> None:
        """Write once a child slow to read its stdin has read enough, one waiting writer at a time, up to
        the server's timeout. A body is written only when there is room: one that gave up never is, so
        what the hub buffers for a child that stopped reading is bounded (high water plus one body)."""
        try:
            with anyio.fail_after(self.config.timeout):
                async with self._waiting:
                    while (stdin := self._stdin) is not None and stdin.get_write_buffer_size() > WRITE_HIGH_WATER:
                        if self.closed.is_set() or (protocol := self._protocol) is None:
                            break
                        await protocol.drained.wait()  # set again by `_mark_closed` too
                    if stdin is None or stdin.is_closing() or self.closed.is_set():
                        raise await self._gone_why()
                    stdin.write(body + b"\n")
        except TimeoutError:
            raise TransportError("the server is not reading its input") from None

    async def aclose(self) -> None:
        proc, self._proc = self._proc, None
        protocol, stdin, self._stdin = self._protocol, self._stdin, None
        if protocol is not None:  # a writer waiting for the child to read: its stdin is gone
            protocol.drained.set()
        if proc is None or protocol is None:
            self._mark_closed("stopped")
            return
        with anyio.CancelScope(shield=True):
            if stdin is not None:
                stdin.close()
            pid = proc.get_pid()
            for step in (None, signal.SIGTERM, signal.SIGKILL):
                if proc.get_returncode() is not None:
                    break
                # to its group: a wrapper (`sh -c ...`) and the server it started
                if step is not None and not _signal_group(pid, step):
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(step)
                with anyio.move_on_after(STOP_GRACE):
                    await protocol.exited.wait()
            _signal_group(pid, signal.SIGKILL)  # what of its group outlived it (ignored SIGTERM, detached)
            proc.close()
        self._mark_closed("stopped")
