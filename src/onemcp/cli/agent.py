"""`onemcp instructions`, `inspect`, `search` and `run`: a running hub's tools, for coding agents in a shell.

Owns the arguments and the exit codes of these commands (`search QUERY` is `inspect --search QUERY`;
what they print is `agent_output`'s), and how a `SERVER/TOOL` reference becomes the name the hub knows
(`SERVER<sep>TOOL` when the hub prefixes, `TOOL` when it does not: predicted from mcp.json, confirmed by
the hub's answer). The wire is `rpc` (one stateless POST per request); which hub and view is `target`.
Imports stay light: `onemcp run` is started once per call, so its start-up time is the user's latency.

Exit codes: 0 done; 1 the tool, the hub or the connection reported an error (message on stderr);
2 a bad request (arguments that are not a JSON object, a malformed reference, hub URL or .onemcprc);
130 Ctrl-C (`main` says it; the connection closes, which cancels the call on the hub).

Everything an upstream wrote (names, descriptions, schemas, results, errors) reaches the terminal
through `escape_line`, `escape_text` or `json_text`: no escape sequence, C1 control or bidi override.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

from onemcp.cli import argtypes
from onemcp.cli.agent_output import (
    content_text,
    dump,
    first_line,
    print_result,
    ranked,
    run_line,
    savings,
    search_hit,
    show_tool,
)
from onemcp.cli.client.rpc import HubClient, HubUnreachable, RpcError
from onemcp.cli.inventory import UNATTRIBUTED, Inventory, Naming, health_counts, inventory
from onemcp.cli.playbook import PLAYBOOK
from onemcp.cli.target import BadTarget, Target, TargetError, resolve, view_of, with_exposure
from onemcp.cli.terminal import escape_line, escape_text, table
from onemcp.config.context import local_signer
from onemcp.protocol import headers as mcp_headers
from onemcp.protocol.errors import HEADER_MISMATCH

OK, FAILED, USAGE = 0, 1, 2
STDIN_WAIT = 2.0  # seconds to wait for piped arguments before taking "no arguments"
COMMANDS = ("instructions", "inspect", "search", "run")
SEARCH_LIMIT = 20  # search_tools' largest `limit` (onemcp.search.meta.MAX_LIMIT; not imported either)
SEARCH_TOOL = "search_tools"  # the hub's meta-tool (onemcp.search.meta.SEARCH; not imported: this path stays light)
MESSAGE_LIMIT = 2000  # characters of an error message on stderr
RUN_HINT_TOOLS = 10  # tool names a bare `run SERVER` lists


class Failure(Exception):
    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser) -> None:
    hub = argparse.ArgumentParser(add_help=False, parents=[config])
    hub.add_argument(
        "--url",
        type=argtypes.hub_url,
        help="the hub's MCP endpoint (default: .onemcprc, else the running hub's runtime.json)",
    )
    view = hub.add_mutually_exclusive_group()
    view.add_argument("--preset", type=argtypes.selector, help="see only the servers of this preset")
    view.add_argument("--filter", type=argtypes.selector, help="see only the servers whose tags match this expression")
    view.add_argument("--tags", type=argtypes.selector, help="see only the servers with any of these tags (a,b)")
    hub.add_argument(
        "--timeout", type=argtypes.seconds, default=300.0, metavar="S", help="give up after S seconds (300)"
    )

    sub.add_parser("instructions", parents=[hub], help="how a coding agent uses onemcp, and the servers available now")
    inspect = sub.add_parser("inspect", parents=[hub], help="list servers, a server's tools, or a tool's schema")
    inspect.add_argument("ref", nargs="?", metavar="SERVER[/TOOL]")
    inspect.add_argument(
        "--search", metavar="QUERY", type=argtypes.query, help="the tools that best match what you want to do"
    )
    search = sub.add_parser("search", parents=[hub], help="the tools that best match what you want to do")
    search.add_argument("words", nargs="+", type=argtypes.query, metavar="QUERY", help="what you want to do, in words")
    for parser in (inspect, search):
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        limit = f"matches {'--search' if parser is inspect else 'it'} shows (5, at most {SEARCH_LIMIT})"
        parser.add_argument("--limit", type=argtypes.count(1, SEARCH_LIMIT), metavar="N", help=limit)
    inspect.add_argument("--tokens", action="store_true", help="what each server's tools cost a model, in tokens")
    run_cmd = sub.add_parser("run", parents=[hub], help="call a tool: onemcp run SERVER/TOOL --args '{...}'")
    run_cmd.add_argument(
        "ref",
        metavar="SERVER/TOOL",
        help="a tool as `onemcp inspect SERVER` lists it (a bare SERVER is refused with its tools), or the hub's name",
    )
    run_cmd.add_argument("--args", dest="arguments", metavar="JSON", help="the arguments (default: JSON on stdin)")
    run_cmd.add_argument("--format", choices=["text", "json"], default="text", help="text content, or the result")


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "search":  # `inspect --search QUERY`'s ranking and output, by the same code
            query = " ".join(args.words)  # (`onemcp search add two numbers` unquoted too)
            args.command, args.search, args.ref, args.tokens = "inspect", query, None, False
        if args.command == "run":
            check_ref(args.ref)  # before connecting: a bad request is exit 2 whether or not a hub runs
            arguments = read_arguments(args.arguments)
            target = _target(args)
            with _client(target, args.timeout) as client:
                return _run(client, target, args.ref, arguments, args.format)
        if args.command == "inspect" and args.ref is not None and not args.ref.strip():
            raise Failure("an empty SERVER[/TOOL]: name a server (`onemcp inspect` lists them)", USAGE)
        if args.command == "inspect" and args.ref is not None:
            check_ref(args.ref, "SERVER[/TOOL]")  # as `run`'s: `time/` and `/tool` are exit 2, before connecting
        if args.command == "inspect" and args.search is None and args.limit is not None:
            raise Failure("--limit goes with --search", USAGE)
        if args.command == "inspect" and args.search is not None and (args.ref is not None or args.tokens):
            raise Failure("--search takes no SERVER[/TOOL] and no --tokens", USAGE)  # (before connecting, as above)
        if args.command == "inspect" and args.tokens and args.ref is not None:
            raise Failure("--tokens takes no SERVER[/TOOL]", USAGE)
        target = _target(args)
        if args.command == "inspect" and args.search is not None:
            with _client(target, args.timeout, "search") as client:
                limit = 5 if args.limit is None else args.limit
                return _search(client, target, args.timeout, args.search, limit, args.json)
        with _client(target, args.timeout) as client:
            if args.command == "inspect" and args.tokens:
                with _client(target, args.timeout, "search") as searching:
                    return _tokens(client, searching, target, args.json)
            if args.command == "inspect":
                return _inspect(client, target, args.ref, args.json)
            return _instructions(client, target)
    except Failure as exc:
        return _complain(args, str(exc), exc.code, "usage" if exc.code == USAGE else "failed")
    except BadTarget as exc:  # a malformed URL or .onemcprc
        return _complain(args, str(exc), USAGE, "usage")
    except HubUnreachable as exc:
        return _complain(args, str(exc), FAILED, exc.kind)
    except TargetError as exc:  # no hub running, by runtime.json
        return _complain(args, str(exc), FAILED, "unreachable")
    except RpcError as exc:  # the upstream's message, passed on by the hub
        error = {"code": exc.code, **({} if exc.data is None else {"data": exc.data})}
        return _complain(args, f"{exc.message} (error {exc.code})", FAILED, "rpc", error, exc.message)


def _complain(
    args: argparse.Namespace, message: str, code: int, kind: str,
    rpc: dict[str, Any] | None = None, said: str | None = None,
) -> int:  # fmt: skip
    """Say why on stderr; when JSON was asked for (`inspect --json`, `run --format json`), stdout gets
    one JSON document too, `{"error": {...}}`, so it is JSON whatever happened. `code`: the exit code."""
    print(f"onemcp: {escape_line(message, MESSAGE_LIMIT)}", file=sys.stderr)
    if getattr(args, "json", False) or getattr(args, "format", None) == "json":
        dump({"error": {"kind": kind, "message": message if said is None else said, **(rpc or {}), "exit": code}})
    return code


def _target(args: argparse.Namespace) -> Target:
    return resolve(
        config_flag=args.config,
        url=args.url,
        view={"preset": args.preset, "filter": args.filter, "tags": args.tags},
    )


def _client(target: Target, timeout: float, exposure: str = "full") -> closing[HubClient]:
    """A client of the hub's view; tools listed in full (what these commands show) unless asked otherwise."""
    signer = local_signer(target.config, Path.cwd())  # this directory's project renders template servers
    context = signer.headers if signer is not None else None
    return closing(HubClient(with_exposure(target.url, exposure), timeout=timeout, context=context))


# ---------------------------------------------------------------------- arguments
def read_arguments(text: str | None) -> dict[str, Any]:
    """The tool arguments from `--args`, else from piped stdin, else none."""
    source = "--args"
    if text is None:
        text, source = _stdin_text(), "stdin"
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except ValueError as exc:
        raise Failure(f"the arguments ({source}) are not valid JSON: {exc}", USAGE) from None
    if not isinstance(value, dict):
        raise Failure(f'the arguments ({source}) must be a JSON object, like \'{{"name": "value"}}\'', USAGE)
    return value


class NotJson(ValueError):
    """A number JSON has no way to write, which Python's `json` reads anyway (NaN, Infinity, 1e999)."""


def _not_json(word: str) -> Any:
    raise NotJson(f"{word} is not a JSON value (JSON numbers are finite: no NaN or Infinity)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotJson(f"{text} is out of range (a JSON number here must fit a finite double)")
    return value


def _stdin_text() -> str | None:
    stdin = sys.stdin
    if stdin is None or stdin.closed or stdin.isatty():
        return None
    if os.name == "posix":
        import select

        # An agent's shell may hand us a pipe nobody writes to: do not wait for it forever.
        readable, _, _ = select.select([stdin], [], [], STDIN_WAIT)
        if not readable:
            return None
    return stdin.read()


# ---------------------------------------------------------------------- run
def check_ref(ref: str, shape: str = "SERVER/TOOL (or the hub's own tool name)") -> None:
    """A `run` (or `inspect`) reference: SERVER/TOOL, never empty, no empty half (else exit 2)."""
    if not ref.strip():
        raise Failure(f"no tool given: expected {shape}", USAGE)
    server, slash, tool = ref.partition("/")
    if slash and (not server or not tool):
        raise Failure(f"{ref!r}: expected {shape}", USAGE)


def _run(client: HubClient, target: Target, ref: str, arguments: dict[str, Any], fmt: str) -> int:
    check_ref(ref)
    server, slash, tool = ref.partition("/")
    naming = Naming.from_config(target.config)
    if not slash:
        result = _call(client, target, [ref], arguments, None, ref)
    elif naming.prefixed:  # the hub routes SERVER<sep>TOOL to SERVER: call it, look further if not found
        result = _call(client, target, [f"{server}{naming.separator}{tool}", tool], arguments, server, tool)
    else:  # a bare TOOL may be another server's (prefixMode never): the hub's list must show it is SERVER's
        candidates = [tool, f"{server}{naming.separator}{tool}"]
        result = _call(client, target, candidates, arguments, server, tool, listed_first=True)
    return OK if print_result(result, fmt) else FAILED


def _call(
    client: HubClient,
    target: Target,
    candidates: list[str],
    arguments: dict[str, Any],
    server: str | None,
    tool: str,
    *,
    listed_first: bool = False,
) -> dict[str, Any]:
    """Call the first candidate name (unless `listed_first`); on "not found", or first when
    `listed_first`, pick the one the tool list has: for SERVER/TOOL, only a name it shows is SERVER's."""
    params = {"name": candidates[0], "arguments": arguments}
    if not listed_first:
        try:
            return _tools_call(client, params)
        except RpcError as exc:
            if not _not_found(exc):
                raise
        candidates = candidates[1:]
    inv = inventory(client, target, filtered=False)
    names = {str(t.get("name")) for t in inv.tools}
    for name in candidates:
        if name in names and (server is None or inv.owner(name) == server):
            params["name"] = name
            return _tools_call(client, params)
    if server is not None and inv.servers and server not in inv.servers:
        close = difflib.get_close_matches(server, list(inv.servers), n=1)
        guess = f"; did you mean {close[0]!r}?" if close else f" (servers: {', '.join(sorted(inv.servers))})"
        raise Failure(f"no server {server!r} in this hub's view{guess}")
    if server is None and tool in inv.servers:  # `run demo`: a server was named where a tool goes
        raise Failure(_a_server_not_a_tool(inv, tool), USAGE)
    if server is not None:
        _refuse_another_servers(inv, [n for n in candidates if n in names], server, tool)
    where = f" on server {server!r}" if server is not None else ""
    hint = f"`onemcp inspect {server}`" if server is not None else "`onemcp inspect`"
    health = inv.servers.get(server, {}) if server is not None else {}
    if health.get("state") not in (None, "ready"):  # its tools are not listed because it is down
        said = f"{health['state']}: {health.get('lastError')}" if health.get("lastError") else health["state"]
        raise Failure(f"server {server!r} is {said}; `onemcp status` or /health says more")
    shown = [inv.short(inv.owner(n) or "", t) for t in inv.tools if (n := str(t.get("name")))]
    close = [c for c in difflib.get_close_matches(tool, shown, n=2) if c != tool][:1]
    guess = f"; did you mean {close[0]!r}?" if close else ""
    raise Failure(f"no tool {tool!r}{where} in this hub's view{guess}; {hint} lists what there is")


def _a_server_not_a_tool(inv: Inventory, server: str) -> str:
    """What to write instead of a bare `run SERVER`: its tools, and a `run` line for the first one."""
    tools = inv.by_server().get(server, [])
    said = f"{server!r} is a server, not a tool: `onemcp run` takes SERVER/TOOL"
    if not tools:
        return f"{said}, and {server!r} has no tools in this hub's view; `onemcp inspect {server}` says more"
    shorts = [inv.short(server, t) for t in tools]
    more = f", and {len(shorts) - RUN_HINT_TOOLS} more" if len(shorts) > RUN_HINT_TOOLS else ""
    return (
        f"{said}, for example: {run_line(server, shorts[0], tools[0])}; its {len(shorts)} tool(s):"
        f" {', '.join(shorts[:RUN_HINT_TOOLS])}{more} (`onemcp inspect {server}/TOOL` shows a tool's arguments)"
    )


def _refuse_another_servers(inv: Inventory, listed: list[str], server: str, tool: str) -> None:
    """`SERVER/TOOL` names a tool the list has, but not as SERVER's: say whose it is, or that the
    names cannot tell (prefixMode never, several servers), rather than call another server's tool."""
    for name in listed:
        owner = inv.owner(name)
        if owner is not None:
            raise Failure(f"{server}/{tool}: the hub's tool {name!r} is server {owner!r}'s, not {server!r}'s")
        # several servers have it (the hub reports each one hidden): whose this caller gets depends on what it reaches
        said = [c for c in inv.collisions if c.startswith(f"tool {name!r} of ")]
        why = (
            f": the hub reports {'; '.join(said)} (which one a caller gets depends on what it may reach)"
            if said
            else ""
        )
        raise Failure(
            f"{server}/{tool}: this hub's tool names do not say their server (prefixMode never), so {name!r}"
            f" cannot be told to be {server!r}'s{why}; `onemcp run {name}` calls whichever server's tool the"
            f" hub lists as {name!r}"
        )


def _tools_call(client: HubClient, params: dict[str, Any]) -> dict[str, Any]:
    try:
        return client.request("tools/call", params)
    except RpcError as exc:
        if exc.code == HEADER_MISMATCH and "Mcp-Param" in exc.message:
            return _call_with_param_headers(client, params)
        raise


def _not_found(exc: RpcError) -> bool:
    """The hub's "Tool not found", or (a hub of one unprefixed server hands it unknown names) the server's own."""
    text = exc.message.lower()
    return exc.code == -32602 and ("not found" in text or "unknown tool" in text)


def _call_with_param_headers(client: HubClient, params: dict[str, Any]) -> dict[str, Any]:
    """The tool mirrors arguments in `Mcp-Param-*` headers (x-mcp-header): send them too."""

    listed = client.request("tools/list").get("tools")
    tools = [t for t in listed if isinstance(t, dict)] if isinstance(listed, list) else []
    annotated = mcp_headers.header_params(tools)
    message = {"method": "tools/call", "params": params}
    headers = {k: v for k, v in mcp_headers.request_headers(message, annotated).items() if k.startswith("mcp-param-")}
    return client.request("tools/call", params, headers=headers)


# ---------------------------------------------------------------------- inspect
def _inspect(client: HubClient, target: Target, ref: str | None, as_json: bool) -> int:
    inv = inventory(client, target, filtered=bool(view_of(target.url)))
    groups = inv.by_server()
    if ref is None:
        by_health = health_counts(inv, target)
        rows: list[dict[str, Any]] = [
            {
                "server": name,
                "tools": int(h.get("tools", 0)) if by_health else len(groups.get(name, [])),
                "state": str(h.get("state", "?")),
            }
            for name, h in inv.servers.items()
        ]
        if UNATTRIBUTED in groups and not by_health:
            rows.append({"server": UNATTRIBUTED, "tools": len(groups[UNATTRIBUTED]), "state": "-"})
        if as_json:
            dump(rows)
            return OK
        if not rows:
            print("no servers in this view")
            return OK
        cells = [[escape_line(r["server"]), str(r["tools"]), escape_line(r["state"])] for r in rows]
        table(["SERVER", "TOOLS", "STATE"], cells)
        print("\n`onemcp inspect SERVER` lists a server's tools.")
        return OK
    server, slash, tool = ref.partition("/")
    if server not in inv.servers and server not in groups:
        known = ", ".join(inv.servers) or "none"
        raise Failure(f"no server {server!r} in this hub's view (servers: {known})")
    tools = groups.get(server, [])
    if not tools and UNATTRIBUTED in groups:
        raise Failure(
            f"this hub's tool names do not say their server (prefixMode never), so {server!r}'s cannot be told"
            f" apart; `onemcp inspect --search QUERY` or `onemcp run TOOL` work by tool name"
        )
    if not slash:
        rows = [
            {"tool": inv.short(server, t), "name": t.get("name"), "description": first_line(t.get("description"))}
            for t in tools
        ]
        if as_json:
            dump(rows)
            return OK
        state = inv.servers.get(server, {}).get("state")
        note = f" (server is {escape_line(state)})" if state not in (None, "ready") else ""
        print(f"{escape_line(server)}: {len(rows)} tool(s){note}")
        table([], [[f"  {escape_line(r['tool'])}", escape_line(r["description"])] for r in rows])
        if UNATTRIBUTED in groups:  # names several servers have (prefixMode never): whose, the names cannot say
            shared = ", ".join(escape_line(str(t.get("name"))) for t in groups[UNATTRIBUTED])
            print(f"\nand tool(s) several servers have, so whose cannot be told (prefixMode never): {shared}")
        if rows:
            print(f"\n`onemcp inspect {escape_line(server)}/TOOL` shows a tool's arguments.")
        return OK
    found = next((t for t in tools if inv.short(server, t) == tool or t.get("name") == tool), None)
    if found is None:
        raise Failure(f"no tool {tool!r} on server {server!r}; `onemcp inspect {server}` lists its tools")
    show_tool(server, inv.short(server, found), found, as_json)
    return OK


# ---------------------------------------------------------------------- search and tokens
def _search(client: HubClient, target: Target, timeout: float, query: str, limit: int, as_json: bool) -> int:
    """The hub's own search (the same ranking a model gets through search_tools); as JSON, its hits joined
    to the view's full tool list (server, description, parameters)."""
    result = client.request("tools/call", {"name": SEARCH_TOOL, "arguments": {"query": query, "limit": limit}})
    if not as_json:
        return OK if print_result(result, "text") else FAILED
    if result.get("isError") is True:
        raise Failure(f"the search failed: {content_text(result) or '(no message)'}")
    with _client(target, timeout) as full:
        inv = inventory(full, target, filtered=bool(view_of(target.url)))
    named = {str(tool.get("name")): tool for tool in inv.tools}
    names, total = ranked(content_text(result), named)
    hits = []
    for rank, name in enumerate(names, 1):
        server, tool = inv.owner(name), named.get(name)
        hits.append(search_hit(rank, name, server, inv.short(server, tool) if server and tool else name, tool))
    dump({"query": query, "total": total, "hits": hits})
    return OK


def _tokens(client: HubClient, searching: HubClient, target: Target, as_json: bool) -> int:
    """Tokens (o200k) of each server's tool definitions, of the full list, and of the search-mode list."""
    from onemcp.search.tokens import count_tokens

    inv = inventory(client, target, filtered=bool(view_of(target.url)))

    def tokens(tools: Any) -> int:  # as the hub sends it: compact JSON
        return count_tokens(json.dumps({"tools": tools}, separators=(",", ":"), ensure_ascii=False))

    if health_counts(inv, target):  # the hub's own per-server count, over the same compact JSON
        rows = [(s, int(h.get("tools", 0)), int(h.get("toolTokens", 0))) for s, h in inv.servers.items()]
    else:
        rows = [(server, len(tools), tokens(tools)) for server, tools in inv.by_server().items()]
    full = tokens(inv.tools)
    search = tokens(searching.request("tools/list").get("tools", []))
    if as_json:
        servers = [{"server": s, "tools": n, "tokens": t} for s, n, t in rows]
        dump({"servers": servers, "full": full, "search": search})
        return OK
    table(["SERVER", "TOOLS", "TOKENS"], [[escape_line(s), str(n), str(t)] for s, n, t in rows])
    print(f"\nfull tool list: {full} tokens; search mode: {search} tokens{savings(full, search)}")
    return OK


# ---------------------------------------------------------------------- instructions
def _instructions(client: HubClient, target: Target) -> int:
    discovered = client.request("server/discover")
    inv = inventory(client, target, filtered=bool(view_of(target.url)))
    groups = inv.by_server()
    view = escape_line(" ".join(f"{k}={v}" for k, v in view_of(target.url).items()))
    print(PLAYBOOK)
    print(f"## Servers on this hub{f' (view: {view})' if view else ''}\n")
    if not inv.servers and not groups:
        print("(none)")
    by_health = health_counts(inv, target)
    for name, h in inv.servers.items():
        state = h.get("state")
        note = f", {escape_line(state)}" if state not in (None, "ready") else ""
        count = int(h.get("tools", 0)) if by_health else len(groups.get(name, []))
        print(f"- {escape_line(name)}: {count} tool(s){note}")
    if UNATTRIBUTED in groups and not by_health:
        print(f"- (server unknown): {len(groups[UNATTRIBUTED])} tool(s)")
    hub_text = str(discovered.get("instructions") or "").strip()
    if hub_text:  # the upstreams' own instructions are in it
        print(f"\n## The hub's instructions\n\n{escape_text(hub_text)}")
    return OK
