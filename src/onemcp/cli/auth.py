"""`onemcp auth key ...` (the hub's API keys) and `onemcp auth upstream ...` (the hub's own OAuth).

Keys are kept hashed in keys.db beside mcp.json; the plain key is printed once, at creation. A
running hub with `"auth": {"apiKeys": true}` accepts it at once (it reads the same file).

`secret set|list|delete` keep each principal's `${user:NAME}` values (the operator's, in the store
file); `secret mine ...` are a user's own, through the running hub (`cli.my_secrets`).

`upstream list|login|logout` talk to the running hub's admin endpoint (/oauth/upstream), with
`$ONEMCP_TOKEN` as the bearer token when the hub needs one: `login` prints the authorization link
for an upstream (and opens a browser with --open), then waits until the hub is authorized.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from onemcp.auth.keys import Keys, open_keys
from onemcp.cli import argtypes
from onemcp.config.auth_settings import scope_problem
from onemcp.config.load import ConfigError, load_config, resolve_path

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DURATION = re.compile(r"^(\d{1,12})([smhdw])$")
MAX_LIFETIME = 100 * 365 * 86400  # seconds: beyond, a date the platform cannot show
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser) -> None:
    auth = sub.add_parser("auth", help="credentials for clients of the hub")
    kinds = auth.add_subparsers(dest="kind", required=True)
    key = kinds.add_parser("key", help="static API keys")
    actions = key.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", parents=[config], help="make a key (printed once)")
    create.add_argument("--name", default="key", help="what the key is for")
    create.add_argument(
        "--scope",
        action="append",
        default=[],
        help="mcp (default), admin, operator (the console, read-only), templates (unsigned template contexts), "
        "server:<n>, tag:<t>, tool:<s>/<t>",
    )
    create.add_argument(
        "--role", action="append", default=[], help="a role of onemcp.auth.roles (repeatable): its scopes"
    )
    create.add_argument("--expires", help="lifetime such as 90d, 12h or 2w (default: never)")
    actions.add_parser("list", parents=[config], help="the keys (never their secrets)")
    revoke = actions.add_parser("revoke", parents=[config], help="revoke a key by id")
    revoke.add_argument("id")
    upstream = kinds.add_parser("upstream", help="the hub's own OAuth with protected upstream servers")
    steps = upstream.add_subparsers(dest="action", required=True)
    steps.add_parser("list", parents=[config], help="each upstream's authorization state")
    login = steps.add_parser("login", parents=[config], help="authorize the hub with an upstream")
    login.add_argument("server")
    login.add_argument("--open", action="store_true", help="open the link in a browser")
    login.add_argument("--no-wait", dest="wait", action="store_false", help="print the link and return")
    login.add_argument("--timeout", type=argtypes.seconds, default=600.0, help="seconds to wait (default 600)")
    logout = steps.add_parser("logout", parents=[config], help="forget the hub's tokens for an upstream")
    logout.add_argument("server")
    for step in (steps.choices["list"], login, logout):
        step.add_argument("--url", type=argtypes.hub_url, help="the hub's /mcp URL (default: the running hub's)")
    secret = kinds.add_parser("secret", help="each user's own values for ${user:NAME} in a server's env or headers")
    verbs = secret.add_subparsers(dest="action", required=True)
    put = verbs.add_parser("set", parents=[config], help="store a principal's value (read from stdin)")
    put.add_argument("principal", help="as the audit log names it: key:<id>, jwt:<iss>#<sub>, oauth:<client>")
    put.add_argument("name")
    verbs.add_parser("list", parents=[config], help="who has which values (never the values)")
    drop = verbs.add_parser("delete", parents=[config], help="forget a principal's value")
    drop.add_argument("principal")
    drop.add_argument("name")
    mine = verbs.add_parser("mine", help="your own values, kept through the running hub ($ONEMCP_TOKEN is you)")
    own = mine.add_subparsers(dest="step", required=True)
    own.add_parser("list", parents=[config], help="the names your servers take, and which you have set")
    own_set = own.add_parser("set", parents=[config], help="store your value for NAME (read from stdin)")
    own_set.add_argument("name")
    own_drop = own.add_parser("delete", parents=[config], help="forget your value for NAME")
    own_drop.add_argument("name")
    for step in own.choices.values():
        step.add_argument("--url", type=argtypes.hub_url, help="the hub's /mcp URL (default: the running hub's)")


def run(args: argparse.Namespace) -> int:
    if args.kind == "secret" and args.action == "mine":
        from onemcp.cli import my_secrets

        return my_secrets.run(args)
    if args.kind == "secret":
        return _secret(args)
    if args.kind == "upstream":
        from onemcp.cli.upstream_login import run_upstream

        return run_upstream(args)
    store = _key_store(resolve_path(args.config))
    if args.action == "create":
        expires = None
        if args.expires:
            m = DURATION.match(args.expires)
            lifetime = int(m.group(1)) * UNITS[m.group(2)] if m is not None else 0
            if not 0 < lifetime <= MAX_LIFETIME:
                print(
                    f"onemcp: --expires {args.expires!r}: use a number and s, m, h, d or w (e.g. 90d), "
                    "more than 0 and at most 100 years (leave it out for a key that never expires)",
                    file=sys.stderr,
                )
                return 2
            expires = time.time() + lifetime
        problem = _scopes_problem(args)
        if problem is not None:
            print(f"onemcp: {problem}", file=sys.stderr)
            return 2
        for warning in _unmatched_scopes(args):
            print(f"onemcp: warning: {warning}", file=sys.stderr)
        scopes = [*args.scope, *(f"role:{r}" for r in args.role)]
        key = store.create(args.name, scopes or ["mcp"], expires)
        print(key)
        print("onemcp: keep it now: only its hash is stored", file=sys.stderr)
        if (unasked := _keys_not_asked_for(args)) is not None:
            print(f"onemcp: warning: {unasked}", file=sys.stderr)
        return 0
    if args.action == "list":
        if not (keys := store.list()):  # said, as `mcp list` and `preset list` say theirs: not a blank line
            print("no API keys (`onemcp auth key create --name N` makes one)")
        for info in keys:
            state = (
                "revoked" if info.revoked else ("expired" if info.expires and info.expires < time.time() else "active")
            )
            until = time.strftime("%Y-%m-%d", time.localtime(info.expires)) if info.expires else "never"
            print(f"{info.id}  {info.name:<16} {state:<8} expires {until:<10}  {' '.join(info.scopes)}")
        return 0
    if not store.revoke(args.id):
        print(f"onemcp: no active key with id {args.id!r}", file=sys.stderr)
        return 1
    print(f"onemcp: key {args.id} revoked")
    return 0


def _key_store(path: Path) -> Keys:
    """keys.db beside the config; the replicas' Redis when the config names one as its session store."""
    shared = None
    if path.exists():
        try:
            shared = load_config(path).hub.shared_store
        except ConfigError:
            shared = None  # a config that does not load keeps its keys beside it
    return open_keys(path.parent, shared)


def _keys_not_asked_for(args: argparse.Namespace) -> str | None:
    """Why the hub would ask no client for the key just made (its config does not turn API keys on), else
    None: a key made for a hub that lets everyone in must not read as protection."""
    path = resolve_path(args.config)
    try:
        on = path.exists() and load_config(path).hub.auth.api_keys
    except ConfigError:
        return None  # nothing to compare with (a config that does not load is said elsewhere)
    if on:
        return None
    return (
        f"{path} does not turn API keys on, so the hub asks no client for this key: add "
        '"onemcp": {"auth": {"apiKeys": true}} to it, then `onemcp restart` (auth applies when the hub starts)'
    )


def _scopes_problem(args: argparse.Namespace) -> str | None:
    """Why the requested scopes or roles cannot make a key (None: they can)."""
    for scope in args.scope:
        if (problem := scope_problem(scope)) is not None:
            return f"--scope {problem}"
    if not args.role:
        return None
    try:
        roles = load_config(resolve_path(args.config)).hub.auth.roles
    except ConfigError as exc:
        return f"--role needs the config's onemcp.auth.roles, and the config does not load: {exc}"
    for role in args.role:
        if role not in roles:
            known = ", ".join(roles) or "none defined"
            return f"--role {role!r}: no such role in onemcp.auth.roles (roles: {known})"
    return None


def _unmatched_scopes(args: argparse.Namespace) -> list[str]:
    """The `server:`, `tool:` and `tag:` scopes that name nothing in the config now (said, not refused:
    the server may be added later; a typo would otherwise make a key that silently sees nothing)."""
    try:
        config = load_config(resolve_path(args.config))
    except ConfigError:
        return []  # nothing to compare with (a config that does not load is said elsewhere)
    servers = {*config.servers, *config.templates}
    tags = {t for server in [*config.servers.values(), *config.templates.values()] for t in server.tags}
    unmatched = []
    for scope in args.scope:
        kind, _, target = scope.partition(":")
        name = target.partition("/")[0]
        if (kind in ("server", "tool") and name not in servers) or (kind == "tag" and target not in tags):
            what = "tag of any server" if kind == "tag" else "server"
            unmatched.append(f"--scope {scope}: no {what} {(target if kind == 'tag' else name)!r} in the config yet")
    return unmatched


def _headers_taking(args: argparse.Namespace) -> list[str]:
    """Where the config's servers put the value of `args.name` into a header (none when it does not load:
    a value refused at call time says so then)."""
    from onemcp.upstream.user_secrets import in_headers

    try:
        return in_headers(load_config(resolve_path(args.config)).servers, args.name)
    except ConfigError:
        return []


def _secret(args: argparse.Namespace) -> int:
    """`onemcp auth secret set|list|delete`: the store a running hub reads on each new connection."""
    from onemcp.upstream.user_secrets import UserSecrets

    store = UserSecrets(resolve_path(args.config).parent)
    try:
        if args.action == "set":
            if not NAME.match(args.name):
                print(f"onemcp: {args.name!r} is not a NAME of ${{user:NAME}} (letters, digits, _)", file=sys.stderr)
                return 2
            value = sys.stdin.readline().rstrip("\r\n")  # a line ended the Windows way too, as `mine set` reads it
            if not value:
                print(
                    'onemcp: no value on stdin (e.g. printf %s "$TOKEN" | onemcp auth secret set ...)', file=sys.stderr
                )
                return 2
            if not value.isprintable():  # neither a header nor an environment variable carries it as meant
                print("onemcp: the value holds a control character (a tab, a line break, NUL, ...)", file=sys.stderr)
                return 2
            if not value.isascii() and (headers := _headers_taking(args)):
                print(f"onemcp: {args.name} fills {headers[0]} header: it takes ASCII characters only", file=sys.stderr)
                return 2
            store.set(args.principal, args.name, value)
            print(f"stored {args.name} for {args.principal}")
            return 0
        if args.action == "list":
            if not (stored := store.listing()):
                print("no ${user:NAME} values stored (`onemcp auth secret set PRINCIPAL NAME` stores one)")
            for principal, name, updated in stored:
                print(f"{principal}  {name}  {time.strftime('%Y-%m-%d %H:%M', time.localtime(updated))}")
            return 0
        if store.delete(args.principal, args.name):
            print(f"deleted {args.name} of {args.principal}")
            return 0
        print(f"onemcp: no {args.name} stored for {args.principal}", file=sys.stderr)
        return 1
    finally:
        store.close()
