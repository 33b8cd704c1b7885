"""The tag filter language: which servers a client sees, as a boolean expression over tags.

    expr   := or
    or     := and (("or" | ",") and)*
    and    := not (("and" | "+") not)*
    not    := ("not" | "!" | "-") not | "(" expr ")" | TAG

Precedence: not > and > or; parentheses group. Tags are letters, digits and `_ . : /`
(and `-` inside a tag). `a,b` = a or b; `a+b` = a and b; `!a` = `-a` = not a.
Errors say what was expected and at which position (0-based).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

TOKEN = re.compile(r"\s*(?:(?P<op>[(),+!])|(?P<minus>-)|(?P<word>[A-Za-z0-9_.:/][A-Za-z0-9_.:/-]*))")
KEYWORDS = {"and", "or", "not"}
MAX_DEPTH = 64


class FilterError(ValueError):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.position = position


@dataclass(frozen=True)
class Tag:
    name: str

    def matches(self, tags: frozenset[str] | set[str]) -> bool:
        return self.name in tags


@dataclass(frozen=True)
class Not:
    inner: Node

    def matches(self, tags: frozenset[str] | set[str]) -> bool:
        return not self.inner.matches(tags)


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Node, ...]

    def matches(self, tags: frozenset[str] | set[str]) -> bool:
        return all(p.matches(tags) for p in self.parts)


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Node, ...]

    def matches(self, tags: frozenset[str] | set[str]) -> bool:
        return any(p.matches(tags) for p in self.parts)


Node = Union[Tag, Not, AllOf, AnyOf]  # noqa: UP007 - a runtime alias used before the classes' annotations resolve


def _tokens(text: str) -> list[tuple[str, str, int, str]]:
    """(kind, value, position, as written): `-` is the operator `!`, a keyword is lower case; errors show
    what was written."""
    out: list[tuple[str, str, int, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            start = pos + (len(text[pos:]) - len(text[pos:].lstrip()))
            raise FilterError(f"unexpected character {text[start]!r}", start)
        start = m.start(m.lastgroup or 0)
        if m.group("op"):
            out.append(("op", m.group("op"), start, m.group("op")))
        elif m.group("minus"):
            out.append(("op", "!", start, "-"))
        else:
            word = m.group("word")
            lowered = word.lower()
            keyword = lowered in KEYWORDS
            out.append(("op" if keyword else "tag", lowered if keyword else word, start, word))
        pos = m.end()
    out.append(("end", "", len(text), ""))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int, str]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, str, int, str]:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> Node:
        if self.peek()[0] == "end":
            raise FilterError("empty filter", 0)
        node = self.or_()
        kind, _, pos, written = self.peek()
        if kind != "end":
            raise FilterError(f"unexpected {written!r}", pos)
        return node

    def or_(self) -> Node:
        parts = [self.and_()]
        while self.peek()[1] in ("or", ","):
            self.take()
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def and_(self) -> Node:
        parts = [self.not_()]
        while self.peek()[1] in ("and", "+"):
            self.take()
            parts.append(self.not_())
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def not_(self) -> Node:
        self.depth += 1
        try:
            return self._not()
        finally:
            self.depth -= 1

    def _not(self) -> Node:
        kind, value, pos, written = self.take()
        if self.depth > MAX_DEPTH:
            raise FilterError(f"the filter nests deeper than {MAX_DEPTH} levels", pos)
        if value in ("not", "!"):
            return Not(self.not_())
        if value == "(":
            node = self.or_()
            _, value2, pos2, _ = self.take()
            if value2 != ")":
                raise FilterError("expected ')'", pos2)
            return node
        if kind == "tag":
            return Tag(value)
        what = "end of filter" if kind == "end" else repr(written)
        raise FilterError(f"expected a tag, 'not' or '(' but found {what}", pos)


TAG_RULE = "a tag is letters, digits and '_ . : /' ('-' after the first character), and not 'and', 'or' or 'not'"


def tags_named(node: Node) -> set[str]:
    """Every tag the expression names (to tell a typo from a tag no server has yet)."""
    if isinstance(node, Tag):
        return {node.name}
    if isinstance(node, Not):
        return tags_named(node.inner)
    return set().union(*(tags_named(part) for part in node.parts))


def is_tag(text: str) -> bool:
    """Can a filter name `text` as a tag? (One TAG token of the grammar, not a keyword.)"""
    m = TOKEN.fullmatch(text)
    return m is not None and m.group("word") == text and text.lower() not in KEYWORDS


def parse(text: str) -> Node:
    """The parsed filter; FilterError (with .position) when it is not one."""
    return _Parser(text).parse()
