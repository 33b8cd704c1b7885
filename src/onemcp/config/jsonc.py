"""Writing a change into JSON with comments (JSONC) in place: what the change did not touch stays as written.

Owns the smallest text edit that turns a JSONC document holding `before` into one holding `after`:
each object member that went is cut (with its comma, and its line when it had the line to itself, a
comment at the end of that line included), each one that came is added after the object's last member
(indented as its siblings, one line if they are one line each, or inline in a one-line object), and a
value that changed is written again in its place; an object that is an object on both sides is edited
member by member, so a change deep inside (`"disabled": true` in one server) touches that member only.
Comments (those around a member that went too, except at the end of its line), blank lines, key order and
the formatting of the rest are kept. Reading the document (comments, trailing commas, duplicate keys) is
`formats`; the caller checks that the result reads back as `after`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_SPACE = " \t\r\n"


class JsoncError(ValueError):
    """The text is not the JSONC document it was said to be (a bug in the caller, not the user's error)."""


@dataclass
class Node:
    """A value's text: [start, end); an object's members, in order."""

    start: int
    end: int
    members: list[Member] | None = None


@dataclass
class Member:
    key: str
    key_start: int
    value: Node
    comma: int | None = None  # where the comma after it is (None: the last one, without a trailing comma)


@dataclass
class _Edits:
    text: str
    unit: str  # one level of indentation, as the document writes it
    newline: str
    cuts: list[tuple[int, int, str]] = field(default_factory=list)

    def put(self, start: int, end: int, new: str) -> None:
        self.cuts.append((start, end, new))

    def result(self) -> str:
        cuts: list[tuple[int, int, str]] = []
        for start, end, new in sorted(self.cuts, key=lambda c: (c[0], c[1])):
            if cuts and start <= cuts[-1][1] and not new and not cuts[-1][2]:
                cuts[-1] = (cuts[-1][0], max(end, cuts[-1][1]), "")  # two cuts that meet are one
            elif cuts and start < cuts[-1][1]:
                raise JsoncError("overlapping edits")
            else:
                cuts.append((start, end, new))
        out, last = [], len(self.text)
        for start, end, new in reversed(cuts):
            out.append(self.text[end:last])
            out.append(new)
            last = start
        out.append(self.text[:last])
        return "".join(reversed(out))


def patch(text: str, before: Any, after: Any) -> str:
    """`text` (a JSONC document whose value is `before`) edited to hold `after`.

    Members that go are cut first, in a pass of their own, and the rest is added or changed in a second:
    so an object that loses some members and gains others is still edited member by member (one that
    keeps none of them is written anew)."""
    cut = _cut_only(before, after)
    if cut != before and cut != after:
        return _patch(_patch(text, before, cut), cut, after)
    return _patch(text, before, after)


def _cut_only(before: Any, after: Any) -> Any:
    """`before` without the object members `after` has not (at every depth), nothing else changed; an
    object that keeps none of its members is left whole (it is written anew in the second pass)."""
    if not isinstance(before, dict) or not isinstance(after, dict) or (before and not before.keys() & after.keys()):
        return before
    return {key: _cut_only(value, after[key]) for key, value in before.items() if key in after}


def _patch(text: str, before: Any, after: Any) -> str:
    root = parse(text)
    unit = re.search(r"\n([ \t]+)\S", text)
    edits = _Edits(text, unit.group(1) if unit else "  ", "\r\n" if "\r\n" in text else "\n")
    _change(edits, root, before, after)
    return edits.result()


# ----------------------------------------------------------------------------- reading, with positions
def parse(text: str) -> Node:
    """The document's top value, with the position of everything in it."""
    node, i = _value(text, _skip(text, 0))
    if _skip(text, i) != len(text):
        raise JsoncError(f"text after the document at {i}")
    return node


def _skip(text: str, i: int) -> int:
    """Past blanks and comments."""
    n = len(text)
    while i < n:
        if text[i] in _SPACE:
            i += 1
        elif text.startswith("//", i):
            newline = text.find("\n", i)
            i = n if newline < 0 else newline
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            i = n if close < 0 else close + 2
        else:
            break
    return i


def _string_end(text: str, i: int) -> int:
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    raise JsoncError("an unclosed string")


def _value(text: str, i: int) -> tuple[Node, int]:
    if i >= len(text):
        raise JsoncError("a value is missing at the end")
    ch = text[i]
    if ch == "{":
        return _object(text, i)
    if ch == "[":
        j = _skip(text, i + 1)
        while j < len(text) and text[j] != "]":
            _, j = _value(text, j)
            j = _skip(text, j)
            if j < len(text) and text[j] == ",":
                j = _skip(text, j + 1)
        return Node(i, j + 1), j + 1
    if ch == '"':
        end = _string_end(text, i)
        return Node(i, end), end
    j = i
    while j < len(text) and text[j] not in _SPACE + ",]}/":
        j += 1
    if j == i:
        raise JsoncError(f"unexpected {ch!r} at {i}")
    return Node(i, j), j


def _object(text: str, i: int) -> tuple[Node, int]:
    node = Node(i, i, [])
    j = _skip(text, i + 1)
    while j < len(text) and text[j] != "}":
        if text[j] != '"':
            raise JsoncError(f"a key was expected at {j}")
        key_end = _string_end(text, j)
        member = Member(json.loads(text[j:key_end]), j, Node(0, 0))
        j = _skip(text, key_end)
        if j >= len(text) or text[j] != ":":
            raise JsoncError(f"':' was expected at {j}")
        member.value, j = _value(text, _skip(text, j + 1))
        j = _skip(text, j)
        if j < len(text) and text[j] == ",":
            member.comma = j
            j = _skip(text, j + 1)
        node.members.append(member)  # type: ignore[union-attr]
    if j >= len(text):
        raise JsoncError("an unclosed object")
    node.end = j + 1
    return node, j + 1


# ----------------------------------------------------------------------------- the edit
def _change(edits: _Edits, node: Node, before: Any, after: Any) -> None:
    if before == after:
        return
    members = {m.key: m for m in node.members or []}
    if not isinstance(before, dict) or not isinstance(after, dict) or node.members is None:
        edits.put(node.start, node.end, _render(edits, after, node))
        return
    gone = [m for m in node.members if m.key not in after]
    added = {k: v for k, v in after.items() if k not in before}
    if (gone and added) or set(before) != set(members):  # replaced whole, or duplicate keys: anew
        edits.put(node.start, node.end, _render(edits, after, node))
        return
    for member in gone:
        _cut(edits, node.members, member)
    kept = [m for m in node.members if m.key in after]
    trailing = bool(node.members) and node.members[-1].comma is not None  # the document writes them
    if gone and not trailing and node.members[-1] in gone and kept and kept[-1].comma is not None:
        comma = kept[-1].comma
        edits.put(comma, comma + 1, "")  # the last one now: no trailing comma
    for member in kept:
        _change(edits, member.value, before[member.key], after[member.key])
    if added:
        _add(edits, node, kept, added, trailing=trailing)


def _line_start(text: str, i: int) -> int:
    return text.rfind("\n", 0, i) + 1


def _indent_of(text: str, i: int) -> str:
    """The blanks that begin the line `i` is on."""
    line = text[_line_start(text, i) : i]
    return line[: len(line) - len(line.lstrip(" \t"))]


def _starts_line(text: str, i: int) -> bool:
    return not text[_line_start(text, i) : i].strip()


def _rest_of_line(text: str, i: int) -> int | None:
    """Where the line ends (its newline's end) if only blanks and a // comment follow `i`; else None."""
    j = i
    while j < len(text) and text[j] in " \t\r":
        j += 1
    if text.startswith("//", j):
        j = text.find("\n", j)
        j = len(text) if j < 0 else j
    if j >= len(text):
        return j
    return j + 1 if text[j] == "\n" else None


def _cut(edits: _Edits, members: list[Member], member: Member) -> None:
    """Cut `member` out: its line if it has the line to itself, else its text and the comma around it
    (a cut that meets another one joins it)."""
    text = edits.text
    index = members.index(member)
    end = member.value.end if member.comma is None else member.comma + 1
    line_end = _rest_of_line(text, end)
    if _starts_line(text, member.key_start) and line_end is not None:
        edits.put(_line_start(text, member.key_start), line_end, "")
    elif member.comma is None and index > 0:  # ', "b": 2}': from the comma before it (cut apart, if kept)
        comma = members[index - 1].comma
        assert comma is not None
        if text[comma + 1 : member.key_start].strip():  # comments between them stay: the comma goes alone
            edits.put(comma, comma + 1, "")
            own_line = _starts_line(text, member.key_start)
            edits.put(_line_start(text, member.key_start) if own_line else member.key_start, member.value.end, "")
        else:
            edits.put(comma + 1, member.value.end, "")
    else:
        while end < len(text) and text[end] in " \t":
            end += 1
        edits.put(member.key_start, end, "")


def _add(edits: _Edits, node: Node, kept: list[Member], added: dict[str, Any], *, trailing: bool) -> None:
    """Add the members after the last one (inside the braces if none), as the last one is written."""
    text = edits.text
    anchor = kept[-1] if kept else None
    inline = anchor is not None and not _starts_line(text, anchor.key_start)
    if anchor is None:
        indent = _indent_of(text, node.start) + edits.unit
        one_line = False
    else:
        indent = _indent_of(text, anchor.key_start)
        one_line = "\n" not in text[anchor.value.start : anchor.value.end]
    entries = [
        f"{json.dumps(key, ensure_ascii=False)}: {_dump(edits, value, indent, one_line or inline)}"
        for key, value in added.items()
    ]
    if anchor is None:
        inside = text[node.start + 1 : node.end - 1]
        new = edits.newline + indent + ("," + edits.newline + indent).join(entries)
        if inside.strip():  # comments only: the members go before them
            edits.put(node.start + 1, node.start + 1, new)
        else:
            edits.put(node.start + 1, node.end - 1, new + edits.newline + _indent_of(text, node.start))
        return
    after_anchor = anchor.value.end if anchor.comma is None else anchor.comma + 1
    if inline:
        at, new = after_anchor, (" " if trailing else ", ") + ", ".join(entries) + ("," if trailing else "")
    else:
        line_end = _rest_of_line(text, after_anchor)
        at = after_anchor if line_end is None else len(text[:line_end].rstrip("\r\n"))
        joined = ("," + edits.newline + indent).join(entries)
        new = edits.newline + indent + joined + ("," if trailing else "")
    if trailing or inline:
        edits.put(at, at, new)
    elif at == anchor.value.end:
        edits.put(at, at, "," + new)
    else:
        edits.put(anchor.value.end, anchor.value.end, ",")
        edits.put(at, at, new)


def _dump(edits: _Edits, value: Any, indent: str, one_line: bool) -> str:
    if one_line:
        return json.dumps(value, ensure_ascii=False)
    rendered = json.dumps(value, ensure_ascii=False, indent=edits.unit)
    return rendered.replace("\n", edits.newline + indent)


def _render(edits: _Edits, value: Any, node: Node) -> str:
    """`value` written where `node` was, one line if that was one line."""
    one_line = "\n" not in edits.text[node.start : node.end]
    return _dump(edits, value, _indent_of(edits.text, node.start), one_line)
