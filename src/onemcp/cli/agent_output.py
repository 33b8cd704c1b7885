"""How the agent commands (`inspect`, `run`) print what a hub answered: results, tools, JSON.

Owns the text a person or a coding agent reads on stdout/stderr, not exit codes or the wire: the
callers in `agent` decide the exit code from what these return. Everything an upstream wrote goes
through `escape_line`, `escape_text` or `json_text` (no escape sequence, C1 control or bidi override).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Collection
from typing import Any

from onemcp.cli.terminal import escape_line, escape_text, json_text, table


def print_result(result: dict[str, Any], fmt: str) -> bool:
    """Print a tool result (its text, or the whole result as JSON); False when the tool reported an error."""
    failed = result.get("isError") is True
    text = escape_text(content_text(result))  # the tool's whole text, its lines kept (an error's too)
    if fmt == "json":
        sys.stdout.write(json_text(result) + "\n")
    elif not failed and text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if failed:
        print(f"onemcp: the tool reported an error: {text or '(no message)'}", file=sys.stderr)
        return False
    return True


def content_text(result: dict[str, Any]) -> str:
    """What a person reads of a tool result: its text, with other content named."""
    parts: list[str] = []
    content = result.get("content")
    for item in content if isinstance(content, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "text":
            parts.append(str(item.get("text", "")))
        elif kind in ("image", "audio"):
            size = len(str(item.get("data", ""))) * 3 // 4
            parts.append(f"[{kind}: {item.get('mimeType', '?')}, about {size} bytes; --format json has the data]")
        elif kind == "resource_link":
            parts.append(f"[resource link: {item.get('uri')}{' ' + str(item['name']) if item.get('name') else ''}]")
        elif kind == "resource" and isinstance(item.get("resource"), dict):
            res = item["resource"]
            parts.append(str(res["text"]) if "text" in res else f"[resource: {res.get('uri')} (binary)]")
    if not parts and "structuredContent" in result:
        parts.append(json.dumps(result["structuredContent"], indent=2, ensure_ascii=False))
    return "\n".join(parts)


def show_tool(server: str, short: str, tool: dict[str, Any], as_json: bool) -> None:
    """A tool in full: description, arguments, schemas and a `run` line to start from."""
    schema = required_first(tool.get("inputSchema"))
    if as_json:
        dump({**tool, "inputSchema": schema})
        return
    hub_name = f"  (hub name: {escape_line(tool.get('name'))})" if tool.get("name") != short else ""
    print(f"{escape_line(server)}/{escape_line(short)}{hub_name}")
    description = str(tool.get("description") or "").strip()
    if description:
        print(escape_text(description))  # in full: the listing (`inspect SERVER`) cuts it
    found_props = schema.get("properties")
    props: dict[str, Any] = found_props if isinstance(found_props, dict) else {}
    required = set(schema.get("required") or [])
    if props:
        print("\narguments (* = required):")
        rows = []
        for name, spec in props.items():
            spec = spec if isinstance(spec, dict) else {}
            kind = spec.get("type", "any")
            kind = "|".join(map(str, kind)) if isinstance(kind, list) else str(kind)
            text = first_line(spec.get("description"))
            if "default" in spec:
                text = f"{text} (default {json.dumps(spec['default'])})".strip()
            mark = "*" if name in required else " "
            rows.append([f"  {mark} {escape_line(name)}", escape_line(kind), escape_line(text)])
        table([], rows)
    print("\ninput schema:")
    print(json_text(schema))
    if isinstance(tool.get("outputSchema"), dict):
        print("\noutput schema (structuredContent):")
        print(json_text(tool["outputSchema"]))
    print(f"\n{run_line(server, short, tool)}")


def run_line(server: str, short: str, tool: dict[str, Any]) -> str:
    """The `onemcp run` command that calls this tool, its required arguments as `<type>` placeholders."""
    schema = tool.get("inputSchema")
    props = schema.get("properties") if isinstance(schema, dict) else None
    required = schema.get("required") if isinstance(schema, dict) else None
    props, required = (props if isinstance(props, dict) else {}), (required if isinstance(required, list) else [])
    example = {name: f"<{_kind_of(props.get(name))}>" for name in props if name in required}
    # json.dumps escapes every non-ASCII character of the names: the line is safe to print and to paste
    return f"onemcp run {escape_line(server)}/{escape_line(short)} --args '{json.dumps(example)}'"


def _kind_of(spec: Any) -> str:
    kind = spec.get("type", "value") if isinstance(spec, dict) else "value"
    return kind if isinstance(kind, str) else "value"


def required_first(schema: Any) -> dict[str, Any]:
    """The schema with its required properties listed first (order otherwise kept)."""
    if not isinstance(schema, dict):
        return {"type": "object"}
    props = schema.get("properties")
    required = schema.get("required")
    if not isinstance(props, dict) or not isinstance(required, list):
        return schema
    ordered = {k: v for k, v in props.items() if k in required}
    ordered.update((k, v) for k, v in props.items() if k not in required)
    return {**schema, "properties": ordered}


def ranked(text: str, names: Collection[str]) -> tuple[list[str], int | None]:
    """The tool names a `search_tools` answer ranks, best first (each line starts `name(`: the longest listed
    name that begins it, else what comes before its `(`), and how many tools it searched (None: not said)."""
    lines = text.splitlines()
    total = None
    if lines and (summary := re.match(r"\((\d+) of (\d+) tools\b", lines[-1])):
        total, lines = int(summary[2]), lines[:-1]
    elif none := re.match(r"No tool matches .* among (\d+) tools", text, re.DOTALL):
        return [], int(none[1])
    found = []
    for line in lines:
        starts = [name for name in names if line.startswith(f"{name}(")]
        found.append(max(starts, key=len) if starts else line.partition("(")[0])
    return found, total


def search_hit(rank: int, name: str, server: str | None, short: str, tool: dict[str, Any] | None) -> dict[str, Any]:
    """One hit of `inspect --search --json`: what `run` takes, the first line of its description, its
    parameters (required first). A name the hub's list lacks (it changed meanwhile) has no more than its name."""
    hit: dict[str, Any] = {"rank": rank, "name": name, "server": server, "tool": short if server else None}
    if tool is None:
        return {**hit, "description": None, "parameters": None}
    schema = required_first(tool.get("inputSchema"))
    found_props, found_required = schema.get("properties"), schema.get("required")
    props: dict[str, Any] = found_props if isinstance(found_props, dict) else {}
    required: list[Any] = found_required if isinstance(found_required, list) else []
    parameters = []
    for key, spec in props.items():
        spec = spec if isinstance(spec, dict) else {}
        kind = spec.get("type", "any")
        kind = "|".join(map(str, kind)) if isinstance(kind, list) else str(kind)
        parameters.append({"name": key, "type": kind, "required": key in required})
    return {**hit, "description": first_line(tool.get("description") or tool.get("title")), "parameters": parameters}


def first_line(text: Any) -> str:
    """The first non-blank line, stripped."""
    for line in str(text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def dump(doc: Any) -> None:
    """A document as indented JSON on stdout."""
    sys.stdout.write(json_text(doc) + "\n")


def savings(full: int, search: int) -> str:
    """What search mode saves against the full list, said for `inspect --tokens` ("" when nothing)."""
    if full and search < full:
        return f" ({100 * (full - search) / full:.0f}% less)"
    if search > full:  # a small view: its full list costs less than the three meta-tools
        return f" ({search - full} more than the full list: this view is small enough to list in full)"
    return ""
