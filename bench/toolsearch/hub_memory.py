"""A real hub's RSS growth and search latency from tool search: `onemcp serve` as a subprocess.

    .venv/bin/python bench/toolsearch/hub_memory.py [--tools 700] [--searches 300] [--idle 70] [--rounds 2]

`memory_steps.py` and `evaluate.py` count what search adds inside one process that does nothing
else; this runs the hub itself: the first recorded servers of `data/servers/` up to `--tools`
tools, each as its own stdio upstream (`replay_server.py`), exposure `full`, an empty embedding
cache. For each variant, alternating over `--rounds`: ready, one full tools/list, `--idle`
seconds, RSS ("idle"); then the traffic, serial over one legacy Streamable HTTP session; RSS
("after"); `--idle` seconds again, RSS ("settled"). Growth is settled - idle. Variants:

  search   `search_tools` over /mcp?exposure=search (the requests of data/queries.jsonl in turn),
           after the first one waits for the transformer's vectors (the hub's log says when)
  words    the same with ONEMCP_SEARCH_DEEP=0 (no transformer: words and the static model)
  calls    as many plain tools/call in full mode (the hub's own cost of the same number of requests)

Each reading also splits RSS by mapping (/proc/PID/smaps): the main heap, glibc's per-thread arenas
(anonymous 64 MB-aligned heaps), other anonymous memory, files; and counts threads. Search latency
is timed at the client (p50/p95 over the searches after the transformer ranks), and the same
requests through `SearchIndex.search` in this process over the same tools for comparison. Nothing
polls /health (it would load the token counter, +62 MB for 60-120 s: `--health` does, once, right
after the traffic). `--src` runs another checkout's hub (before and after a change, alternating);
`--env K=V` sets the hub's environment (`MALLOC_ARENA_MAX=1`). Timings and sizes are of this
machine, printed, never asserted. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ARENA = 64 * 1024 * 1024  # glibc's HEAP_MAX_SIZE on 64-bit: a thread arena's heap is aligned to it
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
READY_LINE = "the transformer ranks"


def servers_upto(data: Path, limit: int) -> list[Path]:
    """The first recorded servers (by file name) whose tools add up to at most `limit`."""
    chosen, total = [], 0
    for path in sorted((data / "servers").glob("*.json")):
        count = len(json.loads(path.read_text())["tools"])
        if total + count > limit:
            break
        chosen.append(path)
        total += count
    return chosen


def memory(pid: int) -> dict[str, float]:
    """RSS of `pid` in MB, whole and by kind of mapping, and its threads."""
    parts = {"heap": 0, "arenas": 0, "anon": 0, "files": 0, "stack": 0}
    start, name = 0, ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = re.match(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$", line)
        if head:
            start, name = int(head.group(1), 16), head.group(3)
        elif line.startswith("Rss:"):
            kb = int(line.split()[1])
            if name == "[heap]":
                parts["heap"] += kb
            elif name.startswith("[stack"):
                parts["stack"] += kb
            elif name.startswith("/"):
                parts["files"] += kb
            elif start % ARENA == 0 and not name:
                parts["arenas"] += kb
            else:
                parts["anon"] += kb
    out = {key: kb / 1024 for key, kb in parts.items()}
    out["rss"] = sum(out.values())
    out["threads"] = len(os.listdir(f"/proc/{pid}/task"))
    return out


def shown(reading: dict[str, float]) -> str:
    return " ".join(f"{k} {reading[k]:.1f}" for k in ("rss", "heap", "arenas", "anon", "files")) + (
        f" threads {reading['threads']:.0f}"
    )


class Session:
    """One legacy Streamable HTTP session (JSON or SSE answers)."""

    def __init__(self, url: str) -> None:
        self.url, self.n = url, 0
        self.client = httpx.Client(timeout=120, headers=HEADERS)
        params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
        self.post("initialize", params)
        self.client.headers["mcp-session-id"] = self.last.headers.get("mcp-session-id", "")
        self.client.headers["mcp-protocol-version"] = "2025-06-18"
        self.client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"})

    def post(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        body = {"jsonrpc": "2.0", "id": self.n, "method": method, "params": params}
        self.last = reply = self.client.post(self.url, json=body)
        if reply.headers.get("content-type", "").startswith("text/event-stream"):
            for line in reply.text.splitlines():
                if line.startswith("data:") and json.loads(line[5:]).get("id") == self.n:
                    return dict(json.loads(line[5:]))
            raise RuntimeError(f"no answer to {method}")
        return dict(reply.json())


@contextmanager
def hub(
    servers: list[Path], workdir: Path, env: dict[str, str], src: Path = ROOT / "src"
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    python = sys.executable
    config = {
        "mcpServers": {p.stem: {"command": python, "args": [str(HERE / "replay_server.py"), str(p)]} for p in servers},
        "onemcp": {"exposure": "full", "searchCache": str(workdir / "cache")},
    }
    (workdir / "mcp.json").write_text(json.dumps(config))
    log = workdir / "hub.log"
    full_env = {**os.environ, "PYTHONPATH": str(src), "ONEMCP_CONFIG_DIR": str(workdir), **env}
    command = [python, "-m", "onemcp", "serve", "--config", str(workdir / "mcp.json"), "--port", "0"]
    with log.open("wb") as err:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=full_env)
    try:
        assert proc.stdout is not None
        url = ""
        while not url:
            line = proc.stdout.readline().decode()
            if not line:
                raise SystemExit(f"the hub exited: see {log}")
            if found := re.match(r"^onemcp: listening on (http://\S+/mcp)$", line.strip()):
                url = found.group(1)
        base = url.removesuffix("/mcp")
        while httpx.get(base + "/health/ready", timeout=30).status_code != 200:
            time.sleep(0.2)
        yield proc, url, log
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(variant: str, servers: list[Path], queries: list[str], opts: argparse.Namespace) -> dict[str, Any]:
    env = dict(item.split("=", 1) for item in opts.env)
    if variant == "words":
        env["ONEMCP_SEARCH_DEEP"] = "0"
    with (
        tempfile.TemporaryDirectory(prefix="hub-memory-") as tmp,
        hub(servers, Path(tmp), env, opts.src) as (proc, url, log),
    ):
        full = Session(url + "?exposure=full")
        tools = full.post("tools/list", {})["result"]["tools"]
        time.sleep(opts.idle)
        idle = memory(proc.pid)
        took: list[float] = []
        if variant == "calls":
            for i in range(opts.searches):
                started = time.perf_counter()
                full.post("tools/call", {"name": tools[i % len(tools)]["name"], "arguments": {}})
                took.append(time.perf_counter() - started)
        else:
            search = Session(url + "?exposure=search")
            search.post("tools/call", {"name": "search_tools", "arguments": {"query": queries[0]}})
            while variant == "search" and READY_LINE not in log.read_text():
                time.sleep(0.1)  # the transformer's vectors, on the hub's worker threads
            for i in range(opts.searches):
                started = time.perf_counter()
                answer = search.post(
                    "tools/call", {"name": "search_tools", "arguments": {"query": queries[i % len(queries)]}}
                )
                took.append(time.perf_counter() - started)
                if answer.get("result", {}).get("isError") or "error" in answer:
                    raise SystemExit(f"search failed: {answer}")
        after = memory(proc.pid)
        if opts.health:
            httpx.get(url.removesuffix("/mcp") + "/health", timeout=30)
        time.sleep(opts.idle)
        settled = memory(proc.pid)
    took.sort()
    return {"variant": variant, "tools": len(tools), "idle": idle, "after": after, "settled": settled, "took": took}


def in_process(servers: list[Path], queries: list[str], count: int) -> list[float]:
    """`SearchIndex.search` here over the same tools and requests (the transformer's vectors filled first)."""
    sys.path.insert(0, str(ROOT / "src"))
    from onemcp.search.index import SearchIndex

    with tempfile.TemporaryDirectory(prefix="hub-memory-") as cache:
        index = SearchIndex(Path(cache))
        for path in servers:
            doc = json.loads(path.read_text())
            index.update(path.stem, [t for t in doc["tools"] if isinstance(t, dict)])
        if index.transformer is not None:
            index.fill_deep()
        index.search(queries[0])
        took = []
        for i in range(count):
            started = time.perf_counter()
            index.search(queries[i % len(queries)], limit=5)
            took.append(time.perf_counter() - started)
        index.cache.close()
    return sorted(took)


def percentiles(took: list[float]) -> str:
    if not took:
        return "-"
    p95 = took[min(len(took) - 1, int(0.95 * len(took)))]
    return f"p50 {statistics.median(took) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--tools", type=int, default=700)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--idle", type=float, default=70.0, help="seconds idle before and after the traffic")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--variants", default="search,words,calls")
    parser.add_argument(
        "--src", type=Path, default=ROOT / "src", help="the onemcp source the hub runs (another checkout's)"
    )
    parser.add_argument("--env", action="append", default=[], metavar="K=V", help="the hub's environment (repeat)")
    parser.add_argument("--health", action="store_true", help="GET /health once after the traffic")
    parser.add_argument("--no-in-process", action="store_true", help="skip the in-process latency baseline")
    opts = parser.parse_args()
    servers = servers_upto(opts.data, opts.tools)
    lines = (opts.data / "queries.jsonl").read_text().splitlines()
    queries = [json.loads(line)["query"] for line in lines if line.strip()]
    for round_ in range(opts.rounds):
        for variant in opts.variants.split(","):
            got = run(variant, servers, queries, opts)
            growth = got["settled"]["rss"] - got["idle"]["rss"]
            print(f"round {round_ + 1} {variant}: {got['tools']} tools, {len(servers)} servers")
            for when in ("idle", "after", "settled"):
                print(f"  {when:8s} {shown(got[when])}")
            print(f"  growth {growth:+.1f} MB; requests {percentiles(got['took'])}", flush=True)
    if not opts.no_in_process:
        print(f"in process (SearchIndex.search): {percentiles(in_process(servers, queries, opts.searches))}")


if __name__ == "__main__":
    main()
