"""One client connection of the demo/fixture servers: concurrent requests, replies to our own requests, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from onemcp.demo.wire import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    JsonObject,
    JsonRpcError,
    RequestId,
    Send,
    error_message,
)
from onemcp.protocol.methods import LOG_LEVELS


class Server(Protocol):
    """What a connection needs of its server (`kit.Server`)."""

    connections: set[Connection]

    async def handle(self, call: Call) -> JsonObject | None: ...


# --- one client connection -----------------------------------------------------------------------------


class Call:
    """The context of one incoming request, handed to method and tool handlers."""

    def __init__(
        self, connection: Connection, request_id: RequestId, method: str, params: JsonObject, related: Send
    ) -> None:
        self.connection = connection
        self.request_id = request_id
        self.method = method
        self.params = params
        self.related = related

    @property
    def server(self) -> Server:
        return self.connection.server

    @property
    def meta(self) -> JsonObject | None:
        meta = self.params.get("_meta")
        return meta if isinstance(meta, dict) else None

    @property
    def progress_token(self) -> str | int | None:
        token = (self.meta or {}).get("progressToken")
        return token if isinstance(token, str | int) and not isinstance(token, bool) else None

    async def notify(self, method: str, params: JsonObject | None = None) -> None:
        """A notification related to this request (travels on the request's stream when it has one)."""
        await self.related(_notification(method, params))

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        token = self.progress_token
        if token is None:
            return
        params: JsonObject = {"progressToken": token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.notify("notifications/progress", params)

    async def log(self, level: str, data: Any, logger: str | None = None) -> None:
        """Send ``notifications/message`` unless the client asked for a higher level."""
        threshold = self.connection.log_level
        if threshold is not None and LOG_LEVELS.index(level) < LOG_LEVELS.index(threshold):
            return
        params: JsonObject = {"level": level, "data": data}
        if logger is not None:
            params["logger"] = logger
        await self.notify("notifications/message", params)

    async def request(self, method: str, params: JsonObject | None = None) -> JsonObject:
        """A server-to-client request related to this request; returns its result or raises JsonRpcError."""
        return await self.connection.request(method, params, via=self.related)


def _notification(method: str, params: JsonObject | None) -> JsonObject:
    message: JsonObject = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


class Connection:
    """JSON-RPC state for one client: in-flight requests, pending server-initiated requests."""

    def __init__(self, server: Server, send: Send) -> None:
        self.server = server
        self.send = send
        self.in_flight: dict[RequestId, asyncio.Task[None]] = {}
        self.pending: dict[RequestId, asyncio.Future[JsonObject]] = {}
        self.protocol_version: str | None = None
        self.client_capabilities: JsonObject = {}
        self.client_info: JsonObject | None = None
        self.log_level: str | None = None
        self.subscriptions: set[str] = set()
        # notification method (and logging/setLevel, a request) -> how many this connection received
        self.heard: dict[str, int] = {}
        self.last_progress: JsonObject | None = None  # the params of the last notifications/progress received
        self.closed = False
        self._next_id = 0
        server.connections.add(self)

    async def receive(
        self, message: object, *, reply: Send | None = None, related: Send | None = None
    ) -> asyncio.Task[None] | None:
        """Route one decoded incoming message.

        A request starts a task (returned) that answers through ``reply``; request-related messages
        go through ``related``. Both default to ``self.send``. A cancelled request is never answered.
        """
        reply = reply or self.send
        if not isinstance(message, dict):
            await reply(error_message(None, INVALID_REQUEST, "Invalid Request: expected a JSON object"))
            return None
        method = message.get("method")
        request_id = message.get("id")
        if isinstance(request_id, bool) or not (request_id is None or isinstance(request_id, str | int)):
            await reply(error_message(None, INVALID_REQUEST, "Invalid Request: bad id"))
            return None
        if method is None:
            if request_id is not None and ("result" in message or "error" in message):
                self._resolve(request_id, message)
                return None
            await reply(error_message(request_id, INVALID_REQUEST, "Invalid Request"))
            return None
        params = message.get("params")
        if not isinstance(method, str) or not (params is None or isinstance(params, dict)):
            await reply(error_message(request_id, INVALID_REQUEST, "Invalid Request: bad method or params"))
            return None
        if "id" not in message:
            self._on_notification(method, params or {})
            return None
        if request_id is None:
            await reply(error_message(None, INVALID_REQUEST, "Invalid Request: null id"))
            return None
        task = asyncio.create_task(self._run(request_id, method, params or {}, reply, related or self.send))
        self.in_flight[request_id] = task
        return task

    async def _run(self, request_id: RequestId, method: str, params: JsonObject, reply: Send, related: Send) -> None:
        call = Call(self, request_id, method, params, related)
        try:
            result = await self.server.handle(call)
            response: JsonObject = {"jsonrpc": "2.0", "id": request_id, "result": result}
        except JsonRpcError as exc:
            response = {"jsonrpc": "2.0", "id": request_id, "error": exc.to_error()}
        except Exception as exc:  # boundary: a handler bug answers -32603 instead of killing the server
            response = error_message(request_id, INTERNAL_ERROR, f"Internal error: {exc!r}")
        finally:
            if self.in_flight.get(request_id) is asyncio.current_task():
                del self.in_flight[request_id]
        await reply(response)

    def _on_notification(self, method: str, params: JsonObject) -> None:
        self.heard[method] = self.heard.get(method, 0) + 1
        if method == "notifications/cancelled":
            task = self.in_flight.pop(params.get("requestId"), None)  # type: ignore[arg-type]
            if task is not None:
                task.cancel()
        elif method == "notifications/progress":  # a client's, on a request to it: kept for a tool to show
            self.last_progress = params
        # initialized, roots/list_changed and anything unknown: nothing to do.

    def _resolve(self, request_id: RequestId, message: JsonObject) -> None:
        future = self.pending.pop(request_id, None)
        if future is None or future.done():
            return
        error = message.get("error")
        if isinstance(error, dict):
            future.set_exception(
                JsonRpcError(int(error.get("code", INTERNAL_ERROR)), str(error.get("message", "")), error.get("data"))
            )
        else:
            result = message.get("result")
            future.set_result(result if isinstance(result, dict) else {})

    async def notify(self, method: str, params: JsonObject | None = None) -> None:
        """A session-level notification on the connection's default stream."""
        if not self.closed:
            await self.send(_notification(method, params))

    async def request(self, method: str, params: JsonObject | None = None, *, via: Send | None = None) -> JsonObject:
        """Send a server-to-client request and wait for the client's answer."""
        if self.closed:
            raise JsonRpcError(INTERNAL_ERROR, "Connection closed")
        self._next_id += 1
        request_id = self._next_id
        message: JsonObject = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        future: asyncio.Future[JsonObject] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        send = via or self.send
        try:
            await send(message)
            return await future
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await send(_notification("notifications/cancelled", {"requestId": request_id}))
            raise
        finally:
            self.pending.pop(request_id, None)

    def fail_pending(self, reason: str) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(JsonRpcError(INTERNAL_ERROR, reason))
        self.pending.clear()

    async def close(self, grace: float = 0.0) -> None:
        """Fail pending server requests, give running requests ``grace`` seconds, cancel the rest."""
        self.closed = True
        self.server.connections.discard(self)
        self.fail_pending("Connection closed")
        tasks = list(self.in_flight.values())
        if tasks and grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self.in_flight.clear()
