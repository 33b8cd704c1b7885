"""The 2026-07-28 request headers: `Mcp-Method`, `Mcp-Name` and `Mcp-Param-*`, and their encoding.

Vocabulary and pure functions: the upstream transport writes them, the modern endpoint checks
what a client sent against the body, and the CLI's modern client writes them too.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the agent CLI's quick path imports this module: no orjson for a type name
    from onemcp.protocol.jsonrpc import Message

NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
SENTINEL = "=?base64?"


def encode_header(value: str) -> str:
    if value.isascii() and value.isprintable() and not value.startswith(SENTINEL) and value == value.strip():
        return value
    return SENTINEL + base64.b64encode(value.encode()).decode() + "?="


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


def header_params(tools: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """tool name -> {argument: header name} from the tools' `x-mcp-header` annotations."""
    out: dict[str, dict[str, str]] = {}
    for tool in tools:
        schema = tool.get("inputSchema")
        props = schema.get("properties") if isinstance(schema, dict) else None
        if not isinstance(props, dict):
            continue
        annotated = {
            prop: spec["x-mcp-header"]
            for prop, spec in props.items()
            if isinstance(spec, dict) and isinstance(spec.get("x-mcp-header"), str)
        }
        if annotated:
            out[str(tool.get("name"))] = annotated
    return out
