"""What Redis and a second replica cost: the hub alone, with a Redis session store, and 1 or 2 replicas behind nginx.

    .venv/bin/python bench/replicas.py [--duration 5] [--connections 1,8,64] [--rounds 2]

Needs `wrk`, `redis-server` and `nginx` (Debian packages). The load is `wrk` POSTing `tools/call`
on one legacy session per target (the Lua script of `scale.py`), to a stdio echo upstream. Targets,
each with its own hub process(es) and config folder, interleaved round by round so that machine
noise hits them alike:

* `alone`: one hub, `sessionStore` sqlite (the default);
* `redis`: one hub, `sessionStore: redis://...` (its relay subscribed; the session is local);
* `nginx-1`: nginx in front of one hub on Redis (what the balancer itself costs);
* `nginx-2`: nginx round-robin over two hubs on the same Redis: every request may land on either
  replica, so the session lives on both (revived from Redis on the first request each sees).

Reports requests/s, wrk's p50, and CPU microseconds per request (schedstat during the run) of
each hub (per replica, its stdio child included), of nginx (its worker included) and of
redis-server. Every process is stopped by its PID; everything is on 127.0.0.1. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import ECHO, PY, Proc, Procs, cpu_ns, hub_argv, wait_healthy
from scale import LUA, parse_wrk, run_wrk, session_id

NGINX_CONF = """worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  upstream onemcp {{
{servers}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://onemcp;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_cache off;
      proxy_read_timeout 1h;
    }}
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: Proc, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not listen on {port}")


def family_cpu_ns(pid: int) -> int:
    """CPU of a process and its children (nginx's work is done by its worker)."""
    total = cpu_ns(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        total += sum(cpu_ns(int(child)) for child in children)
    return total


def start_hub(procs: Procs, tmp: Path, name: str, store: str | None) -> Proc:
    folder = tmp / name
    folder.mkdir()
    onemcp: dict[str, Any] = {"prefixMode": "always"}
    if store is not None:
        onemcp["sessionStore"] = store
    cfg = folder / "mcp.json"
    cfg.write_text(json.dumps({"mcpServers": {"stdio": {"command": PY, "args": [ECHO]}}, "onemcp": onemcp}))
    hub = procs.spawn(name, hub_argv(cfg, None, None), ready_prefix="onemcp: listening on ")
    wait_healthy(hub, 1)
    return hub


def start_nginx(procs: Procs, tmp: Path, name: str, hubs: list[Proc]) -> tuple[Proc, str]:
    folder = tmp / name
    folder.mkdir()
    port = free_port()
    ports = [int(h.url.rsplit(":", 1)[1].split("/", 1)[0]) for h in hubs]
    servers = "\n".join(f"    server 127.0.0.1:{p};" for p in ports)
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=folder, servers=servers, port=port))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = procs.spawn(name, [nginx, "-c", str(conf), "-p", str(folder), "-g", "daemon off;"])
    wait_port(port, proc)
    return proc, f"http://127.0.0.1:{port}/mcp"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (5)")
    parser.add_argument("--connections", default="1,8,64")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each running every target once (2)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    counts = [int(c) for c in args.connections.split(",")]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        procs = Procs(tmp)
        try:
            redis_port = free_port()
            redis_argv = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
            redis = procs.spawn("redis", [*redis_argv, "--appendonly", "no"])
            wait_port(redis_port, redis)
            store = f"redis://127.0.0.1:{redis_port}/0"
            alone = start_hub(procs, tmp, "alone", None)
            on_redis = start_hub(procs, tmp, "redis", store)
            behind = start_hub(procs, tmp, "behind", store)
            nginx1, url1 = start_nginx(procs, tmp, "nginx1", [behind])
            pair = [start_hub(procs, tmp, "replica-a", store), start_hub(procs, tmp, "replica-b", store)]
            nginx2, url2 = start_nginx(procs, tmp, "nginx2", pair)
            targets: dict[str, tuple[str, list[Proc], Proc | None]] = {
                "alone": (alone.url, [alone], None),
                "redis": (on_redis.url, [on_redis], None),
                "nginx-1": (url1, [behind], nginx1),
                "nginx-2": (url2, pair, nginx2),
            }
            luas = {}
            for name, (url, _, _) in targets.items():
                lua = tmp / f"{name}.lua"
                lua.write_text(LUA % {"tool": "stdio__echo", "text": "x" * 64, "sid": await session_id(url)})
                luas[name] = lua
                run_wrk(url, lua, 8, 1.0)  # warm up (and, behind nginx-2, the session revived on both)
            runs: dict[str, dict[int, list[dict[str, Any]]]] = {n: {c: [] for c in counts} for n in targets}
            order = list(targets)
            for r in range(args.rounds):
                for c in counts:
                    for name in order[r % len(order) :] + order[: r % len(order)]:
                        url, hubs, front = targets[name]
                        watched = [h.pid for h in hubs] + [redis.pid] + ([front.pid] if front else [])
                        before = [family_cpu_ns(pid) for pid in watched]
                        rps, p50, total, errors = parse_wrk(run_wrk(url, luas[name], c, args.duration))
                        spent = zip(watched, before, strict=True)
                        used = [(family_cpu_ns(pid) - b) / max(1, total) / 1000 for pid, b in spent]
                        runs[name][c].append(
                            {
                                "rps": rps,
                                "p50_ms": p50,
                                "errors": errors,
                                "hub_us": used[: len(hubs)],
                                "redis_us": used[len(hubs)],
                                "nginx_us": used[len(hubs) + 1] if front else None,
                            }
                        )
        finally:
            procs.stop_all()
    if args.json:
        print(json.dumps(runs, indent=2))
        return
    print(f"wrk, {args.duration:g} s per run, {args.rounds} rounds (median), stdio echo upstream, one legacy session")
    print(f"{'target':<8} {'conns':>5} {'req/s':>8} {'x alone':>7} {'p50 ms':>7} {'hub us/req':>14}", end="")
    print(f" {'redis us':>8} {'nginx us':>8} {'errors':>6}")
    for c in counts:
        base = median([x["rps"] for x in runs["alone"][c]])
        for name in targets:
            xs = runs[name][c]
            rps = median([x["rps"] for x in xs])
            hub = "/".join(f"{median([x['hub_us'][i] for x in xs]):.0f}" for i in range(len(xs[0]["hub_us"])))
            nginx = f"{median([x['nginx_us'] for x in xs]):.0f}" if xs[0]["nginx_us"] is not None else "-"
            print(
                f"{name:<8} {c:>5} {rps:>8.0f} {rps / base:>7.2f} {median([x['p50_ms'] for x in xs]):>7.2f} {hub:>14}"
                f" {median([x['redis_us'] for x in xs]):>8.1f} {nginx:>8} {sum(x['errors'] for x in xs):>6}"
            )


def median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


if __name__ == "__main__":
    asyncio.run(main())
