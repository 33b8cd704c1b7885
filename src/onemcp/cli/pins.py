"""`onemcp mcp pins` and `onemcp mcp approve`: review and approve tools whose definitions changed.

Talks to the running hub's admin API (`/api/v1/pins`, with `$ONEMCP_TOKEN` when the hub has auth)
so the approval takes effect at once; with no hub running it reads and writes `pins.db` beside the
config, which the hub reads when it starts. Owns the commands' arguments and output, nothing of
the pinning itself (`hub/pins.py`). Tool names and definitions are an upstream's words: the text
output escapes their control and format characters (`observability.redact`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from onemcp.config.load import resolve_path
from onemcp.config.runtime import NoHub, read_runtime
from onemcp.observability.redact import one_line, printable

TIMEOUT = 10.0
USAGE = 2  # a malformed request (exit 1: it cannot be done)


class PinsError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def add_parsers(actions: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser) -> None:
    listing = actions.add_parser("pins", parents=[config], help="tools whose definition changed since approved")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    approve = actions.add_parser("approve", parents=[config], help="approve a changed tool definition")
    approve.add_argument(
        "targets", nargs="+", metavar="SERVER[/TOOL]", help="a tool, or every changed tool of a server"
    )


def run(args: argparse.Namespace) -> int:
    config = resolve_path(args.config)
    try:
        base = _hub(config)
        if args.action == "pins":
            return _list(base, config, args.json)
        return _approve(base, config, args.targets)
    except PinsError as exc:
        print(f"onemcp: {exc}", file=sys.stderr)
        return exc.code


def _hub(config: Path) -> str | None:
    try:
        url = str(read_runtime(config)["url"])
    except NoHub:
        return None
    return url.rstrip("/").removesuffix("/mcp").removesuffix("/sse")


def _api(base: str, method: str, path: str) -> dict[str, Any]:
    import httpx

    token = os.environ.get("ONEMCP_TOKEN")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(timeout=TIMEOUT, trust_env=False) as client:
            response = client.request(method, f"{base}/api/v1{path}", headers=headers)
    except httpx.HTTPError as exc:
        raise PinsError(f"no hub answers at {base}: {exc}") from None
    try:
        doc: dict[str, Any] = response.json()
    except ValueError:
        doc = {}
    if response.status_code in (401, 403):
        need = "admin" if method == "POST" else "operator or admin"
        raise PinsError(f"the hub refused ({response.status_code}): set ONEMCP_TOKEN to a key with scope {need}")
    if response.status_code != 200:
        raise PinsError(str(doc.get("error") or f"{base}/api/v1{path} answered HTTP {response.status_code}"))
    return doc


def _list(base: str | None, config: Path, as_json: bool) -> int:
    if base is not None:
        changed = _api(base, "GET", "/pins")["changed"]
    else:
        from onemcp.hub.pins import Pins

        pins = Pins(config.parent)
        changed = [change.as_json() for change in pins.changes()]
        pins.close()
    if as_json:
        text = orjson.dumps({"changed": changed}, option=orjson.OPT_INDENT_2).decode()
        if not text.replace("\n", "").isprintable():  # orjson leaves C1 controls and bidi overrides raw
            text = json.dumps({"changed": changed}, indent=2)  # \u escapes: the same JSON, safe on a terminal
        sys.stdout.write(text + "\n")
        return 0
    if not changed:
        print("no tool definition changed since it was approved")
        return 0
    for change in changed:
        name = f"{change['server']}/{change['tool']}"
        print(f"{one_line(name)} changed since it was approved:")
        print(_diff_text(name, str(change["diff"])))
        print()
    print("approve with: onemcp mcp approve SERVER/TOOL (or SERVER for all of its tools)")
    return 0


def _diff_text(name: str, diff: str) -> str:
    """The unified diff for a terminal: its `---`/`+++` lines name the tool (one line each, however
    the name reads), its other lines are JSON (no new line inside one) with nothing left to act on."""
    head = f"--- {name} (approved)\n+++ {name} (now)\n"
    if not diff.startswith(head):
        return printable(diff)
    return f"--- {one_line(name)} (approved)\n+++ {one_line(name)} (now)\n{printable(diff[len(head) :])}"


def configured(config: Path) -> list[str] | None:
    """The servers and templates (whose instances share their pins) in the config; None when unreadable."""
    from onemcp.config import formats

    try:
        doc = formats.parse(config.read_bytes(), formats.format_of(config))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, formats.FormatError):
        return None  # the hub (or the pins themselves) will say what there is
    if not isinstance(doc, dict):
        return None
    names: list[str] = []
    for section in ("mcpServers", "servers", "mcpTemplates"):
        entries = doc.get(section)
        if isinstance(entries, dict):
            names += [str(name) for name in entries if str(name) not in names]
    return names


def _approve(base: str | None, config: Path, targets: list[str]) -> int:
    approved: list[str] = []
    known = configured(config)
    for target in targets:  # every target checked before any is approved
        server, slash, tool = target.partition("/")
        if not server or (slash and not tool):
            raise PinsError(f"not SERVER or SERVER/TOOL: {target!r}", USAGE)
        if known is not None and server not in known:
            listed = f"configured: {', '.join(known)}" if known else "none configured"
            raise PinsError(f"no server {server!r} in {config} ({listed})")
    for target in targets:
        server, _, tool = target.partition("/")
        if base is not None:
            path = f"/pins/{server}/{tool}/approve" if tool else f"/pins/{server}/approve"
            done = _api(base, "POST", path)["approved"]
            if not done:
                raise PinsError(f"no changed definition to approve for {target}")
            approved += done
            continue
        from onemcp.hub.pins import Pins

        pins = Pins(config.parent)
        try:
            pending = {c.tool for c in pins.changes() if c.server == server}
            if (tool and tool not in pending) or not pending:
                raise PinsError(f"no changed definition to approve for {target}")
            approved += [f"{server}/{name}" for name in pins.approve(server, [tool] if tool else None)]
        finally:
            pins.close()
    for name in approved:
        print(f"approved {name}{'' if base else ' (the hub uses it when it starts)'}")
    return 0
