"""`onemcp serve` as a real child process on 127.0.0.1, for tests of the commands that talk to a hub.

Boundary: process management and readiness only. Started with ``sys.executable -m onemcp`` (the
test interpreter's environment), its stderr goes to a log file beside the config, readiness is
``/health/ready`` polled with a deadline, and it is always stopped by its own PID (terminate, wait
with a deadline, then kill).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx

LISTENING = re.compile(rb"^onemcp: listening on (http://127\.0\.0\.1:(\d+)/mcp)$")
START_DEADLINE = 30.0
READY_DEADLINE = 60.0
STOP_DEADLINE = 15.0


def free_port() -> int:
    """A loopback port nobody listens on right now (for a hub that must come back on the same port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(config_dir: Path) -> dict[str, str]:
    """The environment for onemcp commands: this config dir, nothing inherited that would redirect it."""
    env = {k: v for k, v in os.environ.items() if k not in ("ONEMCP_CONFIG", "ONEMCP_CONFIG_DIR")}
    env["ONEMCP_CONFIG_DIR"] = str(config_dir)
    env["XDG_CACHE_HOME"] = str(config_dir / "cache")  # the search index's embeddings stay with the test
    return env


class HubProcess:
    def __init__(self, config: Path, port: int = 0) -> None:
        self.config = config
        self.port = port
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return self.url.removesuffix("/mcp")

    def start(self) -> str:
        """Start it and return its MCP URL once it listens (not yet ready: see `wait_ready`)."""
        log = (self.config.parent / "hub.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "onemcp", "serve", "--config", str(self.config), "--port", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=clean_env(self.config.parent),
        )
        log.close()
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()  # the hub prints this line or exits (EOF)
            if not line:
                raise AssertionError(f"onemcp serve exited with {self.process.wait()} before listening")
            match = LISTENING.match(line.strip())
            if match:
                self.url = match.group(1).decode()
                return self.url
        raise AssertionError("onemcp serve did not say where it listens")

    def _ready_now(self) -> bool:
        try:
            return httpx.get(f"{self.base}/health/ready", timeout=5.0).status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_DEADLINE
        while not self._ready_now():
            assert time.monotonic() < deadline, "the hub did not become ready"
            time.sleep(0.05)  # allowed-sleep: polling with a deadline

    async def wait_ready_async(self) -> None:
        with anyio.fail_after(READY_DEADLINE):
            while not await anyio.to_thread.run_sync(self._ready_now):
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
