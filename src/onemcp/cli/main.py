"""The `onemcp` command line: parse arguments, hand off to one module per command.

Command modules are imported only when their command runs (the whole set only for help or an
unknown command): `onemcp run` is started once per tool call, and the hub's own imports
(pydantic, uvicorn, httpx) would be most of its latency. Each module offers
`add_parser(sub, config)` and `run(args)`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

from onemcp import __version__
from onemcp.cli import argtypes

CONFIG_HELP = (
    "path to mcp.json (default: $ONEMCP_CONFIG, else $ONEMCP_CONFIG_DIR/mcp.json, else"
    " $XDG_CONFIG_HOME/onemcp/mcp.json, ~/.config/onemcp/mcp.json when that is unset)"
)
# command -> the module that owns it ("" for `serve`, whose parser is here)
COMMANDS = {
    "serve": "",
    "mcp": "onemcp.cli.mcp",
    "app": "onemcp.cli.app",
    "preset": "onemcp.cli.preset",
    "auth": "onemcp.cli.auth",
    "proxy": "onemcp.cli.proxy",
    "instructions": "onemcp.cli.agent",
    "inspect": "onemcp.cli.agent",
    "search": "onemcp.cli.agent",
    "run": "onemcp.cli.agent",
    "cli-setup": "onemcp.cli.playbook",
    "tui": "onemcp.cli.tui",
    "validate": "onemcp.cli.configure",
    "config": "onemcp.cli.configure",
    "start": "onemcp.cli.daemon",
    "stop": "onemcp.cli.daemon",
    "restart": "onemcp.cli.daemon",
    "status": "onemcp.cli.daemon",
    "logs": "onemcp.cli.daemon",
    "wait": "onemcp.cli.daemon",
    "service": "onemcp.cli.daemon",
}


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the hub")
    serve.add_argument("--config", type=argtypes.path, help=CONFIG_HELP)
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")  # (None: not given; stdio refuses it)
    serve.add_argument(
        "--i-know-this-is-unauthenticated-and-exposed",
        dest="allow_open_network",
        action="store_true",
        help="serve a non-loopback address with no authentication (dangerous)",
    )
    serve.add_argument("--port", type=argtypes.port, help="port to bind; 0 picks a free one (default 3050)")
    serve.add_argument(
        "--transport",
        default="http",
        choices=["http", "stdio"],
        help="http: serve /mcp on --host/--port (default); stdio: one client on stdin/stdout",
    )
    from onemcp.cli.target import add_view_flags

    add_view_flags(serve, "stdio only: ")  # over HTTP each client chooses with /mcp's query string
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", default="text", choices=["text", "json"], help="log lines as text or JSON")
    serve.add_argument(
        "--log-file", type=argtypes.path, help="log to this file (rotated at 10 MiB, 3 kept) instead of stderr"
    )


# words a user tries as a command that are another command's (or nobody's): what to write instead
ELSEWHERE = {
    "tools": "`onemcp inspect SERVER` lists a server's tools (`onemcp inspect` the servers)",
    "call": "`onemcp run SERVER/TOOL --args '{...}'` calls a tool",
    "list": "`onemcp mcp list` lists the servers in mcp.json (`onemcp inspect` what the hub serves)",
    "add": "`onemcp mcp add NAME ...` adds a server",
    "remove": "`onemcp mcp remove NAME` removes a server",
    "enable": "`onemcp mcp enable NAME` switches a server on",
    "disable": "`onemcp mcp disable NAME` switches a server off",
    "import": "`onemcp app import APP` copies an app's servers into mcp.json",
    "reload": (
        "the hub reads mcp.json again by itself when it changes (and on SIGHUP); `onemcp status` says whether"
        " it took the change or why not; `onemcp restart` restarts the hub"
    ),
}

MCP_ELSEWHERE = {  # the same, for `onemcp mcp WORD`
    "update": "`onemcp mcp edit NAME --add-tag T --env K=V ...` changes a server's tags, env, command or arguments",
    "set": "`onemcp mcp edit NAME --add-tag T --env K=V ...` changes a server's tags, env, command or arguments",
}


def build_parser(command: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    """The parser for `command` only (its module alone imported), or for every command."""
    parser = argparse.ArgumentParser(prog="onemcp", description="One MCP server in front of many.")
    parser.add_argument("--version", action="version", version=f"onemcp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", type=argtypes.path, help=CONFIG_HELP)
    wanted = [command] if command in COMMANDS else list(COMMANDS)
    modules: dict[str, ModuleType] = {}
    for name in wanted:
        owner = COMMANDS[name]
        if not owner:
            _add_serve(sub)
        elif owner not in modules:
            modules[owner] = importlib.import_module(owner)
            modules[owner].add_parser(sub, config)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    """The command's exit code. Run as the process (`argv` None), a command that served on stdin ends
    the process itself once done: a read still blocked on stdin (a worker thread) would otherwise hold
    the interpreter's exit until the client wrote a line or closed it (Ctrl-C seemed to do nothing)."""
    code = _command(argv)
    if argv is None and sys.argv[1:2] in (["proxy"], ["serve"]) and STDIO_SERVED:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    return code


INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended
STDIO_SERVED: list[bool] = []  # set once a command served MCP on this process's stdin
RAW_OUTPUT = frozenset({"proxy", "tui"})  # stdout is JSON-RPC, or the TUI's screen: every other command's is escaped


def _sends_token(args: argparse.Namespace) -> bool:
    """Does the command send $ONEMCP_TOKEN to a hub over HTTP (through httpx, or the daemon's client)?"""
    if args.command in ("status", "wait", "start", "restart", "proxy", "tui"):
        return True
    if args.command == "mcp":
        return bool(args.action in ("status", "pins", "approve", "restart"))
    return args.command == "auth" and (args.kind == "upstream" or getattr(args, "action", None) == "mine")


def _chosen(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost (sub)command parser `args` went through: `onemcp mcp edit`'s for `mcp edit ...`."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = getattr(args, subs[0].dest, None) if subs else None
        if not subs or chosen not in subs[0].choices:
            return parser
        parser = subs[0].choices[chosen]


def _command(argv: list[str] | None) -> int:
    from onemcp.cli.terminal import keep_stdout_writable

    keep_stdout_writable()  # a tool's output is never lost to stdout's encoding, after the tool ran
    argv = list(sys.argv[1:] if argv is None else argv)
    first = argv[0] if argv else None
    if first in ELSEWHERE:
        print(f"onemcp: there is no `onemcp {first}`: {ELSEWHERE[first]}", file=sys.stderr)
        return 2
    if first == "mcp" and argv[1:2] and argv[1] in MCP_ELSEWHERE:
        print(f"onemcp: there is no `onemcp mcp {argv[1]}`: {MCP_ELSEWHERE[argv[1]]}", file=sys.stderr)
        return 2
    trailing: list[str] | None = None
    if first == "mcp":
        from onemcp.cli.mcp import split_command

        argv, trailing = split_command(argv)
    parser, modules = build_parser(first)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's own parser, with its usage (the root's lists only the commands built)
        _chosen(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "serve":
        selectors = {k: v for k in ("preset", "filter", "tags", "exposure") if (v := getattr(args, k)) is not None}
        if args.transport == "stdio":
            from onemcp.cli.serve import serve_stdio

            given = {"--host": args.host, "--port": args.port, "--log-file": args.log_file}
            given["--i-know-this-is-unauthenticated-and-exposed"] = args.allow_open_network or None
            if stray := [flag for flag, value in given.items() if value is not None]:  # an HTTP hub's, not this one's
                _chosen(parser, args).error(
                    f"{stray[0]} is for --transport http: over stdio the one client is on stdin/stdout and "
                    "the log on stderr"
                )

            STDIO_SERVED.append(True)
            return serve_stdio(args.config, args.log_level, args.log_format, selectors)
        if selectors:
            _chosen(parser, args).error(
                f"--{next(iter(selectors))} is for --transport stdio: over HTTP each client chooses its own "
                "view and exposure (/mcp?preset=NAME, ?tags=, ?filter=, ?exposure=)"
            )
        from onemcp.cli.serve import serve

        log_file = Path(args.log_file) if args.log_file else None
        host = "127.0.0.1" if args.host is None else args.host
        port = 3050 if args.port is None else args.port
        return serve(args.config, host, port, args.log_level, args.log_format, args.allow_open_network, log_file)
    if _sends_token(args):
        from onemcp.cli.client.rpc import token_problem

        if (problem := token_problem()) is not None:  # (run, inspect, instructions: their HubClient says it)
            print(f"onemcp: {problem}", file=sys.stderr)
            return 1
    module = modules[COMMANDS[args.command]]
    if args.command == "proxy":
        STDIO_SERVED.append(True)
    try:
        if args.command in RAW_OUTPUT:
            return int(module.run(args))
        from onemcp.cli.terminal import escaped_output

        with escaped_output():  # names, commands, descriptions from a config or the hub: never terminal codes
            return int(module.run(args, trailing) if args.command == "mcp" else module.run(args))
    except BrokenPipeError:  # `onemcp ... | head`: the reader left; no traceback, and none at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file the command needs beside the config ($ONEMCP_CONFIG_DIR names a file, ...)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"onemcp: cannot use {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: the command's `with` blocks closed its connections on the way out,
        # which cancels a call in flight on the hub (a stateless request ends with its connection)
        with contextlib.suppress(OSError, ValueError):
            print("onemcp: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
