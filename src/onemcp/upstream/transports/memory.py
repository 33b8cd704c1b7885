"""In-memory upstream transport: an MCP server running in the hub's own process and event loop.

Owns a pair of anyio memory object streams, one serialised JSON-RPC message per item (each side
decodes its own copy, as over a pipe: hub and server never share a dict), and the task that
serves the connection. Does not own the server: a `Serve` callable serves one connection over
the two streams and returns when its input ends (`onemcp.demo.memory.serve_streams` for the
demo kit's servers). No config field selects it; a transport factory does (tests, embedding).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import orjson
from anyio.abc import ObjectReceiveStream, ObjectSendStream, TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from onemcp.config.model import MAX_RESPONSE_BYTES, ServerConfig
from onemcp.observability.limits import hit
from onemcp.protocol import jsonrpc
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream.transports.base import Deliver, Fail, Transport, TransportError

Serve = Callable[[ObjectReceiveStream[bytes], ObjectSendStream[bytes]], Awaitable[None]]
"""Serves one connection: reads the hub's messages from the first stream, writes its own to the second."""
BUFFER = 64  # messages in flight each way before a sender waits (a pipe's buffer)
STOP_GRACE = 2.0  # for a server whose input ended to finish its requests and return; then it is cancelled


class MemoryTransport(Transport):
    kind = "memory"

    def __init__(self, name: str, config: ServerConfig, serve: Serve) -> None:
        super().__init__(name, config)
        self._serve = serve
        self._to_server: ObjectSendStream[bytes] | None = None
        self._server = anyio.CancelScope()  # the server's task: cancelled, as a process is killed
        self._stopped = anyio.Event()  # set when the server's task has ended
        self._exit: str | None = None  # how it ended
        self._untaken: list[MemoryObjectReceiveStream[bytes] | MemoryObjectSendStream[bytes]] = []

    async def open(self, tg: TaskGroup, deliver: Deliver, fail: Fail) -> None:
        to_server, server_input = anyio.create_memory_object_stream[bytes](BUFFER)
        server_output, from_server = anyio.create_memory_object_stream[bytes](BUFFER)
        self._untaken = [server_input, server_output, from_server]  # `aclose` closes them if no task took them
        self._to_server = to_server
        await tg.start(self._run_server, server_input, server_output)
        await tg.start(self._read, from_server, deliver)

    async def _run_server(
        self,
        receive: ObjectReceiveStream[bytes],
        send: ObjectSendStream[bytes],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        reason = "stopped"  # cancelled: with the connection, or by `aclose`
        self._untaken = [end for end in self._untaken if end is not receive and end is not send]
        try:
            task_status.started()  # from now on its end is always signalled
            with self._server:
                await self._serve(receive, send)
                reason = "server stopped"
        except Exception as exc:  # the boundary: a failing server is this upstream's end, never the hub's
            self.log.exception("in-memory server failed")
            reason = f"server failed: {exc!r}"
        finally:
            self._exit = reason  # before its output ends: the reader reports it
            with anyio.CancelScope(shield=True):
                await receive.aclose()
                await send.aclose()
            self._stopped.set()

    async def _read(
        self,
        stream: ObjectReceiveStream[bytes],
        deliver: Deliver,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        limit = self.config.max_response_bytes or MAX_RESPONSE_BYTES
        self._untaken = [end for end in self._untaken if end is not stream]
        async with stream:
            task_status.started()
            async for body in stream:
                if not self._take(body, deliver, limit):
                    return
                del body  # not held while the next one is awaited (a message may be megabytes)
        # every message the server wrote was delivered: only now is it gone
        self._mark_closed(self._exit or "server stopped")

    def _take(self, body: bytes, deliver: Deliver, limit: int) -> bool:
        """Deliver one message the server wrote; False when it was over `limit` (the connection stops)."""
        if len(body) > limit:
            hit("response_bytes", "upstream %s sent a message over %d bytes", self.name, limit)
            self._mark_closed(f"stopped: a message exceeded maxResponseBytes ({limit} bytes)")
            return False
        try:
            msg = jsonrpc.load_bounded(body, f"upstream {self.name}")
        except orjson.JSONDecodeError:
            self.log.warning("non-JSON message ignored: %.200r", body)
            return True
        except jsonrpc.TooDeep as exc:
            self.log.warning("a message was ignored: it %s", exc)
            return True
        if isinstance(msg, dict):
            deliver(msg, None)
        else:
            self.log.warning("non-object JSON ignored: %.200r", body)
        return True

    async def send(self, message: Message, body: bytes) -> None:
        stream = self._to_server
        if stream is None or self.closed.is_set():
            raise self.gone()
        try:
            with anyio.fail_after(self.config.timeout):
                await stream.send(body)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise self.gone(self.close_reason or self._exit or "server stopped") from None
        except TimeoutError:
            raise TransportError("the server is not reading its input") from None

    async def aclose(self) -> None:
        self._mark_closed("stopped")
        stream, self._to_server = self._to_server, None
        untaken, self._untaken = self._untaken, []
        for end in untaken:  # stopped while it was being opened: no task owns these ends
            end.close()
        if stream is None:
            return
        with anyio.CancelScope(shield=True):
            await stream.aclose()  # the server's input ends: it finishes its requests and returns
            with anyio.move_on_after(STOP_GRACE):
                await self._stopped.wait()
            self._server.cancel()
            with anyio.move_on_after(STOP_GRACE):  # only a server shielding itself makes this wait
                await self._stopped.wait()
