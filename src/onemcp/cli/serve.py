"""`onemcp serve`: find or create the config, validate it, bind, and run the hub under uvicorn."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path

import orjson
import uvicorn

from onemcp.app import OneMcpApp
from onemcp.config.load import ConfigError, load_config, resolve_path, write_starter
from onemcp.observability import logs


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def write_runtime(config_path: Path, url: str) -> Path:
    """Tell local tools (the CLI) where the running hub is: `runtime.json` beside the config."""
    runtime = config_path.parent / "runtime.json"
    doc = {"url": url, "pid": os.getpid(), "config": str(config_path)}
    tmp = runtime.with_suffix(".json.tmp")
    tmp.write_bytes(orjson.dumps(doc))
    tmp.replace(runtime)
    return runtime


def remove_runtime(runtime: Path) -> None:
    with contextlib.suppress(OSError, orjson.JSONDecodeError):
        if orjson.loads(runtime.read_bytes()).get("pid") == os.getpid():
            runtime.unlink()


def serve(config_flag: str | None, host: str, port: int, log_level: str, log_format: str = "text") -> int:
    logs.configure(log_level, log_format)
    path = resolve_path(config_flag)
    if not path.exists():
        if config_flag:
            print(f"onemcp: config file {path} does not exist", file=sys.stderr)
            return 2
        write_starter(path)
        print(f"onemcp: no config found; wrote a starter config to {path}", file=sys.stderr)
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"onemcp: invalid config: {exc}", file=sys.stderr)
        return 2
    logs.REDACTOR.use(config)
    try:
        sock = _bind(host, port)
    except OSError as exc:
        print(f"onemcp: cannot bind {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 2
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"onemcp: serving {len(config.enabled)} server(s) from {path}", file=sys.stderr)
    print(f"onemcp: listening on http://{shown}:{bound_port}/mcp", flush=True)
    app = OneMcpApp(config, bind_host=host, config_path=path)
    runtime = write_runtime(path, f"http://{shown}:{bound_port}/mcp")
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            lifespan="on",
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=5,
        )
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the signal after a clean shutdown
            server.run(sockets=[sock])
    finally:
        remove_runtime(runtime)
    print("onemcp: stopped", file=sys.stderr)
    return 0
