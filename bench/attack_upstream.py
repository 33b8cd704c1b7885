"""Hostile upstreams against a hub (issue 20, finding 3): its memory and a normal call's latency meanwhile.

    .venv/bin/python bench/attack_upstream.py                      # the hub from this checkout's src
    .venv/bin/python bench/attack_upstream.py --src /tmp/wt-old/src # another checkout's hub (before/after)

Starts (all on 127.0.0.1 port 0, each stopped by its PID): a normal HTTP upstream (bench/echo_upstream.py),
a hostile HTTP upstream and a hostile stdio upstream (this file, `--serve-http` / `--serve-stdio`), and
`python -m onemcp serve` with PYTHONPATH=--src. Then, one attack at a time, a client asks a hostile tool
for a huge reply while another loop calls the normal upstream's `echo` (and, for stdio, the hostile
server's own `echo`) every --interval seconds. Per attack it prints: what the attacking call got, how
long it took, the hub's peak RSS during it (VmHWM, reset before each attack through
/proc/<pid>/clear_refs) and the normal calls' latencies (p50 / max).

Attacks (sizes bounded by flags): a JSON body (chunked, no Content-Length: the hub must count), one SSE
event, one SSE line that never ends (the upstream then holds the connection open; that server's timeout
is 30 s), one stdio line per --stdio-mb size (by default one under the 64 MiB default limit, one over).
"same" is the latency of calls to the attacking server's own `echo` (HTTP: the same upstream, another
connection; stdio: the same child).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
START_TIMEOUT = 60.0
STOP_GRACE = 5.0
VERSION = "2025-11-25"
PIECE = b"x" * MiB


def text_reply_head(rid: Any) -> bytes:
    return b'{"jsonrpc":"2.0","id":' + json.dumps(rid).encode() + b',"result":{"content":[{"type":"text","text":"'


TEXT_REPLY_TAIL = b'"}]}}'


def small_reply(rid: Any, result: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode()


def upstream_reply(msg: dict[str, Any], tools: list[str]) -> bytes | None:
    """The reply to an ordinary message (None for notifications); hostile tools are handled by the caller."""
    rid, method = msg.get("id"), msg.get("method")
    if rid is None or method is None:
        return None
    if method == "initialize":
        info = {"name": "hostile", "version": "0"}
        return small_reply(rid, {"protocolVersion": VERSION, "capabilities": {"tools": {}}, "serverInfo": info})
    if method == "tools/list":
        schema = {"type": "object", "properties": {"mb": {"type": "integer"}}}
        return small_reply(rid, {"tools": [{"name": n, "inputSchema": schema} for n in tools]})
    if method == "tools/call":
        return small_reply(rid, {"content": [{"type": "text", "text": "echo"}]})
    if method == "ping":
        return small_reply(rid, {})
    return json.dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": method}}).encode()


# ============================================================ the hostile stdio upstream
def serve_stdio() -> None:
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        msg = json.loads(line)
        params = msg.get("params") or {}
        if msg.get("method") == "tools/call" and params.get("name") == "huge_line":
            out.write(text_reply_head(msg["id"]))
            for _ in range(int(params["arguments"]["mb"])):
                out.write(PIECE)
            out.write(TEXT_REPLY_TAIL + b"\n")
            out.flush()
            continue
        reply = upstream_reply(msg, ["huge_line", "echo"])
        if reply is not None:
            out.write(reply + b"\n")
            out.flush()


# ============================================================ the hostile HTTP upstream
async def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(b"%x\r\n" % len(data) + data + b"\r\n")
    await writer.drain()


async def _huge(writer: asyncio.StreamWriter, rid: Any, tool: str, mb: int) -> bool:
    """Stream the hostile reply; False when the connection must end afterwards."""
    ctype = b"text/event-stream" if tool != "huge_json" else b"application/json"
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: " + ctype + b"\r\ntransfer-encoding: chunked\r\n\r\n")
    if tool == "huge_json":
        await _chunk(writer, text_reply_head(rid))
    elif tool == "huge_event":
        await _chunk(writer, b"event: message\ndata: " + text_reply_head(rid))
    else:
        await _chunk(writer, b"data: ")
    for _ in range(mb):
        await _chunk(writer, PIECE)
    if tool == "endless_line":
        return False  # never ends the line: hold the connection until the hub hangs up
    await _chunk(writer, TEXT_REPLY_TAIL + (b"\n\n" if tool == "huge_event" else b""))
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method = lines[0].split(" ")[0]
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if method != "POST":
                status = b"200 OK" if method == "DELETE" else b"405 Method Not Allowed"
                writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
                continue
            msg = json.loads(body)
            params = msg.get("params") or {}
            tool = params.get("name") if msg.get("method") == "tools/call" else None
            if tool in ("huge_json", "huge_event", "endless_line"):
                if not await _huge(writer, msg["id"], tool, int(params["arguments"]["mb"])):
                    await reader.read()  # until the hub closes the connection
                    return
                continue
            reply = upstream_reply(msg, ["huge_json", "huge_event", "endless_line", "echo"])
            if reply is None:
                writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
            else:
                extra = b"mcp-session-id: s1\r\n" if msg.get("method") == "initialize" else b""
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + extra
                    + b"content-length: %d\r\n\r\n" % len(reply)
                    + reply
                )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve_http() -> None:
    server = await asyncio.start_server(_serve_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING http://127.0.0.1:{port}/mcp", flush=True)
    async with server:
        await server.serve_forever()


# ============================================================ processes
@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    url: str = ""


@dataclass
class Procs:
    tmp: Path
    items: list[Proc] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None, ready: str = "") -> Proc:
        with (self.tmp / f"{name}.stderr").open("wb") as err:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=env)
        proc = Proc(name, popen)
        self.items.append(proc)
        deadline = time.monotonic() + START_TIMEOUT
        assert popen.stdout is not None
        while time.monotonic() < deadline:
            line = popen.stdout.readline().decode(errors="replace")
            if not line:
                tail = (self.tmp / f"{name}.stderr").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited before it listened:\n{tail}")
            if ready in line:
                proc.url = line.split()[-1]
                return proc
        raise RuntimeError(f"{name} did not start within {START_TIMEOUT}s")

    def stop_all(self) -> None:
        for proc in reversed(self.items):
            popen = proc.popen
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(popen.pid, signal.SIGTERM)
                try:
                    popen.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    os.kill(popen.pid, signal.SIGKILL)
                    popen.wait()
            if popen.stdout is not None:
                popen.stdout.close()
        self.items.clear()


def proc_status(pid: int, key: str) -> int:
    """A /proc/<pid>/status value in bytes (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ============================================================ the client
class Client:
    def __init__(self, url: str) -> None:
        import httpx

        self.url = url
        self.http = httpx.AsyncClient(timeout=600)
        self.headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        self.next_id = 1

    async def start(self) -> None:
        init = {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "attack", "version": "0"}}
        r = await self.http.post(self.url, json=self._msg("initialize", init), headers=self.headers)
        self.headers = {**self.headers, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": VERSION}
        await self.http.post(
            self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=self.headers
        )

    def _msg(self, method: str, params: Any) -> dict[str, Any]:
        self.next_id += 1
        return {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}

    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """A short account of the reply: the error message, or the size of the result."""
        msg = self._msg("tools/call", {"name": tool, "arguments": arguments})
        r = await self.http.post(self.url, json=msg, headers=self.headers)
        raw = r.content
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            raw = max((ln[6:] for ln in raw.split(b"\n") if ln.startswith(b"data: ")), key=len, default=b"{}")
        if len(raw) > MiB:
            return f"result of {len(raw) / MiB:.0f} MB"
        doc = json.loads(raw)
        if "error" in doc:
            return "error: " + str(doc["error"].get("message"))
        return f"result of {len(raw)} bytes"

    async def tool_names(self) -> list[str]:
        r = await self.http.post(self.url, json=self._msg("tools/list", {}), headers=self.headers)
        raw = r.content
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            raw = next(ln[6:] for ln in raw.split(b"\n") if ln.startswith(b"data: "))
        return [t["name"] for t in json.loads(raw)["result"]["tools"]]


async def wait_ready(client: Client, base: str, names: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = (await client.http.get(f"{base}/health")).json()
        if all(doc["upstreams"].get(n, {}).get("state") == "ready" for n in names):
            return
        await asyncio.sleep(0.1)  # allowed-sleep: a benchmark polling for readiness
    raise RuntimeError(f"upstreams not ready: {doc}")


@dataclass
class Outcome:
    attack: str
    reply: str
    seconds: float
    base_rss: int
    peak_rss: int
    normal: list[float]
    same: list[float]


async def probe(client: Client, tool: str, interval: float, stop: asyncio.Event, out: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await client.call(tool, {})
        out.append(time.perf_counter() - started)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def attack(
    client: Client, hub_pid: int, name: str, tool: str, mb: int, normal: str, same: str | None, interval: float
) -> Outcome:
    await asyncio.sleep(0.5)  # allowed-sleep: let the hub settle after the previous attack
    base = proc_status(hub_pid, "VmRSS")
    sampled = base
    reset = reset_peak(hub_pid)
    stop = asyncio.Event()
    normal_lat: list[float] = []
    same_lat: list[float] = []
    probers = [asyncio.create_task(probe(client, normal, interval, stop, normal_lat))]
    if same is not None:
        probers.append(asyncio.create_task(probe(client, same, interval, stop, same_lat)))

    async def sample() -> None:
        nonlocal sampled
        while not stop.is_set():
            sampled = max(sampled, proc_status(hub_pid, "VmRSS"))
            await asyncio.sleep(0.01)  # allowed-sleep: sampling RSS

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    reply = await client.call(tool, {"mb": mb})
    seconds = time.perf_counter() - started
    await asyncio.sleep(interval * 2)  # allowed-sleep: one more probe after the attack
    stop.set()
    await asyncio.gather(*probers, sampler)
    peak = max(sampled, proc_status(hub_pid, "VmHWM") if reset else 0)
    return Outcome(name, reply, seconds, base, peak, normal_lat, same_lat)


def fmt_lat(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) * 1000:.0f} / {max(values) * 1000:.0f}"


async def drive(args: argparse.Namespace) -> None:
    src = args.src
    with tempfile.TemporaryDirectory(prefix="onemcp-attack-") as tmp_name:
        tmp = Path(tmp_name)
        procs = Procs(tmp)
        try:
            normal = procs.spawn("normal", [args.python, str(BENCH / "echo_upstream.py"), "--http"], ready="LISTENING")
            hostile = procs.spawn("hostile-http", [args.python, __file__, "--serve-http"], ready="LISTENING")
            stdio = {"command": args.python, "args": [__file__, "--serve-stdio"], "timeout": 600}
            config = {
                "mcpServers": {
                    "normal": {"url": normal.url},
                    "hostile": {"url": hostile.url, "protocol": "legacy", "timeout": 600},
                    # the same server, for the line that never ends: a hub that waits for it gives up after 30 s
                    "hostile_endless": {"url": hostile.url, "protocol": "legacy", "timeout": 30},
                    "hostile_stdio": stdio,
                },
                "onemcp": {"prefixMode": "always"},
            }
            (tmp / "mcp.json").write_text(json.dumps(config))
            env = {**os.environ, "PYTHONPATH": src}
            argv = [args.python, "-m", "onemcp", "serve", "--config", str(tmp / "mcp.json"), "--port", "0"]
            hub = procs.spawn("hub", argv, env=env, ready="listening on")
            base = hub.url.removesuffix("/mcp")
            client = Client(hub.url)
            upstreams = ["normal", "hostile", "hostile_endless", "hostile_stdio"]
            await wait_ready(client, base, upstreams)
            await client.start()
            names = await client.tool_names()
            sep = next(n for n in names if n.startswith("normal") and n.endswith("echo"))[len("normal") : -len("echo")]
            normal_echo = f"normal{sep}echo"
            attacks = [
                (f"HTTP JSON body {args.json_mb} MB", f"hostile{sep}huge_json", args.json_mb, "hostile"),
                (f"SSE event {args.event_mb} MB", f"hostile{sep}huge_event", args.event_mb, "hostile"),
                (
                    f"SSE line without end {args.endless_mb} MB",
                    f"hostile_endless{sep}endless_line",
                    args.endless_mb,
                    "hostile",
                ),
            ]
            for mb in args.stdio_mb:
                attacks.append((f"stdio line {mb} MB", f"hostile_stdio{sep}huge_line", mb, "hostile_stdio"))
            outcomes = []
            for name, tool, mb, same in attacks:
                same_tool = f"{same}{sep}echo" if same else None
                outcome = await attack(client, hub.popen.pid, name, tool, mb, normal_echo, same_tool, args.interval)
                outcomes.append(outcome)
                print(f"  {name}: {outcome.reply[:100]} ({outcome.seconds:.1f}s)", file=sys.stderr)
                await wait_ready(client, base, upstreams)
            await client.http.aclose()
        finally:
            procs.stop_all()
    print(f"\nhub: PYTHONPATH={src}")
    head = ("attack", "attacking call got", "s", "RSS before MB", "peak MB", "normal p50/max ms", "same p50/max ms")
    rows = [
        (
            o.attack,
            o.reply if len(o.reply) <= 70 else o.reply[:67] + "...",
            f"{o.seconds:.1f}",
            f"{o.base_rss / MiB:.0f}",
            f"{o.peak_rss / MiB:.0f}",
            fmt_lat(o.normal),
            fmt_lat(o.same),
        )
        for o in outcomes
    ]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", default=str(ROOT / "src"), help="the onemcp source tree the hub runs from")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the hub and the upstreams")
    parser.add_argument("--json-mb", type=int, default=300)
    parser.add_argument("--event-mb", type=int, default=100)
    parser.add_argument("--endless-mb", type=int, default=100)
    parser.add_argument("--stdio-mb", type=int, nargs="+", default=[50, 100], help="one attack per size")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between normal calls")
    parser.add_argument("--serve-http", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-stdio", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.src = str(Path(args.src).resolve())
    if args.serve_http:
        asyncio.run(serve_http())
    elif args.serve_stdio:
        serve_stdio()
    else:
        asyncio.run(drive(args))


if __name__ == "__main__":
    main()
