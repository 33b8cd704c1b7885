"""Where it breaks as work grows: throughput, added latency and hub CPU per call at 1, 8, 64, 256 connections.

    .venv/bin/python bench/scale.py [--duration 5] [--connections 1,8,64,256] [--idle 2000]
    .venv/bin/python bench/scale.py --pyspy 8    # where the hub's CPU goes under wrk at 8 connections

The load comes from `wrk` (Debian's package; a C client, so the client is not the bottleneck) with
a Lua script POSTing `tools/call` on one legacy session per target. Targets, side by side in one
run: `direct` (the bench's HTTP echo server), `hub-http` (the hub in front of that echo) and
`hub-stdio` (the hub in front of a stdio echo child), each at every connection count, in turn.
Reports requests/s and the ratio to direct, wrk's p50 latency and the added p50, and the hub's CPU
per request (schedstat of the hub process during that run). Then memory per idle legacy session:
the hub's RSS before and after opening `--idle` sessions. Every process (echo servers, hub, wrk)
is stopped by its PID; everything is on 127.0.0.1. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rawhttp import McpSession
from run import ECHO, PY, Procs, cpu_ns, hub_argv, wait_healthy

LUA = """wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%(tool)s","arguments":{"text":"%(text)s"}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Session-Id"] = "%(sid)s"
wrk.headers["MCP-Protocol-Version"] = "2025-11-25"
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def parse_wrk(out: str) -> tuple[float, float, int, int]:
    """(requests/s, p50 ms, requests, non-2xx or socket errors)."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p50 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)] if m else float("nan")
    errors = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return rps, p50, total, errors


async def session_id(url: str) -> str:
    session = McpSession(url)
    await session.open()
    sid = session.headers.decode().split("mcp-session-id: ", 1)[1].split("\r\n", 1)[0]
    return sid


def run_wrk(url: str, lua: Path, connections: int, duration: float) -> str:
    threads = min(2, connections)
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s", "--latency", "-s", str(lua), url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    return done.stdout


LAYERS = (  # where a sampled stack's innermost frame lives -> the layer it is charged to
    ("uvicorn/", "HTTP server (uvicorn's httptools protocol, response writes)"),
    ("onemcp/http/", "HTTP server (onemcp's limits on the wire)"),
    ("onemcp/downstream/", "MCP endpoint (sessions, JSON-RPC in and out)"),
    ("onemcp/app.py", "the app's routing and guards"),
    ("onemcp/auth/", "the gate"),
    ("onemcp/hub/", "hub: dispatch, forwarding, metrics"),
    ("onemcp/upstream/", "upstream connection and stdio transport"),
    ("onemcp/", "onemcp, other"),
    ("anyio/", "anyio"),
    ("runners.py", "the event loop itself (uvloop, in C: polling, socket reads, callbacks)"),
    ("asyncio/", "asyncio (Python part)"),
)


def print_profile(raw: Path) -> None:
    """Share of samples per layer (by innermost frame) and the busiest functions (py-spy raw format)."""
    from collections import Counter

    layers: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, leaf = int(count), stack.split(";")[-1]
        total += n
        functions[leaf.split(" (")[0] + " (" + leaf.rsplit("/", 1)[-1]] += n
        where = next((name for prefix, name in LAYERS if prefix in leaf), "the event loop and C code (syscalls)")
        layers[where] += n
    print(f"{total} samples; by layer (innermost frame):")
    for name, n in layers.most_common():
        print(f"  {100 * n / total:5.1f}%  {name}")
    print("busiest lines:")
    for name, n in functions.most_common(15):
        print(f"  {100 * n / total:5.1f}%  {name}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (5)")
    parser.add_argument("--connections", default="1,8,64,256")
    parser.add_argument("--idle", type=int, default=2000, help="idle legacy sessions for the memory figure (2000)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pyspy", type=int, metavar="CONNS", help="only profile hub-stdio under wrk (py-spy)")
    args = parser.parse_args()
    counts = [int(c) for c in args.connections.split(",")]
    results: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        procs = Procs(tmp)
        try:
            echo = procs.spawn("echo-http", [PY, ECHO, "--http"], ready_prefix="LISTENING ")
            cfg = tmp / "hub.json"
            servers = {"http": {"url": echo.url}, "stdio": {"command": PY, "args": [ECHO]}}
            limits = {"maxSessions": args.idle + 100, "maxSessionsPerPrincipal": args.idle + 100}
            cfg.write_text(json.dumps({"mcpServers": servers, "onemcp": {"prefixMode": "always", "limits": limits}}))
            hub = procs.spawn("hub", hub_argv(cfg, None, None), ready_prefix="onemcp: listening on ")
            wait_healthy(hub, 2)
            targets = {
                "direct": (echo.url, "echo", None),
                "hub-http": (hub.url, "http__echo", hub.pid),
                "hub-stdio": (hub.url, "stdio__echo", hub.pid),
            }
            if args.pyspy:
                lua = tmp / "profile.lua"
                lua.write_text(LUA % {"tool": "stdio__echo", "text": "x" * 64, "sid": await session_id(hub.url)})
                run_wrk(hub.url, lua, 8, 1.0)  # warm up
                raw = tmp / "pyspy.txt"
                argv = [str(Path(PY).with_name("py-spy")), "record", "--pid", str(hub.pid), "--rate", "500"]
                argv += ["--nonblocking", "--format", "raw", "--output", str(raw), "--duration", f"{args.duration:g}"]
                spy = procs.spawn("py-spy", argv)
                rps = parse_wrk(run_wrk(hub.url, lua, args.pyspy, args.duration))[0]
                spy.popen.wait(timeout=args.duration + 30)
                print(f"hub-stdio under wrk, {args.pyspy} connections: {rps:.0f} req/s while sampled (slowed by it)")
                print_profile(raw)
                return
            for name, (url, tool, pid) in targets.items():
                lua = tmp / f"{name}.lua"
                lua.write_text(LUA % {"tool": tool, "text": "x" * 64, "sid": await session_id(url)})
                run_wrk(url, lua, 8, 1.0)  # warm up
                results[name] = {}
                for c in counts:
                    before = cpu_ns(pid) if pid else 0
                    out = run_wrk(url, lua, c, args.duration)
                    rps, p50, total, errors = parse_wrk(out)
                    cpu = (cpu_ns(pid) - before) / max(1, total) / 1000 if pid else float("nan")
                    results[name][c] = {"rps": rps, "p50_ms": p50, "requests": total, "errors": errors, "hub_us": cpu}
            before = rss_kib(hub.pid)
            sessions = []
            for _ in range(args.idle):
                s = McpSession(hub.url)
                await s.open()
                s.close()  # an idle session holds no connection (a GET stream would be one more)
                sessions.append(s)
            idle_kib = (rss_kib(hub.pid) - before) / max(1, args.idle)
            idle_rss = before / 1024
        finally:
            procs.stop_all()
    if args.json:
        print(json.dumps({"results": results, "idle_session_kib": idle_kib, "hub_rss_mib": idle_rss}, indent=2))
        return
    print(f"wrk, {args.duration:g} s per run, tools/call with a 64-byte argument, one legacy session per target")
    header = f"{'conns':>5}  {'direct req/s':>12}  {'hub-http req/s':>14} {'x':>5}  {'hub-stdio req/s':>15} {'x':>5}"
    header += f"  {'p50 ms d/http/stdio':>22}  {'hub CPU us/call http/stdio':>26}"
    print(header)
    for c in counts:
        d, h, s = results["direct"][c], results["hub-http"][c], results["hub-stdio"][c]
        ratios = f"{h['rps']:>14.0f} {h['rps'] / d['rps']:>5.2f}  {s['rps']:>15.0f} {s['rps'] / d['rps']:>5.2f}"
        latency = f"{d['p50_ms']:>6.2f}/{h['p50_ms']:>6.2f}/{s['p50_ms']:>6.2f}"
        print(f"{c:>5}  {d['rps']:>12.0f}  {ratios}  {latency}  {h['hub_us']:>12.0f}/{s['hub_us']:>5.0f}")
    errors = {n: sum(v["errors"] for v in r.values()) for n, r in results.items()}
    print(f"errors (non-2xx, socket): {errors}")
    print(f"hub RSS before the idle sessions: {idle_rss:.1f} MiB")
    print(f"per idle legacy session: {idle_kib:.2f} KiB ({args.idle} sessions)")


if __name__ == "__main__":
    asyncio.run(main())
