"""`onemcp preset ...`: named views in presets.json (create, list, show, edit, delete, url, test).

Owns the arguments, output and exit codes of the preset commands. The file format, validation
and atomic writes are `config.presets`; a running hub re-reads the file by itself. `url` prints
the endpoint a client should use for the preset; `test` shows which servers in mcp.json the
preset's filter lets through, by their `tags`. Errors are one line on stderr (a bad filter also
shows where): exit 2 for a bad request (invalid name or filter), 1 when it cannot be done
(unknown preset, one that exists already, an unreadable file).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from onemcp.cli import argtypes
from onemcp.cli.mcp import FAILED, USAGE_ERROR, CommandError, describe, running_hub
from onemcp.config.files import locked
from onemcp.config.load import resolve_path
from onemcp.config.presets import (
    BadFilter,
    Document,
    PresetError,
    check_filter,
    entry_of,
    name_problem,
    presets_of,
    presets_path,
    read_document,
    save,
    validate,
)
from onemcp.config.runtime import free_port_problem

DEFAULT_HUB_URL = "http://127.0.0.1:3050/mcp"
EXPOSURE_CHOICES = ["full", "search", "auto"]  # config.model.EXPOSURES


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser) -> None:
    preset = sub.add_parser("preset", help="named views: which servers a client sees (presets.json)")
    actions = preset.add_subparsers(dest="action", required=True)

    create = actions.add_parser("create", parents=[config], help="save a filter under a name")
    create.add_argument("name")
    create.add_argument("--filter", required=True, metavar="EXPR", help="tag filter, e.g. 'dev or (git and !slow)'")
    create.add_argument("--description", default="", help="what the preset is for")
    create.add_argument(
        "--exposure",
        choices=EXPOSURE_CHOICES,
        help="tools in full, as search, or auto (search over the hub's searchBudget); left out: the hub's",
    )

    listing = actions.add_parser("list", parents=[config], help="list the presets")
    listing.add_argument("--json", action="store_true", help="machine-readable output")

    show = actions.add_parser("show", parents=[config], help="show one preset")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="machine-readable output")

    edit = actions.add_parser("edit", parents=[config], help="change a preset's filter or description")
    edit.add_argument("name")
    edit.add_argument("--filter", metavar="EXPR", help="the new tag filter")
    edit.add_argument("--description", help="the new description")
    edit.add_argument("--exposure", choices=[*EXPOSURE_CHOICES, "hub"], help="tool exposure ('hub': the hub's)")

    delete = actions.add_parser("delete", parents=[config], help="remove a preset")
    delete.add_argument("name")

    url = actions.add_parser("url", parents=[config], help="the hub URL that selects this preset")
    url.add_argument("name")
    url.add_argument(
        "--base",
        metavar="URL",
        type=argtypes.hub_url,
        help="the hub's URL (default: the running hub, else the default)",
    )

    test = actions.add_parser("test", parents=[config], help="which servers in mcp.json the preset lets through")
    test.add_argument("name")
    test.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    try:
        config_path = resolve_path(args.config)
        path = presets_path(config_path)
        if args.action in ("create", "edit", "delete"):
            with _locked(path):  # read, change, write: concurrent edits take turns
                if args.action == "create":
                    return _create(path, args.name, args.filter, args.description, args.exposure, config_path)
                if args.action == "edit":
                    return _edit(path, args.name, args.filter, args.description, args.exposure, config_path)
                return _delete(path, args.name)
        if args.action == "list":
            return _list(path, args.json)
        if args.action == "show":
            return _show(path, args.name, args.json)
        if args.action == "url":
            return _url(path, config_path, args.name, args.base)
        if args.action == "test":
            return _test(path, config_path, args.name, args.json)
    except BadFilter as exc:
        print(f"onemcp: {exc}", file=sys.stderr)
        print(f"  {exc.expr}\n  {' ' * exc.position}^", file=sys.stderr)
        return USAGE_ERROR
    except PresetError as exc:
        print(f"onemcp: {exc}", file=sys.stderr)
        return FAILED
    except CommandError as exc:
        print(f"onemcp: {exc}", file=sys.stderr)
        return exc.code
    raise AssertionError(f"unhandled action {args.action}")


# ---------------------------------------------------------------------- changes
def _checked_name(name: str) -> str:
    problem = name_problem(name)
    if problem:
        raise CommandError(f"invalid preset name {name!r}: {problem}", USAGE_ERROR)
    return name


def _existing(doc: Document, name: str, path: Path) -> dict[str, Any]:
    if name not in presets_of(doc):
        known = ", ".join(presets_of(doc)) or "none"
        raise CommandError(f"no preset {name!r} in {path} (presets: {known})")
    return entry_of(doc, name)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(locked(path))
        except OSError as exc:
            raise CommandError(f"cannot edit {path}: {exc.strerror or exc}; nothing written, try again") from None
        yield


def _write(path: Path, doc: Document, done: str) -> int:
    try:
        save(path, doc)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"onemcp: {done} in {path}")
    return 0


def _create(path: Path, name: str, expr: str, description: str, exposure: str | None, config: Path) -> int:
    _checked_name(name)
    check_filter(expr)
    doc = read_document(path)
    if name in presets_of(doc):
        raise CommandError(f"preset {name!r} already exists in {path}; change it with `onemcp preset edit {name}`")
    entry: dict[str, Any] = {"filter": expr}
    if description:
        entry["description"] = description
    if exposure:
        entry["exposure"] = exposure
    presets_of(doc)[name] = entry
    _warn_unknown_tags(config, expr)
    return _write(path, doc, f"created preset {name!r}")


def _edit(path: Path, name: str, expr: str | None, description: str | None, exposure: str | None, config: Path) -> int:
    if expr is None and description is None and exposure is None:
        raise CommandError("nothing to change: give --filter, --description and/or --exposure", USAGE_ERROR)
    if expr is not None:
        check_filter(expr)
    doc = read_document(path)
    entry = _existing(doc, name, path)
    if expr is not None:
        entry["filter"] = expr
    if description is not None:
        entry["description"] = description
    if exposure == "hub":
        entry.pop("exposure", None)
    elif exposure is not None:
        entry["exposure"] = exposure
    presets_of(doc)[name] = entry
    if expr is not None:
        _warn_unknown_tags(config, expr)
    return _write(path, doc, f"changed preset {name!r}")


def _warn_unknown_tags(config: Path, expr: str) -> None:
    """A filter naming a tag no server of the config has: most likely a typo (the preset is kept, for
    servers still to come, but said so)."""
    from onemcp.config.edit import EditError, servers_of
    from onemcp.config.edit import read_document as read_config
    from onemcp.config.filters import parse, tags_named
    from onemcp.config.load import ConfigError

    if not config.exists():
        return  # no config to compare with
    try:
        doc = read_config(config, to_edit=False)
        servers = servers_of(doc)
    except (ConfigError, EditError, OSError):
        return  # no config to compare with
    templates = doc.get("mcpTemplates")
    entries = [*servers.values(), *(templates.values() if isinstance(templates, dict) else [])]
    tags = [str(t) for raw in entries for t in (raw.get("tags") or []) if isinstance(raw, dict)]
    if any("{{" in t or "{%" in t for t in tags):
        return  # a template's tag is rendered per client: any may exist
    known = set(tags)
    unknown = sorted(tags_named(parse(expr)) - known)
    if unknown:
        shown = ", ".join(sorted(known)) or "none"
        print(
            f"onemcp: warning: no server has the tag(s) {', '.join(map(repr, unknown))} (in use: {shown})",
            file=sys.stderr,
        )


def _delete(path: Path, name: str) -> int:
    doc = read_document(path)
    _existing(doc, name, path)
    del presets_of(doc)[name]
    return _write(path, doc, f"deleted preset {name!r}")


# ---------------------------------------------------------------------- reading
def _warn_if_invalid(doc: Document, path: Path) -> None:
    """A file edited by hand that the hub refuses: what is shown is not what the hub serves."""
    try:
        validate(doc, source=str(path))
    except PresetError as exc:
        print(f"onemcp: warning: the hub cannot load this file, it keeps the presets it had: {exc}", file=sys.stderr)


def _list(path: Path, as_json: bool) -> int:
    doc = read_document(path)
    _warn_if_invalid(doc, path)
    rows = [{"name": name, **_shown(entry_of(doc, name))} for name in presets_of(doc)]
    if as_json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if not rows:
        print(f"no presets in {path} (`onemcp preset create NAME --filter EXPR` makes one)")
        return 0
    cells = [[r["name"], r["filter"], r.get("exposure", "hub"), r["description"]] for r in rows]  # hub: its own
    table = [["NAME", "FILTER", "EXPOSURE", "DESCRIPTION"], *cells]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _shown(entry: dict[str, Any]) -> dict[str, str]:
    shown = {"filter": str(entry.get("filter", "")), "description": str(entry.get("description", ""))}
    if entry.get("exposure"):
        shown["exposure"] = str(entry["exposure"])
    return shown


def _show(path: Path, name: str, as_json: bool) -> int:
    doc = read_document(path)
    _warn_if_invalid(doc, path)
    entry = _shown(_existing(doc, name, path))
    if as_json:
        sys.stdout.write(orjson.dumps({"name": name, **entry}, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    print(f"name         {name}")
    print(f"filter       {entry['filter']}")
    print(f"description  {entry['description'] or '-'}")
    print(f"exposure     {entry.get('exposure') or '(the hub default)'}")
    return 0


def preset_url(base: str, name: str) -> str:
    """The MCP endpoint of `base` (a hub URL, `/mcp` or not) selecting preset `name`."""
    head, _, query = base.partition("?")
    head = head.rstrip("/")
    if not head.endswith(("/mcp", "/sse")):
        head += "/mcp"
    kept = [part for part in query.split("&") if part and part.split("=", 1)[0] not in ("preset", "filter", "tags")]
    kept.append("preset=" + quote(name, safe=""))
    return f"{head}?{'&'.join(kept)}"


def _url(path: Path, config_path: Path, name: str, base: str | None) -> int:
    _existing(read_document(path), name, path)
    if base is None:
        try:
            runtime = running_hub(config_path)
            base = str(runtime["url"])
            if problem := free_port_problem(runtime):
                print(f"onemcp: warning: {problem}", file=sys.stderr)
        except CommandError as exc:
            print(f"onemcp: note: {exc}; using {DEFAULT_HUB_URL}", file=sys.stderr)
            base = DEFAULT_HUB_URL
    print(preset_url(base, name))
    return 0


def _test(path: Path, config_path: Path, name: str, as_json: bool) -> int:
    from onemcp.config.edit import EditError, servers_of
    from onemcp.config.edit import read_document as read_config
    from onemcp.config.filters import parse
    from onemcp.config.load import ConfigError

    doc = read_document(path)
    _warn_if_invalid(doc, path)
    entry = _shown(_existing(doc, name, path))
    check_filter(entry["filter"], preset=name)
    node = parse(entry["filter"])
    if not config_path.exists():
        raise CommandError(f"no config file at {config_path}")
    try:
        servers = servers_of(read_config(config_path, to_edit=False))
    except (ConfigError, EditError) as exc:
        raise CommandError(str(exc), USAGE_ERROR) from None
    rows = []
    for server, raw in servers.items():
        facts = describe(raw)
        tags = [str(t) for t in facts["tags"]]
        rows.append({"name": server, "tags": tags, "enabled": facts["enabled"], "matches": node.matches(set(tags))})
    if as_json:
        doc = {"preset": name, "filter": entry["filter"], "servers": rows}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    served = [r for r in rows if r["matches"] and r["enabled"]]
    print(f"preset {name!r}: {entry['filter']}")
    print(f"{len(served)} of {len(rows)} server(s) in {config_path} would be served\n")
    table = [["", "SERVER", "TAGS", "NOTE"]]
    for r in rows:
        note = "" if r["enabled"] else "disabled"
        table.append(["+" if r["matches"] else "-", r["name"], ",".join(r["tags"]) or "-", note])
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0
