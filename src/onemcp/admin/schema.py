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

STRINGS = {"type": "array", "items": {"type": "string"}}


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
            raise ApiError(400, f"unknown field(s): {', '.join(unknown)}; expected: {expected}")
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


class Route(Protocol):
    """What the document reads of `admin.api.Route`."""

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
    def body(self) -> Body: ...


def openapi(routes: Iterable[Route], prefix: str, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        params = re.findall(r"\{(\w+)\}", route.pattern)
        operation: dict[str, Any] = {
            "summary": route.summary,
            "security": [{"bearer": ["admin"]}] if route.change else [{"bearer": ["operator"]}, {"bearer": ["admin"]}],
            "responses": {
                "200": {"description": "OK (JSON)"},
                "401": {"description": "no credential"},
                "403": {"description": "lacks the scope, or the CSRF token"},
            },
        }
        parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params]
        parameters += [{"name": q, "in": "query", "schema": {"type": "string"}} for q in route.query]
        if parameters:
            operation["parameters"] = parameters
        if route.body.fields:
            body = route.body.schema()
            operation["requestBody"] = {
                "required": bool(body.get("required")),
                "content": {"application/json": {"schema": body}},
            }
            operation["responses"]["400"] = {"description": "the body is not one this operation takes"}
        if route.pattern == "/events":
            operation["responses"]["200"] = {"description": "text/event-stream: call, state and log events"}
        paths.setdefault(prefix + (route.pattern if route.pattern != "/" else ""), {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "onemcp admin API", "version": version},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
