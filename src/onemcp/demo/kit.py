"""The reusable core of the demo/fixture servers: JSON-RPC errors, the behaviour table, dispatch.

Raw legacy-era MCP (2024-11-05 .. 2025-11-25) with orjson; never imports the ``mcp`` SDK (start-up
speed, and it would drop unknown fields). ``McpServer`` is transport-free.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import orjson

from onemcp.demo.wire import (
    INTERNAL_ERROR as INTERNAL_ERROR,
)
from onemcp.demo.wire import (
    INVALID_PARAMS as INVALID_PARAMS,
)
from onemcp.demo.wire import (
    INVALID_REQUEST as INVALID_REQUEST,
)
from onemcp.demo.wire import (
    METHOD_NOT_FOUND as METHOD_NOT_FOUND,
)
from onemcp.demo.wire import (
    PARSE_ERROR as PARSE_ERROR,
)
from onemcp.demo.wire import (
    RESOURCE_NOT_FOUND as RESOURCE_NOT_FOUND,
)
from onemcp.demo.wire import (
    JsonObject as JsonObject,
)
from onemcp.demo.wire import (
    JsonRpcError as JsonRpcError,
)
from onemcp.demo.wire import (
    RequestId as RequestId,
)
from onemcp.demo.wire import (
    Send as Send,
)
from onemcp.demo.wire import (
    error_message as error_message,
)
from onemcp.protocol.methods import LOG_LEVELS

if TYPE_CHECKING:
    from onemcp.demo.peer import Call, Connection

SUPPORTED_PROTOCOL_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
DEFAULT_PROTOCOL_VERSION: Final = "2025-11-25"

EOF_GRACE_SECONDS: Final = 1.0
"""On stdin EOF, requests still running after this long are cancelled."""
MAX_LINE_BYTES: Final = 64 * 1024 * 1024


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
        call.connection.heard["logging/setLevel"] = call.connection.heard.get("logging/setLevel", 0) + 1
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
