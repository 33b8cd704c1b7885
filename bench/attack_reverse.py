"""Two hostile-load attacks on a hub subprocess (issue 20, findings 2 and 7): RSS and a bystander's latency.

    .venv/bin/python bench/attack_reverse.py                      # the code in ./src
    .venv/bin/python bench/attack_reverse.py --src /tmp/old/src   # another checkout (before/after)

Everything runs on 127.0.0.1 (port 0), every process is stopped by its PID. A benchmark, not a test.

* breaker: one client sends 5 tools/call with arguments nested 250 deep to an SDK server
  (tests/fixtures/modern_server.py), which silently drops them: they time out. Then another
  client calls the same server normally: served, or refused with "circuit open"?
* reverse: a hostile stdio upstream (this file, `--hostile-upstream`) answers a tools/call by
  flooding sampling/createMessage at the calling client, which declared sampling and never answers
  (bounded: `--requests` or `--seconds`). Meanwhile another client calls a normal upstream's echo in a
  loop. Reported: the hub's RSS (peak, from /proc/<pid>/status), the bystander's latency, and what
  the hostile upstream got back (errors at once, or nothing: held).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

THIS = str(Path(__file__).resolve())
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
DEEP = 250
SDK_TIMEOUT = 2.0


# ====================================================================== the hostile upstream
async def hostile_upstream(requests: int, seconds: float) -> None:
    """A stdio MCP server whose tool `flood` sends sampling requests as fast as the hub reads them."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    got = {"errors": 0, "results": 0}
    first_error: list[str] = []
    tasks: set[asyncio.Task[None]] = set()

    def write(msg: dict[str, Any]) -> None:
        writer.write(orjson.dumps({"jsonrpc": "2.0", **msg}) + b"\n")

    async def flood(call_id: Any) -> None:
        sample = {"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}], "maxTokens": 1}
        started, sent = time.monotonic(), 0
        while sent < requests and time.monotonic() - started < seconds:
            for _ in range(100):
                write({"id": f"s{sent}", "method": "sampling/createMessage", "params": sample})
                sent += 1
            await writer.drain()
        elapsed = time.monotonic() - started
        with contextlib.suppress(TimeoutError):  # let the answers already on their way arrive
            async with asyncio.timeout(2.0):
                while got["errors"] + got["results"] < sent:
                    await asyncio.sleep(0.05)
        seen = {"sent": sent, "seconds": round(elapsed, 2), **got, "first_error": "".join(first_error)}
        write({"id": call_id, "result": {"content": [{"type": "text", "text": json.dumps(seen)}]}})

    while line := await reader.readline():
        msg = orjson.loads(line)
        method, rid = msg.get("method"), msg.get("id")
        if method is None and rid is not None:  # an answer to one of our requests
            if "error" in msg:
                got["errors"] += 1
                if not first_error:
                    first_error.append(str(msg["error"].get("message")))
            else:
                got["results"] += 1
        elif method == "initialize":
            info = {"name": "hostile", "version": "0"}
            version = msg["params"].get("protocolVersion")
            write(
                {"id": rid, "result": {"protocolVersion": version, "capabilities": {"tools": {}}, "serverInfo": info}}
            )
        elif method == "tools/list":
            write({"id": rid, "result": {"tools": [{"name": "flood", "inputSchema": {"type": "object"}}]}})
        elif method == "ping":
            write({"id": rid, "result": {}})
        elif method == "tools/call":
            task = asyncio.create_task(flood(rid))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif rid is not None:
            write({"id": rid, "error": {"code": -32601, "message": f"no {method}"}})


# ====================================================================== the hub process
class Hub:
    def __init__(self, src: Path, config: dict[str, Any], tmp: Path) -> None:
        path = tmp / "mcp.json"
        path.write_text(json.dumps(config))
        env = {**os.environ, "PYTHONPATH": str(src)}
        argv = [PY, "-m", "onemcp", "serve", "--config", str(path), "--host", "127.0.0.1", "--port", "0"]
        self.stderr = (tmp / "hub.stderr").open("wb")
        self.popen = subprocess.Popen(
            [*argv, "--log-level", "warning"], stdout=subprocess.PIPE, stderr=self.stderr, env=env, cwd=tmp
        )
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline().decode()  # "onemcp: listening on http://127.0.0.1:<port>/mcp"
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"the hub did not start: {line!r}")
        self.url = line.split()[-1]
        self.peak = 0

    def rss_mb(self) -> float:
        with open(f"/proc/{self.popen.pid}/status") as status:
            for row in status:
                if row.startswith("VmRSS:"):
                    return int(row.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.stderr.close()


class RssSampler(threading.Thread):
    """The hub's peak RSS while running (every 20 ms)."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(daemon=True)
        self.hub, self.peak, self.done = hub, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, self.hub.rss_mb())


# ====================================================================== clients
class Session:
    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url, self.headers, self.ids = http, url, dict(HEADERS), 1

    async def open(self, capabilities: dict[str, Any]) -> Session:
        init = {
            "protocolVersion": "2025-11-25",
            "capabilities": capabilities,
            "clientInfo": {"name": "b", "version": "0"},
        }
        r = await self.http.post(self.url, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
        self.headers |= {"mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        await self.http.post(
            self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=self.headers
        )
        return self

    async def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """The reply to one tools/call (JSON or the last message of its SSE stream); requests to us are ignored."""
        self.ids += 1
        body = {"jsonrpc": "2.0", "id": self.ids, "method": "tools/call", "params": {"name": tool, "arguments": args}}
        async with self.http.stream("POST", self.url, content=orjson.dumps(body), headers=self.headers) as r:
            if not r.headers.get("content-type", "").startswith("text/event-stream"):
                return dict(orjson.loads(await r.aread()))
            async for line in r.aiter_lines():
                if line.startswith("data:") and line[5:].strip():
                    msg = orjson.loads(line[5:])
                    if msg.get("id") == self.ids and "method" not in msg:
                        return dict(msg)
        return {"error": {"message": "no reply"}}


def outcome(reply: dict[str, Any]) -> str:
    if "error" in reply:
        return f"error: {reply['error'].get('message')}"
    return "served" if not reply.get("result", {}).get("isError") else "tool error"


async def wait_listed(http: httpx.AsyncClient, url: str, names: set[str]) -> None:
    session = await Session(http, url).open({})
    for _ in range(300):
        r = await http.post(url, json={"jsonrpc": "2.0", "id": 9, "method": "tools/list"}, headers=session.headers)
        if names <= {t["name"] for t in r.json()["result"]["tools"]}:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"tools never listed: {names}")


async def breaker_attack(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    deep: Any = "x"
    for _ in range(DEEP):
        deep = {"a": deep}
    attacker = await Session(http, url).open({})
    started = time.monotonic()
    replies = await asyncio.gather(*(attacker.call("sdk__echo", {"d": deep}) for _ in range(5)))
    await asyncio.sleep(SDK_TIMEOUT + 0.5)  # the hub may judge the timeouts in the background (a ping): let it
    bystander = await Session(http, url).open({})
    after = await bystander.call("sdk__echo", {"x": 1})
    return {
        "attack": [outcome(r) for r in replies],
        "bystander": outcome(after),
        "seconds": round(time.monotonic() - started, 2),
    }


async def reverse_attack(http: httpx.AsyncClient, hub: Hub) -> dict[str, Any]:
    silent = await Session(http, hub.url).open({"sampling": {}})
    bystander = await Session(http, hub.url).open({})
    await bystander.call("echo__echo", {"warm": 1})
    baseline = hub.rss_mb()
    sampler = RssSampler(hub)
    sampler.start()
    latencies: list[float] = []
    errors = 0
    flood = asyncio.create_task(silent.call("hostile__flood", {}))
    while not flood.done():
        t0 = time.perf_counter()
        reply = await bystander.call("echo__echo", {"n": len(latencies)})
        latencies.append((time.perf_counter() - t0) * 1000)
        errors += "error" in reply
    seen = json.loads((await flood)["result"]["content"][0]["text"])
    sampler.done.set()
    sampler.join()
    return {
        "rss_baseline_mb": round(baseline, 1),
        "rss_peak_mb": round(max(sampler.peak, hub.rss_mb()), 1),
        "rss_after_mb": round(hub.rss_mb(), 1),
        "bystander_calls": len(latencies),
        "bystander_errors": errors,
        "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "latency_p99_ms": round(statistics.quantiles(latencies, n=100)[98], 1) if len(latencies) > 1 else None,
        "latency_max_ms": round(max(latencies), 1) if latencies else None,
        **{f"upstream_{k}": v for k, v in seen.items()},
    }


async def main(args: argparse.Namespace, src: Path) -> None:
    hostile = [THIS, "--hostile-upstream", "--requests", str(args.requests), "--seconds", str(args.seconds)]
    config = {
        "mcpServers": {
            "hostile": {"command": PY, "args": hostile, "isolation": "shared"},
            "echo": {"command": PY, "args": [str(BENCH / "echo_upstream.py")]},
            "sdk": {"command": PY, "args": [str(ROOT / "tests/fixtures/modern_server.py")], "timeout": SDK_TIMEOUT},
        },
        "onemcp": {"prefixMode": "always"},
    }
    with tempfile.TemporaryDirectory(prefix="onemcp-attack-") as tmp:
        hub = Hub(src, config, Path(tmp))
        try:
            async with httpx.AsyncClient(timeout=120) as http:
                await wait_listed(http, hub.url, {"hostile__flood", "echo__echo", "sdk__echo"})
                breaker = await breaker_attack(http, hub.url)
                reverse = await reverse_attack(http, hub)
        finally:
            hub.stop()
    label = args.label or args.src
    print(f"\n== {label}")
    print(f"breaker: 5 calls nested {DEEP} deep -> {sorted(set(breaker['attack']))}")
    print(f"         then another client's normal call -> {breaker['bystander']}  ({breaker['seconds']} s)")
    print(f"reverse: {'metric':<28}{'value':>12}")
    for key, value in reverse.items():
        print(f"         {key:<28}{value!s:>12}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", default=str(ROOT / "src"), help="the onemcp sources the hub runs (PYTHONPATH)")
    parser.add_argument("--label", default=None, help="the name printed above the results")
    parser.add_argument("--requests", type=int, default=100_000, help="sampling requests in the flood")
    parser.add_argument("--seconds", type=float, default=10.0, help="at most this long a flood")
    parser.add_argument("--hostile-upstream", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.hostile_upstream:
        asyncio.run(hostile_upstream(options.requests, options.seconds))
    else:
        asyncio.run(main(options, Path(options.src).resolve()))
