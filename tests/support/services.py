"""Real redis-server and nginx for the replica tests: Debian's binaries on loopback ports, stopped by PID.

Boundary: test support. Each runs in the foreground as a child of the test (no daemon, no pid
file outside the test's directory) and is terminated, then killed, by its own PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REDIS = shutil.which("redis-server")
# a test that needs redis-server: skipped where it is missing, except in CI (scripts/test installs it)
NEEDS_REDIS = pytest.mark.skipif(REDIS is None and not os.environ.get("CI"), reason="redis-server is not installed")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], what: str, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # allowed-sleep: polling with a deadline (a server starting)
    raise AssertionError(f"{what} did not listen on {port}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server; yields its URL."""
    assert REDIS is not None, "redis-server is not installed (apt-get install redis-server)"
    port = free_port()
    process = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, process, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(process)


@contextmanager
def nginx_balancing(ports: list[int], folder: Path) -> Iterator[str]:
    """nginx on a free loopback port balancing over `ports` (docs/deployment.md's settings); yields its base URL."""
    assert NGINX is not None, "nginx is not installed (apt-get install nginx-light)"
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;" for p in ports)
    conf = folder / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
error_log {folder}/error.log warn;
pid {folder}/nginx.pid;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {folder}/body;
  proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi;
  scgi_temp_path {folder}/scgi;
  upstream onemcp {{
{servers}
    keepalive 16;
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
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries 3;
    }}
  }}
}}
"""
    )
    process = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(folder), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, process, "nginx")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)


def replica_config(redis_url: str) -> dict[str, Any]:
    """A hub config for replicas on one Redis: the fixture server, and the Redis as the session store."""
    from fixtures.launch import fixture_command

    fx = fixture_command()
    return {"mcpServers": {"fx": {"command": fx[0], "args": fx[1:]}}, "onemcp": {"sessionStore": redis_url}}
