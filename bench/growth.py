"""How the hub grows: 100 upstreams with 5,000 tools, 1 MB tool results, and a soak (RSS and fd growth).

    .venv/bin/python bench/growth.py                       # many upstreams + 1 MB results (~2 min)
    .venv/bin/python bench/growth.py --soak-minutes 30     # and a 30-minute soak under wrk load

1. `--servers` stdio echo upstreams (bench/echo_upstream.py) with `--tools-each` tools each: the
   hub's time from start until every server is ready, its RSS, and `tools/list` (p50 latency,
   bytes) over the whole catalog; once with `exposure: full` (no search index) and once with the
   default `auto` (the index, and its models, built at start since such a list is over budget).
2. 1 MB results: `tools/call` of echo with a 1 MiB argument (so 1 MiB each way), `--big-calls`
   times, direct (the HTTP echo) against the hub over HTTP and over stdio, interleaved: p50.
3. Soak: wrk (8 connections, `tools/call` on one legacy session, alternating minute by minute
   between the HTTP and the stdio upstream) for `--soak-minutes`, the hub's RSS and open fds read
   every minute; reports growth from the first minute to the last.
Every process is stopped by its PID; everything is on 127.0.0.1. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rawhttp import McpSession
from run import ECHO, PY, Procs, hub_argv, stop, wait_healthy, write_config
from scale import LUA, parse_wrk, rss_kib, run_wrk, session_id


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def many(procs: Procs, tmp: Path, servers: int, tools_each: int, lists: int, exposure: str) -> dict[str, float]:
    config = {f"s{i:03d}": {"command": PY, "args": [ECHO, "--tools", str(tools_each - 1)]} for i in range(servers)}
    started = time.perf_counter()
    path = write_config(tmp / f"many-{exposure}.json", config)
    doc = json.loads(path.read_text())
    doc["onemcp"]["exposure"] = exposure
    path.write_text(json.dumps(doc))
    argv = hub_argv(path, None, None)
    hub = procs.spawn("hub-many", argv, ready_prefix="onemcp: listening on ")
    wait_healthy(hub, servers)
    ready_s = time.perf_counter() - started
    session = McpSession(hub.url + "?exposure=full")  # the whole catalog (by default, auto: 3 search tools)
    await session.open()
    body = await session.request("tools/list", {})
    count = len(json.loads(body)["result"]["tools"])
    times = []
    for _ in range(lists):
        t0 = time.perf_counter()
        await session.request("tools/list", {})
        times.append((time.perf_counter() - t0) * 1000)
    session.close()
    out = {
        "servers": servers,
        "tools": count,
        "ready_s": ready_s,
        "hub_rss_mib": rss_kib(hub.pid) / 1024,
        "list_p50_ms": statistics.median(times),
        "list_bytes": len(body),
    }
    stop(hub)
    return out


async def big(echo_url: str, hub_url: str, calls: int) -> dict[str, float]:
    text = "x" * (1024 * 1024)
    targets = {"direct": (echo_url, "echo"), "hub-http": (hub_url, "http__echo"), "hub-stdio": (hub_url, "stdio__echo")}
    sessions = {}
    for name, (url, _) in targets.items():
        sessions[name] = McpSession(url)
        await sessions[name].open()
    times: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(calls):
        for name, (_, tool) in targets.items():
            t0 = time.perf_counter()
            body = await sessions[name].request("tools/call", {"name": tool, "arguments": {"text": text}})
            times[name].append((time.perf_counter() - t0) * 1000)
            assert len(body) > 1024 * 1024, len(body)
    for session in sessions.values():
        session.close()
    return {f"{name}_p50_ms": statistics.median(t) for name, t in times.items()}


async def soak(hub_pid: int, hub_url: str, tmp: Path, minutes: int) -> list[dict[str, float]]:
    samples = []
    for minute in range(minutes):
        tool = "http__echo" if minute % 2 == 0 else "stdio__echo"
        lua = tmp / "soak.lua"
        lua.write_text(LUA % {"tool": tool, "text": "x" * 64, "sid": await session_id(hub_url)})
        rps, _, total, errors = parse_wrk(run_wrk(hub_url, lua, 8, 60.0))
        samples.append({"minute": minute + 1, "rss_mib": rss_kib(hub_pid) / 1024, "fds": fds(hub_pid), "rps": rps})
        samples[-1]["requests"], samples[-1]["errors"] = total, errors
        print(f"  minute {minute + 1}: {samples[-1]}", flush=True)
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--tools-each", type=int, default=50)
    parser.add_argument("--lists", type=int, default=30, help="tools/list calls timed over the big catalog")
    parser.add_argument("--big-calls", type=int, default=20, help="1 MiB calls per target")
    parser.add_argument("--soak-minutes", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        procs = Procs(tmp)
        try:
            for exposure in ("full", "auto") if args.servers else ():
                result = await many(procs, tmp, args.servers, args.tools_each, args.lists, exposure)
                print(
                    f"exposure {exposure}: {result['servers']} stdio upstreams, {result['tools']} tools: all ready"
                    f" {result['ready_s']:.1f} s after start; hub RSS {result['hub_rss_mib']:.0f} MiB; tools/list"
                    f" p50 {result['list_p50_ms']:.1f} ms for {result['list_bytes'] / 1024:.0f} KiB",
                    flush=True,
                )
            echo = procs.spawn("echo-http", [PY, ECHO, "--http"], ready_prefix="LISTENING ")
            servers = {"http": {"url": echo.url}, "stdio": {"command": PY, "args": [ECHO]}}
            config = write_config(tmp / "hub.json", servers)
            hub = procs.spawn("hub", hub_argv(config, None, None), ready_prefix="onemcp: listening on ")
            wait_healthy(hub, 2)
            if args.big_calls:
                sizes = await big(echo.url, hub.url, args.big_calls)
                print(
                    "1 MiB each way, p50: "
                    + ", ".join(f"{k.removesuffix('_p50_ms')} {v:.1f} ms" for k, v in sizes.items())
                    + f" (hub-http {sizes['hub-http_p50_ms'] / sizes['direct_p50_ms']:.2f}x direct,"
                    + f" hub-stdio {sizes['hub-stdio_p50_ms'] / sizes['direct_p50_ms']:.2f}x)",
                    flush=True,
                )
            if args.soak_minutes:
                print(f"soak: {args.soak_minutes} minutes of wrk (8 connections), hub pid {hub.pid}", flush=True)
                samples = await soak(hub.pid, hub.url, tmp, args.soak_minutes)
                first, last = samples[0], samples[-1]
                growth = 100 * (last["rss_mib"] - first["rss_mib"]) / first["rss_mib"]
                total = sum(s["requests"] for s in samples)
                errors = sum(s["errors"] for s in samples)
                print(
                    f"soak: RSS {first['rss_mib']:.1f} -> {last['rss_mib']:.1f} MiB ({growth:+.1f}% from minute 1),"
                    f" fds {first['fds']} -> {last['fds']}, {total} requests, {errors} errors"
                )
        finally:
            procs.stop_all()


if __name__ == "__main__":
    asyncio.run(main())
