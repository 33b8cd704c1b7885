"""Tool definitions a strict client would reject: mended where the spec says what they mean, else withheld.

Owns one rule set, applied to each upstream's tools list before it joins the aggregated list, so
that one server's bad definition cannot make a strict client (the official SDKs validate every
tool) reject the whole list of every server. Repaired: an `inputSchema` without `type` (or
without any schema) becomes `type: object`, as the spec requires of a tool's input; the same for
an `outputSchema` without `type`. Withheld: a tool without a string name, whose schema is not
an object schema at all, or whose `x-mcp-header` annotations are invalid (the spec has clients
drop it). Both are reported per server (`/health`), never silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from onemcp.protocol.headers import header_problem

Item = dict[str, Any]


@dataclass
class Report:
    repaired: dict[str, str] = field(default_factory=dict)  # tool name -> what was mended
    withheld: dict[str, str] = field(default_factory=dict)  # tool name -> why it is not shown

    def as_json(self) -> dict[str, Any] | None:
        if not self.repaired and not self.withheld:
            return None
        return {"repaired": self.repaired, "withheld": self.withheld}


def _schema(tool: Item, key: str, required: bool) -> tuple[Item | None, str | None, str | None]:
    """(the schema to show, what was mended, why it cannot be shown)."""
    schema = tool.get(key)
    if schema is None:
        return ({"type": "object"}, f"{key} missing: type object", None) if required else (None, None, None)
    if not isinstance(schema, dict):
        return None, None, f"{key} is not a JSON object"
    kind = schema.get("type")
    if kind == "object":
        return schema, None, None
    if kind is None:
        return {"type": "object", **schema}, f"{key} without type: type object", None
    return None, None, f"{key} has type {kind!r}, not object"


def tools(items: list[Item]) -> tuple[list[Item], Report]:
    """The tools a strict client accepts (mended copies where needed), and what was done."""
    report = Report()
    out: list[Item] = []
    names: set[str] = set()
    for index, tool in enumerate(items):
        name = tool.get("name") if isinstance(tool, dict) else None
        if not isinstance(name, str) or not name:
            report.withheld[f"#{index}"] = "no name"
            continue
        if name in names:  # names SHOULD be unique within a server: the first definition is the one shown
            report.withheld[f"{name} (#{index})"] = "the server lists this name twice: its first definition is shown"
            continue
        names.add(name)
        problem = header_problem(tool)
        if problem is not None:
            report.withheld[name] = problem
            continue
        fixed = tool
        for key, required in (("inputSchema", True), ("outputSchema", False)):
            schema, mended, refused = _schema(fixed, key, required)
            if refused is not None:
                report.withheld[name] = refused
                break
            if mended is not None:
                fixed = {**fixed, key: schema}
                report.repaired[name] = "; ".join(filter(None, (report.repaired.get(name), mended)))
        else:
            out.append(fixed)
    return out, report
