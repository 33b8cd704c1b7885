"""The seam between a JSON-RPC peer and the bytes that reach an upstream.

A transport moves whole JSON-RPC messages. It does not know what they mean, except what
its wire needs (an HTTP transport reads the session id off the initialize response).
Incoming messages go to a synchronous `Deliver` callback together with the hub id of the
request whose stream they arrived on, when the wire says so (HTTP SSE responses).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

from onemcp.config.model import ServerConfig
from onemcp.observability.limits import count
from onemcp.protocol.errors import UpstreamClosed, UpstreamError
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream.transports.budget import Budget

Deliver = Callable[[Message, "int | str | None"], None]
# A request the transport accepted could not be carried (HTTP error, connection lost):
# the connection answers its caller with an error, or re-initializes on SessionExpired.
Fail = Callable[[Message, "TransportError"], None]

UPSTREAM = "onemcp.upstream"
SERVER = "onemcp_server"  # the attribute of a log record that names its upstream (`ServerLog`)
IGNORED_PER_SECOND = 10  # warnings about a server's messages that were ignored (not JSON, too deep), a second


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """An upstream's log lines, named `onemcp.upstream.<its name>` as the log and the event stream show
    them, through the one `onemcp.upstream` logger, unless a logger of that name was made (a logging
    config or a test set its level): then through that one. Never a logger per name: `logging` keeps
    every logger it ever made, and a template instance (a new name per project or per session) or a
    server a reload removed would leave one behind for as long as the process runs."""

    def __init__(self, server: str, budget: Budget | None = None) -> None:
        super().__init__(logging.getLogger(UPSTREAM), {SERVER: server})
        self.own_name = f"{UPSTREAM}.{server}"
        self.budget = budget  # an ignored message costs its reading as a delivered one does
        self._ignored_window, self._ignored_logged = 0.0, 0

    def ignored(self, msg: str, *args: object) -> None:
        """Warn of a message the server sent that was ignored (a line that is not JSON, an event nested too
        deep), at most IGNORED_PER_SECOND a second: a server that writes a banner line a hundred thousand
        times must not fill (and rotate away) the hub's log, nor hold its event loop for seconds writing
        it. The rest are counted as `log_lines`, and the first one over says so."""
        if self.budget is not None:
            self.budget.take()
        now = time.monotonic()
        if now - self._ignored_window >= 1.0:
            self._ignored_window, self._ignored_logged = now, 0
        self._ignored_logged += 1
        if self._ignored_logged <= IGNORED_PER_SECOND:
            self.warning(msg, *args, stacklevel=2)
            return
        count("log_lines")
        if self._ignored_logged == IGNORED_PER_SECOND + 1:
            self.warning("more ignored messages this second are counted (log_lines), not logged", stacklevel=2)

    def _named(self) -> logging.Logger | None:
        named = logging.Logger.manager.loggerDict.get(self.own_name)  # looked up, not made
        return named if isinstance(named, logging.Logger) else None

    def isEnabledFor(self, level: int) -> bool:
        return (self._named() or self.logger).isEnabledFor(level)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1  # the caller's line, not this one's
        named = self._named()
        if named is not None:
            named.log(level, msg, *args, **kwargs)
        else:
            self.logger.log(level, msg, *args, **{**kwargs, "extra": self.extra})


def _name_record(record: logging.LogRecord) -> bool:
    """A `ServerLog` line is named after its server before any handler sees it."""
    server = record.__dict__.get(SERVER)
    if isinstance(server, str):
        record.name = f"{UPSTREAM}.{server}"
    return True


logging.getLogger(UPSTREAM).addFilter(_name_record)


class TransportError(Exception):
    """The transport cannot carry messages (not started, died, refused)."""

    def for_caller(self, server: str) -> UpstreamError:
        """What the call it could not carry is answered with (-32603, naming the server)."""
        return UpstreamError(server, str(self))


class TransportClosed(TransportError):
    """The upstream went away: its connection closed before the reply, or is closed, or cannot be made.
    The same event on every transport (a stdio server that exited, an HTTP server that dropped the
    connection mid-reply or no longer accepts one, an SSE server's stream that ended): -32000, as the
    calls a closing connection fails (`UpstreamConnection.fail_pending`) are."""

    def for_caller(self, server: str) -> UpstreamError:
        return UpstreamClosed(server, str(self))


class SessionExpired(TransportError):
    """An HTTP upstream answered 404 for our session: re-initialize and retry."""

    def __init__(self, message: str, session: str | None = None) -> None:
        super().__init__(message)
        self.session = session  # the session id the upstream no longer knows


async def _at_once(message: Message) -> None:
    """No connection waits for anything before a resend."""


class Transport(ABC):
    kind: str = "?"

    def __init__(self, name: str, config: ServerConfig) -> None:
        self.name = name
        self.config = config
        # the messages a second it may make the hub read (`budget.py`): each reader stops while it is overdrawn
        self.budget = Budget(name, config.max_messages_per_second)
        self.log = ServerLog(name, self.budget)
        self.closed = anyio.Event()
        self.close_reason: str | None = None
        # Set by the connection after the handshake; HTTP sends it as a header.
        self.protocol_version: str | None = None
        # tool name -> {argument: header}: the upstream's x-mcp-header annotations (modern HTTP)
        self.param_names: dict[str, dict[str, str]] = {}
        # What a message sent again (after a new token, a redirect) waits for first: set by the connection
        # to its cancels in flight (`cancels.py`), which reach the upstream before anything sent after them
        self.before_resend: Callable[[Message], Awaitable[None]] = _at_once

    def gone(self, why: str | None = None) -> TransportClosed:
        """The upstream went away (`why`); without `why`, nothing more can be sent: it closed, or never opened."""
        return TransportClosed(why or self.close_reason or "not connected")

    def _mark_closed(self, reason: str) -> None:
        if not self.closed.is_set():
            self.close_reason = reason
            self.closed.set()

    def did_not_start(self) -> str:
        """Why a start timed out: "did not start within 30s", and what the upstream said meanwhile, if anything."""
        return f"did not start within {self.config.startup_timeout:g}s"

    @abstractmethod
    async def open(self, tg: TaskGroup, deliver: Deliver, fail: Fail) -> None:
        """Connect; background readers are started in `tg`."""

    @abstractmethod
    async def send(self, message: Message, body: bytes) -> None:
        """Send one message (`body` is its serialised form).

        Returns once a request is on its way (its reply comes through `deliver`, or its
        failure through `fail`); notifications and responses are carried to the end.
        Raises TransportError when the message could not be sent at all.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Release everything; must be safe to call twice and under cancellation."""

    def abort(self, reason: str) -> None:
        """Declare the connection dead (it stopped answering); the owner then closes it."""
        self._mark_closed(reason)

    def cancel(self, request_id: int) -> bool:
        """Abort a request on the wire (modern HTTP: closing its stream is the cancellation).

        False when the transport cannot, and the connection sends notifications/cancelled.
        """
        return False

    def forget(self, request_id: int) -> None:  # noqa: B027 - optional hook
        """Stop waiting for a request's reply without cancelling it (`initialize`, which is never
        cancelled): a stream of its own is closed (HTTP), which in the legacy era is no cancellation."""

    def reset_session(self) -> None:  # noqa: B027 - optional hook
        """Forget wire-level session state before a re-handshake (HTTP only)."""
