"""`onemcp app ...`: find other MCP clients' servers, import them, and point those clients at the hub.

Owns the arguments, the plan shown to the user, confirmation, and exit codes of discover,
import and restore. What each app's files look like is `config.apps`; naming and conflicts are
`config.importing`; mcp.json writes are `config.edit`; rewriting an app's own config (and
undoing that) is `config.redirect`. Exit 2 for a bad request, 1 when something was left undone.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from pathlib import Path
from typing import Any

import orjson

from onemcp.cli import argtypes
from onemcp.cli.mcp import FAILED, USAGE_ERROR, CommandError, describe, running_hub
from onemcp.config.edit import EditError, edit_config, read_document
from onemcp.config.load import ConfigError, environment, load_config, resolve_path
from onemcp.config.runtime import free_port_problem
from onemcp.integrations.apps import APPS, DEFAULT_HUB_URL, App, FoundServer, SourceReport, Where, discover
from onemcp.integrations.importing import Action, Planned, apply_plan, plan_import, same_url
from onemcp.integrations.redirect import (
    POINT_TO_HUB,
    RedirectError,
    Rewrite,
    apply_redirect,
    manifests,
    plan_redirect,
    read_manifest,
    restore,
)

APP_BACKUPS = "app-backups"
_MARKS = {Action.ADD: "+", Action.REPLACE: "~", Action.SKIP: "=", Action.CONFLICT: "!", Action.INVALID: "x"}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser) -> None:
    app = sub.add_parser("app", help="import servers from other MCP clients and point them at the hub")
    actions = app.add_subparsers(dest="action", required=True)
    names = list(APPS)

    found = actions.add_parser("discover", help="list the MCP servers other apps have configured")
    found.add_argument("--json", action="store_true", help="machine-readable output")

    imp = actions.add_parser("import", parents=[config], help="copy an app's servers into mcp.json")
    imp.add_argument("app", choices=names)
    imp.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    imp.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    imp.add_argument("--prefix", default="", help="put this in front of every imported name")
    imp.add_argument("--force", action="store_true", help="overwrite servers of the same name in mcp.json")
    imp.add_argument(
        "--point-to-hub",
        action="store_true",
        help="then rewrite the app's config to use only the hub (backed up first; see `app restore`)",
    )
    imp.add_argument(
        "--hub-url", help=f"the hub's URL for --point-to-hub (default: the running hub, else {DEFAULT_HUB_URL})"
    )

    back = actions.add_parser("restore", parents=[config], help="undo --point-to-hub from a backup")
    back.add_argument("app", choices=names)
    back.add_argument("--list", action="store_true", help="list the backups instead")
    back.add_argument(
        "--backup", type=argtypes.path, help="restore this backup file (default: the latest --point-to-hub one)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "discover":
            return _discover(args)
        if args.action == "import":
            return _import(args)
        if args.action == "restore":
            return _restore(args)
    except CommandError as exc:
        print(f"onemcp: {exc}", file=sys.stderr)
        return exc.code
    raise AssertionError(f"unhandled action {args.action}")


def backups_root(config_flag: str | None) -> Path:
    return resolve_path(config_flag).parent / APP_BACKUPS


# ---------------------------------------------------------------------- discover
def _discover(args: argparse.Namespace) -> int:
    where = Where.current()
    results = [(app, discover(app, where)) for app in APPS.values()]
    if args.json:
        doc = [
            {"app": app.name, "label": app.label, "sources": [_source_json(r) for r in reports]}
            for app, reports in results
        ]
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    for app, reports in results:
        print(f"{app.label} ({app.name})")
        present = [r for r in reports if r.exists]
        if not present:
            checked = ", ".join(dict.fromkeys(str(r.source.path) for r in reports))
            print(f"  no config found (looked at {checked})")
        for report in present:
            print(f"  {report.source.label}: {report.error or f'{len(report.servers)} server(s)'}")
            width = max((len(s.name) for s in report.servers), default=0)
            for server in report.servers:
                print(f"    {server.name.ljust(width)}  {_target(server)}")
                for note in server.notes:
                    print(f"    {' ' * width}  note: {note}")
    return 0


def _source_json(report: SourceReport) -> dict[str, Any]:
    source = report.source
    doc: dict[str, Any] = {
        "path": str(source.path),
        "keys": list(source.keys),
        "scope": source.scope,
        "exists": report.exists,
        "servers": [
            {"name": s.name, "importable": s.entry is not None, **_shown(s), "notes": list(s.notes)}
            for s in report.servers
        ],
    }
    if report.error:
        doc["error"] = report.error
    return doc


def _shown(server: FoundServer) -> dict[str, Any]:
    """Transport and target only: env and header values are often secrets, so they are not echoed."""
    facts = describe(server.entry if server.entry is not None else server.raw)
    return {"transport": facts["transport"], "target": facts["target"]}


def _target(server: FoundServer) -> str:
    if server.entry is None:
        return f"(cannot import: {'; '.join(server.notes) or 'not a server'})"
    shown = _shown(server)
    off = "  [disabled]" if server.entry.get("disabled") is True else ""
    return f"{shown['transport']:<5}  {shown['target']}{off}"


# ---------------------------------------------------------------------- import
def _import(args: argparse.Namespace) -> int:
    app = APPS[args.app]
    where = Where.current()
    reports = discover(app, where)
    for report in reports:
        if report.error:
            print(f"onemcp: warning: skipping {report.error}", file=sys.stderr)
    if not any(r.exists and not r.error for r in reports):
        looked = ", ".join(str(r.source.path) for r in reports)
        raise CommandError(f"no {app.label} config found (looked at {looked})")
    found = [server for report in reports for server in report.servers]

    path = resolve_path(args.config)
    try:
        doc = read_document(path)
        plan = plan_import(
            found, doc, env=environment(path), prefix=args.prefix, force=args.force, hub_urls=_hub_urls(args)
        )
    except (ConfigError, EditError) as exc:
        raise CommandError(str(exc), USAGE_ERROR) from None
    _show_plan(app, path, plan)
    rewrites = _plan_redirect(args, app, where) if args.point_to_hub else []
    for rewrite in rewrites:
        print(f"  > {rewrite.path}: {rewrite.summary}")
    left_out = [p for p in plan if p.action in (Action.CONFLICT, Action.INVALID)]
    if args.point_to_hub and left_out and not args.force:
        names = ", ".join(p.found.name for p in left_out)
        raise CommandError(
            f"not pointing {app.label} at the hub: {names} would no longer be reachable from it "
            "(resolve with --prefix, or pass --force to overwrite conflicts and drop what cannot be imported)"
        )
    writes = [p for p in plan if p.writes]
    if not writes and not rewrites:
        print("nothing to change")
        return _left_out(left_out)
    if args.dry_run:
        print("dry run: nothing written")
        return 0
    _confirm(
        args,
        f"Write {len(writes)} server(s) to {path}"
        + (f" and rewrite {len(rewrites)} {app.label} file(s)" if rewrites else ""),
    )

    if writes:
        try:
            result = edit_config(path, lambda d: apply_plan(d, plan), env=environment(path))
        except ConfigError as exc:
            raise CommandError(f"not changed: {exc}", USAGE_ERROR) from None
        except (EditError, OSError) as exc:
            raise CommandError(f"cannot update {path}: {exc}") from None
        print(f"onemcp: imported {len(writes)} server(s) from {app.label} into {path}")
        if result.backup:
            print(f"onemcp: previous version saved as {result.backup}")
        for name in result.unset:
            print(f"onemcp: note: ${{{name}}} is not set here; the hub needs it in its environment", file=sys.stderr)
        if rewrites and result.unset and not args.force:
            # the hub refuses a config with an unset variable: the app would lose every server it had
            unset = ", ".join(f"${{{name}}}" for name in result.unset)
            raise CommandError(
                f"not pointing {app.label} at the hub: the hub refuses its config while {unset} is not set; set it "
                f"in the hub's environment or in {path.parent / '.env'}, then run this import again (--force: anyway)"
            )
    if rewrites:
        hub_url = _hub_url(args)
        try:
            manifest = apply_redirect(app, rewrites, backups_root(args.config), hub_url)
        except (RedirectError, OSError) as exc:
            raise CommandError(f"cannot rewrite {app.label}'s config: {exc}") from None
        print(f"onemcp: {app.label} now uses only the hub at {hub_url}; restart it to reconnect")
        print(f"onemcp: its previous config is saved in {manifest}; undo with `onemcp app restore {app.name}`")
        if (lacking := _token_lacking(app, path, hub_url)) is not None:
            print(f"onemcp: warning: {lacking}", file=sys.stderr)
    return _left_out(left_out)


def _token_lacking(app: App, path: Path, hub_url: str) -> str | None:
    """What the app's new entry lacks when the hub asks every client for a token (onemcp.auth), else None:
    the entry carries no credential (onemcp writes no key into another program's file), so until it
    is given one the hub refuses the app, which then reaches none of its servers."""
    try:
        required = path.exists() and load_config(path).hub.auth.required
    except ConfigError:
        return None  # the hub would not start on it either, which the import said
    if not required:
        return None
    how = (
        'add "env": {"ONEMCP_TOKEN": "<key>"} to that entry'
        if "command" in app.hub_entry(hub_url)
        else "have that entry send the header `Authorization: Bearer <key>` (the app's headers setting)"
    )
    return (
        f"the hub asks every client for a token (onemcp.auth) and {app.label}'s onemcp entry carries none, so "
        f"the hub refuses it until it does: make a key (`onemcp auth key create --name {app.name}`) and {how}"
    )


def _left_out(left_out: list[Planned]) -> int:
    """Exit 1 when a server was not imported, saying which and how to bring it in (0 when none was)."""
    if not left_out:
        return 0
    conflicts = [p.name for p in left_out if p.action is Action.CONFLICT]
    invalid = [p.name for p in left_out if p.action is not Action.CONFLICT]
    said = []
    if conflicts:
        said.append(
            f"{', '.join(conflicts)} (a different server has the name in mcp.json: --prefix P imports it as P<name>,"
            " --force replaces it)"
        )
    if invalid:
        said.append(f"{', '.join(invalid)} (cannot be written in mcp.json: see above)")
    print(f"onemcp: not imported: {'; '.join(said)}", file=sys.stderr)
    return FAILED


def _plan_redirect(args: argparse.Namespace, app: App, where: Where) -> list[Rewrite]:
    try:
        running: dict[str, Any] | None = running_hub(resolve_path(args.config))
    except CommandError:
        running = None
    if running is not None and (problem := free_port_problem(running)) and same_url(_hub_url(args), [running["url"]]):
        raise CommandError(f"not pointing {app.label} at the hub: {problem}")  # before anything is written
    try:
        return plan_redirect(app, where, _hub_url(args))
    except RedirectError as exc:
        raise CommandError(f"cannot point {app.label} at the hub: {exc}") from None


def _hub_url(args: argparse.Namespace) -> str:
    if args.hub_url:
        return str(args.hub_url)
    try:
        return str(running_hub(resolve_path(args.config))["url"])
    except CommandError:
        return DEFAULT_HUB_URL


def _hub_urls(args: argparse.Namespace) -> set[str]:
    """Every URL `--point-to-hub` may have written for this hub: an app's entry naming one is the hub itself."""
    urls = {DEFAULT_HUB_URL, _hub_url(args)}
    with contextlib.suppress(CommandError):  # no hub runs now
        urls.add(str(running_hub(resolve_path(args.config))["url"]))
    return urls


def _show_plan(app: App, path: Path, plan: list[Planned]) -> None:
    print(f"{app.label} -> {path}")
    width = max((len(p.name) for p in plan), default=0)
    for item in plan:
        line = f"  {_MARKS[item.action]} {item.name.ljust(width)}  {item.action.value:<8}"
        if item.action in (Action.ADD, Action.REPLACE):
            line += f"  {_target(item.found)}"
        details = [f"renamed from {item.found.name!r}"] if item.renamed and item.action is not Action.SKIP else []
        details += [item.reason] if item.reason else []
        details += list(item.found.notes) if item.found.entry is not None else []
        if details:
            line += f"  ({'; '.join(details)})"
        print(line.rstrip())
    if not plan:
        print("  no servers configured")


def _confirm(args: argparse.Namespace, question: str) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise CommandError(
            "not a terminal, so cannot ask: pass --yes to go ahead (or --dry-run to preview)", USAGE_ERROR
        )
    answer = input(f"{question}? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise CommandError("nothing written")


# ---------------------------------------------------------------------- restore
def _restore(args: argparse.Namespace) -> int:
    app = APPS[args.app]
    root = backups_root(args.config)
    if args.list:
        found = manifests(root, app.name)
        if not found:
            print(f"no backups of {app.label} in {root / app.name}")
        for m in found:
            print(f"{m.path}  {m.created}  {m.reason}  {', '.join(map(str, m.files))}")
        return 0
    if args.backup:
        chosen = Path(args.backup).expanduser()
        try:
            if read_manifest(chosen).app != app.name:
                raise CommandError(f"{chosen} is a backup of another app, not {app.label}", USAGE_ERROR)
        except RedirectError as exc:
            raise CommandError(str(exc), USAGE_ERROR) from None
    else:
        taken = [m for m in manifests(root, app.name) if m.reason == POINT_TO_HUB]
        if not taken:
            raise CommandError(f"no --point-to-hub backup of {app.label} in {root / app.name}")
        chosen = taken[-1].path
    try:
        manifest, safety = restore(chosen, root)
    except (RedirectError, OSError) as exc:
        raise CommandError(f"cannot restore {chosen}: {exc}") from None
    print(f"onemcp: restored {shlex.join(map(str, manifest.files))} from {chosen}")
    print(f"onemcp: the files as they were just before are saved in {safety}")
    return 0
