"""A tiny legacy-era MCP server: reusable machinery plus the ``onemcp-demo`` upstream.

Boundary: this module speaks only the handshake-era protocol (2024-11-05 .. 2025-11-25: ``initialize``
first, the server echoes the client's ``protocolVersion`` when it supports it, else answers
``2025-11-25``) as raw JSON-RPC 2.0 encoded with orjson. It never imports the ``mcp`` SDK (start-up
speed, and the SDK would drop unknown fields) and knows nothing about the hub. Three layers:

* ``McpServer``: the behaviour, a table of tools, prompts, resources and templates plus method
  dispatch. It is transport-free and can be reused (the test fixture server builds on it).
* ``Connection``: JSON-RPC bookkeeping for one client: requests run concurrently as tasks, responses
  to server-initiated requests are matched, ``notifications/cancelled`` cancels a request so it is
  never answered. Outgoing messages go through caller-supplied ``Send`` callables, so a transport
  decides which stream a reply or a request-related notification travels on.
* ``serve_stdio``: newline-delimited JSON on stdin/stdout; exits cleanly on stdin EOF.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import stat
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

JsonObject = dict[str, Any]
RequestId = str | int
Send = Callable[[JsonObject], Awaitable[None]]
"""Writes one JSON-RPC message to some stream."""

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
RESOURCE_NOT_FOUND: Final = -32002

SUPPORTED_PROTOCOL_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
DEFAULT_PROTOCOL_VERSION: Final = "2025-11-25"
LOG_LEVELS: Final = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")

EOF_GRACE_SECONDS: Final = 1.0
"""On stdin EOF, requests still running after this long are cancelled."""
MAX_LINE_BYTES: Final = 64 * 1024 * 1024


class JsonRpcError(Exception):
    """An error answer to a request (raised by handlers, or received for a server-initiated request)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.data = data

    def to_error(self) -> JsonObject:
        error: JsonObject = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def error_message(request_id: RequestId | None, code: int, message: str, data: Any = None) -> JsonObject:
    return {"jsonrpc": "2.0", "id": request_id, "error": JsonRpcError(code, message, data).to_error()}


def text_result(text: str, *, structured: JsonObject | None = None, is_error: bool = False) -> JsonObject:
    """A ``CallToolResult`` with one text item."""
    result: JsonObject = {"content": [{"type": "text", "text": text}]}
    if structured is not None:
        result["structuredContent"] = structured
    if is_error:
        result["isError"] = True
    return result


# --- argument checking (the small JSON Schema subset our tools use) ---------------------------------

_TYPE_CHECKS: Final[dict[str, Callable[[Any], bool]]] = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def check_arguments(schema: JsonObject, arguments: JsonObject) -> None:
    """Check ``required``, per-property ``type`` and ``additionalProperties: false``; raise -32602."""
    properties: JsonObject = schema.get("properties") or {}
    for name in schema.get("required") or ():
        if name not in arguments:
            raise JsonRpcError(INVALID_PARAMS, f"Missing required argument: {name}")
    for name, value in arguments.items():
        prop = properties.get(name)
        if prop is None:
            if schema.get("additionalProperties") is False:
                raise JsonRpcError(INVALID_PARAMS, f"Unexpected argument: {name}")
            continue
        expected = prop.get("type")
        if isinstance(expected, str) and expected in _TYPE_CHECKS and not _TYPE_CHECKS[expected](value):
            raise JsonRpcError(INVALID_PARAMS, f"Argument {name!r} must be of type {expected}")


# --- the behaviour table -----------------------------------------------------------------------------

ToolHandler = Callable[["Call", JsonObject], Awaitable[JsonObject]]
PromptRenderer = Callable[[dict[str, str]], list[JsonObject]]
TemplateReader = Callable[[str, dict[str, str]], list[JsonObject]]


@dataclass
class Tool:
    name: str
    description: str
    handler: ToolHandler
    input_schema: JsonObject = field(default_factory=lambda: {"type": "object"})
    output_schema: JsonObject | None = None
    annotations: JsonObject | None = None

    def definition(self) -> JsonObject:
        out: JsonObject = {
            "name": self.name,
            "description": self.description,
            "inputSchema": self.input_schema,
        }
        if self.output_schema is not None:
            out["outputSchema"] = self.output_schema
        if self.annotations is not None:
            out["annotations"] = self.annotations
        return out


@dataclass
class PromptArgument:
    name: str
    description: str = ""
    required: bool = False


@dataclass
class Prompt:
    name: str
    description: str
    render: PromptRenderer
    arguments: list[PromptArgument] = field(default_factory=list)

    def definition(self) -> JsonObject:
        out: JsonObject = {"name": self.name, "description": self.description}
        if self.arguments:
            out["arguments"] = [
                {"name": a.name, "description": a.description, "required": a.required} for a in self.arguments
            ]
        return out


@dataclass
class Resource:
    uri: str
    name: str
    mime_type: str
    text: str | None = None
    blob: bytes | None = None
    description: str = ""

    def definition(self) -> JsonObject:
        out: JsonObject = {"uri": self.uri, "name": self.name, "mimeType": self.mime_type}
        if self.description:
            out["description"] = self.description
        return out

    def contents(self) -> list[JsonObject]:
        item: JsonObject = {"uri": self.uri, "mimeType": self.mime_type}
        if self.blob is not None:
            item["blob"] = base64.b64encode(self.blob).decode("ascii")
        else:
            item["text"] = self.text or ""
        return [item]


@dataclass
class ResourceTemplate:
    """A URI template with simple ``{name}`` variables (each matches one path segment)."""

    uri_template: str
    name: str
    mime_type: str
    read: TemplateReader
    description: str = ""
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        parts = re.split(r"\{(\w+)\}", self.uri_template)
        regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
        self._pattern = re.compile(regex)

    def match(self, uri: str) -> dict[str, str] | None:
        found = self._pattern.fullmatch(uri)
        return found.groupdict() if found else None

    def definition(self) -> JsonObject:
        out: JsonObject = {"uriTemplate": self.uri_template, "name": self.name, "mimeType": self.mime_type}
        if self.description:
            out["description"] = self.description
        return out


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"o": offset})).decode("ascii")


def _decode_cursor(cursor: object) -> int:
    try:
        if not isinstance(cursor, str):
            raise ValueError(cursor)
        offset = orjson.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))["o"]
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(offset)
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise JsonRpcError(INVALID_PARAMS, "Invalid cursor") from exc
    return offset


class McpServer:
    """Tools, prompts, resources and the dispatch of every legacy-era client request."""

    def __init__(
        self,
        name: str,
        version: str = "0.1.0",
        *,
        instructions: str | None = None,
        page_size: int | None = None,
        extra_definition_fields: JsonObject | None = None,
        extra_result_fields: JsonObject | None = None,
        extra_result_meta: JsonObject | None = None,
        hang_on_initialize: bool = False,
    ) -> None:
        self.name = name
        self.version = version
        self.instructions = instructions
        self.page_size = page_size
        self.extra_definition_fields = extra_definition_fields or {}
        self.extra_result_fields = extra_result_fields or {}
        self.extra_result_meta = extra_result_meta or {}
        self.hang_on_initialize = hang_on_initialize
        self.tools: dict[str, Tool] = {}
        self.prompts: dict[str, Prompt] = {}
        self.resources: dict[str, Resource] = {}
        self.templates: list[ResourceTemplate] = []
        self.connections: set[Connection] = set()
        self.methods: dict[str, Callable[[Call], Awaitable[JsonObject]]] = {
            "initialize": self._initialize,
            "ping": self._empty,
            "logging/setLevel": self._set_level,
            "completion/complete": self._complete,
            "tools/list": self._tools_list,
            "tools/call": self._tools_call,
            "prompts/list": self._prompts_list,
            "prompts/get": self._prompts_get,
            "resources/list": self._resources_list,
            "resources/templates/list": self._templates_list,
            "resources/read": self._resources_read,
            "resources/subscribe": self._subscribe,
            "resources/unsubscribe": self._unsubscribe,
        }

    def add_tool(self, tool: Tool) -> None:
        self.tools[tool.name] = tool

    def add_prompt(self, prompt: Prompt) -> None:
        self.prompts[prompt.name] = prompt

    def add_resource(self, resource: Resource) -> None:
        self.resources[resource.uri] = resource

    def add_template(self, template: ResourceTemplate) -> None:
        self.templates.append(template)

    def capabilities(self) -> JsonObject:
        return {
            "tools": {"listChanged": True},
            "prompts": {"listChanged": True},
            "resources": {"subscribe": True, "listChanged": True},
            "logging": {},
            "completions": {},
        }

    async def broadcast(self, method: str, params: JsonObject | None = None) -> None:
        """Send a session-level notification (e.g. ``list_changed``) to every live connection."""
        for connection in list(self.connections):
            await connection.notify(method, params)

    async def handle(self, call: Call) -> JsonObject:
        handler = self.methods.get(call.method)
        if handler is None:
            raise JsonRpcError(METHOD_NOT_FOUND, f"Method not found: {call.method}")
        return self.decorate(await handler(call))

    def decorate(self, result: JsonObject) -> JsonObject:
        if self.extra_result_fields:
            result.update(self.extra_result_fields)
        if self.extra_result_meta:
            result["_meta"] = {**(result.get("_meta") or {}), **self.extra_result_meta}
        return result

    def _definition(self, definition: JsonObject) -> JsonObject:
        return {**definition, **self.extra_definition_fields} if self.extra_definition_fields else definition

    def _page(self, call: Call, key: str, items: Iterable[JsonObject]) -> JsonObject:
        listing = [self._definition(item) for item in items]
        cursor = call.params.get("cursor")
        start = 0 if cursor is None else _decode_cursor(cursor)
        if self.page_size is None:
            return {key: listing[start:]}
        end = start + self.page_size
        result: JsonObject = {key: listing[start:end]}
        if end < len(listing):
            result["nextCursor"] = _encode_cursor(end)
        return result

    async def _initialize(self, call: Call) -> JsonObject:
        if self.hang_on_initialize:
            await asyncio.Event().wait()
        requested = call.params.get("protocolVersion")
        version = requested if requested in SUPPORTED_PROTOCOL_VERSIONS else DEFAULT_PROTOCOL_VERSION
        connection = call.connection
        connection.protocol_version = version
        capabilities = call.params.get("capabilities")
        connection.client_capabilities = capabilities if isinstance(capabilities, dict) else {}
        info = call.params.get("clientInfo")
        connection.client_info = info if isinstance(info, dict) else None
        result: JsonObject = {
            "protocolVersion": version,
            "capabilities": self.capabilities(),
            "serverInfo": {"name": self.name, "version": self.version},
        }
        if self.instructions:
            result["instructions"] = self.instructions
        return result

    async def _empty(self, call: Call) -> JsonObject:
        return {}

    async def _set_level(self, call: Call) -> JsonObject:
        level = call.params.get("level")
        if level not in LOG_LEVELS:
            raise JsonRpcError(INVALID_PARAMS, f"Invalid log level: {level!r}")
        call.connection.log_level = level
        return {}

    async def _complete(self, call: Call) -> JsonObject:
        if not isinstance(call.params.get("ref"), dict) or not isinstance(call.params.get("argument"), dict):
            raise JsonRpcError(INVALID_PARAMS, "completion/complete needs 'ref' and 'argument' objects")
        return {"completion": {"values": [], "total": 0, "hasMore": False}}

    async def _tools_list(self, call: Call) -> JsonObject:
        return self._page(call, "tools", (t.definition() for t in list(self.tools.values())))

    async def _tools_call(self, call: Call) -> JsonObject:
        name = call.params.get("name")
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            raise JsonRpcError(INVALID_PARAMS, f"Unknown tool: {name}")
        arguments = call.params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise JsonRpcError(INVALID_PARAMS, "'arguments' must be an object")
        check_arguments(tool.input_schema, arguments)
        return await tool.handler(call, arguments)

    async def _prompts_list(self, call: Call) -> JsonObject:
        return self._page(call, "prompts", (p.definition() for p in self.prompts.values()))

    async def _prompts_get(self, call: Call) -> JsonObject:
        name = call.params.get("name")
        prompt = self.prompts.get(name) if isinstance(name, str) else None
        if prompt is None:
            raise JsonRpcError(INVALID_PARAMS, f"Unknown prompt: {name}")
        arguments = call.params.get("arguments") or {}
        if not isinstance(arguments, dict) or not all(isinstance(v, str) for v in arguments.values()):
            raise JsonRpcError(INVALID_PARAMS, "'arguments' must map names to strings")
        for argument in prompt.arguments:
            if argument.required and argument.name not in arguments:
                raise JsonRpcError(INVALID_PARAMS, f"Missing required argument: {argument.name}")
        return {"description": prompt.description, "messages": prompt.render(arguments)}

    async def _resources_list(self, call: Call) -> JsonObject:
        return self._page(call, "resources", (r.definition() for r in self.resources.values()))

    async def _templates_list(self, call: Call) -> JsonObject:
        return self._page(call, "resourceTemplates", (t.definition() for t in self.templates))

    def _uri(self, call: Call) -> str:
        uri = call.params.get("uri")
        if not isinstance(uri, str):
            raise JsonRpcError(INVALID_PARAMS, "'uri' must be a string")
        return uri

    async def _resources_read(self, call: Call) -> JsonObject:
        uri = self._uri(call)
        resource = self.resources.get(uri)
        if resource is not None:
            return {"contents": resource.contents()}
        for template in self.templates:
            variables = template.match(uri)
            if variables is not None:
                return {"contents": template.read(uri, variables)}
        raise JsonRpcError(RESOURCE_NOT_FOUND, "Resource not found", {"uri": uri})

    async def _subscribe(self, call: Call) -> JsonObject:
        call.connection.subscriptions.add(self._uri(call))
        return {}

    async def _unsubscribe(self, call: Call) -> JsonObject:
        call.connection.subscriptions.discard(self._uri(call))
        return {}


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
    def server(self) -> McpServer:
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

    def __init__(self, server: McpServer, send: Send) -> None:
        self.server = server
        self.send = send
        self.in_flight: dict[RequestId, asyncio.Task[None]] = {}
        self.pending: dict[RequestId, asyncio.Future[JsonObject]] = {}
        self.protocol_version: str | None = None
        self.client_capabilities: JsonObject = {}
        self.client_info: JsonObject | None = None
        self.log_level: str | None = None
        self.subscriptions: set[str] = set()
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
        if method == "notifications/cancelled":
            task = self.in_flight.pop(params.get("requestId"), None)  # type: ignore[arg-type]
            if task is not None:
                task.cancel()
        # initialized, roots/list_changed, progress and anything unknown: nothing to do.

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


# --- stdio transport -------------------------------------------------------------------------------------


def _is_pipe(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _WriteProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.lost = False

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.can_write.set()


class StdoutWriter:
    """Writes whole JSON lines to stdout: non-blocking on pipes, plain ``os.write`` otherwise."""

    def __init__(self) -> None:
        self._transport: asyncio.WriteTransport | None = None
        self._protocol: _WriteProtocol | None = None
        self.broken = False

    async def open(self) -> None:
        if _is_pipe(1):
            loop = asyncio.get_running_loop()
            self._transport, self._protocol = await loop.connect_write_pipe(_WriteProtocol, sys.stdout)

    async def send(self, message: JsonObject) -> None:
        data = orjson.dumps(message) + b"\n"
        if self.broken:
            return
        if self._transport is None or self._protocol is None:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view) :]
            except OSError:
                self.broken = True
            return
        if self._protocol.lost or self._transport.is_closing():
            self.broken = True
            return
        self._transport.write(data)
        await self._protocol.can_write.wait()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def _stdin_lines() -> Callable[[], Awaitable[bytes]]:
    """A ``readline`` for stdin: asyncio pipe reader when possible, a thread otherwise (tty, file)."""
    if _is_pipe(0):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        return reader.readline
    stdin = sys.stdin.buffer

    async def readline() -> bytes:
        return await asyncio.to_thread(stdin.readline)

    return readline


async def serve_stdio(server: McpServer) -> None:
    """Serve one client over stdin/stdout until stdin reaches EOF."""
    writer = StdoutWriter()
    await writer.open()
    readline = await _stdin_lines()
    connection = Connection(server, writer.send)
    try:
        while True:
            try:
                line = await readline()
            except ValueError:  # longer than MAX_LINE_BYTES; the reader has discarded it
                await writer.send(error_message(None, PARSE_ERROR, "Parse error: message too long"))
                continue
            if not line:
                break
            line = line.strip()
            if not line:
                continue
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                await writer.send(error_message(None, PARSE_ERROR, "Parse error"))
                continue
            await connection.receive(message)
    finally:
        await connection.close(grace=EOF_GRACE_SECONDS)
        writer.close()


def run(server: McpServer) -> None:
    """Blocking entry point for a stdio server process."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_stdio(server))


# --- the demo upstream -------------------------------------------------------------------------------------

DEMO_README: Final = """# onemcp demo server

A small upstream shipped with onemcp so the starter configuration works out of the box.
Tools: echo, add, word_count. Prompt: greeting. Resource: demo://readme (this text).
"""


def _number_text(value: float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


async def _echo(call: Call, args: JsonObject) -> JsonObject:
    return text_result(args["text"])


async def _add(call: Call, args: JsonObject) -> JsonObject:
    total = args["a"] + args["b"]
    return text_result(_number_text(total), structured={"sum": total})


async def _word_count(call: Call, args: JsonObject) -> JsonObject:
    count = len(args["text"].split())
    return text_result(str(count), structured={"count": count})


def _greeting(args: dict[str, str]) -> list[JsonObject]:
    text = f"Please write a short, friendly greeting for {args['name']}."
    return [{"role": "user", "content": {"type": "text", "text": text}}]


def build_demo_server() -> McpServer:
    server = McpServer(
        "onemcp-demo",
        instructions="A demo server bundled with onemcp: echo text, add numbers, count words.",
    )
    text_arg = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    server.add_tool(Tool("echo", "Return the given text unchanged.", _echo, text_arg))
    server.add_tool(
        Tool(
            "add",
            "Add two numbers.",
            _add,
            {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
            output_schema={"type": "object", "properties": {"sum": {"type": "number"}}, "required": ["sum"]},
        )
    )
    server.add_tool(
        Tool(
            "word_count",
            "Count the whitespace-separated words in a text.",
            _word_count,
            text_arg,
            output_schema={
                "type": "object",
                "properties": {"count": {"type": "integer"}},
                "required": ["count"],
            },
        )
    )
    server.add_prompt(
        Prompt(
            "greeting",
            "Ask for a greeting for someone.",
            _greeting,
            [PromptArgument("name", "Who to greet", True)],
        )
    )
    server.add_resource(Resource("demo://readme", "readme", "text/markdown", text=DEMO_README, description="About"))
    return server


def main() -> None:
    run(build_demo_server())


if __name__ == "__main__":
    main()
