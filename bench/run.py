"""onemcp overhead benchmark: direct upstream vs through the hub, measured side by side.

    .venv/bin/python bench/run.py            # full run (a few minutes on 2 cores)
    .venv/bin/python bench/run.py --quick    # < 60 s

Targets, interleaved round-robin so machine noise hits all of them alike:
  direct     client -> HTTP echo upstream
  hub-http   client -> hub -> the same HTTP echo upstream      (tool http__echo)
  hub-stdio  client -> hub -> stdio echo upstream (hub's child) (tool stdio__echo)
  hub-fleet  (asked for with --targets) the same, with replicas: 2, weights, least-in-flight,
             a sandbox (memory/process watch, rlimits) and pinned tool definitions
plus tools/list of 200 tools: one HTTP upstream with 200 tools vs a hub with 10 stdio
upstreams x 20 tools. `--era modern` asks the hub targets in the 2026-07-28 (stateless) era
instead (named hub-*-modern), `--era both` in both, interleaved; direct is always 2025-11-25.
See bench/README.md for what every number means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rawhttp import McpSession, ModernSession

BENCH = Path(__file__).resolve().parent
ECHO = str(BENCH / "echo_upstream.py")
PY = sys.executable
START_TIMEOUT = 60.0
STOP_GRACE = 10.0


# ====================================================================== processes
@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""
    stop_signal: int = signal.SIGTERM

    @property
    def pid(self) -> int:
        return self.popen.pid


class Procs:
    """Every process this run starts; stopped by PID, newest first, in `stop_all`."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.items: list[Proc] = []

    def spawn(self, name: str, argv: list[str], *, ready_prefix: str | None = None) -> Proc:
        log = self.tmp / f"{name}.stderr"
        with log.open("wb") as err:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        proc = Proc(name, popen, log)
        self.items.append(proc)
        if ready_prefix is not None:
            line = _read_line(popen, START_TIMEOUT)
            if not line.startswith(ready_prefix):
                raise RuntimeError(f"{name} did not start: {line!r}\n{_tail(log)}")
            proc.url = line.split()[-1]
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.items):
            stop(proc)
        self.items.clear()


def stop(proc: Proc) -> None:
    popen = proc.popen
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            popen.send_signal(proc.stop_signal)
        try:
            popen.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    if popen.stdout is not None:
        popen.stdout.close()


def _read_line(popen: subprocess.Popen[bytes], timeout: float) -> str:
    """The first stdout line, without blocking past the deadline."""
    import select

    assert popen.stdout is not None
    fd = popen.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def wait_healthy(hub: Proc, expect: int) -> None:
    url = hub.url.removesuffix("/mcp") + "/health"
    deadline = time.monotonic() + START_TIMEOUT
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if hub.popen.poll() is not None:
            break
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(url, timeout=5) as resp:
                doc = json.loads(resp.read())
            if doc.get("status") == "ok" and len(doc.get("upstreams", {})) == expect:
                return
            if doc.get("status") == "degraded":
                break
        time.sleep(0.1)
    raise RuntimeError(f"{hub.name} not healthy: {doc}\n{_tail(hub.log)}")


def children_of(pid: int) -> list[int]:
    """Echo upstreams the hub started (no /proc/<pid>/task/*/children on every kernel)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"echo_upstream.py" in cmdline:
            found.append(int(entry))
    return sorted(found)


TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
SCHEDSTAT = Path("/proc/self/schedstat").exists()


def cpu_ns(pid: int) -> int:
    """CPU time of a process so far: its threads' schedstat run time (ns), else utime+stime (ticks)."""
    if SCHEDSTAT:
        total = 0
        with contextlib.suppress(FileNotFoundError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                    total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        return total
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * TICK_NS
    except (OSError, IndexError, ValueError):
        return 0


PINGPONG = "import os\nwhile (d := os.read(0, 1)) and d != b'q':\n    os.write(1, d)\n"


def pipe_rtt_us(n: int = 2000) -> float:
    """p50 round trip of one byte to a child process and back over pipes: the machine's wake-up cost.

    On a quiet machine this is ~10 us; on a VM whose idle vCPUs halt it can be ~250 us, and
    every process hop of a serial call pays it (the hub adds two hops).
    """
    child = subprocess.Popen([PY, "-c", PINGPONG], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    w, r = child.stdin.fileno(), child.stdout.fileno()
    lat = []
    try:
        for i in range(n + 100):
            t0 = time.perf_counter_ns()
            os.write(w, b"x")
            if not os.read(r, 1):
                raise RuntimeError("ping-pong child died")
            if i >= 100:
                lat.append(time.perf_counter_ns() - t0)
        os.write(w, b"q")
    finally:
        child.stdin.close()
        try:
            child.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        child.stdout.close()
    lat.sort()
    return round(lat[len(lat) // 2] / 1e3, 1)


# ====================================================================== measuring
@dataclass
class Target:
    name: str
    url: str
    method: str
    params: dict[str, Any]
    roles: dict[str, list[int]]  # "hub" / "upstream" -> pids whose CPU is charged to this target
    client: type[McpSession | ModernSession] = McpSession  # the era it is asked in
    sessions: list[McpSession | ModernSession] = field(default_factory=list)


def in_eras(targets: list[Target], era: str) -> list[Target]:
    """The hub targets in the era(s) asked for, a modern one right after its legacy twin; direct as it is
    (the echo upstream speaks 2025-11-25 only)."""
    out = []
    for target in targets:
        if "hub" not in target.roles or era != "modern":
            out.append(target)
        if "hub" in target.roles and era != "legacy":
            out.append(replace(target, name=f"{target.name}-modern", client=ModernSession, sessions=[]))
    return out


@dataclass
class Stats:
    lat_ns: list[int] = field(default_factory=list)
    calls: int = 0
    wall_ns: int = 0
    cpu_ns: dict[str, int] = field(default_factory=dict)
    body_bytes: int = 0


def _snapshot(target: Target) -> dict[str, int]:
    return {role: sum(cpu_ns(p) for p in pids) for role, pids in target.roles.items()}


async def _chunk(target: Target, per_session: int, lat: list[int]) -> int:
    method, params = target.method, target.params
    clock = time.perf_counter_ns
    size = 0

    async def worker(session: McpSession | ModernSession) -> None:
        nonlocal size
        for _ in range(per_session):
            t0 = clock()
            body = await session.request(method, params)
            lat.append(clock() - t0)
        size = len(body)

    if len(target.sessions) == 1:
        await worker(target.sessions[0])
    else:
        await asyncio.gather(*(worker(s) for s in target.sessions))
    return size


async def open_sessions(targets: list[Target], n: int) -> None:
    for target in targets:
        target.sessions = [target.client(target.url) for _ in range(n)]
        for session in target.sessions:
            await session.open()


def close_sessions(targets: list[Target]) -> None:
    for target in targets:
        for session in target.sessions:
            session.close()
        target.sessions = []


async def measure(targets: list[Target], calls: int, rounds: int, warmup: int) -> dict[str, Stats]:
    """`calls` per target over `rounds` rounds; each round runs every target once, rotating."""
    conc = len(targets[0].sessions)
    per_session = max(1, calls // (rounds * conc))
    for target in targets:
        await _chunk(target, max(1, warmup // conc), [])
    stats = {t.name: Stats() for t in targets}
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            k = r % len(targets)
            for target in targets[k:] + targets[:k]:
                st = stats[target.name]
                before = _snapshot(target)
                c0, t0 = time.process_time_ns(), time.perf_counter_ns()
                st.body_bytes = await _chunk(target, per_session, st.lat_ns)
                t1, c1 = time.perf_counter_ns(), time.process_time_ns()
                after = _snapshot(target)
                st.wall_ns += t1 - t0
                before["client"], after["client"] = c0, c1
                for role, value in after.items():
                    st.cpu_ns[role] = st.cpu_ns.get(role, 0) + value - before[role]
                st.calls += per_session * conc
    finally:
        gc.enable()
    return stats


def summarize(st: Stats) -> dict[str, Any]:
    lat = sorted(st.lat_ns)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6

    return {
        "calls": st.calls,
        "p50_ms": round(pct(0.50), 4),
        "p90_ms": round(pct(0.90), 4),
        "p99_ms": round(pct(0.99), 4),
        "mean_ms": round(sum(lat) / len(lat) / 1e6, 4),
        "throughput_per_s": round(st.calls / (st.wall_ns / 1e9), 1),
        "cpu_ms_per_call": {role: round(ns / st.calls / 1e6, 4) for role, ns in sorted(st.cpu_ns.items())},
        "response_bytes": st.body_bytes,
    }


# ====================================================================== setup
def write_config(path: Path, servers: dict[str, Any]) -> Path:
    """Each hub's config in a folder of its own: a config folder holds one running hub (hub.lock)."""
    path = path.parent / path.stem / path.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"mcpServers": servers, "onemcp": {"prefixMode": "always"}}, indent=2))
    return path


def hub_argv(config: Path, profile: str | None, out: Path | None) -> list[str]:
    serve = ["serve", "--config", str(config), "--host", "127.0.0.1", "--port", "0", "--log-level", "warning"]
    if profile == "cprofile":
        assert out is not None
        return [PY, "-m", "cProfile", "-o", str(out / "hub.prof"), "-m", "onemcp", *serve]
    return [PY, "-m", "onemcp", *serve]


def start_pyspy(procs: Procs, pid: int, out: Path, rate: int) -> Proc:
    pyspy = Path(PY).with_name("py-spy")
    argv = [str(pyspy), "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking", "--nolineno"]
    argv += ["--format", "raw", "--output", str(out / "hub-pyspy.txt")]
    proc = procs.spawn("py-spy", argv)
    proc.stop_signal = signal.SIGINT
    time.sleep(1.0)  # let it attach
    return proc


# ====================================================================== report
def fmt_row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [fmt_row(rows[0], widths), "  ".join("-" * w for w in widths)]
    lines += [fmt_row(r, widths) for r in rows[1:]]
    return "\n".join(lines)


def _cpu(doc: dict[str, Any], role: str) -> str:
    value = doc["cpu_ms_per_call"].get(role)
    return "-" if value is None else f"{value * 1000:.0f}"


def report(results: dict[str, Any]) -> str:
    out = []
    for phase, title in (("serial", "serial (1 session)"), ("concurrent", "concurrent")):
        docs = results.get(phase, {})
        if not docs:
            continue
        conc = results["meta"]["args"]["concurrency"] if phase == "concurrent" else 1
        rows = [
            [
                f"{title}, {conc} conn",
                "calls",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "calls/s",
                "hub us/call",
                "upstream us/call",
                "client us/call",
            ]
        ]
        for name, d in docs.items():
            rows.append(
                [
                    name,
                    str(d["calls"]),
                    f"{d['p50_ms']:.3f}",
                    f"{d['p90_ms']:.3f}",
                    f"{d['p99_ms']:.3f}",
                    f"{d['throughput_per_s']:.0f}",
                    _cpu(d, "hub"),
                    _cpu(d, "upstream"),
                    _cpu(d, "client"),
                ]
            )
        out.append(table(rows))
    tl = results.get("tools_list")
    if tl:
        rows = [["tools/list, 200 tools", "calls", "p50 ms", "p99 ms", "bytes", "hub us/call", "upstream us/call"]]
        for name, d in tl.items():
            rows.append(
                [
                    name,
                    str(d["calls"]),
                    f"{d['p50_ms']:.3f}",
                    f"{d['p99_ms']:.3f}",
                    str(d["response_bytes"]),
                    _cpu(d, "hub"),
                    _cpu(d, "upstream"),
                ]
            )
        out.append(table(rows))
    ratios = results.get("ratios", {})
    if ratios:
        rows = [
            [
                "hub vs direct",
                "+p50 ms",
                "p50 x",
                "+p99 ms",
                "p99 x",
                "conc +p50 ms",
                "calls/s x",
                "hub CPU ms/call (serial, conc)",
            ]
        ]
        for name, r in ratios.items():
            if name.startswith("tools_list"):
                continue
            rows.append(
                [
                    name,
                    f"{r['added_p50_ms']:+.3f}",
                    f"{r['p50_ratio']:.2f}",
                    f"{r['added_p99_ms']:+.3f}",
                    f"{r['p99_ratio']:.2f}",
                    f"{r['concurrent_added_p50_ms']:+.3f}",
                    f"{r['throughput_ratio']:.2f}",
                    f"{r['hub_cpu_ms_per_call_serial']:.3f}, {r['hub_cpu_ms_per_call_concurrent']:.3f}",
                ]
            )
        out.append(table(rows))
        for suffix in ("", "-modern"):
            if f"tools_list{suffix}" in ratios:
                r = ratios[f"tools_list{suffix}"]
                out.append(
                    f"tools/list 200 tools: hub{suffix} (10 stdio x 20) / direct (1 HTTP x 200) p50 ratio = "
                    f"{r['p50_ratio']:.2f} ({r['added_p50_ms']:+.3f} ms)"
                )
    return "\n\n".join(out)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    serial, conc = results.get("serial", {}), results.get("concurrent", {})
    base_s, base_c = serial.get("direct"), conc.get("direct")
    for name in serial:
        if name == "direct":
            continue
        s, c = serial.get(name), conc.get(name)
        if not (s and c and base_s and base_c):
            continue
        out[name] = {
            "added_p50_ms": round(s["p50_ms"] - base_s["p50_ms"], 4),
            "p50_ratio": round(s["p50_ms"] / base_s["p50_ms"], 3),
            "added_p99_ms": round(s["p99_ms"] - base_s["p99_ms"], 4),
            "p99_ratio": round(s["p99_ms"] / base_s["p99_ms"], 3),
            "concurrent_added_p50_ms": round(c["p50_ms"] - base_c["p50_ms"], 4),
            "throughput_ratio": round(c["throughput_per_s"] / base_c["throughput_per_s"], 3),
            "hub_cpu_ms_per_call_serial": s["cpu_ms_per_call"].get("hub", 0.0),
            "hub_cpu_ms_per_call_concurrent": c["cpu_ms_per_call"].get("hub", 0.0),
        }
    tl = results.get("tools_list", {})
    for suffix in ("", "-modern"):
        if "direct-200" in tl and f"hub-10x20{suffix}" in tl:
            d, h = tl["direct-200"], tl[f"hub-10x20{suffix}"]
            out[f"tools_list{suffix}"] = {
                "p50_ratio": round(h["p50_ms"] / d["p50_ms"], 3),
                "added_p50_ms": round(h["p50_ms"] - d["p50_ms"], 4),
            }
    return out


# ====================================================================== main
async def run_phases(args: argparse.Namespace, calls: list[Target], lists: list[Target]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if calls and args.serial:
        await open_sessions(calls, 1)
        try:
            stats = await measure(calls, args.serial, args.rounds, args.warmup)
        finally:
            close_sessions(calls)
        results["serial"] = {n: summarize(s) for n, s in stats.items()}
    if calls and args.concurrent:
        await open_sessions(calls, args.concurrency)
        try:
            stats = await measure(calls, args.concurrent, args.rounds, args.warmup)
        finally:
            close_sessions(calls)
        results["concurrent"] = {n: summarize(s) for n, s in stats.items()}
    if lists and args.tools_list:
        await open_sessions(lists, 1)
        try:
            for target in lists:  # both must really list 200 tools
                body = await target.sessions[0].request("tools/list", {})
                count = len(json.loads(body)["result"]["tools"])
                if count != 200:
                    raise RuntimeError(f"{target.name}: tools/list returned {count} tools, expected 200")
            stats = await measure(lists, args.tools_list, args.rounds, args.warmup)
        finally:
            close_sessions(lists)
        results["tools_list"] = {n: summarize(s) for n, s in stats.items()}
    return results


def run(args: argparse.Namespace) -> dict[str, Any]:
    wanted = set(args.targets.split(","))
    out_dir = Path(args.profile_out).resolve() if args.profile else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="onemcp-bench-") as tmp_name:
        tmp = Path(tmp_name)
        procs = Procs(tmp)
        try:
            echo = procs.spawn("echo-http", [PY, ECHO, "--http"], ready_prefix="LISTENING ")
            stdio_echo = {"command": PY, "args": [ECHO]}
            cfg = write_config(tmp / "hub.json", {"http": {"url": echo.url}, "stdio": stdio_echo})
            hub = procs.spawn("hub", hub_argv(cfg, args.profile, out_dir), ready_prefix="onemcp: listening on ")
            if args.profile == "cprofile":
                hub.stop_signal = signal.SIGINT  # uvicorn shuts down cleanly, cProfile writes the file
            wait_healthy(hub, 2)
            (stdio_child,) = children_of(hub.pid)
            calls = [
                Target(
                    "direct",
                    echo.url,
                    "tools/call",
                    {"name": "echo", "arguments": args.arguments},
                    {"upstream": [echo.pid]},
                ),
                Target(
                    "hub-http",
                    hub.url,
                    "tools/call",
                    {"name": "http__echo", "arguments": args.arguments},
                    {"hub": [hub.pid], "upstream": [echo.pid]},
                ),
                Target(
                    "hub-stdio",
                    hub.url,
                    "tools/call",
                    {"name": "stdio__echo", "arguments": args.arguments},
                    {"hub": [hub.pid], "upstream": [stdio_child]},
                ),
            ]
            if "hub-fleet" in wanted:  # the same stdio echo with issue 19's fleet features all switched on
                fleet = {
                    **stdio_echo,
                    "replicas": 2,
                    "weights": [2, 1],
                    "balance": "least-in-flight",
                    "sandbox": {"memoryMB": 512, "processes": 16, "cpuSeconds": 86400, "openFiles": 1024},
                    "pinToolDefinitions": "withhold",
                }
                hub3 = procs.spawn(
                    "hub-fleet",
                    hub_argv(write_config(tmp / "hub3.json", {"stdio": fleet}), None, None),
                    ready_prefix="onemcp: listening on ",
                )
                wait_healthy(hub3, 1)
                calls.append(
                    Target(
                        "hub-fleet",
                        hub3.url,
                        "tools/call",
                        {"name": "stdio__echo", "arguments": args.arguments},
                        {"hub": [hub3.pid], "upstream": children_of(hub3.pid)},
                    )
                )
            calls = in_eras([t for t in calls if t.name in wanted], args.era)
            lists: list[Target] = []
            if args.tools_list:
                big = procs.spawn("echo-http-200", [PY, ECHO, "--http", "--tools", "199"], ready_prefix="LISTENING ")
                servers = {f"s{i}": {"command": PY, "args": [ECHO, "--tools", "19"]} for i in range(10)}
                hub2 = procs.spawn(
                    "hub-10x20",
                    hub_argv(write_config(tmp / "hub2.json", servers), None, None),
                    ready_prefix="onemcp: listening on ",
                )
                wait_healthy(hub2, 10)
                kids = children_of(hub2.pid)
                lists = [
                    Target("direct-200", big.url, "tools/list", {}, {"upstream": [big.pid]}),
                    Target("hub-10x20", hub2.url, "tools/list", {}, {"hub": [hub2.pid], "upstream": kids}),
                ]
                lists = in_eras(lists, args.era)
            if args.profile == "pyspy":
                assert out_dir is not None
                start_pyspy(procs, hub.pid, out_dir, args.pyspy_rate)
            loop_name = "asyncio"
            try:
                import uvloop

                runner: Any = uvloop.run
                loop_name = "uvloop"
            except ImportError:
                runner = asyncio.run
            results = runner(run_phases(args, calls, lists))
            results["meta"] = {"client_loop": loop_name}
        finally:
            procs.stop_all()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts: finishes in well under a minute")
    parser.add_argument("--serial", type=int, default=2000, help="serial tools/call calls per target (0 skips)")
    parser.add_argument("--concurrent", type=int, default=4000, help="concurrent tools/call calls per target")
    parser.add_argument("--concurrency", type=int, default=8, help="sessions (connections) in the concurrent phase")
    parser.add_argument("--tools-list", type=int, default=1000, help="tools/list calls per target (0 skips)")
    parser.add_argument("--rounds", type=int, default=20, help="interleaving rounds per phase")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls per target before each phase")
    parser.add_argument("--payload", type=int, default=64, help="size of the echoed text argument")
    parser.add_argument("--targets", default="direct,hub-http,hub-stdio", help="comma list of call targets")
    parser.add_argument(
        "--era",
        choices=["legacy", "modern", "both"],
        default="legacy",
        help="the protocol era the hub targets are asked in: 2025-11-25, 2026-07-28 (stateless), or both",
    )
    parser.add_argument("--profile", choices=["cprofile", "pyspy"], help="profile the hub (numbers get distorted)")
    parser.add_argument("--profile-out", default="bench/results/profile", help="where profiles go")
    parser.add_argument("--pyspy-rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--pin", type=int, metavar="CPU", help="pin this run and every process it starts to one CPU")
    parser.add_argument("--no-save", action="store_true", help="don't write bench/results/<timestamp>.json")
    args = parser.parse_args()
    if args.quick:
        args.serial, args.concurrent, args.tools_list, args.rounds, args.warmup = 500, 1600, 200, 10, 50
    for name in ("serial", "concurrent", "tools_list", "rounds", "warmup", "payload", "concurrency"):
        value = getattr(args, name)
        if not 0 <= value <= 1_000_000:
            parser.error(f"--{name.replace('_', '-')} out of range")
    if args.rounds < 1 or args.concurrency < 1:
        parser.error("--rounds and --concurrency must be at least 1")
    args.arguments = {"text": "x" * args.payload}
    if args.profile == "pyspy" and not Path(PY).with_name("py-spy").exists():
        parser.error(f"--profile pyspy needs {Path(PY).with_name('py-spy')} (pip install py-spy into this venv)")
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})  # inherited by the hubs, the upstreams and their children
    started = time.time()
    load_before = os.getloadavg()
    rtt_before = pipe_rtt_us()
    results = run(args)
    rtt_after = pipe_rtt_us()
    meta = results.pop("meta")
    meta.update(
        {
            "command": " ".join([Path(PY).name, *sys.argv]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "seconds": round(time.time() - started, 1),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "pipe_rtt_p50_us": [rtt_before, rtt_after],
            "profile": args.profile,
            "args": {k: v for k, v in vars(args).items() if k != "arguments"},
        }
    )
    results = {"meta": meta, **results}
    results["ratios"] = ratios(results)
    print(report(results))
    print(
        f"\n{meta['seconds']} s, loadavg {meta['loadavg_before']} -> {meta['loadavg_after']}, "
        f"pipe ping-pong p50 {rtt_before} -> {rtt_after} us (machine wake-up cost; see README)"
    )
    if not args.no_save:
        out = BENCH / "results" / (time.strftime("%Y%m%d-%H%M%S", time.localtime(started)) + ".json")
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written {out.relative_to(BENCH.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
