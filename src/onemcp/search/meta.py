"""The search-mode tool list: three meta-tools, their arguments, and the compact text they answer.

In search exposure a client sees these three tools instead of every upstream tool: find tools by
a plain-language request, read one tool's full definition, call one tool by name. Owns their
definitions (as a client lists them), checking their arguments (`MetaArgsError`, which the hub
answers as a tool error the model can correct), and the compact rendering of search hits: one
line per tool, `name(params) - first sentence of the description`. Does not rank (`index`),
authorize or route (the hub).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from onemcp.observability.redact import one_line as escape_controls
from onemcp.protocol.errors import echo

SEARCH, SCHEMA, CALL = "search_tools", "get_tool_schema", "call_tool"
NAMES = frozenset({SEARCH, SCHEMA, CALL})
MAX_QUERY = 1000  # characters of a search request
MAX_LIMIT = 20
DEFAULT_LIMIT = 5
LINE = 160  # characters of a hit's description
MAX_WORD = 64  # characters of a parameter's name or type in a hit
MAX_PARAMS = 8  # parameters a hit lists (required ones first); get_tool_schema has the rest

META_TOOLS: list[dict[str, Any]] = [
    {
        "name": SEARCH,
        "title": "Search tools",
        "description": (
            "Find the tools for a task among every connected server's tools. Describe what you want "
            "to do in plain words; returns the best matches as `name(parameters) - description`."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "what you want to do, in plain words"},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "description": "matches (5)"},
                "server": {"type": "string", "description": "only this server's tools"},
            },
            "required": ["query"],
        },
        "annotations": {"readOnlyHint": True, "openWorldHint": False},
    },
    {
        "name": SCHEMA,
        "title": "Get tool schema",
        "description": "The full definition (input schema) of a tool found by search_tools.",
        "inputSchema": {
            "type": "object",
            "properties": {"name": {"type": "string", "description": "the tool's name"}},
            "required": ["name"],
        },
        "annotations": {"readOnlyHint": True, "openWorldHint": False},
    },
    {
        "name": CALL,
        "title": "Call tool",
        "description": "Call a tool found by search_tools (tools may also be called directly by name).",
        "inputSchema": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "the tool's name"},
                "arguments": {"type": "object", "description": "the tool's arguments"},
            },
            "required": ["name"],
        },
    },
]


class MetaArgsError(ValueError):
    """A meta-tool's arguments cannot be used; the message says how to fix them."""


def search_args(arguments: Mapping[str, Any]) -> tuple[str, int, str | None]:
    """(query, limit, server) of a search_tools call."""
    _no_unknown(SEARCH, arguments, {"query", "limit", "server"})
    query = arguments.get("query")
    if not isinstance(query, str) or not query.strip():
        raise MetaArgsError("search_tools: 'query' must be a non-empty string saying what you want to do")
    if len(query) > MAX_QUERY:
        raise MetaArgsError(f"search_tools: 'query' is {len(query)} characters; at most {MAX_QUERY}")
    limit = arguments.get("limit")
    if limit is None:  # left out, or null as strict function-calling clients send an unset optional field
        limit = DEFAULT_LIMIT
    if isinstance(limit, float) and limit.is_integer():
        limit = int(limit)  # 2.0 is the integer 2 (JSON has one number type; the schema says integer)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise MetaArgsError(f"search_tools: 'limit' must be an integer from 1 to {MAX_LIMIT}")
    server = arguments.get("server")
    if server is not None and not isinstance(server, str):
        raise MetaArgsError("search_tools: 'server' must be a server's name (leave it out to search every server)")
    return query.strip(), limit, server.strip() or None if server is not None else None  # "": as left out


def name_arg(tool: str, arguments: Mapping[str, Any], allowed: set[str]) -> str:
    """The `name` argument of get_tool_schema / call_tool."""
    _no_unknown(tool, arguments, allowed)
    name = arguments.get("name")
    if not isinstance(name, str) or not name:
        raise MetaArgsError(f"{tool}: 'name' must be a tool name from search_tools")
    return name


def call_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    args = arguments.get("arguments", {})
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise MetaArgsError("call_tool: 'arguments' must be an object")
    return args


def _no_unknown(tool: str, arguments: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(arguments) - allowed)
    if unknown:
        raise MetaArgsError(
            f"{tool}: unknown argument(s) {echo(', '.join(unknown))}; expected {', '.join(sorted(allowed))}"
        )


def one_line(text: str, width: int = LINE) -> str:
    """The first sentence or line of a description, at most `width` characters."""
    text = escape_controls(" ".join(text.split()))  # an upstream's text: no terminal codes
    for end in (". ", "\n"):
        cut = text.find(end)
        if 0 < cut < width:
            return text[: cut + 1].strip()
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def signature(tool: Mapping[str, Any]) -> str:
    """`name(a: string, b?: integer)`: the tool's parameters, optional ones marked `?`.

    At most `MAX_PARAMS` are listed, required ones before optional ones, in the schema's order;
    the rest are counted (`+K more`), so a tool with hundreds of parameters keeps one short line.
    """
    schema = tool.get("inputSchema")
    props = schema.get("properties") if isinstance(schema, dict) else None
    required = schema.get("required") if isinstance(schema, dict) else None
    needed = {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
    keys = list(props) if isinstance(props, dict) else []  # an upstream's malformed schema: none listed
    shown = set(sorted(keys, key=lambda k: k not in needed)[:MAX_PARAMS])
    params = []
    for key in keys:
        if key in shown:
            spec = props[key] if isinstance(props, dict) else None
            kind = spec.get("type", "any") if isinstance(spec, dict) else "any"
            if isinstance(kind, list):
                kind = "|".join(str(k) for k in kind)
            params.append(f"{_word(key)}{'' if key in needed else '?'}: {_word(kind)}")
    if len(keys) > len(shown):
        params.append(f"+{len(keys) - len(shown)} more")
    return f"{escape_controls(str(tool.get('name', '')))}({', '.join(params)})"  # a name is any string: one line


def _word(text: object) -> str:
    """A parameter's name or type as a result line shows it: one line, no terminal codes, bounded
    (a name holding a new line would forge another hit)."""
    shown = escape_controls(str(text))
    return shown if len(shown) <= MAX_WORD else shown[:MAX_WORD] + "..."


def render_hits(query: str, tools: Sequence[Mapping[str, Any]], total: int, server: str | None = None) -> str:
    """The text of a search result: one line per tool, best first, then how to go on."""
    if not tools:
        hint = " Try other words, or no 'server'." if server else " Try other words."
        return f"No tool matches {query!r} among {total} tools{f' of {server}' if server else ''}.{hint}"
    lines = [f"{signature(t)} - {one_line(str(t.get('description') or t.get('title') or ''))}" for t in tools]
    lines.append(
        f"({len(tools)} of {total} tools. Call one by name; {SCHEMA} shows its full schema;"
        " not here? search again in other words.)"
    )
    return "\n".join(lines)


def unreached(message: str, *, withheld: bool = False) -> dict[str, Any]:
    """call_tool's tool error for a name it cannot call: not found (search finds tools by what they do),
    or withheld by its pin (found, so searching again is no help: the message says who approves it)."""
    return text_result(message if withheld else f"{message}; {SEARCH} finds tools by what they do", error=True)


def text_of(result: Mapping[str, Any]) -> str:
    """The text of a meta-tool's result (`text_result`'s)."""
    return str(result["content"][0]["text"])


def text_result(text: str, *, error: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    if error:
        result["isError"] = True
    return result
