"""Hostile clients against a hub (issue 20, findings 1, 4, 5, 6, 8): its memory and a normal call's latency meanwhile.

    .venv/bin/python bench/attack_http.py                        # the hub from this checkout's src
    .venv/bin/python bench/attack_http.py --src /tmp/wt-old/src  # another checkout's hub (before/after)

Starts `python -m onemcp serve` (PYTHONPATH=--src, 127.0.0.1 port 0, stopped by its PID) with one
stdio upstream, the test fixture (tests/fixtures/upstream.py of this checkout). Then, one attack at a
time, while a probe session calls the fixture's `echo` every 50 ms, it prints: what the attack got,
how long it took, the hub's peak RSS during it (VmHWM, reset before each attack through
/proc/<pid>/clear_refs), the hub's CPU seconds during it, the lines it wrote to its log, and the
probe's latencies (p50 / max).

Attacks (all bounded in count and time, loopback only):
  header      one request with a --header-mb MB header
  headers     one request with 200,000 tiny headers
  slowloris   --slow connections that send a partial request and then a byte every 2 s, for 15 s:
              how many are still open at the end
  sessions    --sessions initialize requests from 16 workers: how many sessions were created
  logflood    2,000 idle sessions (no GET stream), then the upstream sends 2,000 log lines
              related to no call (the hub's limits are raised so that the sessions exist)
  framing     Transfer-Encoding: gzip, chunked, and an absolute-form target naming another host
Not a test: pytest never collects bench/.
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
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "upstream.py"
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}},
}


ERRORS: list[str] = []  # what the probe's failed calls got


class Hub:
    def __init__(self, src: Path, limits: dict[str, Any]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="onemcp-attack-"))
        config = {
            "mcpServers": {"fx": {"command": sys.executable, "args": [str(FIXTURE)]}},
            "onemcp": {"prefixMode": "always", "limits": limits},
        }
        (self.dir / "mcp.json").write_text(json.dumps(config))
        env = {**os.environ, "PYTHONPATH": str(src), "ONEMCP_CONFIG_DIR": str(self.dir)}
        self.log = open(self.dir / "hub.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "onemcp", "serve", "--config", str(self.dir / "mcp.json"), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if "listening on" not in line:
            self.stop()
            raise SystemExit(f"the hub did not start: {line!r}")
        self.url = line.split("listening on", 1)[1].strip()
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def status(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024  # MB
        return 0

    def reset_peak(self) -> None:
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_lines(self) -> int:
        self.log.flush()
        return (self.dir / "hub.log").read_bytes().count(b"\n")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


async def session(http: httpx.AsyncClient, url: str) -> dict[str, str] | None:
    r = await http.post(url, json=INIT, headers=HEADERS)
    if r.status_code != 200:
        return None
    headers = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    return headers


async def probe(hub: Hub, stop: asyncio.Event, latencies: list[float], ready: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=120) as http:
        headers = await session(http, hub.url)
        assert headers is not None, "the probe could not open a session"
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
        call["params"] = {"name": "fx__echo", "arguments": {"message": "hi"}}
        while not stop.is_set():
            start = time.perf_counter()
            try:
                r = await http.post(hub.url, json=call, headers=headers)
                if r.headers.get("content-type", "").startswith("text/event-stream"):  # related logs came first
                    ok = r.status_code == 200 and '"result"' in r.text
                else:
                    ok = r.status_code == 200 and "error" not in r.json()
                why = "" if ok else f"{r.status_code} {r.text[:200]}"
            except (httpx.HTTPError, ValueError) as exc:
                ok, why = False, repr(exc)
            if not ok and ready.is_set():
                ERRORS.append(why)
            if ready.is_set():
                latencies.append((time.perf_counter() - start) * 1000 if ok else float("inf"))
            ready.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)


async def raw(port: int, data: bytes, *, read: bool = True, timeout: float = 60) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        with contextlib.suppress(ConnectionError):
            writer.write(data)
            await writer.drain()
        if not read:
            return b""
        with contextlib.suppress(ConnectionError, TimeoutError):
            return (await asyncio.wait_for(reader.read(200), timeout)).split(b"\r\n", 1)[0]
        return b"(no answer)"
    finally:
        writer.close()


# ------------------------------------------------------------------------------------------ attacks
async def header(hub: Hub, args: argparse.Namespace) -> str:
    big = b"a" * (args.header_mb * 1024 * 1024)
    request = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + big + b"\r\nContent-Length: 0\r\n\r\n"
    return (await raw(hub.port, request)).decode(errors="replace") or "(closed)"


async def headers(hub: Hub, args: argparse.Namespace) -> str:
    lines = b"".join(b"X-%d: v\r\n" % i for i in range(200_000))
    request = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n" + lines + b"Content-Length: 0\r\n\r\n"
    return (await raw(hub.port, request)).decode(errors="replace") or "(closed)"


async def slowloris(hub: Hub, args: argparse.Namespace) -> str:
    conns = []
    for _ in range(args.slow):
        try:
            conns.append(await asyncio.open_connection("127.0.0.1", hub.port))
        except OSError:
            break
    for _, writer in conns:
        writer.write(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        await asyncio.sleep(2)
        for _, writer in conns:
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.write(b"X")
    still_open = 0
    for reader, writer in conns:
        with contextlib.suppress(ConnectionError, RuntimeError):
            writer.write(b"Y")
            await writer.drain()
        if not reader.at_eof() and not writer.is_closing():
            with contextlib.suppress(TimeoutError, ConnectionError):
                got = await asyncio.wait_for(reader.read(1), 0.01)
                if got == b"":
                    continue
            still_open += 1
        writer.close()
    return f"{len(conns)} opened, {still_open} still open after 15 s"


async def sessions(hub: Hub, args: argparse.Namespace) -> str:
    created = refused = 0
    total = args.sessions

    async def worker(n: int) -> None:
        nonlocal created, refused
        async with httpx.AsyncClient(timeout=60) as http:
            for _ in range(n):
                r = await http.post(hub.url, json=INIT, headers=HEADERS)
                if r.status_code == 200:
                    created += 1
                else:
                    refused += 1

    await asyncio.gather(*(worker(total // 16) for _ in range(16)))
    return f"{created} created, {refused} refused; RSS after {hub.status('VmRSS')} MB"


async def logflood(hub: Hub, args: argparse.Namespace) -> str:
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=32)) as http:
        made: list[dict[str, str] | None] = []
        for _ in range(2000 // 50):
            made += await asyncio.gather(*(session(http, hub.url) for _ in range(50)))
        idle = [h for h in made if h is not None]
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call"}
        call["params"] = {"name": "fx__log", "arguments": {"count": 2000, "detached": True, "message": "x" * 900}}
        await http.post(hub.url, json=call, headers=idle[0])
        await asyncio.sleep(12)  # the lines arrive and are fanned out meanwhile
    return f"{len(idle)} idle sessions, 2,000 log lines of ~1 KB"


async def framing(hub: Hub, args: argparse.Namespace) -> str:
    te = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    absolute = (
        b"POST http://evil.example/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    return (
        f"TE gzip,chunked: {(await raw(hub.port, te)).decode()}; absolute-form evil host: "
        + (await raw(hub.port, absolute)).decode()
    )


ATTACKS: dict[str, Callable[[Hub, argparse.Namespace], Awaitable[str]]] = {
    "header": header,
    "headers": headers,
    "slowloris": slowloris,
    "sessions": sessions,
    "logflood": logflood,
    "framing": framing,
}
LIMITS = {"logflood": {"maxSessionsPerPrincipal": 5000}}


async def run(name: str, args: argparse.Namespace) -> dict[str, Any]:
    hub = Hub(args.src, LIMITS.get(name, {}))
    try:
        async with httpx.AsyncClient(timeout=60) as http:  # ready: the upstream answers through the hub
            for _ in range(300):
                headers = await session(http, hub.url)
                call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
                call["params"] = {"name": "fx__echo", "arguments": {"message": "hi"}}
                reply = await http.post(hub.url, json=call, headers=headers) if headers is not None else None
                if headers is not None:
                    await http.delete(hub.url, headers=headers)
                if reply is not None and reply.status_code == 200 and "result" in reply.json():
                    break
                await asyncio.sleep(0.1)
        base_rss, lines0, cpu0 = hub.status("VmRSS"), hub.log_lines(), hub.cpu()
        hub.reset_peak()
        stop, latencies = asyncio.Event(), []  # type: ignore[var-annotated]
        ready = asyncio.Event()
        task = asyncio.create_task(probe(hub, stop, latencies, ready))
        await ready.wait()
        start = time.perf_counter()
        outcome = await ATTACKS[name](hub, args)
        took = time.perf_counter() - start
        stop.set()
        await task
        ok = [x for x in latencies if x != float("inf")]
        return {
            "attack": name,
            "outcome": outcome,
            "seconds": round(took, 1),
            "rss_base_mb": base_rss,
            "rss_peak_mb": hub.status("VmHWM"),
            "hub_cpu_s": round(hub.cpu() - cpu0, 1),
            "log_lines": hub.log_lines() - lines0,
            "probe_p50_ms": round(statistics.median(ok), 1) if ok else None,
            "probe_max_ms": round(max(ok), 1) if ok else None,
            "probe_failed": len(latencies) - len(ok),
            "probe_error": ERRORS[0] if ERRORS else None,
            "alive": hub.proc.poll() is None,
        }
    finally:
        hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the onemcp source tree to run")
    parser.add_argument("--only", default=",".join(ATTACKS), help="comma-separated attacks")
    parser.add_argument("--header-mb", type=int, default=32)
    parser.add_argument("--slow", type=int, default=700)
    parser.add_argument("--sessions", type=int, default=20_000)
    args = parser.parse_args()
    rows = [asyncio.run(run(name, args)) for name in args.only.split(",")]
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
