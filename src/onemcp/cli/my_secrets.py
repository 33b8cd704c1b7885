"""`onemcp auth secret mine list|set|delete`: a user keeps their own `${user:NAME}` values on the hub.

Talks to the running hub's `/me/secrets` with `$ONEMCP_TOKEN` (the user's own key or token: the
values are that principal's). `set` reads the value from stdin (or asks for it, not echoed, on a
terminal), so it stays out of the shell's history and the process list. Does not touch the store
file (the operator's `onemcp auth secret set|list|delete` do, for any principal).
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from onemcp.cli.client.rpc import TOKEN_ENV
from onemcp.cli.target import BadTarget, TargetError, resolve

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MineError(Exception):
    pass


def _answer(r: httpx.Response) -> dict[str, Any]:
    try:
        doc = r.json()
    except ValueError:
        raise MineError(f"the hub answered HTTP {r.status_code} without JSON: is that an onemcp hub?") from None
    said = doc.get("error") if isinstance(doc, dict) else None
    if r.status_code in (401, 403) and not said:
        raise MineError(f"the hub refused: HTTP {r.status_code}; set ${TOKEN_ENV} to your own key or token")
    if r.status_code != 200 or not isinstance(doc, dict):
        raise MineError(str(doc.get("error") if isinstance(doc, dict) else doc))
    return doc


def run(args: argparse.Namespace) -> int:
    if args.step != "list" and not NAME.fullmatch(args.name):
        print(f"onemcp: {args.name!r} is not a NAME of ${{user:NAME}} (letters, digits, _)", file=sys.stderr)
        return 2
    token = os.environ.get(TOKEN_ENV)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        parts = urlsplit(resolve(config_flag=args.config, url=args.url).url)
        prefix = parts.path.rstrip("/").removesuffix("/mcp")  # a hub served under a path prefix
        mine = urlunsplit((parts.scheme, parts.netloc, f"{prefix}/me/secrets", "", ""))
        with httpx.Client(headers=headers, timeout=10.0) as http:
            if args.step == "list":
                doc = _answer(http.get(mine))
                names = doc.get("names") or {}
                if not names:
                    print(f"onemcp: no server you reach takes a ${{user:NAME}} value ({doc.get('principal')})")
                for name, info in names.items():
                    state = f"set {info['updated']}" if info.get("set") else "not set"
                    print(f"{name:<24} {state:<28} {', '.join(info.get('servers') or [])}")
                return 0
            if args.step == "set":
                prompt = f"your value for {args.name} (not shown): "
                value = getpass.getpass(prompt) if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n")
                if not value:
                    raise MineError('no value on stdin (e.g. printf %s "$TOKEN" | onemcp auth secret mine set NAME)')
                doc = _answer(http.put(f"{mine}/{args.name}", json={"value": value}))
                print(f"stored {args.name} (used by {', '.join(doc.get('servers') or [])})")
                return 0
            doc = _answer(http.delete(f"{mine}/{args.name}"))
            if not doc.get("forgotten"):
                raise MineError(f"no {args.name} of yours was stored")
            print(f"deleted {args.name}")
            return 0
    except (MineError, TargetError) as exc:
        print(f"onemcp: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, BadTarget) else 1
    except httpx.HTTPError as exc:
        print(f"onemcp: cannot reach the hub: {exc}", file=sys.stderr)
        return 1
    except (EOFError, KeyboardInterrupt):
        print("\nonemcp: no value given", file=sys.stderr)
        return 1
