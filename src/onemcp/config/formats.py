"""Config files in three formats: JSON (with comments: JSONC), YAML and TOML, chosen by extension.

Owns turning a file's bytes into one plain document (dicts, lists, strings, numbers, booleans)
with the same rules everywhere: a key written twice in one object is an error (JSON and YAML
would silently keep the last), and errors say the line. Does not validate the document (`model`).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

FORMATS = {".json": "json", ".jsonc": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}


class FormatError(Exception):
    """The file is not a document of its format (the message says where)."""


def format_of(path: Path | str) -> str:
    return FORMATS.get(Path(path).suffix.lower(), "json")


def parse(raw: bytes, fmt: str = "json") -> Any:
    text = raw.decode("utf-8-sig", errors="strict") if raw else ""
    if fmt == "yaml":
        return _yaml(text)
    if fmt == "toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise FormatError(f"not valid TOML: {exc}") from None
    return _json(text)


# ----------------------------------------------------------------------------- JSON / JSONC
# A trailing comma is one followed by the closing bracket, with only blanks and comments between
# (possessive, atomic: a comment is skipped whole, never cut short or run on to a bracket inside one).
_JSONC = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/|,(?=(?:\s|//[^\n]*+|(?>/\*.*?\*/))*[}\]])', re.DOTALL)


def strip_jsonc(text: str) -> str:
    """`text` without // and /* */ comments and trailing commas (strings untouched; lines kept)."""

    def keep(m: re.Match[str]) -> str:
        token = m.group(0)
        if token.startswith('"'):
            return token
        return "\n" * token.count("\n") if token.startswith("/") else ""

    return _JSONC.sub(keep, text)


def is_plain_json(text: str) -> bool:
    """True when `text` has no comments or trailing commas, so rewriting it whole loses nothing."""
    return strip_jsonc(text) == text


class _Twice(Exception):
    """A key written twice (found by the parser, which knows no position; `_where_twice` finds it)."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Twice(key)
        out[key] = value
    return out


# In valid JSON (comments gone): a string, and whether a colon follows it (then it is a key).
_TOKEN = re.compile(r'"((?:\\.|[^"\\])*)"(\s*:)?|[{}\[\]]')


def _where_twice(text: str) -> str:
    """' at PATH (line N)' of the first key written twice in one object of valid JSON `text`."""
    stack: list[tuple[set[str] | None, str]] = []  # each open object's keys so far (None: an array), its path
    key = ""
    for m in _TOKEN.finditer(text):
        token = m.group(0)
        if token in ("{", "["):
            parent = stack[-1] if stack else None
            where = "" if parent is None else f"{parent[1]}[]" if parent[0] is None else f"{parent[1]}.{key}"
            stack.append((set() if token == "{" else None, where.lstrip(".")))
        elif token in ("}", "]") and stack:
            stack.pop()
        elif m.group(2) and stack and (seen := stack[-1][0]) is not None:
            key = json.loads(f'"{m.group(1)}"')
            if key in seen:
                path = f"{stack[-1][1]}.{key}".lstrip(".")
                return f" at {path} (line {text.count(chr(10), 0, m.start()) + 1})"
            seen.add(key)
    return ""


def _json(text: str) -> Any:
    plain = strip_jsonc(text)
    try:
        return json.loads(plain, object_pairs_hook=_pairs)
    except json.JSONDecodeError as exc:
        raise FormatError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except _Twice as exc:
        where = _where_twice(plain)
        raise FormatError(
            f"the key {exc.args[0]!r} is written twice in one object{where} (the second would silently win)"
        ) from None


# ----------------------------------------------------------------------------- YAML
def _yaml(text: str) -> Any:
    import yaml

    class StrictLoader(yaml.SafeLoader):  # type: ignore[misc]
        pass

    def mapping(loader: StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                line = key_node.start_mark.line + 1
                raise FormatError(f"the key {key!r} is written twice in one mapping (line {line})")
            out[key] = loader.construct_object(value_node, deep=True)
        return out

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.MarkedYAMLError as exc:  # said by where, never with the lines around it: they may hold a secret
        parts = ((exc.context, exc.context_mark), (exc.problem, exc.problem_mark))
        said = [f"{what} ({_position(mark)})" if mark is not None else what for what, mark in parts if what]
        raise FormatError(f"not valid YAML: {': '.join(said)}") from None
    except yaml.YAMLError as exc:
        raise FormatError(f"not valid YAML: {exc}") from None


def _position(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"
