"""The 2026-07-28 request headers: `Mcp-Method`, `Mcp-Name` and `Mcp-Param-*`, and their encoding.

Vocabulary and pure functions: the upstream transport writes them, the modern endpoint checks
what a client sent against the body, and the CLI's modern client writes them too.
"""

from __future__ import annotations

import base64
import decimal
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the agent CLI's quick path imports this module: no orjson for a type name
    from onemcp.protocol.jsonrpc import Message

NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
SENTINEL = "=?base64?"


# What a header value may hold as written: visible ASCII, spaces and tabs (RFC 9110 field-value, ASCII only).
# A line break would end the header and start one of the value's choosing; NUL and other controls are refused
# by servers, and a character beyond ASCII has no one encoding.
_UNSENDABLE = re.compile(r"[^\t\x20-\x7e]")


def sendable(value: str) -> bool:
    """May `value` be written as a header value as it is? (The config's headers when loaded, a principal's
    values when rendered, and every upstream request's headers as written check this one rule.)"""
    return value.isascii() and (value.isprintable() or not _UNSENDABLE.search(value))  # the common case: one C pass


def is_plain(value: str) -> bool:
    """May `value` travel as a header value as it is (visible ASCII, no whitespace at its edges)?"""
    return value.isascii() and value.isprintable() and value == value.strip()


def encode_header(value: str) -> str:
    if is_plain(value) and not value.startswith(SENTINEL):
        return value
    # (a lone surrogate, which JSON may escape, is encoded too: the receiver finds it no valid name)
    return SENTINEL + base64.b64encode(value.encode("utf-8", "surrogatepass")).decode() + "?="


def request_headers(msg: Message, param_names: dict[str, dict[str, str]]) -> dict[str, str]:
    """`Mcp-Method`, `Mcp-Name` and `Mcp-Param-*` for a modern request, from the body as sent."""
    method = msg.get("method")
    if not isinstance(method, str):
        return {}
    headers = {"mcp-method": method}
    params = msg.get("params")
    if not isinstance(params, dict):
        return headers
    field = NAMED.get(method)
    if field is not None and isinstance(params.get(field), str):
        headers["mcp-name"] = encode_header(params[field])
    if method == "tools/call":
        annotated = param_names.get(str(params.get("name")), {})
        arguments = params.get("arguments")
        if annotated and isinstance(arguments, dict):
            for prop, header in annotated.items():
                rendered = render_param(arguments.get(prop))
                if rendered is not None:
                    headers[f"mcp-param-{header.lower()}"] = encode_header(rendered)
    return headers


def render_param(value: object) -> str | None:
    """An argument as its `Mcp-Param-*` header shows it (before base64 encoding), or None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value
    return None


def matches_param(value: object, shown: str) -> bool:
    """Whether a `Mcp-Param-*` header (decoded) mirrors argument `value`. Numbers are compared as
    numbers (streamable-http.mdx: `42.0` and `42` are equal; a client may write `1e+21`)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            sent, said = decimal.Decimal(repr(value)), decimal.Decimal(shown.strip())
        except decimal.InvalidOperation:
            return False
        return sent.is_finite() and said.is_finite() and sent == said
    return render_param(value) == shown


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP field name (RFC 9110 token)


def header_problem(tool: dict[str, Any]) -> str | None:
    """Why a tool's `x-mcp-header` annotations are invalid, or None. A client must drop such a tool:
    a name that is not an HTTP token could not be sent (or would inject a header), and an object or
    array argument has no header form."""
    schema = tool.get("inputSchema")
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return None
    seen: set[str] = set()
    for prop, spec in props.items():
        if not isinstance(spec, dict) or "x-mcp-header" not in spec:
            continue
        name = spec["x-mcp-header"]
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            return f"x-mcp-header of {prop!r} is not an HTTP header name: {str(name)[:40]!r}"
        if name.lower() in seen:
            return f"x-mcp-header {name!r} names two arguments"
        seen.add(name.lower())
        if spec.get("type") in ("object", "array"):
            return f"x-mcp-header on {prop!r}, an argument of type {spec['type']}"
    return None


def header_params(tools: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """tool name -> {argument: header name} from the tools' valid `x-mcp-header` annotations."""
    out: dict[str, dict[str, str]] = {}
    for tool in tools:
        schema = tool.get("inputSchema")
        props = schema.get("properties") if isinstance(schema, dict) else None
        if not isinstance(props, dict) or header_problem(tool) is not None:
            continue
        annotated = {
            prop: spec["x-mcp-header"]
            for prop, spec in props.items()
            if isinstance(spec, dict) and isinstance(spec.get("x-mcp-header"), str)
        }
        if annotated:
            out[str(tool.get("name"))] = annotated
    return out
