"""A minimal, fast MCP upstream for the benchmark: `echo` plus N generated tools.

    python bench/echo_upstream.py [--tools N]           # stdio (newline-delimited JSON)
    python bench/echo_upstream.py --http [--tools N]    # Streamable HTTP, JSON replies

HTTP mode is a raw ASGI app under uvicorn (httptools + uvloop when installed) on a
pre-bound 127.0.0.1 socket (port 0); it prints `LISTENING http://127.0.0.1:<port>/mcp`.
Legacy era only: initialize issues an Mcp-Session-Id (never checked afterwards),
notifications get 202, GET gets 405 (no standalone stream), DELETE gets 200.
"""

from __future__ import annotations

import argparse
import socket
import sys
import uuid
from typing import Any

import orjson

VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
_tools_json = b'{"tools":[]}'


def make_tools(n: int) -> bytes:
    echo = {
        "name": "echo",
        "description": "Echo the arguments back as text.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
    }
    extra = [
        {
            "name": f"tool_{i}",
            "description": f"Generated benchmark tool number {i}; it does nothing useful at all.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "what to look for"},
                    "limit": {"type": "integer"},
                },
                "required": ["query"],
            },
        }
        for i in range(n)
    ]
    return orjson.dumps({"tools": [echo, *extra]})


def _result(rid: Any, result: Any) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": rid, "result": result})


def handle(body: bytes) -> tuple[bytes | None, str | None]:
    """(reply, method) for one message; the reply is None for notifications and responses."""
    msg = orjson.loads(body)
    method = msg.get("method")
    if "id" not in msg or method is None:
        return None, method
    return _reply(msg["id"], method, msg.get("params") or {}), method


def _reply(rid: Any, method: str, params: dict[str, Any]) -> bytes:
    if method == "tools/call":
        text = orjson.dumps(params.get("arguments") or {}).decode()
        return _result(rid, {"content": [{"type": "text", "text": text}], "isError": False})
    if method == "tools/list":
        return b'{"jsonrpc":"2.0","id":' + orjson.dumps(rid) + b',"result":' + _tools_json + b"}"
    if method == "initialize":
        asked = params.get("protocolVersion")
        return _result(
            rid,
            {
                "protocolVersion": asked if asked in VERSIONS else VERSIONS[-1],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "bench-echo", "version": "0"},
            },
        )
    if method == "ping":
        return _result(rid, {})
    return orjson.dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"no method {method}"}})


# ---------------------------------------------------------------- HTTP
JSON_HEADERS = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    method = scope["method"]
    if method != "POST":
        status = 200 if method == "DELETE" else 405
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    message = await receive()
    body = message.get("body", b"")
    while message.get("more_body"):
        message = await receive()
        body += message.get("body", b"")
    reply, rpc_method = handle(body)
    if reply is None:
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [*JSON_HEADERS, (b"content-length", str(len(reply)).encode())]
    if rpc_method == "initialize":
        headers.append((b"mcp-session-id", uuid.uuid4().hex.encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": reply})


def serve_http() -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    print(f"LISTENING http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
    config = uvicorn.Config(
        app,
        loop="auto",  # uvloop when installed
        http="auto",  # httptools when installed
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
    )
    uvicorn.Server(config).run(sockets=[sock])


# ---------------------------------------------------------------- stdio
def serve_stdio() -> None:
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        reply, _ = handle(line)
        if reply is not None:
            out.write(reply + b"\n")
            out.flush()


def main() -> None:
    global _tools_json
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true", help="Streamable HTTP instead of stdio")
    parser.add_argument("--tools", type=int, default=0, help="generated tools besides echo")
    args = parser.parse_args()
    _tools_json = make_tools(args.tools)
    if args.http:
        serve_http()
    else:
        serve_stdio()


if __name__ == "__main__":
    main()
