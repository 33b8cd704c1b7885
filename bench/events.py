"""What the live event stream costs a call: hub CPU per tools/call, nobody watching vs watchers.

    .venv/bin/python bench/events.py [--calls 4000] [--rounds 3]

Starts `onemcp serve` (one stdio echo upstream, bench/echo_upstream.py) on 127.0.0.1 port 0 and
one keep-alive client session (bench/rawhttp.py). Each round alternates the phases: no watcher;
one watcher reading /api/v1/events (as the console and the TUI do); one watcher with call
arguments in the events. Reports the hub process's CPU per call (schedstat) and latency p50 per
phase, and the ratios to "nobody watching". Every process is stopped by its PID. Printed, never
asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rawhttp import McpSession
from run import PY, Procs, cpu_ns, hub_argv, wait_healthy, write_config

HERE = Path(__file__).resolve().parent


def watcher(base: str, stop: threading.Event, seen: list[int]) -> None:
    with urllib.request.urlopen(f"{base}/api/v1/events", timeout=60) as response:
        while not stop.is_set():
            line = response.readline()
            if not line:
                return
            if line.startswith(b"event: call"):
                seen[0] += 1


def post(base: str, path: str, body: bytes) -> None:
    request = urllib.request.Request(
        f"{base}{path}", data=body, method="POST", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


async def phase(session: McpSession, pid: int, calls: int) -> tuple[float, float]:
    """(hub CPU µs per call, latency p50 µs)."""
    latencies = []
    before = cpu_ns(pid)
    for _ in range(calls):
        start = time.perf_counter_ns()
        await session.request("tools/call", {"name": "echo__echo", "arguments": {"text": "x" * 64}})
        latencies.append(time.perf_counter_ns() - start)
    return (cpu_ns(pid) - before) / calls / 1000, statistics.median(latencies) / 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        procs = Procs(Path(tmp))
        try:
            config = write_config(
                Path(tmp) / "mcp.json", {"echo": {"command": PY, "args": [str(HERE / "echo_upstream.py")]}}
            )
            hub = procs.spawn("hub", hub_argv(config, None, None), ready_prefix="onemcp: listening on ")
            wait_healthy(hub, 1)
            base = hub.url.removesuffix("/mcp")
            session = McpSession(hub.url)
            await session.open()
            await phase(session, hub.pid, 500)  # warm up
            results: dict[str, list[tuple[float, float]]] = {
                "nobody watching": [],
                "one watcher": [],
                "watcher + payloads": [],
            }
            for _ in range(args.rounds):
                for name in results:
                    stop, seen = threading.Event(), [0]
                    thread = None
                    if name != "nobody watching":
                        post(
                            base,
                            "/api/v1/events/payloads",
                            b'{"on": %s}' % (b"true" if "payloads" in name else b"false"),
                        )
                        thread = threading.Thread(target=watcher, args=(base, stop, seen), daemon=True)
                        thread.start()
                        await asyncio.sleep(0.3)  # the watcher is connected
                    results[name].append(await phase(session, hub.pid, args.calls))
                    stop.set()
                    if thread is not None:
                        await session.request("tools/call", {"name": "echo__echo", "arguments": {"text": "end"}})
                        thread.join(10)
                        await asyncio.sleep(0.3)  # the watcher is gone
        finally:
            procs.stop_all()
    base_cpu = statistics.median(c for c, _ in results["nobody watching"])
    base_lat = statistics.median(lat for _, lat in results["nobody watching"])
    print(f"{args.calls} tools/call per phase, {args.rounds} rounds, medians")
    print(f"{'phase':<22} {'hub CPU/call':>14} {'ratio':>7} {'p50 latency':>13} {'ratio':>7}")
    for name, values in results.items():
        cpu = statistics.median(c for c, _ in values)
        lat = statistics.median(lat for _, lat in values)
        print(f"{name:<22} {cpu:>11.1f} µs {cpu / base_cpu:>7.2f} {lat:>10.1f} µs {lat / base_lat:>7.2f}")


if __name__ == "__main__":
    asyncio.run(main())
