"""`onemcp instructions`, `inspect` and `run`: a running hub's tools, for coding agents in a shell.

Owns the arguments, the output and the exit codes of these three commands, and how a
`SERVER/TOOL` reference becomes the name the hub knows (`SERVER<sep>TOOL` when the hub prefixes,
`TOOL` when it does not: predicted from mcp.json, confirmed by the hub's answer). The wire is
`rpc` (one stateless POST per request); which hub and view is `target`. Imports stay light:
`onemcp run` is started once per call, so its start-up time is the user's latency.

Exit codes: 0 done; 1 the tool, the hub or the connection reported an error (message on stderr);
2 a bad request (arguments that are not a JSON object, a malformed reference).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

from onemcp.cli import argtypes
from onemcp.cli.client.rpc import HubClient, HubUnreachable, RpcError
from onemcp.cli.playbook import PLAYBOOK
from onemcp.cli.target import Target, TargetError, resolve, view_of, with_exposure
from onemcp.config.context import local_signer
from onemcp.protocol import headers as mcp_headers
from onemcp.protocol.errors import HEADER_MISMATCH

OK, FAILED, USAGE = 0, 1, 2
DEFAULT_SEPARATOR = "__"
STDIN_WAIT = 2.0  # seconds to wait for piped arguments before taking "no arguments"
COMMANDS = ("instructions", "inspect", "run")
SEARCH_LIMIT = 20  # search_tools' largest `limit` (onemcp.search.meta.MAX_LIMIT; not imported either)
SEARCH_TOOL = "search_tools"  # the hub's meta-tool (onemcp.search.meta.SEARCH; not imported: this path stays light)
UNATTRIBUTED = "?"  # tools whose names do not say their server (prefixMode never, several servers)


class Failure(Exception):
    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser) -> None:
    hub = argparse.ArgumentParser(add_help=False, parents=[config])
    hub.add_argument("--url", help="the hub's MCP endpoint (default: .onemcprc, else the running hub's runtime.json)")
    view = hub.add_mutually_exclusive_group()
    view.add_argument("--preset", help="see only the servers of this preset")
    view.add_argument("--filter", help="see only the servers whose tags match this expression")
    view.add_argument("--tags", help="see only the servers with any of these tags (a,b)")
    hub.add_argument(
        "--timeout", type=argtypes.seconds, default=300.0, metavar="S", help="give up after S seconds (300)"
    )

    sub.add_parser("instructions", parents=[hub], help="how a coding agent uses onemcp, and the servers available now")
    inspect = sub.add_parser("inspect", parents=[hub], help="list servers, a server's tools, or a tool's schema")
    inspect.add_argument("ref", nargs="?", metavar="SERVER[/TOOL]")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.add_argument("--search", metavar="QUERY", help="the tools that best match what you want to do")
    inspect.add_argument(
        "--limit",
        type=argtypes.count(1, SEARCH_LIMIT),
        metavar="N",
        help=f"matches --search shows (5, at most {SEARCH_LIMIT})",
    )
    inspect.add_argument("--tokens", action="store_true", help="what each server's tools cost a model, in tokens")
    run_cmd = sub.add_parser("run", parents=[hub], help="call a tool: onemcp run SERVER/TOOL --args '{...}'")
    run_cmd.add_argument("ref", metavar="SERVER/TOOL")
    run_cmd.add_argument("--args", dest="arguments", metavar="JSON", help="the arguments (default: JSON on stdin)")
    run_cmd.add_argument("--format", choices=["text", "json"], default="text", help="text content, or the result")


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "run":
            check_ref(args.ref)  # before connecting: a bad request is exit 2 whether or not a hub runs
            arguments = read_arguments(args.arguments)
            target = _target(args)
            with _client(target, args.timeout) as client:
                return _run(client, target, args.ref, arguments, args.format)
        if args.command == "inspect" and args.ref is not None and not args.ref.strip():
            raise Failure("an empty SERVER[/TOOL]: name a server (`onemcp inspect` lists them)", USAGE)
        if args.command == "inspect" and args.search is None and args.limit is not None:
            raise Failure("--limit goes with --search", USAGE)
        target = _target(args)
        if args.command == "inspect" and args.search is not None:
            if args.ref is not None or args.tokens:
                raise Failure("--search takes no SERVER[/TOOL] and no --tokens", USAGE)
            with _client(target, args.timeout, "search") as client:
                return _search(client, args.search, 5 if args.limit is None else args.limit, args.json)
        with _client(target, args.timeout) as client:
            if args.command == "inspect" and args.tokens:
                if args.ref is not None:
                    raise Failure("--tokens takes no SERVER[/TOOL]", USAGE)
                with _client(target, args.timeout, "search") as searching:
                    return _tokens(client, searching, target, args.json)
            if args.command == "inspect":
                return _inspect(client, target, args.ref, args.json)
            return _instructions(client, target)
    except Failure as exc:
        print(f"onemcp: {exc}", file=sys.stderr)
        return exc.code
    except (HubUnreachable, TargetError) as exc:
        print(f"onemcp: {exc}", file=sys.stderr)
        return FAILED
    except RpcError as exc:
        print(f"onemcp: {exc.message} (error {exc.code})", file=sys.stderr)
        return FAILED


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
        value = json.loads(text)
    except ValueError as exc:
        raise Failure(f"the arguments ({source}) are not valid JSON: {exc}", USAGE) from None
    if not isinstance(value, dict):
        raise Failure(f'the arguments ({source}) must be a JSON object, like \'{{"name": "value"}}\'', USAGE)
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


# ---------------------------------------------------------------------- names
class Naming:
    """How the hub names tools: the separator, and whether it prefixes (None: unknown)."""

    def __init__(self, separator: str = DEFAULT_SEPARATOR, prefixed: bool | None = None) -> None:
        self.separator = separator
        self.prefixed = prefixed

    @classmethod
    def from_config(cls, path: Path | None) -> Naming:
        """Predicted from the hub's mcp.json (prefixMode, number of enabled servers); cheap, may be stale."""
        try:
            doc = json.loads(path.read_bytes()) if path is not None else None
        except (OSError, ValueError):
            doc = None
        if not isinstance(doc, dict):
            return cls()
        settings = doc.get("onemcp")
        hub: dict[str, Any] = settings if isinstance(settings, dict) else {}
        separator = hub.get("separator") if isinstance(hub.get("separator"), str) else DEFAULT_SEPARATOR
        servers = doc.get("mcpServers", doc.get("servers"))
        entries = servers.values() if isinstance(servers, dict) else []
        enabled = sum(1 for s in entries if not (isinstance(s, dict) and s.get("disabled") is True))
        mode = hub.get("prefixMode", "conditional")
        prefixed = True if mode == "always" else False if mode == "never" else enabled > 1
        return cls(separator or DEFAULT_SEPARATOR, prefixed)


class Inventory:
    """The hub's tools (as this view sees them) grouped by server."""

    def __init__(self, naming: Naming, tools: list[dict[str, Any]], servers: dict[str, dict[str, Any]]) -> None:
        self.naming = naming
        self.tools = tools
        self.servers = servers  # name -> its /health entry

    def owner(self, tool_name: str) -> str | None:
        """The server a visible tool name belongs to (None when the names do not say)."""
        if self.naming.prefixed is not False:
            heads = [s for s in self.servers if tool_name.startswith(s + self.naming.separator)]
            if heads:
                return max(heads, key=len)
        live = [s for s, h in self.servers.items() if h.get("state") != "disabled"]
        return live[0] if len(live) == 1 else None

    def by_server(self) -> dict[str, list[dict[str, Any]]]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for tool in self.tools:
            groups.setdefault(self.owner(str(tool.get("name"))) or UNATTRIBUTED, []).append(tool)
        return groups

    def short(self, server: str, tool: dict[str, Any]) -> str:
        """The tool's name without the server prefix (what SERVER/TOOL uses)."""
        name = str(tool.get("name"))
        prefix = server + self.naming.separator
        return name[len(prefix) :] if name.startswith(prefix) and self.naming.prefixed is not False else name


def inventory(client: HubClient, target: Target, *, filtered: bool) -> Inventory:
    listed = client.request("tools/list").get("tools")
    tools = [t for t in listed if isinstance(t, dict)] if isinstance(listed, list) else []
    naming = Naming.from_config(target.config)
    try:
        upstreams = client.health().get("upstreams")
    except HubUnreachable:
        upstreams = None  # not an onemcp hub, or /health is not reachable: infer from names
    servers: dict[str, dict[str, Any]] = {}
    if isinstance(upstreams, dict):
        servers = {str(k): v if isinstance(v, dict) else {} for k, v in upstreams.items()}
    else:
        for tool in tools:
            head, sep, _ = str(tool.get("name")).partition(naming.separator)
            if sep:
                servers.setdefault(head, {})
    inv = Inventory(naming, tools, servers)
    if naming.prefixed is None:
        naming.prefixed = any(inv.owner(str(t.get("name"))) for t in tools) and len(servers) > 1
    if filtered:  # a view: keep the servers it lets through (those with tools in it)
        present = set(inv.by_server())
        inv.servers = {k: v for k, v in servers.items() if k in present}
    return inv


def _view_active(target: Target) -> bool:
    return bool(view_of(target.url))


def _health_counts(inv: Inventory, target: Target) -> bool:
    """Do /health's per-server figures stand for this listing? When the names carry no server
    (prefixMode never, several servers) and no view filters the list, they are the same tools."""
    known = all("toolTokens" in h or h.get("state") == "disabled" for h in inv.servers.values())
    return UNATTRIBUTED in inv.by_server() and not _view_active(target) and bool(inv.servers) and known


# ---------------------------------------------------------------------- run
def check_ref(ref: str) -> None:
    """A `run` reference: SERVER/TOOL or the hub's own tool name, never empty (else exit 2)."""
    if not ref.strip():
        raise Failure("no tool given: expected SERVER/TOOL (or the hub's own tool name)", USAGE)
    server, slash, tool = ref.partition("/")
    if slash and (not server or not tool):
        raise Failure(f"{ref!r}: expected SERVER/TOOL (or the hub's own tool name)", USAGE)


def _run(client: HubClient, target: Target, ref: str, arguments: dict[str, Any], fmt: str) -> int:
    check_ref(ref)
    server, slash, tool = ref.partition("/")
    naming = Naming.from_config(target.config)
    if not slash:
        candidates = [ref]
    else:
        prefixed_name = f"{server}{naming.separator}{tool}"
        candidates = [tool, prefixed_name] if naming.prefixed is False else [prefixed_name, tool]
    result = _call(client, target, candidates, arguments, server if slash else None, tool if slash else ref)
    return _print_result(result, fmt)


def _call(
    client: HubClient,
    target: Target,
    candidates: list[str],
    arguments: dict[str, Any],
    server: str | None,
    tool: str,
) -> dict[str, Any]:
    """Call the first candidate name; on "not found", pick the one the tool list has."""
    params = {"name": candidates[0], "arguments": arguments}
    try:
        return client.request("tools/call", params)
    except RpcError as exc:
        if exc.code == HEADER_MISMATCH and "Mcp-Param" in exc.message:
            return _call_with_param_headers(client, params)
        if not _not_found(exc):
            raise
    inv = inventory(client, target, filtered=False)
    names = {str(t.get("name")) for t in inv.tools}
    for name in candidates[1:]:
        if name in names and (server is None or inv.owner(name) in (server, None)):
            params["name"] = name
            try:
                return client.request("tools/call", params)
            except RpcError as exc:
                if exc.code == HEADER_MISMATCH and "Mcp-Param" in exc.message:
                    return _call_with_param_headers(client, params)
                raise
    if server is not None and inv.servers and server not in inv.servers:
        close = difflib.get_close_matches(server, list(inv.servers), n=1)
        guess = f"; did you mean {close[0]!r}?" if close else f" (servers: {', '.join(sorted(inv.servers))})"
        raise Failure(f"no server {server!r} in this hub's view{guess}")
    where = f" on server {server!r}" if server is not None else ""
    hint = f"`onemcp inspect {server}`" if server is not None else "`onemcp inspect`"
    close = difflib.get_close_matches(tool, [str(t.get("name")).split("__")[-1] for t in inv.tools], n=1)
    guess = f"; did you mean {close[0]!r}?" if close else ""
    raise Failure(f"no tool {tool!r}{where} in this hub's view{guess}; {hint} lists what there is")


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


def _print_result(result: dict[str, Any], fmt: str) -> int:
    failed = result.get("isError") is True
    text = content_text(result)
    if fmt == "json":
        sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    elif not failed and text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if failed:
        print(f"onemcp: the tool reported an error: {text or '(no message)'}", file=sys.stderr)
        return FAILED
    return OK


def content_text(result: dict[str, Any]) -> str:
    """What a person reads of a tool result: its text, with other content named."""
    parts: list[str] = []
    content = result.get("content")
    for item in content if isinstance(content, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "text":
            parts.append(str(item.get("text", "")))
        elif kind in ("image", "audio"):
            size = len(str(item.get("data", ""))) * 3 // 4
            parts.append(f"[{kind}: {item.get('mimeType', '?')}, about {size} bytes; --format json has the data]")
        elif kind == "resource_link":
            parts.append(f"[resource link: {item.get('uri')}{' ' + str(item['name']) if item.get('name') else ''}]")
        elif kind == "resource" and isinstance(item.get("resource"), dict):
            res = item["resource"]
            parts.append(str(res["text"]) if "text" in res else f"[resource: {res.get('uri')} (binary)]")
    if not parts and "structuredContent" in result:
        parts.append(json.dumps(result["structuredContent"], indent=2, ensure_ascii=False))
    return "\n".join(parts)


# ---------------------------------------------------------------------- inspect
def _inspect(client: HubClient, target: Target, ref: str | None, as_json: bool) -> int:
    inv = inventory(client, target, filtered=_view_active(target))
    groups = inv.by_server()
    if ref is None:
        by_health = _health_counts(inv, target)
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
            return _dump(rows)
        if not rows:
            print("no servers in this view")
            return OK
        _table(["SERVER", "TOOLS", "STATE"], [[r["server"], str(r["tools"]), r["state"]] for r in rows])
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
            return _dump(rows)
        state = inv.servers.get(server, {}).get("state")
        note = f" (server is {state})" if state not in (None, "ready") else ""
        print(f"{server}: {len(rows)} tool(s){note}")
        _table([], [[f"  {r['tool']}", str(r["description"])] for r in rows])
        if rows:
            print(f"\n`onemcp inspect {server}/TOOL` shows a tool's arguments.")
        return OK
    found = next((t for t in tools if inv.short(server, t) == tool or t.get("name") == tool), None)
    if found is None:
        raise Failure(f"no tool {tool!r} on server {server!r}; `onemcp inspect {server}` lists its tools")
    return _show_tool(server, inv.short(server, found), found, as_json)


def _show_tool(server: str, short: str, tool: dict[str, Any], as_json: bool) -> int:
    schema = required_first(tool.get("inputSchema"))
    if as_json:
        return _dump({**tool, "inputSchema": schema})
    print(f"{server}/{short}" + (f"  (hub name: {tool.get('name')})" if tool.get("name") != short else ""))
    description = str(tool.get("description") or "").strip()
    if description:
        print(description)
    found_props = schema.get("properties")
    props: dict[str, Any] = found_props if isinstance(found_props, dict) else {}
    required = set(schema.get("required") or [])
    if props:
        print("\narguments (* = required):")
        rows = []
        for name, spec in props.items():
            spec = spec if isinstance(spec, dict) else {}
            kind = spec.get("type", "any")
            kind = "|".join(map(str, kind)) if isinstance(kind, list) else str(kind)
            text = first_line(spec.get("description"))
            if "default" in spec:
                text = f"{text} (default {json.dumps(spec['default'])})".strip()
            rows.append([f"  {'*' if name in required else ' '} {name}", kind, text])
        _table([], rows)
    print("\ninput schema:")
    print(json.dumps(schema, indent=2, ensure_ascii=False))
    if isinstance(tool.get("outputSchema"), dict):
        print("\noutput schema (structuredContent):")
        print(json.dumps(tool["outputSchema"], indent=2, ensure_ascii=False))
    example = {name: f"<{(props.get(name) or {}).get('type', 'value')}>" for name in props if name in required}
    print(f"\nonemcp run {server}/{short} --args '{json.dumps(example)}'")
    return OK


def required_first(schema: Any) -> dict[str, Any]:
    """The schema with its required properties listed first (order otherwise kept)."""
    if not isinstance(schema, dict):
        return {"type": "object"}
    props = schema.get("properties")
    required = schema.get("required")
    if not isinstance(props, dict) or not isinstance(required, list):
        return schema
    ordered = {k: v for k, v in props.items() if k in required}
    ordered.update((k, v) for k, v in props.items() if k not in required)
    return {**schema, "properties": ordered}


def first_line(text: Any) -> str:
    for line in str(text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


# ---------------------------------------------------------------------- search and tokens
def _search(client: HubClient, query: str, limit: int, as_json: bool) -> int:
    """The hub's own search (the same ranking a model gets through search_tools)."""
    result = client.request("tools/call", {"name": SEARCH_TOOL, "arguments": {"query": query, "limit": limit}})
    if as_json:
        return _dump(result)
    return _print_result(result, "text")


def _tokens(client: HubClient, searching: HubClient, target: Target, as_json: bool) -> int:
    """Tokens (o200k) of each server's tool definitions, of the full list, and of the search-mode list."""
    from onemcp.search.tokens import count_tokens

    inv = inventory(client, target, filtered=_view_active(target))

    def tokens(tools: Any) -> int:  # as the hub sends it: compact JSON
        return count_tokens(json.dumps({"tools": tools}, separators=(",", ":"), ensure_ascii=False))

    if _health_counts(inv, target):  # the hub's own per-server count, over the same compact JSON
        rows = [(s, int(h.get("tools", 0)), int(h.get("toolTokens", 0))) for s, h in inv.servers.items()]
    else:
        rows = [(server, len(tools), tokens(tools)) for server, tools in inv.by_server().items()]
    full = tokens(inv.tools)
    search = tokens(searching.request("tools/list").get("tools", []))
    if as_json:
        servers = [{"server": s, "tools": n, "tokens": t} for s, n, t in rows]
        return _dump({"servers": servers, "full": full, "search": search})
    _table(["SERVER", "TOOLS", "TOKENS"], [[s, str(n), str(t)] for s, n, t in rows])
    saved = f" ({100 * (full - search) / full:.0f}% less)" if full else ""
    print(f"\nfull tool list: {full} tokens; search mode: {search} tokens{saved}")
    return OK


# ---------------------------------------------------------------------- instructions
def _instructions(client: HubClient, target: Target) -> int:
    discovered = client.request("server/discover")
    inv = inventory(client, target, filtered=_view_active(target))
    groups = inv.by_server()
    view = " ".join(f"{k}={v}" for k, v in view_of(target.url).items())
    print(PLAYBOOK)
    print(f"## Servers on this hub{f' (view: {view})' if view else ''}\n")
    if not inv.servers and not groups:
        print("(none)")
    by_health = _health_counts(inv, target)
    for name, h in inv.servers.items():
        state = h.get("state")
        note = f", {state}" if state not in (None, "ready") else ""
        count = int(h.get("tools", 0)) if by_health else len(groups.get(name, []))
        print(f"- {name}: {count} tool(s){note}")
    if UNATTRIBUTED in groups and not by_health:
        print(f"- (server unknown): {len(groups[UNATTRIBUTED])} tool(s)")
    hub_text = str(discovered.get("instructions") or "").strip()
    if hub_text:
        print(f"\n## The hub's instructions\n\n{hub_text}")
    return OK


# ---------------------------------------------------------------------- output
def _dump(doc: Any) -> int:
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return OK


def _table(header: list[str], rows: list[list[str]]) -> None:
    table = [header, *rows] if header else rows
    if not table:
        return
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
