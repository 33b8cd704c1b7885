"""A stdio MCP server that lists tools recorded from real servers (`data/servers/<server>.json`).

    python bench/toolsearch/replay_server.py data/servers/github.json [more.json ...]

Answers initialize, ping, tools/list (every tool of the files given, the first of each name) and
tools/call (a short text naming the tool); newline-delimited JSON-RPC on stdin/stdout, nothing
else. For `hub_memory.py`: a hub in front of real tool definitions without installing the servers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def tools_of(files: list[str]) -> list[dict[str, Any]]:
    tools: dict[str, dict[str, Any]] = {}
    for file in files:
        for tool in json.loads(Path(file).read_text())["tools"]:
            if isinstance(tool, dict) and isinstance(tool.get("name"), str):
                tools.setdefault(tool["name"], tool)
    return list(tools.values())


def answer(message: dict[str, Any], tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    method, params = message.get("method"), message.get("params") or {}
    if "id" not in message:
        return None  # a notification
    if method == "initialize":
        version = params.get("protocolVersion", "2025-06-18")
        info = {"name": "replay", "version": "1"}
        result: dict[str, Any] = {"protocolVersion": version, "capabilities": {"tools": {}}, "serverInfo": info}
    elif method == "ping":
        result = {}
    elif method == "tools/list":
        result = {"tools": tools}
    elif method == "tools/call":
        result = {"content": [{"type": "text", "text": f"called {params.get('name')}"}]}
    else:
        return {"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": f"no method {method}"}}
    return {"jsonrpc": "2.0", "id": message["id"], "result": result}


def main() -> None:
    tools = tools_of(sys.argv[1:])
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = answer(json.loads(line), tools)
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
