"""List entries a strict client would reject: mended where the spec says what they mean, else withheld.

Owns one rule set per list kind, applied to each upstream's tools, prompts, resources and resource
templates before they join the aggregated lists, so that one server's bad entry cannot make a
strict client (the official SDKs validate every entry, in both eras) reject the whole list of every
server. Tools: an `inputSchema` without `type` (or without any schema) becomes `type: object`, as
the spec requires of a tool's input; the same for an `outputSchema` without `type`; an optional
field of the wrong type (a `title` or `description` that is not a string, `annotations`,
`execution`, `icons` or `_meta` not shaped as the spec says) is dropped, or only its bad entries
(an icon, an annotation hint). Withheld: a tool without a string name, whose schema is not an
object schema at all or has `properties`, `required` or `$schema` of the wrong type (what the
arguments are cannot be told), or whose `x-mcp-header` annotations are invalid (the spec has
clients drop it). Prompts, resources and templates alike: a mistyped optional field (`title`,
`description`, `mimeType`, `size`, `icons`, `annotations`, `_meta`, an argument's `title`,
`description` or `required`) is dropped; an entry whose identity is mistyped (a prompt's name, a
resource's `uri` or `name`, a template's `uriTemplate` or `name`) or whose prompt `arguments` are
not a list of named arguments is withheld. Any entry larger than `max_bytes` serialised
(`onemcp.limits.maxListItemBytes`) is withheld too: every list reply carries each entry it shows, so
one huge definition would cost every client that lists it (and the hub, per reply) its size. Both are
reported per server and kind (`/health`), never silently. A JSON null stands for an absent optional
field, as the SDKs read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from onemcp.protocol.headers import header_problem

Item = dict[str, Any]


@dataclass
class Report:
    repaired: dict[str, str] = field(default_factory=dict)  # tool name -> what was mended
    withheld: dict[str, str] = field(default_factory=dict)  # tool name -> why it is not shown
    oversized: set[str] = field(default_factory=set)  # the names (URIs) of those withheld for their size

    def as_json(self) -> dict[str, Any] | None:
        if not self.repaired and not self.withheld:
            return None
        return {"repaired": self.repaired, "withheld": self.withheld}


HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")
TASK_SUPPORT = ("forbidden", "optional", "required")
THEMES = ("dark", "light")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _shape_problem(schema: Item, key: str) -> str | None:
    """Why a schema's own keywords are not what the spec types them as, or None."""
    properties = schema.get("properties")
    if properties is not None and not (
        isinstance(properties, dict) and all(isinstance(v, dict | bool) for v in properties.values())
    ):
        return f"{key}.properties is not an object of schemas"
    required = schema.get("required")
    if required is not None and not _strings(required):
        return f"{key}.required is not a list of strings"
    if schema.get("$schema") is not None and not isinstance(schema["$schema"], str):
        return f"{key}.$schema is not a string"
    return None


def _schema(tool: Item, key: str, required: bool) -> tuple[Item | None, str | None, str | None]:
    """(the schema to show, what was mended, why it cannot be shown)."""
    schema = tool.get(key)
    if schema is None:
        return ({"type": "object"}, f"{key} missing: type object", None) if required else (None, None, None)
    if not isinstance(schema, dict):
        return None, None, f"{key} is not a JSON object"
    problem = _shape_problem(schema, key)
    if problem is not None:
        return None, None, problem
    kind = schema.get("type")
    if kind == "object":
        return schema, None, None
    if kind is None:
        return {"type": "object", **schema}, f"{key} without type: type object", None
    return None, None, f"{key} has type {kind!r}, not object"


def _icon_ok(icon: Any) -> bool:
    return (
        isinstance(icon, dict)
        and isinstance(icon.get("src"), str)
        and (icon.get("mimeType") is None or isinstance(icon["mimeType"], str))
        and (icon.get("sizes") is None or _strings(icon["sizes"]))
        and icon.get("theme") in (None, *THEMES)
    )


def _common(fixed: Item, mended: list[str]) -> None:
    """Drop the fields every listed entry may carry (`title`, `description`, `_meta`, `icons`) where mistyped."""
    for key in ("title", "description"):
        if fixed.get(key) is not None and not isinstance(fixed[key], str):
            mended.append(f"{key} is not a string: dropped")
            del fixed[key]
    if fixed.get("_meta") is not None and not isinstance(fixed["_meta"], dict):
        mended.append("_meta is not an object: dropped")
        del fixed["_meta"]
    icons = fixed.get("icons")
    if icons is not None:
        if not isinstance(icons, list):
            mended.append("icons is not a list: dropped")
            del fixed["icons"]
        elif not all(_icon_ok(icon) for icon in icons):
            mended.append("icons without a string src or with mistyped fields: dropped")
            fixed["icons"] = [icon for icon in icons if _icon_ok(icon)]


def _fields(tool: Item) -> tuple[Item, list[str]]:
    """The tool with its mistyped optional fields (or their bad entries) dropped, and what was dropped."""
    fixed = dict(tool)
    mended: list[str] = []
    _common(fixed, mended)
    notes = fixed.get("annotations")
    if notes is not None:
        if not isinstance(notes, dict):
            mended.append("annotations is not an object: dropped")
            del fixed["annotations"]
        else:
            bad = [k for k in HINTS if notes.get(k) is not None and not isinstance(notes[k], bool)]
            bad += ["title"] if notes.get("title") is not None and not isinstance(notes["title"], str) else []
            if bad:
                mended.append(f"annotations {', '.join(bad)} of the wrong type: dropped")
                fixed["annotations"] = {k: v for k, v in notes.items() if k not in bad}
    execution = fixed.get("execution")
    if execution is not None and not (
        isinstance(execution, dict) and execution.get("taskSupport") in (None, *TASK_SUPPORT)
    ):
        mended.append("execution is not an object with a known taskSupport: dropped")
        del fixed["execution"]
    return (fixed, mended) if mended else (tool, [])


def _too_large(item: Item, max_bytes: int | None) -> str | None:
    """Why an entry is too large to be listed (over `max_bytes` serialised), or None."""
    if max_bytes is None:
        return None
    size = len(orjson.dumps(item))
    if size <= max_bytes:
        return None
    return f"its definition is {size} bytes, over maxListItemBytes ({max_bytes})"


def _oversized(report: Report, ident: str, item: Item, max_bytes: int | None) -> bool:
    """Withhold an entry over `max_bytes` (noted in `report`); True when it was."""
    why = _too_large(item, max_bytes)
    if why is None:
        return False
    report.withheld[ident] = why
    report.oversized.add(ident)
    return True


def tools(items: list[Item], max_bytes: int | None = None) -> tuple[list[Item], Report]:
    """The tools a strict client accepts (mended copies where needed), none over `max_bytes` serialised,
    and what was done."""
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
        if _oversized(report, name, tool, max_bytes):
            continue
        problem = header_problem(tool)
        if problem is not None:
            report.withheld[name] = problem
            continue
        fixed, notes = _fields(tool)
        for key, required in (("inputSchema", True), ("outputSchema", False)):
            schema, mended, refused = _schema(fixed, key, required)
            if refused is not None:
                report.withheld[name] = refused
                break
            if mended is not None:
                fixed = {**fixed, key: schema}
                notes.append(mended)
        else:
            if notes:
                report.repaired[name] = "; ".join(notes)
            out.append(fixed)
    return out, report


ROLES = ("assistant", "user")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _annotation_ok(key: str, value: Any) -> bool:
    if key == "audience":
        return isinstance(value, list) and all(role in ROLES for role in value)
    if key == "lastModified":
        return isinstance(value, str)
    return _number(value) and 0 <= value <= 1  # priority


def bad_annotations(notes: Item) -> list[str]:
    """The keys of a resource's (or content's) `annotations` that are mistyped: audience, lastModified, priority."""
    return [
        k
        for k in ("audience", "lastModified", "priority")
        if notes.get(k) is not None and not _annotation_ok(k, notes[k])
    ]


def _entry_annotations(fixed: Item, mended: list[str]) -> None:
    """A resource's or template's `annotations`: bad ones dropped."""
    notes = fixed.get("annotations")
    if notes is None:
        return
    if not isinstance(notes, dict):
        mended.append("annotations is not an object: dropped")
        del fixed["annotations"]
        return
    bad = bad_annotations(notes)
    if bad:
        mended.append(f"annotations {', '.join(bad)} of the wrong type: dropped")
        fixed["annotations"] = {k: v for k, v in notes.items() if k not in bad}


def _argument(argument: Item, mended: list[str]) -> Item:
    """A prompt argument with its mistyped `title`, `description` or `required` dropped."""
    bad = [k for k in ("title", "description") if argument.get(k) is not None and not isinstance(argument[k], str)]
    bad += ["required"] if argument.get("required") is not None and not isinstance(argument["required"], bool) else []
    if not bad:
        return argument
    mended.append(f"argument {argument['name']!r}: {', '.join(bad)} of the wrong type: dropped")
    return {k: v for k, v in argument.items() if k not in bad}


def _prompt(prompt: Item, mended: list[str]) -> str | None:
    """Mend a prompt copy in place; why it cannot be shown, or None."""
    _common(prompt, mended)
    arguments = prompt.get("arguments")
    if arguments is None:
        return None
    if not isinstance(arguments, list) or not all(
        isinstance(a, dict) and isinstance(a.get("name"), str) and a["name"] for a in arguments
    ):
        return "arguments is not a list of objects with a string name"
    fixed = [_argument(a, mended) for a in arguments]
    if any(a is not b for a, b in zip(fixed, arguments, strict=True)):
        prompt["arguments"] = fixed
    return None


def _resource(entry: Item, mended: list[str]) -> str | None:
    """Mend a resource or template copy in place; why it cannot be shown, or None."""
    if not isinstance(entry.get("name"), str):
        return "name is not a string"
    _common(entry, mended)
    _entry_annotations(entry, mended)
    if entry.get("mimeType") is not None and not isinstance(entry["mimeType"], str):
        mended.append("mimeType is not a string: dropped")
        del entry["mimeType"]
    size = entry.get("size")
    whole = (isinstance(size, int) and not isinstance(size, bool)) or (isinstance(size, float) and size.is_integer())
    if size is not None and not whole:
        mended.append("size is not an integer: dropped")
        del entry["size"]
    return None


KEYS = {"prompts": "name", "resources": "uri", "resourceTemplates": "uriTemplate"}  # each kind's identity
MENDERS = {"prompts": _prompt, "resources": _resource, "resourceTemplates": _resource}


def entries(kind: str, items: list[Item], max_bytes: int | None = None) -> tuple[list[Item], Report]:
    """The prompts, resources or resource templates a strict client accepts (mended copies where
    needed), none over `max_bytes` serialised, and what was done; each is named in the report by its
    name, URI or URI template."""
    key = KEYS[kind]
    report = Report()
    out: list[Item] = []
    for index, item in enumerate(items):
        ident = item.get(key) if isinstance(item, dict) else None
        if not isinstance(ident, str) or not ident:
            why = f"{key} is empty" if ident == "" else f"{key} is not a string"
            report.withheld[f"#{index}"] = why if isinstance(item, dict) else "not an object"
            continue
        if _oversized(report, ident, item, max_bytes):
            continue
        fixed, mended = dict(item), list[str]()
        refused = MENDERS[kind](fixed, mended)
        if refused is not None:
            report.withheld[ident] = refused
        elif mended:
            report.repaired[ident] = "; ".join(mended)
            out.append(fixed)
        else:
            out.append(item)
    return out, report
