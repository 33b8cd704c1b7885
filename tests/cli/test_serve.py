"""`onemcp serve` as a real subprocess: starter config, listening line, health, config errors."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from fixtures.launch import fixture_command, stop_process
from onemcp.config.load import load_config

pytestmark = pytest.mark.anyio

LISTENING = re.compile(r"^onemcp: listening on http://127\.0\.0\.1:(\d+)/mcp$")
START_DEADLINE = 30.0
READY_DEADLINE = 60.0
EXIT_DEADLINE = 30.0


def hub_env(config_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ONEMCP_CONFIG", "ONEMCP_CONFIG_DIR")}
    env["ONEMCP_CONFIG_DIR"] = str(config_dir)
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command expected to exit by itself; the timeout is a deadline, not a measurement."""
    return subprocess.run(
        [sys.executable, "-m", "onemcp", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=EXIT_DEADLINE,
    )


async def serving(tmp_path: Path, config_dir: Path, stderr: Any) -> Process:
    """`onemcp serve --port 0` on `config_dir`, its stdout a pipe (the listening line)."""
    return await anyio.open_process(
        [sys.executable, "-m", "onemcp", "serve", "--port", "0"],
        env=hub_env(config_dir),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )


async def read_listening_port(process: Process) -> int:
    assert process.stdout is not None
    lines = BufferedByteReceiveStream(process.stdout)
    with anyio.fail_after(START_DEADLINE):
        while True:
            try:
                line = (await lines.receive_until(b"\n", 65536)).decode().strip()
            except (anyio.EndOfStream, anyio.IncompleteRead):
                code = await process.wait()
                raise AssertionError(f"onemcp exited with code {code} before listening") from None
            match = LISTENING.match(line)
            if match:
                return int(match.group(1))


async def get_until(client: httpx.AsyncClient, url: str, deadline: float) -> httpx.Response:
    """GET `url` until it answers 200, or fail when `deadline` passes."""
    with anyio.fail_after(deadline):
        while True:
            try:
                response = await client.get(url)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                return response
            await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline


async def test_serve_writes_starter_config_and_becomes_ready(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("wb") as stderr:
        process = await serving(tmp_path, config_dir, stderr)
    try:
        port = await read_listening_port(process)
        assert port > 0

        starter = config_dir / "mcp.json"
        assert starter.is_file()
        assert list(load_config(starter).enabled) == ["demo", "time"]

        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=10.0) as client:
            ready = await get_until(client, f"{base}/health/ready", READY_DEADLINE)
            assert ready.json()["ready"] is True

            live = await client.get(f"{base}/health/live")
            assert live.status_code == 200

            health: dict[str, Any] = (await client.get(f"{base}/health")).json()
            upstreams = health["upstreams"]
            assert set(upstreams) == {"demo", "time"}
            assert upstreams["demo"]["state"] == "ready", health
            assert upstreams["time"]["state"] == "ready", health
            assert upstreams["time"]["tools"] > 0
            assert health["status"] == "ok"
    finally:
        await stop_process(process)

    log = stderr_path.read_text(errors="replace")
    assert "wrote a starter config" in log
    assert "Traceback" not in log


def child_pids(pid: int) -> set[int]:
    """PIDs whose parent is `pid` (Linux /proc)."""
    found: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def sockets_of(pid: int) -> set[str]:
    """The sockets `pid` holds open, as /proc names them ("socket:[inode]")."""
    links = (os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir())
    return {link for link in links if link.startswith("socket:")}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
async def test_sigterm_shuts_down_and_stops_upstream_children(tmp_path: Path) -> None:
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("wb") as stderr:
        process = await serving(tmp_path, tmp_path / "config", stderr)
    try:
        port = await read_listening_port(process)
        async with httpx.AsyncClient(timeout=10.0) as client:
            await get_until(client, f"http://127.0.0.1:{port}/health/ready", READY_DEADLINE)
        children = child_pids(process.pid)
        assert len(children) == 2  # the demo and time upstreams
        # ... which do not hold the hub's listening socket: one that did would keep the port after the hub
        listening = sockets_of(process.pid)
        for child in children:
            assert not (sockets_of(child) & listening), child
        process.terminate()
        with anyio.fail_after(EXIT_DEADLINE):
            code = await process.wait()
        # uvicorn re-raises the captured signal after its graceful shutdown.
        assert code in (0, -signal.SIGTERM)
        with anyio.fail_after(EXIT_DEADLINE):
            while True:
                if not any(alive(pid) for pid in children):
                    break
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
    finally:
        await stop_process(process)
    said = stderr_path.read_text(errors="replace")
    assert "Traceback" not in said
    # It says so, as Ctrl-C's end does (SIGTERM's printed nothing: the process ends by the signal).
    assert said.index("onemcp: stopping on SIGTERM (requests in flight get 5 s)") < said.index("onemcp: stopped")
    assert said.count("onemcp: stopped") == 1


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
async def test_a_server_started_through_a_wrapper_stops_with_it(tmp_path: Path) -> None:
    """`sh -c "server; ..."`: the server is the wrapper's child, not the hub's. Stopping the hub stops
    the wrapper's whole process group, the server with it (only the wrapper was signalled)."""
    fx = " ".join(shlex.quote(part) for part in fixture_command("--stubborn"))  # ignores SIGTERM and EOF
    config = tmp_path / "config"
    config.mkdir()
    (config / "mcp.json").write_bytes(
        orjson.dumps({"mcpServers": {"wrapped": {"command": "sh", "args": ["-c", f"{fx}; true"]}}})
    )
    process = await serving(tmp_path, config, subprocess.DEVNULL)
    try:
        port = await read_listening_port(process)
        async with httpx.AsyncClient(timeout=10.0) as client:
            await get_until(client, f"http://127.0.0.1:{port}/health/ready", READY_DEADLINE)
        (wrapper,) = child_pids(process.pid)
        (server,) = child_pids(wrapper)
        process.terminate()
        with anyio.fail_after(EXIT_DEADLINE):
            await process.wait()
            while alive(server):
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
    finally:
        await stop_process(process)


async def test_ctrl_c_exits_0_after_a_clean_shutdown(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_bytes(orjson.dumps({"mcpServers": {}}))
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("wb") as stderr:
        process = await anyio.open_process(
            [sys.executable, "-m", "onemcp", "serve", "--port", "0", "--config", str(config)],
            env=hub_env(tmp_path / "unused"),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        port = await read_listening_port(process)
        async with httpx.AsyncClient(timeout=10.0) as client:
            # Once it answers, uvicorn runs and has installed its signal handlers.
            await get_until(client, f"http://127.0.0.1:{port}/health/live", READY_DEADLINE)
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(EXIT_DEADLINE):
            code = await process.wait()
        assert code == 0
    finally:
        await stop_process(process)
    log = stderr_path.read_text(errors="replace")
    assert "onemcp: stopping on SIGINT" in log
    assert log.count("onemcp: stopped") == 1
    assert "Traceback" not in log
    assert not (tmp_path / "unused").exists()


def test_bad_config_exits_nonzero_naming_the_server(tmp_path: Path) -> None:
    (tmp_path / "mcp.json").write_bytes(orjson.dumps({"mcpServers": {"git": {"url": "ftp://x"}}}))
    result = run_cli("serve", "--port", "0", env=hub_env(tmp_path), cwd=tmp_path)
    assert result.returncode != 0
    assert "mcpServers.git" in result.stderr
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stdout


def test_missing_variable_exits_nonzero_naming_it(tmp_path: Path) -> None:
    doc = {"mcpServers": {"gh": {"command": "x", "env": {"TOKEN": "${ONEMCP_TEST_UNSET_VAR}"}}}}
    (tmp_path / "mcp.json").write_bytes(orjson.dumps(doc))
    env = hub_env(tmp_path)
    env.pop("ONEMCP_TEST_UNSET_VAR", None)
    result = run_cli("serve", "--port", "0", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "ONEMCP_TEST_UNSET_VAR" in result.stderr
    assert "mcpServers.gh.env.TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_json_exits_nonzero(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{ not json")
    result = run_cli("serve", "--port", "0", env=hub_env(tmp_path, ONEMCP_CONFIG=str(path)), cwd=tmp_path)
    assert result.returncode != 0
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_a_malformed_search_deep_setting_exits_2(tmp_path: Path, transport: str) -> None:
    """ONEMCP_SEARCH_DEEP=false kept the transformer on (only "0" turned it off), unsaid."""
    env = hub_env(tmp_path, ONEMCP_SEARCH_DEEP="false")
    port = ["--port", "0"] if transport == "http" else []
    result = run_cli("serve", *port, "--transport", transport, env=env, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        "$ONEMCP_SEARCH_DEEP is 'false': 0 turns the search transformer off, 1 (the default) keeps it" in result.stderr
    )
    assert not (tmp_path / "mcp.json").exists()  # refused before anything was written


@pytest.mark.parametrize(
    "flags",
    [
        ["--port", "0"],
        ["--host", "0.0.0.0"],
        ["--log-file", "hub.log"],
        ["--i-know-this-is-unauthenticated-and-exposed"],
    ],
)
def test_an_http_flag_with_the_stdio_transport_exits_2(tmp_path: Path, flags: list[str]) -> None:
    """`serve --transport stdio --port 5` served stdio and dropped the port (and a log file) unsaid. h4: it is
    said by `serve`'s parser, with its usage (the root's, `usage: onemcp [-h] [--version] {serve} ...`, was)."""
    (tmp_path / "mcp.json").write_bytes(orjson.dumps({"mcpServers": {}}))
    result = run_cli("serve", "--transport", "stdio", *flags, env=hub_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    said = f"onemcp serve: error: {flags[0]} is for --transport http: over stdio the one client is on stdin/stdout"
    assert said in result.stderr, result.stderr
    assert result.stderr.startswith("usage: onemcp serve [-h]"), result.stderr  # h4: it was the root's usage
    assert not (tmp_path / "hub.log").exists()


def test_missing_config_flag_exits_2_without_creating_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "mcp.json"
    result = run_cli("serve", "--port", "0", "--config", str(missing), env=hub_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not missing.exists()
    assert not (tmp_path / "mcp.json").exists()


def test_a_missing_config_named_by_the_environment_exits_2_without_creating_it(tmp_path: Path) -> None:
    """$ONEMCP_CONFIG names the file as --config does: a typo there wrote a starter config and served it."""
    missing = tmp_path / "mpc.json"
    result = run_cli("serve", "--port", "0", env=hub_env(tmp_path, ONEMCP_CONFIG=str(missing)), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"config file {missing} does not exist (named by $ONEMCP_CONFIG)" in result.stderr
    assert not missing.exists() and not (tmp_path / "mcp.json").exists()


def test_a_config_dir_that_is_a_file_exits_2(tmp_path: Path) -> None:
    """$ONEMCP_CONFIG_DIR naming a file was a FileExistsError traceback as the starter config was written."""
    (tmp_path / "notadir").write_text("x")
    env = hub_env(tmp_path)
    env["ONEMCP_CONFIG_DIR"] = str(tmp_path / "notadir")
    result = run_cli("serve", "--port", "0", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"cannot write a starter config to {tmp_path / 'notadir' / 'mcp.json'}" in result.stderr


def test_port_in_use_exits_2(tmp_path: Path) -> None:
    (tmp_path / "mcp.json").write_bytes(orjson.dumps({"mcpServers": {}}))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", str(port), env=hub_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot bind" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_busy_port_leaves_no_starter_config_behind(tmp_path: Path) -> None:
    """A mistyped port on an empty config directory wrote the starter mcp.json (and hub.lock), then failed
    (hunt s38 h5 #12): the port is taken first, and the message says what to do."""
    config_dir = tmp_path / "fresh"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", str(port), env=hub_env(config_dir), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot bind 127.0.0.1:{port}: Address already in use; another program listens there" in result.stderr
    assert "--port 0 takes a free one" in result.stderr and "starter" not in result.stderr, result.stderr
    assert not config_dir.exists()


def test_an_open_address_with_no_config_is_refused_before_the_starter_config_is_written(tmp_path: Path) -> None:
    """`serve --host 0.0.0.0` on an empty config directory wrote the starter config (which has no
    authentication) and hub.lock, then refused to serve unauthenticated: refused first, nothing written."""
    config_dir = tmp_path / "fresh"
    result = run_cli("serve", "--host", "0.0.0.0", "--port", "0", env=hub_env(config_dir), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "refusing to serve 0.0.0.0 with no authentication" in result.stderr, result.stderr
    assert "or pass --i-know-this-is-unauthenticated-and-exposed" in result.stderr
    assert "the starter one has no authentication: nothing was written" in result.stderr
    assert not config_dir.exists()
    config_dir.mkdir()  # a config without auth: refused before the directory's lock is taken
    (config_dir / "mcp.json").write_bytes(orjson.dumps({"mcpServers": {}}))
    result = run_cli("serve", "--host", "0.0.0.0", "--port", "0", env=hub_env(config_dir), cwd=tmp_path)
    assert result.returncode == 2 and "refusing to serve 0.0.0.0 with no authentication" in result.stderr
    assert sorted(p.name for p in config_dir.iterdir()) == ["mcp.json"]


def test_a_second_serve_on_the_port_of_its_directorys_hub_says_that_hub_runs(tmp_path: Path) -> None:
    """The port is taken before the directory's lock is: a hub of the same directory that holds both is named,
    not said to be 'another program'."""
    from onemcp.cli.serve import hub_lock, write_runtime

    (tmp_path / "mcp.json").write_bytes(orjson.dumps({"mcpServers": {}}))
    lock = hub_lock(tmp_path / "mcp.json")
    assert lock is not None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            write_runtime(tmp_path / "mcp.json", f"http://127.0.0.1:{port}/mcp")
            result = run_cli("serve", "--port", str(port), env=hub_env(tmp_path), cwd=tmp_path)
    finally:
        os.close(lock)
    assert result.returncode == 2, result.stderr
    assert f"a hub is already running for {tmp_path} (pid {os.getpid()}, http://127.0.0.1:{port}/mcp)" in result.stderr


def test_an_audit_log_that_cannot_be_opened_is_refused_before_listening(tmp_path: Path) -> None:
    (tmp_path / "mcp.json").write_bytes(orjson.dumps({"mcpServers": {}, "onemcp": {"audit": "/nonexistent/dir/a.log"}}))
    result = run_cli("serve", "--port", "0", env=hub_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "listening" not in result.stdout, result.stdout
    assert "onemcp.audit: cannot open /nonexistent/dir/a.log" in result.stderr and "Traceback" not in result.stderr


def test_a_log_file_that_cannot_be_opened_is_refused_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "mcp.json").write_bytes(orjson.dumps({"mcpServers": {}}))
    result = run_cli("serve", "--port", "0", "--log-file", str(tmp_path), env=hub_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "listening" not in result.stdout, result.stdout
    assert f"--log-file {tmp_path}: cannot open it: Is a directory" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("host", ["999.1.1.1", "", "nonexistent.invalid"])
def test_a_host_that_is_no_address_is_said_to_be_so(tmp_path: Path, host: str) -> None:
    """It was refused as "serving 999.1.1.1 with no authentication": a typo read as an open network address."""
    (tmp_path / "mcp.json").write_bytes(orjson.dumps({"mcpServers": {}}))
    result = run_cli("serve", "--port", "0", "--host", host, env=hub_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "listening" not in result.stdout, result.stdout
    assert f"cannot bind --host {host!r}: not an address or host name" in result.stderr, result.stderr
    assert "authentication" not in result.stderr and "Traceback" not in result.stderr


def test_a_bracketed_ipv6_host_binds(tmp_path: Path) -> None:
    """`--host [::1]` (as a URL writes it) was 'cannot bind [::1]:0: Name or service not known'."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    (tmp_path / "mcp.json").write_bytes(orjson.dumps({"mcpServers": {}, "onemcp": {"auth": {"apiKeys": True}}}))
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as busy:  # taken: it binds (or not) and ends at once
        busy.bind(("::1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", str(port), "--host", "[::1]", env=hub_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and f"cannot bind ::1:{port}: Address already in use" in result.stderr, result.stderr


def test_version_flag(tmp_path: Path) -> None:
    result = run_cli("--version", env=hub_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("onemcp ")


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli(env=hub_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "usage" in result.stderr.lower()


@pytest.mark.parametrize("command", ["serve", "serve_stdio"])
def test_serving_binds_threads_to_one_malloc_arena_before_anything_else(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """glibc gives a thread that allocates an arena of its own for good, and the M_ARENA_MAX setting binds
    only threads that allocate after it: any client may search (?exposure=search), so both ways of serving
    set it first, before logging or the config is touched (the transformer's load set it too late)."""
    from onemcp.cli import serve as serve_module
    from onemcp.observability import logs
    from onemcp.search import deep

    done: list[str] = []
    monkeypatch.setattr(deep, "share_one_arena", lambda: done.append("arena"))
    monkeypatch.setattr(logs, "configure", lambda *args: done.append("logs"))
    missing = str(tmp_path / "nope.json")
    code = (
        serve_module.serve(missing, "127.0.0.1", 0, "info")
        if command == "serve"
        else serve_module.serve_stdio(missing, "info")
    )
    assert code == 2 and done == ["arena", "logs"], (code, done)


async def test_json_logs_on_stderr_are_json_lines_only(tmp_path: Path) -> None:
    """Trial s39-h16: with --log-format json and no log file (a container: its stderr is the log), the
    hub also wrote "onemcp: serving N server(s)", "onemcp: stopping on SIGTERM" and "onemcp: stopped" as
    plain text between the records, lines a log shipper cannot parse. They are records too."""
    (tmp_path / "config").mkdir()
    fx = fixture_command()
    (tmp_path / "config" / "mcp.json").write_text(
        orjson.dumps({"mcpServers": {"fx": {"command": fx[0], "args": fx[1:]}}}).decode()
    )
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("wb") as stderr:
        process = await anyio.open_process(
            [sys.executable, "-m", "onemcp", "serve", "--port", "0", "--log-format", "json"],
            env=hub_env(tmp_path / "config"),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        port = await read_listening_port(process)  # stdout still says where, as text
        async with httpx.AsyncClient(timeout=10.0) as client:
            await get_until(client, f"http://127.0.0.1:{port}/health/ready", READY_DEADLINE)
        process.terminate()
        with anyio.fail_after(EXIT_DEADLINE):
            await process.wait()
    finally:
        await stop_process(process)
    lines = stderr_path.read_text(errors="replace").splitlines()
    records = [orjson.loads(line) for line in lines]
    messages = [record["message"] for record in records]
    assert any(m.startswith(f"listening on http://127.0.0.1:{port}/mcp (pid ") for m in messages), messages
    assert messages.index("stopping on SIGTERM (requests in flight get 5 s)") < messages.index(
        f"stopped (pid {process.pid})"
    ), messages


def test_an_internal_failure_is_a_record_where_stderr_is_the_json_log(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With --log-format json and no log file, stderr carries records only (command-line.md), but a hub that
    stopped on an internal error still wrote "onemcp: the hub stopped on an internal error: ..." there as
    plain text, a line a log shipper cannot parse. It is a record. (Served in this process: the server's run
    only says the app failed.)"""
    from onemcp.cli import serve as serve_module
    from onemcp.observability import logs
    from onemcp.search import deep

    (tmp_path / "mcp.json").write_bytes(orjson.dumps({"mcpServers": {}}))
    monkeypatch.setattr(deep, "share_one_arena", lambda: None)
    monkeypatch.setattr(logs, "configure", lambda *args: None)  # (this process's logging stays the tests')
    monkeypatch.setattr(serve_module, "hub_lock", lambda path: 0)  # (no lock held by the test process)
    failed = "the hub stopped on an internal error: RuntimeError('boom')"
    monkeypatch.setattr(
        serve_module.SaidServer, "run", lambda self, sockets: setattr(self.config.app, "failed", failed)
    )
    code = serve_module.serve(str(tmp_path / "mcp.json"), "127.0.0.1", 0, "info", "json")
    assert code == 1
    assert not capsys.readouterr().err.strip()  # nothing but records (here: caught by caplog)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [failed]
