"""`onemcp auth upstream list|login|logout`: the operator's side of the hub's upstream OAuth.

Talks to the running hub's endpoint `/oauth/upstream` (when the hub has auth, the bearer token from
`$ONEMCP_TOKEN`: `list` needs the operator or admin scope; `login`, whose link is the admin's, and
`logout` need admin). `login` prints the authorization link the hub
prepared (optionally opens a browser) and waits until the hub reports the upstream authorized;
the authorization itself lands on the hub's callback, not here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import webbrowser
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from onemcp.cli.client.rpc import TOKEN_ENV
from onemcp.cli.target import BadTarget, TargetError, resolve

POLL_SECONDS = 1.0


class LoginError(Exception):
    pass


def _base(args: argparse.Namespace) -> str:
    url = resolve(config_flag=args.config, url=args.url).url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def _get(http: httpx.Client, base: str) -> dict[str, Any]:
    try:
        r = http.get(f"{base}/oauth/upstream")
    except httpx.HTTPError as exc:
        raise LoginError(f"cannot reach the hub at {base}: {exc}") from None
    if r.status_code in (401, 403):
        raise LoginError(
            f"the hub refused: HTTP {r.status_code}; set ${TOKEN_ENV} to a key with the operator or admin scope"
        )
    if r.status_code != 200:
        raise LoginError(f"the hub answered HTTP {r.status_code}: {r.text[:200]}")
    try:
        doc = r.json()
    except ValueError:
        raise LoginError(f"{base}/oauth/upstream did not answer JSON: is that an onemcp hub?") from None
    upstreams = doc.get("upstreams") if isinstance(doc, dict) else None
    return upstreams if isinstance(upstreams, dict) else {}


def _line(name: str, doc: dict[str, Any]) -> str:
    state = doc.get("state", "?")
    extra = doc.get("detail") or ""
    if state == "authorized" and doc.get("expiresAt"):
        extra = f"token expires {time.strftime('%Y-%m-%d %H:%M', time.localtime(doc['expiresAt']))}"
        extra += ", refreshable" if doc.get("refreshable") else ""
    return f"{name:<20} {state:<11} {extra}"


def _login(http: httpx.Client, base: str, args: argparse.Namespace) -> int:
    doc = _get(http, base).get(args.server)
    if doc is None:
        raise LoginError(f"{args.server!r} has not asked for OAuth (not an HTTP upstream, or it never answered 401)")
    if doc["state"] == "authorized":
        print(f"onemcp: {args.server} is already authorized ({_line(args.server, doc).split(None, 2)[-1]})")
        return 0
    link = doc.get("authorizeUrl")
    if not link and doc["state"] == "required":  # the hub gives its link only to the admin scope
        raise LoginError(
            f"{args.server} needs authorization, and the hub gave no link: it gives one to a key with the admin"
            f" scope (${TOKEN_ENV}){f' ({detail})' if (detail := doc.get('detail')) else ''}"
        )
    if not link:
        raise LoginError(f"{args.server}: {doc.get('detail') or doc['state']}")
    print(f"Open this link to authorize onemcp with {args.server}:\n\n  {link}\n", flush=True)
    if args.open and link.startswith(("https://", "http://")):
        webbrowser.open(link)
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        doc = _get(http, base).get(args.server) or {}
        if doc.get("state") == "authorized":
            print(f"onemcp: {args.server} authorized")
            return 0
        if doc.get("state") == "error":
            raise LoginError(f"{args.server}: {doc.get('detail')}")
    raise LoginError(f"{args.server}: not authorized within {args.timeout:g}s")


def run_upstream(args: argparse.Namespace) -> int:
    token = os.environ.get(TOKEN_ENV)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        base = _base(args)
        with httpx.Client(headers=headers, timeout=10.0) as http:
            if args.action == "list":
                upstreams = _get(http, base)
                if not upstreams:
                    print("onemcp: no upstream has asked for OAuth")
                for name, doc in upstreams.items():
                    print(_line(name, doc))
                return 0
            if args.action == "login":
                return _login(http, base, args)
            r = http.delete(f"{base}/oauth/upstream/{args.server}")
            if r.status_code in (401, 403):
                raise LoginError(
                    f"the hub refused: HTTP {r.status_code}; set ${TOKEN_ENV} to a key with the admin scope"
                )
            if r.status_code == 404:  # the hub's answer for a name its config has no server of
                raise LoginError(f"the running hub has no server {args.server.partition('~')[0]!r}")
            if r.status_code != 200:
                raise LoginError(f"the hub answered HTTP {r.status_code}: {r.text[:200]}")
            forgot = r.json().get("forgotten")
            print(f"onemcp: {args.server}: {'tokens forgotten' if forgot else 'nothing stored'}")
            return 0
    except (LoginError, TargetError) as exc:
        print(f"onemcp: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, BadTarget) else 1
