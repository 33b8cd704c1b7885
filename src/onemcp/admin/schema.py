"""The admin API's contract in JSON Schema: the request bodies its routes take, and its OpenAPI document.

Owns one definition per body (`Body`: each field's JSON Schema, whether it is required, and what
to say when it is wrong), from which both the route's check of a request and the `requestBody` of
its OpenAPI operation are made, so the document cannot drift from what the route accepts. A route
without a `Body` takes none: a body that says something is refused, not ignored. Owns making the
OpenAPI document from the routes (`admin.api.ROUTES`, passed in); does not route or handle.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from onemcp.admin.errors import ApiError
from onemcp.config.model import EXPOSURES
from onemcp.protocol.errors import echo

STRINGS = {"type": "array", "items": {"type": "string"}}
MAX_BODY = 1024 * 1024  # bytes of a request body, at most


@dataclass(frozen=True)
class Field:
    schema: dict[str, Any]  # JSON Schema of the value (types: string, boolean, object, array of strings)
    wrong: str  # what a value that is not one says
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Body:
    fields: Mapping[str, Field] = field(default_factory=dict)

    def check(self, doc: dict[str, Any]) -> dict[str, Any]:
        """`doc` when it holds only these fields, every required one, each of its schema's type; else 400."""
        if unknown := sorted(set(doc) - set(self.fields)):
            expected = ", ".join(self.fields) or "no body"
            raise ApiError(400, f"unknown field(s): {echo(', '.join(unknown))}; expected: {expected}")
        for name, spec in self.fields.items():
            if (name not in doc and spec.required) or (name in doc and not fits(doc[name], spec.schema)):
                raise ApiError(400, spec.wrong)
        return doc

    def schema(self) -> dict[str, Any]:
        properties = {
            name: {**spec.schema, **({"description": spec.description} if spec.description else {})}
            for name, spec in self.fields.items()
        }
        required = [name for name, spec in self.fields.items() if spec.required]
        return {
            "type": "object",
            "properties": properties,
            **({"required": required} if required else {}),
            "additionalProperties": False,
        }


def fits(value: Any, schema: Mapping[str, Any]) -> bool:
    """Is `value` of `schema`'s type (and in its enum)? The few forms the bodies use."""
    if "enum" in schema and value not in schema["enum"]:
        return False
    kinds = schema.get("type")
    for kind in [kinds] if isinstance(kinds, str) else kinds or []:
        if (
            (kind == "string" and isinstance(value, str))
            or (kind == "boolean" and isinstance(value, bool))
            or (kind == "object" and isinstance(value, dict))
            or (kind == "null" and value is None)
            or (kind == "array" and isinstance(value, list) and all(fits(v, schema.get("items", {})) for v in value))
        ):
            return True
    return kinds is None


NO_BODY = Body()
SERVER_ENTRY = 'expected {"name": "...", "server": {"command": ...} or {"url": ...}}'
ADD_SERVER = Body(
    {
        "name": Field({"type": "string"}, SERVER_ENTRY, required=True, description="the server's name"),
        "server": Field(
            {"type": "object"}, SERVER_ENTRY, required=True, description="its mcp.json entry: {command, ...} or {url}"
        ),
        "replace": Field({"type": "boolean"}, "'replace' must be true or false", description="replace one so named"),
    }
)
CALL = Body(
    {"arguments": Field({"type": "object"}, "arguments must be an object", description="the tool's arguments ({})")}
)
PRESET = Body(
    {
        "filter": Field(
            {"type": "string"},
            "'filter' is required: a tag filter",
            required=True,
            description="dev or (git and !slow)",
        ),
        "description": Field({"type": ["string", "null"]}, "'description' must be a string"),
        "exposure": Field(
            {"type": ["string", "null"], "enum": [*EXPOSURES, "", None]},
            f"'exposure' must be one of {', '.join(EXPOSURES)} (or empty: the hub's)",
            description="how the view lists its tools (empty or null: as the hub does)",
        ),
    }
)
APPROVE = Body(
    {"tools": Field(STRINGS, "'tools' must be a list of tool names", description="these only (default: all)")}
)
PAYLOADS = Body({"on": Field({"type": "boolean"}, 'expected {"on": true} or {"on": false}', required=True)})


# Every error is `{"error": "..."}` (`admin.api`'s ApiError, the dispatcher's refusals); the gate's own
# refusals (401, 403, 429) add a field each, named here.
ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "what was refused, and why"},
        "error_description": {"type": "string", "description": "401: why the credential was not taken"},
        "scope": {"type": "string", "description": "403 from the gate: the scope the credential lacks"},
        "retry_after": {"type": "integer", "description": "429: seconds to wait (also in Retry-After)"},
    },
    "required": ["error"],
}
# What each status means, wherever an operation answers it.
STATUSES: dict[int, str] = {
    400: "not a request this operation takes: an unknown query parameter, a body it does not take, a wrong value",
    401: "no credential, or one the hub does not take",
    403: "the credential lacks the scope",
    404: "no such name (a server, tool, preset or stored value)",
    409: "this hub was not started from a config file: nothing to edit",
    413: f"the body is larger than {MAX_BODY} bytes",
    429: "this principal's request rate (rateLimit) is spent: retry after Retry-After seconds",
    500: "the config or presets file cannot be read or written",
    503: "the store of user values cannot be read now",
    504: "the call was cancelled before it was answered",
}
CSRF = "a browser's change without the console's CSRF token (x-onemcp-csrf)"


class Route(Protocol):
    """What the document reads of `admin.routing.Route`."""

    @property
    def method(self) -> str: ...
    @property
    def pattern(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def change(self) -> bool: ...
    @property
    def query(self) -> tuple[str, ...]: ...
    @property
    def query_required(self) -> bool: ...
    @property
    def body(self) -> Body: ...
    @property
    def stream(self) -> bool: ...
    @property
    def fails(self) -> tuple[int, ...]: ...


def statuses(route: Route, *, auth: bool, rate_limited: bool) -> dict[int, str]:
    """Every status `route` answers on a hub with (or without) `auth` and a `rateLimit`, with its meaning.

    Every route: 400 for a query parameter it does not take; with auth, 401 and 403 (the gate), with a
    rate limit 429. A change reads its body (one it does not take is a 400, a large one a 413) and, from a
    browser, needs the CSRF token (403). Then what its handler refuses (`route.fails`)."""
    found = {400} | set(route.fails)
    if auth:
        found |= {401, 403}
    if rate_limited:
        found.add(429)
    if route.change:
        found |= {403, 413}
    said = {status: STATUSES[status] for status in sorted(found)}
    if route.change:
        said[403] = f"{STATUSES[403]}, or {CSRF}" if auth else CSRF
    return said


def _response(status: int, description: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status == 429:
        answer["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}}
    return answer


def openapi(
    routes: Iterable[Route], prefix: str, version: str, *, auth: bool = True, rate_limited: bool = True
) -> dict[str, Any]:
    """The document of `routes` as a hub with (`auth`) or without credentials, and with a rate limit
    (`rate_limited`) or none, answers them (by default: every status any hub may answer)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        params = re.findall(r"\{(\w+)\}", route.pattern)
        ok = (
            {"text/event-stream": {"schema": {"type": "string"}}}
            if route.stream
            else {"application/json": {"schema": {"type": "object"}}}
        )
        description = "text/event-stream: call, state and log events" if route.stream else "OK"
        responses: dict[str, Any] = {"200": {"description": description, "content": ok}}
        for status, meaning in statuses(route, auth=auth, rate_limited=rate_limited).items():
            responses[str(status)] = _response(status, meaning)
        operation: dict[str, Any] = {"summary": route.summary, "responses": responses}
        if auth:
            needs = [{"bearer": ["admin"]}] if route.change else [{"bearer": ["operator"]}, {"bearer": ["admin"]}]
            operation["security"] = needs
        parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params]
        parameters += [
            {"name": q, "in": "query", "required": route.query_required, "schema": {"type": "string"}}
            for q in route.query
        ]
        if parameters:
            operation["parameters"] = parameters
        if route.body.fields:
            body = route.body.schema()
            operation["requestBody"] = {
                "required": bool(body.get("required")),
                "content": {"application/json": {"schema": body}},
            }
        paths.setdefault(prefix + (route.pattern if route.pattern != "/" else ""), {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "onemcp admin API", "version": version},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR},
        },
        "paths": paths,
    }
