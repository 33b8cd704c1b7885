"""The `onemcp` command line: parse arguments, hand off to one module per command."""

from __future__ import annotations

import argparse
import sys

from onemcp import __version__
from onemcp.cli import app as app_cli
from onemcp.cli import mcp as mcp_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onemcp", description="One MCP server in front of many.")
    parser.add_argument("--version", action="version", version=f"onemcp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the hub")
    serve.add_argument("--config", help="path to mcp.json (default: $ONEMCP_CONFIG or ~/.config/onemcp/mcp.json)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=3050, help="port to bind; 0 picks a free one (default 3050)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", default="text", choices=["text", "json"], help="log lines as text or JSON")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", help="path to mcp.json (default: $ONEMCP_CONFIG or ~/.config/onemcp/mcp.json)")
    mcp_cli.add_parser(sub, config)
    app_cli.add_parser(sub, config)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv, command = mcp_cli.split_command(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from onemcp.cli.serve import serve

        return serve(args.config, args.host, args.port, args.log_level, args.log_format)
    if args.command == "mcp":
        return mcp_cli.run(args, command)
    if args.command == "app":
        return app_cli.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
