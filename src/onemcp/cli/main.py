"""The `onemcp` command line: parse arguments, hand off to one module per command."""

from __future__ import annotations

import argparse
import sys

from onemcp import __version__


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from onemcp.cli.serve import serve

        return serve(args.config, args.host, args.port, args.log_level, args.log_format)
    return 2


if __name__ == "__main__":
    sys.exit(main())
