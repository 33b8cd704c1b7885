"""`onemcp mcp ...`: manage the servers in mcp.json, and ask a running hub how they are doing.

Owns the arguments and the output of add, edit, remove, enable, disable, list and status. File
changes go through `config.edit` (validated, atomic, backed up); a running hub picks them up by
itself. Status reads ``runtime.json`` beside the config (written by `onemcp serve`) and asks the
hub's ``/health``. Errors are one line on stderr: exit 2 for a bad request (invalid name or
arguments, a change that would not load), exit 1 when the request is fine but cannot be done
(unknown server, duplicate name, no hub running).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from onemcp.cli import argtypes, pins, server_restart
from onemcp.config.edit import (
    BadName,
    Document,
    EditError,
    EditResult,
    ServerChange,
    ServerExists,
    add_server,
    change_server,
    edit_config,
    read_document,
    remove_server,
    servers_of,
    set_disabled,
    validate,
)
from onemcp.config.load import ConfigError, environment, resolve_path
from onemcp.config.runtime import HINT, NoHub, read_runtime

USAGE_ERROR = 2
FAILED = 1
STATUS_TIMEOUT = 5.0


class CommandError(Exception):
    """Ends the command with a message on stderr and an exit code."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Split ``mcp add NAME ... -- CMD ARGS...`` at the first ``--``.

    Done before argparse, which would otherwise read the server's own options (``-y``, a later
    ``--``) as ours.
    """
    trailing = None
    if argv[:2] == ["mcp", "add"] and "--" in argv:
        cut = argv.index("--")
        argv, trailing = argv[:cut], argv[cut + 1 :]
    if argv[:2] in (
        ["mcp", "add"],
        ["mcp", "edit"],
    ):  # `--arg --repository`: a value that starts with a dash is still the value
        joined: list[str] = []
        items = iter(argv)
        for item in items:
            if item != "--arg":
                joined.append(item)
                continue
            value = next(items, None)  # none after the last: left as it is, argparse says it expects one
            joined.append("--arg" if value is None else f"--arg={value}")
        argv = joined
    return argv, trailing


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser) -> None:
    mcp = sub.add_parser("mcp", help="manage the servers in mcp.json")
    actions = mcp.add_subparsers(dest="action", required=True)

    add = actions.add_parser(
        "add",
        parents=[config],
        help="add a server",
        usage="onemcp mcp add NAME (--command CMD [--arg A ...] | --url URL | -- CMD ARGS...) [options]",
    )
    add.add_argument("name")
    _entry_options(add, editing=False)
    add.add_argument("--type", choices=["http", "sse"], help="HTTP transport (default http)")
    add.add_argument("--tag", action="append", default=[], dest="tags", metavar="T", help="tag (repeatable)")
    add.add_argument("--disabled", action="store_true", help="add it switched off")

    edit = actions.add_parser(
        "edit",
        parents=[config],
        help="change a server's tags, env, command, arguments, cwd, URL, headers, timeout or transport",
        usage="onemcp mcp edit NAME [--tags T,T | --add-tag T --remove-tag T] [--env K=V] [--unset-env K]"
        " [--command CMD] [--arg A ... | --no-args] [--cwd DIR | --unset-cwd] [--url URL] [--header 'K: V']"
        " [--unset-header K] [--timeout S | --unset-timeout] [--type stdio|http|sse]",
    )
    edit.add_argument("name")
    edit.add_argument("--tags", type=_tag_list, metavar="T,T", help="its tags, all of them ('' for none)")
    edit.add_argument("--add-tag", action="append", default=[], metavar="T", help="add a tag (repeatable)")
    edit.add_argument("--remove-tag", action="append", default=[], metavar="T", help="remove a tag (repeatable)")
    _entry_options(edit, editing=True)
    edit.add_argument("--unset-env", action="append", default=[], metavar="K", help="remove a variable (repeatable)")
    edit.add_argument("--no-args", action="store_true", help="start the program with no arguments")
    edit.add_argument("--unset-header", action="append", default=[], metavar="K", help="remove a header (repeatable)")
    edit.add_argument("--unset-cwd", action="store_true", help="remove its working directory (the hub's then)")
    edit.add_argument("--unset-timeout", action="store_true", help="remove its deadline (the default one then)")
    edit.add_argument(
        "--type",
        choices=["stdio", "http", "sse"],
        help="move it to another transport: stdio needs --command, http or sse from stdio --url",
    )

    for name, text in (("remove", "remove a server"), ("enable", "switch a server on"), ("disable", "switch it off")):
        action = actions.add_parser(name, parents=[config], help=text)
        action.add_argument("name")

    listing = actions.add_parser("list", parents=[config], help="list the servers in mcp.json")
    listing.add_argument("--json", action="store_true", help="machine-readable output")

    status = actions.add_parser(
        "status", parents=[config], help="ask the running hub about its servers (exit 0 ok, 1 not, 3 not running)"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--url", type=argtypes.hub_url, help="the hub's URL (default: from runtime.json beside the config)"
    )
    pins.add_parsers(actions, config)
    server_restart.add_parser(actions, config)


def _entry_options(parser: argparse.ArgumentParser, *, editing: bool) -> None:
    """The options of an entry's fields that `add` writes and `edit` replaces, parsed alike by both (their
    values checked by `_pairs`, `argtypes` and, once written, the config's own validation)."""
    parser.add_argument("--command", dest="program", metavar="CMD", help="program to start (stdio server)")
    parser.add_argument(
        "--arg",
        action="append",
        default=None if editing else [],  # editing: None leaves them, [] is --no-args
        dest="args",
        metavar="A",
        help="its arguments, all of them (repeatable)" if editing else "argument (repeatable)",
    )
    parser.add_argument("--env", action="append", default=[], metavar="K=V", help="environment variable (repeatable)")
    parser.add_argument("--cwd", type=argtypes.path, help="working directory of the program")
    parser.add_argument("--url", help="URL of an HTTP server")
    parser.add_argument("--header", action="append", default=[], metavar="'K: V'", help="HTTP header (repeatable)")
    parser.add_argument(
        "--timeout", type=argtypes.request_timeout, metavar="S", help="deadline in seconds for each request (<= 3600)"
    )


def run(args: argparse.Namespace, command: list[str] | None) -> int:
    try:
        if args.action == "add":
            return _add(args, command)
        if args.action == "edit":
            change = server_change(args)
            return _edit(
                args,
                f"changed {args.name!r}",
                lambda doc: change_server(doc, args.name, change),
                must_exist=True,
                unchanged=f"{args.name!r} is already so",
                note="a running hub applies it by itself (it watches the file): `onemcp status` says if it took it",
            )
        if args.action == "remove":
            return _edit(args, f"removed {args.name!r}", lambda doc: remove_server(doc, args.name), must_exist=True)
        if args.action in ("enable", "disable"):
            off = args.action == "disable"
            return _edit(
                args,
                f"{args.action}d {args.name!r}",
                lambda doc: set_disabled(doc, args.name, off),
                must_exist=True,
                unchanged=f"{args.name!r} is already {args.action}d",
            )
        if args.action == "list":
            return _list(args)
        if args.action == "status":
            return _status(args)
        if args.action in ("pins", "approve"):
            return pins.run(args)
        if args.action == "restart":
            path = resolve_path(args.config)
            return server_restart.run(args, path, hub_base(running_hub(path)["url"]))
    except CommandError as exc:
        print(f"onemcp: {exc}", file=sys.stderr)
        return exc.code
    except server_restart.RestartError as exc:
        print(f"onemcp: {exc}", file=sys.stderr)
        return FAILED
    raise AssertionError(f"unhandled action {args.action}")


# ---------------------------------------------------------------------- editing
def _add(args: argparse.Namespace, command: list[str] | None) -> int:
    entry = server_entry(args, command)
    code = _edit(args, f"added {args.name!r}", lambda doc: add_server(doc, args.name, entry))
    _warn_if_not_installed(args.name, entry)
    return code


def _warn_if_not_installed(name: str, entry: dict[str, Any]) -> None:
    """What `onemcp validate` would report of the new entry beyond the model (a command not on PATH).

    A warning, not a failure: the hub may run with another PATH (a service, a container), or the
    command be installed next; the entry is valid and written, as an unset ${VAR} is.
    """
    from onemcp.cli.configure import checks

    for problem in checks({"mcpServers": {name: entry}}):
        then = f"(then `onemcp mcp restart {name}` on a running hub)"
        print(
            f"onemcp: warning: {problem}; the hub cannot start {name!r} until it is on the hub's PATH {then}",
            file=sys.stderr,
        )


def server_entry(args: argparse.Namespace, command: list[str] | None) -> dict[str, Any]:
    """The mcp.json entry the `add` options describe, written the way other clients write it."""
    if command is not None and not command:
        raise CommandError("nothing after '--': give the command to run", USAGE_ERROR)
    if command and args.program:
        raise CommandError("give the command either with --command or after '--', not both", USAGE_ERROR)
    program = [args.program, *args.args] if args.program else (command or [])
    if bool(program) == bool(args.url):
        raise CommandError("give either --command CMD (or '-- CMD ARGS...') or --url URL", USAGE_ERROR)
    entry: dict[str, Any] = {}
    if program:
        if command and args.args:
            raise CommandError("--arg goes with --command; after '--' just list the arguments", USAGE_ERROR)
        _only_with("--url", type=args.type, header=args.header)
        entry["command"] = program[0]
        if program[1:]:
            entry["args"] = program[1:]
        if args.env:
            entry["env"] = _pairs(args.env, "--env")
        if args.cwd:
            entry["cwd"] = args.cwd
    else:
        _only_with("--command", arg=args.args, env=args.env, cwd=args.cwd)
        entry["type"] = args.type or "http"
        entry["url"] = args.url
        if args.header:
            entry["headers"] = _pairs(args.header, "--header")
    if args.tags:
        entry["tags"] = args.tags
    if args.timeout is not None:
        entry["timeout"] = args.timeout
    if args.disabled:
        entry["disabled"] = True
    return entry


def _tag_list(text: str) -> list[str]:
    return [tag.strip() for tag in text.split(",") if tag.strip()]


def server_change(args: argparse.Namespace) -> ServerChange:
    """The change the `edit` options describe; one that says nothing, or contradicts itself, is exit 2."""
    if args.tags is not None and (args.add_tag or args.remove_tag):
        raise CommandError("--tags gives all the tags: give it alone, or --add-tag/--remove-tag", USAGE_ERROR)
    if both := set(args.add_tag) & set(args.remove_tag):
        raise CommandError(f"tag {min(both)!r} is both added and removed", USAGE_ERROR)
    env = _pairs(args.env, "--env")
    if both := set(env) & set(args.unset_env):
        raise CommandError(f"variable {min(both)!r} is both set and unset", USAGE_ERROR)
    headers = _pairs(args.header, "--header")
    if both := {k.lower() for k in headers} & {k.strip().lower() for k in args.unset_header}:
        raise CommandError(f"header {min(both)!r} is both set and unset", USAGE_ERROR)
    if args.args is not None and args.no_args:
        raise CommandError("--arg gives the arguments, --no-args none: give one of them", USAGE_ERROR)
    if args.cwd is not None and args.unset_cwd:
        raise CommandError("--cwd sets the working directory, --unset-cwd removes it: give one of them", USAGE_ERROR)
    if args.timeout is not None and args.unset_timeout:
        raise CommandError("--timeout sets the deadline, --unset-timeout removes it: give one of them", USAGE_ERROR)
    if args.type is not None:
        _fits(args)
    change = ServerChange(
        tags=args.tags,
        add_tags=tuple(args.add_tag),
        remove_tags=tuple(args.remove_tag),
        env=env,
        unset_env=tuple(args.unset_env),
        command=args.program,
        args=[] if args.no_args else args.args,
        cwd=args.cwd,
        unset_cwd=args.unset_cwd,
        url=args.url,
        headers=headers,
        unset_headers=tuple(k.strip() for k in args.unset_header),
        timeout=args.timeout,
        unset_timeout=args.unset_timeout,
        transport=args.type,
    )
    if change == ServerChange():
        raise CommandError(
            "nothing to change: give --tags, --add-tag, --remove-tag, --env, --unset-env, --command, --arg,"
            " --no-args, --cwd, --unset-cwd, --url, --header, --unset-header, --timeout, --unset-timeout or --type"
            " (`onemcp mcp enable/disable NAME` switch it on or off)",
            USAGE_ERROR,
        )
    return change


def _fits(args: argparse.Namespace) -> None:
    """`edit --type T` with an option of the other transport contradicts itself (exit 2, before the file is read)."""
    stdio = {"--command": args.program is not None, "--arg": args.args is not None, "--no-args": args.no_args}
    stdio |= {"--env": bool(args.env), "--unset-env": bool(args.unset_env), "--cwd": args.cwd is not None}
    stdio |= {"--unset-cwd": args.unset_cwd}
    http = {"--url": args.url is not None, "--header": bool(args.header), "--unset-header": bool(args.unset_header)}
    other = http if args.type == "stdio" else stdio
    if given := [flag for flag, on in other.items() if on]:
        kind = "an HTTP" if args.type == "stdio" else "a stdio"
        raise CommandError(f"{given[0]} is for {kind} server, and --type {args.type} makes it not one", USAGE_ERROR)


def _only_with(other: str, **given: Any) -> None:
    for flag, value in given.items():
        if value:
            raise CommandError(f"--{flag} only applies to a server given with {other}", USAGE_ERROR)


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    """`--env K=V` or `--header 'K: V'` values, as `add` and `edit` both take them."""
    sep, shape = ("=", "K=V") if flag == "--env" else (":", "'K: V'")
    return dict(_pair(item, sep, flag, shape) for item in items)


def _pair(item: str, sep: str, flag: str, shape: str) -> tuple[str, str]:
    key, found, value = item.partition(sep)
    if not found or not key.strip():
        raise CommandError(f"{flag} {item!r}: expected {shape}", USAGE_ERROR)
    return key.strip(), value.strip() if sep == ":" else value


def _edit(
    args: argparse.Namespace,
    done: str,
    change: Callable[[Document], None],
    *,
    must_exist: bool = False,
    unchanged: str = "nothing to change",
    note: str = "",
) -> int:
    path = resolve_path(args.config)
    if must_exist and not path.exists():
        raise CommandError(f"no config file at {path}")
    try:
        result = edit_config(path, change, env=environment(path))
    except BadName as exc:
        raise CommandError(str(exc), USAGE_ERROR) from None
    except ServerExists as exc:  # `mcp add` of a name in use: say how to change that one instead
        name = getattr(args, "name", "NAME")
        raise CommandError(
            f"{exc} in {path}; to change it: `onemcp mcp edit {name} --add-tag T --env K=V --arg A ...`"
            f" (or `onemcp mcp remove {name}` and add it again)"
        ) from None
    except EditError as exc:
        raise CommandError(f"{exc} in {path}") from None
    except ConfigError as exc:
        raise CommandError(f"not changed: {exc}", USAGE_ERROR) from None
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    _report(result, done, unchanged, note)
    return 0


def _report(result: EditResult, done: str, unchanged: str, note: str = "") -> None:
    if not result.changed:
        print(f"onemcp: {unchanged}; {result.path} not changed")
        return
    print(f"onemcp: {done} in {result.path}")
    if note:
        print(f"onemcp: {note}")
    if result.backup:
        print(f"onemcp: previous version saved as {result.backup}")
    for name in result.unset:
        print(f"onemcp: note: ${{{name}}} is not set here; the hub needs it in its environment", file=sys.stderr)


# ---------------------------------------------------------------------- list
def describe(entry: Any) -> dict[str, Any]:
    """Name-independent facts about a raw entry, shown without expanding ${VAR}s (no secrets printed)."""
    if not isinstance(entry, dict):
        return {"transport": "?", "enabled": False, "tags": [], "target": "(not an object)"}
    if entry.get("command") is not None:
        transport = "stdio"
        target = shlex.join([str(entry["command"]), *(str(a) for a in entry.get("args") or [])])
    else:
        transport = "sse" if entry.get("type") == "sse" else "http"
        target = str(entry.get("url", ""))
    tags = entry.get("tags") if isinstance(entry.get("tags"), list) else []
    return {"transport": transport, "enabled": entry.get("disabled") is not True, "tags": tags, "target": target}


def _list(args: argparse.Namespace) -> int:
    path = resolve_path(args.config)
    if not path.exists():
        raise CommandError(f"no config file at {path} (`onemcp mcp add` or `onemcp serve` creates one)")
    try:
        doc = read_document(path, to_edit=False)
        servers = servers_of(doc)
    except (ConfigError, EditError) as exc:
        raise CommandError(str(exc), USAGE_ERROR) from None
    _warn_if_invalid(doc, path)
    rows = [{"name": name, **describe(entry)} for name, entry in servers.items()]
    if args.json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if not rows:
        print(f"no servers in {path}")
        return 0
    table = [
        [r["name"], r["transport"], "yes" if r["enabled"] else "no", ",".join(map(str, r["tags"])) or "-", r["target"]]
        for r in rows
    ]
    _print_table(["NAME", "TRANSPORT", "ENABLED", "TAGS", "TARGET"], table)
    return 0


def _warn_if_invalid(doc: Document, path: Path) -> None:
    try:
        validate(doc, source=str(path), env=environment(path))
    except ConfigError as exc:
        print(f"onemcp: warning: the hub cannot load this config: {exc}", file=sys.stderr)


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


# ---------------------------------------------------------------------- status
def hub_base(url: str) -> str:
    """``http://host:port`` from the hub's endpoint URL (``.../mcp``) or a bare base URL."""
    base = url.rstrip("/")
    for endpoint in ("/mcp", "/sse"):
        base = base.removesuffix(endpoint)
    return base


def running_hub(config_path: Path) -> dict[str, Any]:
    """The `runtime.json` of the hub serving from this config dir; CommandError when none runs."""
    try:
        return read_runtime(config_path)
    except NoHub as exc:
        raise CommandError(str(exc)) from None


def _running_hub(path: Path) -> dict[str, Any]:
    """The hub `onemcp status` would find, with its exit codes: 3 when none runs, 1 when its address is lost."""
    from onemcp.cli.daemon import NOT_RUNNING, lost, running

    try:
        read_runtime(path)
        why = f"no hub is running for {path}; {HINT}"
    except NoHub as exc:  # what to say if none runs (`running` removes a stale runtime.json)
        why = str(exc)
    found = running(path)
    if found is None:
        raise CommandError(why, NOT_RUNNING)
    if found["url"] is None:
        raise CommandError(lost(found))
    return found


def _status(args: argparse.Namespace) -> int:
    import httpx

    from onemcp.cli.hub_health import auth_headers, hub_notes, refusal

    runtime: dict[str, Any] = {"url": args.url} if args.url else _running_hub(resolve_path(args.config))
    base = hub_base(runtime["url"])
    try:  # /health needs the operator or admin scope on a hub with auth: $ONEMCP_TOKEN, as `onemcp status` sends it
        with httpx.Client(timeout=STATUS_TIMEOUT, trust_env=False, headers=auth_headers()) as client:
            response = client.get(f"{base}/health")
    except httpx.HTTPError as exc:
        raise CommandError(f"no hub answers at {base}: {exc}") from None
    except (httpx.InvalidURL, ValueError) as exc:  # a hand-edited runtime.json (--url is checked by argparse)
        raise CommandError(f"the hub URL {runtime['url']!r} does not parse: {exc}") from None
    if response.status_code != 200:
        said = refusal(response.status_code)
        raise CommandError(f"{base}/health answered HTTP {response.status_code}{f': {said}' if said else ''}")
    try:
        health = response.json()
    except ValueError:
        raise CommandError(f"{base}/health did not answer JSON") from None
    if not isinstance(health, dict):
        raise CommandError(f"{base}/health did not answer a JSON object")
    code = 0 if health.get("status") == "ok" else FAILED  # as `onemcp status`: a degraded hub is exit 1
    if args.json:
        doc = {"url": runtime["url"], "pid": runtime.get("pid"), "config": runtime.get("config"), "health": health}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return code
    pid = f" (pid {runtime['pid']})" if runtime.get("pid") else ""
    print(f"hub     {runtime['url']}{pid}")
    if runtime.get("config"):
        print(f"config  {runtime['config']}")
    print(f"status  {health.get('status')}, {health.get('sessions', 0)} session(s), version {health.get('version')}")
    for note in hub_notes(health):  # what the servers' states do not say: why "degraded", withheld tools
        print(f"        {note}")
    upstreams: dict[str, Any] = health.get("upstreams") or {}
    if not upstreams:
        print("no servers")
        return code
    rows = [
        [name, str(u.get("state")), str(u.get("transport")), str(u.get("tools", "-")), str(u.get("lastError") or "")]
        for name, u in upstreams.items()
    ]
    print()
    _print_table(["NAME", "STATE", "TRANSPORT", "TOOLS", "ERROR"], rows)
    instances: list[dict[str, Any]] = health.get("instances") or []
    if instances:
        print()
        rows = [
            [
                str(i.get("id")),
                str((i.get("context") or {}).get("project") or "-"),
                str((i.get("context") or {}).get("client") or "-"),
                str(i.get("sessions")),
                f"{i.get('idleSeconds')}s",
            ]
            for i in instances
        ]
        _print_table(["INSTANCE", "PROJECT", "CLIENT", "SESSIONS", "IDLE"], rows)
    return code
