"""Template servers: what a new project's instance costs (first-list latency, memory), side by side.

    .venv/bin/python bench/templates/measure.py [--projects 5]

Runs the hub in this process on 127.0.0.1 port 0 with one template, `server-memory` (npm, from
tests/npm) whose memory file lives in the project, and a static fixture server. For each of
`--projects` new project directories, a legacy-era client with that project's signed context
(as `onemcp proxy` sends it) times its first `tools/list` (which starts the instance: node and
server-memory) and a second one (instance running). Beside it, the same server started directly
by the official SDK client over stdio, timed from spawn to its first `tools/list`. Memory is
each instance process's RSS (VmRSS) and the hub's own RSS growth per instance. Printed, never
asserted; timings are of this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from onemcp.app import HubServer, OneMcpApp
from onemcp.config.context import Signer, project
from onemcp.config.model import HubConfig

ROOT = Path(__file__).resolve().parents[2]
MEMORY = ROOT / "tests" / "npm" / "node_modules" / "@modelcontextprotocol" / "server-memory" / "dist" / "index.js"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def config() -> dict[str, Any]:
    node = "node"
    return {
        "mcpServers": {"echo": {"command": sys.executable, "args": [str(ROOT / "bench" / "echo_upstream.py")]}},
        "mcpTemplates": {
            "memory": {
                "command": node,
                "args": [str(MEMORY)],
                "env": {"MEMORY_FILE_PATH": "{{ project.path }}/memory.jsonl"},
            }
        },
    }


async def direct(folder: Path) -> float:
    params = StdioServerParameters(
        command="node", args=[str(MEMORY)], env={**os.environ, "MEMORY_FILE_PATH": str(folder / "m.jsonl")}
    )
    start = time.perf_counter()
    async with Client(params, mode="legacy", cache=None) as c:
        await c.list_tools()
        return time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        path = base / "hub" / "mcp.json"
        path.parent.mkdir()
        path.write_text(json.dumps(config()))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
        app = OneMcpApp(HubConfig.model_validate(config()), config_path=path, public_url=url)
        server = HubServer(app.server_config())
        first, second, direct_times, instance_rss, hub_growth, plain = [], [], [], [], [], []
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            while not server.started:
                await anyio.sleep(0.01)
            await app.hub.pool.tried.wait()
            hub_before = rss_kib(os.getpid())
            for i in range(args.projects):
                folder = base / f"project-{i}"
                folder.mkdir()
                direct_times.append(await direct(folder))
                secret = app.hub.context_secret
                assert secret is not None
                headers = Signer({"project": project(folder)}, secret).headers()
                async with httpx2.AsyncClient(headers=headers) as http:
                    async with Client(streamable_http_client(url, http_client=http), mode="legacy", cache=None) as c:
                        start = time.perf_counter()
                        await c.list_tools()
                        first.append(time.perf_counter() - start)
                        start = time.perf_counter()
                        await c.list_tools()
                        second.append(time.perf_counter() - start)
                        instance = next(
                            x for x in app.hub.instances.running() if x.summary["project"] == str(folder.resolve())
                        )
                        conn = app.hub.pool.get(instance.id)
                        pid = getattr(conn.transport, "pid", None) if conn is not None else None
                        instance_rss.append(rss_kib(pid) / 1024 if pid else 0.0)
            hub_growth.append((rss_kib(os.getpid()) - hub_before) / 1024 / max(1, args.projects))
            async with Client(url, mode="legacy", cache=None) as c:
                await c.list_tools()
                start = time.perf_counter()
                await c.list_tools()
                plain.append(time.perf_counter() - start)
            server.should_exit = True
        sock.close()

    def ms(xs: list[float]) -> str:
        return f"median {statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f})"

    print(f"{args.projects} projects, server-memory (node) as a template instance")
    print(f"first tools/list of a new project (starts the instance): {ms(first)}")
    print(f"  the same server started directly by the SDK client, spawn to first list: {ms(direct_times)}")
    print(f"  ratio hub / direct: {statistics.median(first) / statistics.median(direct_times):.2f}")
    print(f"second tools/list (instance running): {ms(second)}; a client without a context: {ms(plain)}")
    print(f"RSS per instance process: median {statistics.median(instance_rss):.1f} MiB")
    print(f"hub RSS growth per instance: {hub_growth[0]:.2f} MiB")


if __name__ == "__main__":
    anyio.run(main)
