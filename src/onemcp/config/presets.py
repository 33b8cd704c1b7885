"""presets.json: named views (a tag filter and a description), beside mcp.json.

    {"presets": {"dev": {"filter": "dev or (git and !slow)", "description": "coding", "exposure": "search"}}}

Owns the file format: reading it (a missing file is no presets; `"name": "<filter>"` is accepted
as shorthand), validating names and filters with errors that say which preset and where in the
filter, and writing it atomically so a running hub, which re-reads it on change, never sees half
a file. Keys it does not know are kept, but one that reads as a misspelt key of its own
("exposur", "preset") is refused: what it meant would silently not apply. Does not decide what a
filter matches (`catalog.filters`) or which sessions use a preset (the hub).

Errors::

    PresetError      the file or an entry cannot be used; the message names the preset
    └── BadFilter    a filter does not parse; `.position` (0-based) and `.expr` say where
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import orjson

from onemcp.config.files import atomic_write, locked
from onemcp.config.model import EXPOSURES

PRESETS_FILE = "presets.json"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ENTRY_KEYS = ("filter", "description", "exposure")
TYPO = 0.75  # a key this close to one of ours (difflib's ratio) is a misspelling, not a key of the user's own
Document = dict[str, Any]


class PresetError(Exception):
    """The presets file or one preset cannot be used; the message says which and why."""


class BadFilter(PresetError):
    def __init__(self, message: str, expr: str, position: int) -> None:
        super().__init__(message)
        self.expr = expr
        self.position = position


def presets_path(config_path: Path) -> Path:
    """presets.json lives beside mcp.json."""
    return config_path.parent / PRESETS_FILE


def name_problem(name: str) -> str | None:
    if not NAME.match(name):
        return "a preset name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
    return None


def check_filter(expr: str, *, preset: str | None = None) -> None:
    """BadFilter when `expr` is not a tag filter (see `catalog.filters`)."""
    from onemcp.config.filters import FilterError, parse

    try:
        parse(expr)
    except FilterError as exc:
        where = f"preset {preset!r}: " if preset else ""
        raise BadFilter(f"{where}invalid filter: {exc}", expr, exc.position) from None


def entry_of(doc: Document, name: str) -> dict[str, Any]:
    """One preset as `{"filter", "description", ...}` (shorthand strings expanded)."""
    raw = presets_of(doc)[name]
    return {"filter": raw} if isinstance(raw, str) else dict(raw)


def misspelt(keys: Any, known: tuple[str, ...]) -> str | None:
    """`key: did you mean 'x'?` for the first key that is not one of `known` but reads as one, else None."""
    for key in keys:
        if isinstance(key, str) and key not in known:
            close = difflib.get_close_matches(key.lower(), known, n=1, cutoff=TYPO)
            if close:
                return f"{key}: unknown key; did you mean {close[0]!r}?"
    return None


def presets_of(doc: Document) -> dict[str, Any]:
    """The `presets` object of a document, created when missing."""
    presets = doc.setdefault("presets", {})
    if not isinstance(presets, dict):
        raise PresetError("'presets' must be an object of name -> {filter, description}")
    return presets


def read_document(path: Path) -> Document:
    """The file as written (unknown keys kept); an empty document when it does not exist."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {"presets": {}}
    except OSError as exc:
        raise PresetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        doc = orjson.loads(raw) if raw.strip() else {"presets": {}}
    except orjson.JSONDecodeError as exc:
        raise PresetError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PresetError(f"{path}: the top level must be a JSON object")
    return doc


def validate(doc: Document, *, source: str = PRESETS_FILE) -> dict[str, dict[str, str]]:
    """name -> {"filter", "description"} for every preset; PresetError naming the first bad one."""
    out: dict[str, dict[str, str]] = {}
    try:
        presets = presets_of(doc)
    except PresetError as exc:
        raise PresetError(f"{source}: {exc}") from None
    if typo := misspelt(doc, ("presets",)):
        raise PresetError(f"{source}: {typo}")
    for name, raw in presets.items():
        where = f"{source}: presets.{name}"
        problem = name_problem(name)
        if problem:
            raise PresetError(f"{where}: {problem}")
        entry = {"filter": raw} if isinstance(raw, str) else raw
        if not isinstance(entry, dict):
            raise PresetError(f'{where}: expected an object like {{"filter": "dev"}}')
        if typo := misspelt(entry, ENTRY_KEYS):
            raise PresetError(f"{where}.{typo}")
        expr, description = entry.get("filter"), entry.get("description", "")
        if not isinstance(expr, str) or not expr.strip():
            raise PresetError(f"{where}.filter: must be a non-empty string")
        if not isinstance(description, str):
            raise PresetError(f"{where}.description: must be a string")
        exposure = entry.get("exposure")
        if exposure is not None and exposure not in EXPOSURES:
            raise PresetError(f"{where}.exposure: must be one of {', '.join(EXPOSURES)}")
        try:
            check_filter(expr)
        except BadFilter as exc:
            raise BadFilter(f"{where}.filter: {exc}", expr, exc.position) from None
        out[name] = {"filter": expr, "description": description}
        if exposure is not None:
            out[name]["exposure"] = exposure
    return out


def load_presets(path: Path) -> dict[str, dict[str, str]]:
    """Every preset in the file, validated (a missing file: none)."""
    return validate(read_document(path), source=str(path))


def save(path: Path, doc: Document) -> None:
    """Validate `doc`, then replace the file atomically (a hub re-reading it never sees half a file)."""
    validate(doc, source=str(path))
    atomic_write(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")


def put(path: Path, name: str, entry: dict[str, Any]) -> None:
    """Add or replace preset `name` in the file, under its edit lock. Blocking (the lock may be held by
    another editor for seconds): a hub calls it on a worker thread."""
    with locked(path):
        doc = read_document(path)
        presets_of(doc)[name] = entry
        save(path, doc)


def remove(path: Path, name: str) -> bool:
    """Remove preset `name` from the file, under its edit lock; False when it has none. Blocking, as `put`."""
    with locked(path):
        doc = read_document(path)
        if name not in presets_of(doc):
            return False
        del presets_of(doc)[name]
        save(path, doc)
        return True
