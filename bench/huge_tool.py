"""One upstream tool of a huge definition against a hub: its memory while many clients list tools.

    .venv/bin/python bench/huge_tool.py                       # the hub from this checkout's src
    .venv/bin/python bench/huge_tool.py --src /tmp/old/src    # another checkout's hub (before/after)

Starts (on 127.0.0.1 port 0, each stopped by its PID) a stdio upstream (this file, `--serve-stdio`) that
lists `small` and `huge` (a tool whose description is --mb MB) and `python -m onemcp serve` with
PYTHONPATH=--src. Then --clients sessions each ask `tools/list` at once (every reply read whole), and it
prints the size of a reply, whether `huge` was in it, what a call to `huge` got, and the hub's peak RSS
during the lists (VmHWM, reset before them through /proc/<pid>/clear_refs). Before `maxListItemBytes`
every reply carried the huge tool: 20 lists of a 50 MB tool peaked at some 900 MB.
Not a test: pytest never collects bench/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from attack_upstream import ROOT, Client, Procs, proc_status, reset_peak, small_reply, wait_ready

MiB = 1024 * 1024


def serve_stdio(mb: int) -> None:
    """A minimal MCP server over stdio listing a small tool and a huge one."""
    tools = [
        {"name": "small", "description": "A small tool.", "inputSchema": {"type": "object"}},
        {"name": "huge", "description": "h" * (mb * MiB), "inputSchema": {"type": "object"}},
    ]
    for line in sys.stdin:
        msg = json.loads(line)
        if "id" not in msg:
            continue
        if msg.get("method") == "initialize":
            result: Any = {
                "protocolVersion": msg["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "huge", "version": "0"},
            }
        elif msg.get("method") == "tools/list":
            result = {"tools": tools}
        elif msg.get("method") == "tools/call":
            result = {"content": [{"type": "text", "text": "called"}]}
        else:
            result = {}
        sys.stdout.buffer.write(small_reply(msg["id"], result) + b"\n")
        sys.stdout.flush()


async def list_size(client: Client) -> tuple[int, bool, bool]:
    """The size of one tools/list reply (read whole), whether `huge` was in it, whether the hub closed it."""
    import httpx

    try:
        r = await client.http.post(client.url, json=client._msg("tools/list", {}), headers=client.headers)
    except httpx.RemoteProtocolError:
        return 0, False, True
    return len(r.content), b"hhhhhhhh" in r.content, False


async def drive(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="onemcp-huge-") as tmp_name:
        tmp = Path(tmp_name)
        procs = Procs(tmp)
        try:
            upstream = {"command": args.python, "args": [__file__, "--serve-stdio", "--mb", str(args.mb)]}
            config = {"mcpServers": {"huge": upstream}, "onemcp": {"exposure": "full"}}  # every tool, no search
            (tmp / "mcp.json").write_text(json.dumps(config))
            env = {**os.environ, "PYTHONPATH": args.src}
            argv = [args.python, "-m", "onemcp", "serve", "--config", str(tmp / "mcp.json"), "--port", "0"]
            hub = procs.spawn("hub", argv, env=env, ready="listening on")
            base = hub.url.removesuffix("/mcp")
            clients = [Client(hub.url) for _ in range(args.clients)]
            await wait_ready(clients[0], base, ["huge"])
            for client in clients:
                await client.start()
            pid = hub.popen.pid
            base_rss = proc_status(pid, "VmRSS")
            reset = reset_peak(pid)
            began = time.monotonic()
            sizes = await asyncio.gather(*(list_size(c) for c in clients))
            seconds = time.monotonic() - began
            peak = proc_status(pid, "VmHWM")
            called = await clients[0].call("huge", {})
            health = (await clients[0].http.get(f"{base}/health")).json()["upstreams"]["huge"].get("toolRepairs")
            print(f"{args.clients} tools/list of a {args.mb} MB tool: {seconds:.1f} s")
            whole = [s for s in sizes if not s[2]]
            largest = max((s[0] for s in whole), default=0)
            closed = len(sizes) - len(whole)
            print(f"  replies whole: {len(whole)} (largest {largest:,} bytes), closed by the hub: {closed}")
            print(f"  huge listed: {any(s[1] for s in sizes)}")
            if args.show:
                print(
                    (
                        await clients[0].http.post(
                            clients[0].url, json=clients[0]._msg("tools/list", {}), headers=clients[0].headers
                        )
                    ).content[:600]
                )
            print(
                f"  hub RSS before: {base_rss / MiB:.0f} MiB; peak during: {peak / MiB:.0f} MiB"
                + ("" if reset else " (peak not reset)")
            )
            print(f"  call to huge: {called}")
            print(f"  /health toolRepairs: {json.dumps(health)[:300]}")
            for client in clients:
                await client.http.aclose()
        finally:
            procs.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", default=str(ROOT / "src"), help="the onemcp source tree the hub runs from")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the hub and the upstream")
    parser.add_argument("--mb", type=int, default=50, help="the huge tool's description, in MB")
    parser.add_argument("--clients", type=int, default=20, help="sessions listing tools at once")
    parser.add_argument("--show", action="store_true", help="print the start of one reply")
    parser.add_argument("--serve-stdio", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.src = str(Path(args.src).resolve())
    if args.serve_stdio:
        serve_stdio(args.mb)
    else:
        asyncio.run(drive(args))


if __name__ == "__main__":
    main()
