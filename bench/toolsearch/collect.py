"""Install real MCP servers outside the repo and record their tools/list answers.

    .venv/bin/python bench/toolsearch/collect.py install            # npm / uv installs into --scratch
    .venv/bin/python bench/toolsearch/collect.py collect            # run each server, write data/servers/<name>.json
    .venv/bin/python bench/toolsearch/collect.py all --only time,git

The manifest is data/servers.toml (one [[server]] table per server). Each server runs over stdio with the
official SDK client; every tools/list page is followed (nextCursor) and the tools are stored exactly as the
server sent them (the raw JSON-RPC result, not a re-serialised model). See DATA.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, get_default_environment, stdio_client
from mcp.shared._stream_protocols import ReadStream
from mcp.shared.message import SessionMessage
from mcp.types import JSONRPCResponse, PaginatedRequestParams

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
DEFAULT_SCRATCH = Path("/work/scratch/mcp-servers")


@dataclass
class Server:
    name: str
    registry: str  # "npm" | "pypi"
    package: str
    version: str
    bin: str = ""  # executable name; "" = the package's only one
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    install_env: dict[str, str] = field(default_factory=dict)
    python: str = ""  # pypi only: interpreter version for uv, "" = uv's default
    constraints: list[str] = field(default_factory=list)  # pypi only: extra requirements, e.g. "mcp<2"
    skip: str = ""  # why this candidate is left out (it failed here); --retry-skipped tries it anyway

    def home(self, scratch: Path) -> Path:
        return scratch / self.registry / self.name


def load_manifest(path: Path) -> list[Server]:
    with path.open("rb") as f:
        raw = tomllib.load(f)
    servers = [Server(**entry) for entry in raw["server"]]
    names = [s.name for s in servers]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise SystemExit(f"duplicate server names in manifest: {sorted(dupes)}")
    return servers


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    print("  $", " ".join(cmd), flush=True)
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)


def uv(scratch: Path) -> str:
    found = shutil.which("uv") or str(scratch / "tools" / "bin" / "uv")
    if not Path(found).exists():
        raise SystemExit(f"uv not found: python3 -m venv {scratch}/tools && {scratch}/tools/bin/pip install uv")
    return found


def install(server: Server, scratch: Path) -> str | None:
    """Install one server into its own folder; return an error text or None."""
    home = server.home(scratch)
    home.mkdir(parents=True, exist_ok=True)
    if server.registry == "npm":
        cmd = ["npm", "install", "--prefix", str(home), "--no-audit", "--no-fund", "--omit=dev"]
        proc = _run([*cmd, f"{server.package}@{server.version}"], server.install_env)
    elif server.registry == "pypi":
        venv = home / "venv"
        if not (venv / "bin" / "python").exists():
            py = ["--python", server.python] if server.python else []
            proc = _run([uv(scratch), "venv", "-q", *py, str(venv)])
            if proc.returncode:
                return proc.stderr.strip()[-2000:]
        spec = f"{server.package}=={server.version}"
        python = str(venv / "bin" / "python")
        proc = _run([uv(scratch), "pip", "install", "-q", "--python", python, spec, *server.constraints])
    else:
        return f"unknown registry {server.registry!r}"
    return proc.stderr.strip()[-2000:] if proc.returncode else None


def installed_version(server: Server, scratch: Path) -> str:
    home = server.home(scratch)
    if server.registry == "npm":
        meta = json.loads((home / "node_modules" / server.package / "package.json").read_text())
        return str(meta["version"])
    code = f"import importlib.metadata as m; print(m.version({server.package!r}))"
    python = str(home / "venv" / "bin" / "python")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def executable(server: Server, scratch: Path) -> Path:
    home = server.home(scratch)
    if server.registry == "npm":
        if server.bin:
            return home / "node_modules" / ".bin" / server.bin
        meta = json.loads((home / "node_modules" / server.package / "package.json").read_text())
        bins = meta.get("bin")
        if isinstance(bins, str):
            return home / "node_modules" / server.package / bins
        if isinstance(bins, dict) and len(bins) == 1:
            return home / "node_modules" / ".bin" / next(iter(bins))
        raise RuntimeError(f"{server.package} has bins {bins!r}: set bin in the manifest")
    return home / "venv" / "bin" / (server.bin or server.package)


async def _pump(
    source: ReadStream[SessionMessage | Exception],
    sink: MemoryObjectSendStream[SessionMessage | Exception],
    raw: list[dict[str, Any]],
) -> None:
    """Sits between the transport and the session: keeps every raw JSON-RPC result that holds "tools"."""
    async with source, sink:
        async for item in source:
            if isinstance(item, SessionMessage) and isinstance(item.message, JSONRPCResponse):
                result = item.message.result
                if isinstance(result.get("tools"), list):
                    raw.append(result)
            await sink.send(item)


async def list_tools(server: Server, scratch: Path, timeout: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    work = scratch / "work" / server.name
    work.mkdir(parents=True, exist_ok=True)
    subst = {"{work}": str(work)}

    def fill(text: str) -> str:
        for key, value in subst.items():
            text = text.replace(key, value)
        return text

    env = {**get_default_environment(), "HOME": str(work), **{k: fill(v) for k, v in server.env.items()}}
    params = StdioServerParameters(
        command=str(executable(server, scratch)), args=[fill(a) for a in server.args], env=env, cwd=work
    )
    raw: list[dict[str, Any]] = []
    with (scratch / "logs" / f"{server.name}.stderr.log").open("w") as errlog, anyio.fail_after(timeout):
        async with stdio_client(params, errlog=errlog) as (read, write), anyio.create_task_group() as group:
            sink, tapped = anyio.create_memory_object_stream[SessionMessage | Exception](16)
            group.start_soon(_pump, read, sink, raw)
            async with ClientSession(tapped, write) as session:
                init = await session.initialize()
                cursor: str | None = None
                while True:
                    page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
                    cursor = page.next_cursor
                    if not cursor:
                        break
            group.cancel_scope.cancel()
    info = init.server_info.model_dump(by_alias=True, exclude_none=True)
    return info, [tool for result in raw for tool in result["tools"]]


def collect(server: Server, scratch: Path, timeout: float, out_dir: Path) -> str | None:
    started = time.monotonic()
    try:
        info, tools = anyio.run(list_tools, server, scratch, timeout)
    except Exception as exc:  # a failing server is reported and skipped, whatever it raised
        while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        log_path = scratch / "logs" / f"{server.name}.stderr.log"
        log = log_path.read_text(errors="replace").strip() if log_path.exists() else ""
        tail = f" | stderr: {log[-300:]}" if log else ""
        return f"{type(exc).__name__}: {exc}".strip()[:500] + tail
    if not tools:
        return "listed no tools"
    record = {
        "server": server.name,
        "registry": server.registry,
        "package": server.package,
        "version": installed_version(server, scratch),
        "server_info": info,
        "tools": tools,
    }
    (out_dir / f"{server.name}.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(f"  ok {server.name}: {len(tools)} tools in {time.monotonic() - started:.1f}s", flush=True)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["install", "collect", "all"])
    parser.add_argument("--manifest", type=Path, default=DATA / "servers.toml")
    parser.add_argument("--scratch", type=Path, default=DEFAULT_SCRATCH, help="install area, outside the repo")
    parser.add_argument("--out", type=Path, default=DATA / "servers")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per server")
    parser.add_argument("--only", default="", help="comma-separated server names")
    parser.add_argument("--retry-skipped", action="store_true", help="also try the entries that have a skip reason")
    opts = parser.parse_args()

    servers = load_manifest(opts.manifest)
    if opts.only:
        wanted = set(opts.only.split(","))
        servers = [s for s in servers if s.name in wanted]
    elif not opts.retry_skipped:
        for server in servers:
            if server.skip:
                print(f"skip {server.name}: {server.skip}")
        servers = [s for s in servers if not s.skip]
    scratch: Path = opts.scratch.resolve()
    (scratch / "logs").mkdir(parents=True, exist_ok=True)
    opts.out.mkdir(parents=True, exist_ok=True)

    failures: dict[str, str] = {}
    for server in servers:
        print(f"{server.name} ({server.registry} {server.package}@{server.version})", flush=True)
        error = None
        if opts.step in ("install", "all"):
            error = install(server, scratch)
        if error is None and opts.step in ("collect", "all"):
            error = collect(server, scratch, opts.timeout, opts.out)
        if error is not None:
            failures[server.name] = error
            print(f"  FAILED {server.name}: {error}", flush=True)

    print(f"\n{len(servers) - len(failures)} ok, {len(failures)} failed")
    for name, error in failures.items():
        print(f"  {name}: {error.splitlines()[-1] if error else ''}")
    (scratch / "logs" / f"failures-{opts.step}.json").write_text(json.dumps(failures, indent=1) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
