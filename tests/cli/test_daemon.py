"""`onemcp start|stop|restart|status|logs|wait|service` as a user runs them: real processes, real files."""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.launch import fixture_command
from onemcp.cli import daemon
from onemcp.config.runtime import alive
from support.hub_process import clean_env

TIMEOUT = 90
OPEN = "--i-know-this-is-unauthenticated-and-exposed"


@pytest.fixture
def config_dir(tmp_path: Path) -> Iterator[Path]:
    fx = fixture_command()
    (tmp_path / "mcp.json").write_text(json.dumps({"mcpServers": {"fx": {"command": fx[0], "args": fx[1:]}}}))
    yield tmp_path
    onemcp(tmp_path, "stop", "--timeout", "5")  # whatever a failed test left running
    runtime = tmp_path / "runtime.json"
    if runtime.exists():
        pid = json.loads(runtime.read_text()).get("pid")
        if isinstance(pid, int) and alive(pid):
            os.kill(pid, signal.SIGKILL)


def onemcp(
    config_dir: Path, *args: str, token: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The command as the `onemcp` script runs it: `-P`, so `cwd`'s modules are not the command's own."""
    env = {k: v for k, v in clean_env(config_dir).items() if k != "ONEMCP_TOKEN"}  # only the test's own
    return subprocess.run(
        [sys.executable, "-P", "-m", "onemcp", *args],
        cwd=cwd,
        env=env if token is None else {**env, "ONEMCP_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def test_start_status_wait_logs_stop(config_dir: Path) -> None:
    assert onemcp(config_dir, "status").returncode == 3  # not running
    started = onemcp(config_dir, "start", "--port", "0")
    assert started.returncode == 0, started.stderr
    assert "started at http://127.0.0.1:" in started.stdout and "1 server(s): 1 ready" in started.stdout
    runtime = json.loads((config_dir / "runtime.json").read_text())
    assert runtime["freePort"] is True  # (--port 0: `app import --point-to-hub` and `preset url` refuse or warn)
    status = onemcp(config_dir, "status")
    assert status.returncode == 0 and f"pid {runtime['pid']}" in status.stdout
    assert json.loads(onemcp(config_dir, "status", "--json").stdout)["ready"] is True
    assert onemcp(config_dir, "wait", "--timeout", "10").returncode == 0
    again = onemcp(config_dir, "start", "--port", "0")  # a duplicate start: the same hub, nothing new
    assert again.returncode == 0 and "already running" in again.stdout
    direct = onemcp(config_dir, "serve", "--port", "0")  # a second hub for the same directory: refused
    assert direct.returncode == 2 and "already running" in direct.stderr
    logs = onemcp(config_dir, "logs", "-n", "20")
    assert logs.returncode == 0 and "every server was tried: 1 ready" in logs.stdout, logs.stdout
    # the log holds upstreams' stderr and the hub's errors: its owner's only (it was 0644 under umask 022)
    assert (config_dir / "onemcp.log").stat().st_mode & 0o077 == 0
    assert f"listening on {runtime['url']} (pid {runtime['pid']})" in logs.stdout, logs.stdout
    stopped = onemcp(config_dir, "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not alive(runtime["pid"])
    # the log says where the hub listened and that it stopped (it held neither: a stop read as a crash)
    assert f"stopped (pid {runtime['pid']})" in onemcp(config_dir, "logs", "-n", "1").stdout
    assert onemcp(config_dir, "status").returncode == 3
    assert "not running" in onemcp(config_dir, "stop").stdout


def test_wait_status_and_mcp_status_agree_that_a_hub_with_a_failed_server_is_not_ready(config_dir: Path) -> None:
    """Trial s39-h4: `wait` printed "ready" (exit 0) and `mcp status` exited 0 while `status` said degraded
    (exit 1) and named the failed server; README says they say the same."""
    doc = json.loads((config_dir / "mcp.json").read_text())
    doc["mcpServers"]["broken"] = {"command": sys.executable, "args": ["-c", "import sys; sys.exit(1)"]}
    (config_dir / "mcp.json").write_text(json.dumps(doc))
    started = onemcp(config_dir, "start", "--port", "0")  # h13: it exited 0, the summary on stdout
    url = json.loads((config_dir / "runtime.json").read_text())["url"]
    assert started.returncode == 1 and started.stdout.startswith(f"onemcp: started at {url} (pid "), started
    assert len(started.stdout.splitlines()) == 1, started.stdout
    assert started.stderr.startswith("onemcp: degraded: 2 server(s): "), started  # failed, or still trying
    assert "broken (process exited with code 1" in started.stderr, started
    waited = onemcp(config_dir, "wait", "--timeout", "30")
    assert (waited.returncode, waited.stdout) == (1, ""), waited.stdout
    # the broken server is failed, or between two of its restarts (supervision tries it again): named either way
    assert waited.stderr.startswith(f"onemcp: up at {url}, but degraded: 2 server(s): "), waited.stderr
    assert any(
        waited.stderr.startswith(f"onemcp: up at {url}, but degraded: 2 server(s): {states}: broken (")
        for states in ("1 failed, 1 ready; failed", "1 ready, 1 starting; still trying")
    ), waited.stderr
    assert onemcp(config_dir, "status").returncode == 1
    assert [onemcp(config_dir, "mcp", "status", *extra).returncode for extra in ((), ("--json",))] == [1, 1]
    assert onemcp(config_dir, "stop").returncode == 0
    assert [onemcp(config_dir, *argv).returncode for argv in (["status"], ["mcp", "status"])] == [3, 3]


def test_restart_brings_the_hub_back_at_its_address(config_dir: Path) -> None:
    """A hub started with --port N comes back at N (it came back at 3050: its clients lost it)."""
    assert onemcp(config_dir, "start", "--port", "0").returncode == 0
    before = json.loads((config_dir / "runtime.json").read_text())
    restarted = onemcp(config_dir, "restart")
    assert restarted.returncode == 0 and f"started at {before['url']} " in restarted.stdout, restarted.stdout
    after = json.loads((config_dir / "runtime.json").read_text())
    assert after["url"] == before["url"] and after["pid"] != before["pid"]
    assert onemcp(config_dir, "stop").returncode == 0


def test_two_starts_at_once_both_report_the_one_hub(config_dir: Path) -> None:
    """Both find no hub and spawn one; the second `serve` is refused the directory's lock. Its `start`
    said "the hub exited at start (code 2)" and failed; the hub that won is the one, already running."""
    env = {k: v for k, v in clean_env(config_dir).items() if k != "ONEMCP_TOKEN"}
    argv = [sys.executable, "-m", "onemcp", "start", "--port", "0"]
    starts = [
        subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    said = [start.communicate(timeout=TIMEOUT) for start in starts]
    assert [start.returncode for start in starts] == [0, 0], said
    url = json.loads((config_dir / "runtime.json").read_text())["url"]
    outs = sorted(out.decode() for out, _ in said)
    assert outs[0].startswith(f"onemcp: already running at {url} ") and f"started at {url} " in outs[1], outs


def test_status_of_a_hub_with_auth_reads_health_with_the_token(config_dir: Path) -> None:
    doc = json.loads((config_dir / "mcp.json").read_text())
    (config_dir / "mcp.json").write_text(json.dumps({**doc, "onemcp": {"auth": {"apiKeys": True}}}))
    keys = {
        scope: onemcp(config_dir, "auth", "key", "create", "--name", scope, "--scope", scope).stdout.strip()
        for scope in ("operator", "admin", "mcp")
    }
    started = onemcp(config_dir, "start", "--port", "0", token=keys["operator"])
    assert started.returncode == 0 and "1 server(s): 1 ready" in started.stdout, started.stdout + started.stderr
    for scope in ("operator", "admin"):
        status = onemcp(config_dir, "status", token=keys[scope])
        assert status.returncode == 0 and ", ok\n" in status.stdout and "1 server(s): 1 ready" in status.stdout
        shown = json.loads(onemcp(config_dir, "status", "--json", token=keys[scope]).stdout)
        assert shown["health"]["upstreams"]["fx"]["state"] == "ready"
    # still refused: said plainly, never "None" and "0 server(s)"
    bare = onemcp(config_dir, "status")
    assert bare.returncode == 1 and "None" not in bare.stdout and "server(s)" not in bare.stdout
    assert "ready\n" in bare.stdout and "set $ONEMCP_TOKEN to a key with the operator or admin scope" in bare.stdout
    weak = onemcp(config_dir, "status", token=keys["mcp"])
    assert weak.returncode == 1 and "$ONEMCP_TOKEN lacks the operator or admin scope" in weak.stdout
    wrong = onemcp(config_dir, "status", token="omk_not_a_key")
    assert wrong.returncode == 1 and "the hub refused $ONEMCP_TOKEN (HTTP 401)" in wrong.stdout
    # `wait` and `start` agree (they exited 0): ready, but not known to be ok, exit 1 saying why; the hub runs on
    unknown = "whether a server failed is not known: the hub requires a token for /health: set $ONEMCP_TOKEN"
    waited = onemcp(config_dir, "wait")
    assert waited.returncode == 1 and "onemcp: ready at " in waited.stdout and unknown in waited.stderr, waited
    assert onemcp(config_dir, "stop").returncode == 0
    again = onemcp(config_dir, "start", "--port", "0")
    assert again.returncode == 1 and "onemcp: started at " in again.stdout and unknown in again.stderr, again
    assert onemcp(config_dir, "wait", token=keys["operator"]).returncode == 0  # it runs on, and is ok
    assert onemcp(config_dir, "stop").returncode == 0


def test_status_says_why_a_hub_whose_config_was_refused_is_degraded(config_dir: Path) -> None:
    """It said "degraded" and "1 server(s): 1 ready", not that the edit of mcp.json was refused, nor why."""
    assert onemcp(config_dir, "start", "--port", "0").returncode == 0
    config = config_dir / "mcp.json"
    config.write_text(config.read_text().replace('"command"', '"comand"'))
    deadline = time.monotonic() + TIMEOUT
    while True:  # the hub notices the file by itself
        status = onemcp(config_dir, "status")
        if "comand" in status.stdout or time.monotonic() > deadline:
            break
    assert status.returncode == 1 and "degraded" in status.stdout, status.stdout
    assert "the config was refused, the hub serves the one before it: " in status.stdout
    assert "mcpServers.fx.comand: unknown key 'comand'" in status.stdout, status.stdout


@pytest.mark.parametrize("damage", [None, {"url": 5}, {"url": "http://127.0.0.1:9/mcp", "pid": "x"}])
def test_a_hub_whose_runtime_file_was_lost_is_still_running_and_stoppable(
    config_dir: Path, damage: dict[str, Any] | None
) -> None:
    """runtime.json removed or hand-damaged under a running hub: `status` said "not running" (exit 3), `stop`
    said "not running" and left it running (or, for a pid that is no number, a traceback), and `start` then
    failed on the lock. The hub's lock holds its pid: the hub is said to run, and is stopped."""
    assert onemcp(config_dir, "start", "--port", "0").returncode == 0
    runtime = config_dir / "runtime.json"
    pid = json.loads(runtime.read_text())["pid"]
    try:
        if damage is None:
            runtime.unlink()
        else:
            runtime.write_text(json.dumps(damage))
        status = onemcp(config_dir, "status")
        if damage is None or "pid" not in damage:
            assert status.returncode == 1 and f"running (pid {pid}), but at an unknown address" in status.stdout
            assert "`onemcp restart` starts it again" in status.stdout, status.stdout
            again = onemcp(config_dir, "start", "--port", "0")
            assert again.returncode == 1 and f"already running (pid {pid})" in again.stderr, again.stderr
        stopped = onemcp(config_dir, "stop", "--timeout", "10")
        assert stopped.returncode == 0 and f"(pid {pid}" in stopped.stdout and "Traceback" not in stopped.stderr
        assert not alive(pid)
        assert onemcp(config_dir, "status").returncode == 3
    finally:
        if alive(pid):  # the fixture cannot find it by runtime.json: that is what this test is about
            os.kill(pid, signal.SIGKILL)


def test_a_stale_runtime_file_is_no_hub(config_dir: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (config_dir / "runtime.json").write_text(json.dumps({"url": "http://127.0.0.1:9/mcp", "pid": dead.pid}))
    status = onemcp(config_dir, "status")
    assert status.returncode == 3 and not (config_dir / "runtime.json").exists()
    restarted = onemcp(config_dir, "restart", "--port", "0")
    assert restarted.returncode == 0, restarted.stderr
    assert onemcp(config_dir, "stop").returncode == 0


def test_a_runtime_file_whose_pid_was_reused_is_no_hub(config_dir: Path) -> None:
    """The hub was killed; its pid now belongs to another process (here: one of ours). `stop` must not
    signal it, `status` must not call it a hub: the directory's hub lock says no hub holds it."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (config_dir / "runtime.json").write_text(json.dumps({"url": "http://127.0.0.1:9/mcp", "pid": other.pid}))
        assert onemcp(config_dir, "status").returncode == 3
        (config_dir / "runtime.json").write_text(json.dumps({"url": "http://127.0.0.1:9/mcp", "pid": other.pid}))
        stopped = onemcp(config_dir, "stop")
        assert stopped.returncode == 0 and "not running" in stopped.stdout, stopped.stdout
        assert other.poll() is None  # still alive: never signalled
    finally:
        other.kill()
        other.wait()


def test_a_hub_that_cannot_start_says_why(config_dir: Path) -> None:
    (config_dir / "mcp.json").write_text('{"mcpServers": {"fx": {"comand": "x"}}}')
    started = onemcp(config_dir, "start", "--port", "0")
    assert started.returncode == 1 and "did you mean 'command'" in started.stderr
    assert onemcp(config_dir, "wait", "--timeout", "0.5").returncode == 1


def test_service_unit(config_dir: Path, tmp_path: Path) -> None:
    unit = onemcp(config_dir, "service", "print", "--port", "3051")
    assert unit.returncode == 0 and f'--config "{config_dir / "mcp.json"}" --port 3051' in unit.stdout
    assert "Restart=on-failure" in unit.stdout
    # a path with a space, a % and a $: one argument, taken literally by systemd
    odd = tmp_path / "my $HOME 100%"
    odd.mkdir()
    unit = onemcp(odd, "service", "print", "--port", "3051")
    assert f'--config "{tmp_path}/my $$HOME 100%%/mcp.json" --port 3051' in unit.stdout, unit.stdout


def test_start_in_an_empty_config_dir_writes_the_starter_config_as_serve_does(tmp_path: Path) -> None:
    try:
        started = onemcp(tmp_path, "start", "--port", "0")
        assert started.returncode == 0, started.stderr
        assert "wrote a starter config" in started.stderr and "started at" in started.stdout
        assert "mcpServers" in json.loads((tmp_path / "mcp.json").read_text())
    finally:
        assert onemcp(tmp_path, "stop", "--timeout", "10").returncode == 0
    named = tmp_path / "elsewhere" / "mcp.json"  # a missing file the user named is an error, not a starter
    refused = onemcp(tmp_path, "start", "--config", str(named), "--port", "0")
    assert refused.returncode == 2 and f"{named} does not exist" in refused.stderr and not named.exists()


def test_start_on_a_busy_port_in_an_empty_config_dir_writes_nothing(tmp_path: Path) -> None:
    """`start` wrote the starter mcp.json and onemcp.log, then said "the hub exited at start (code 2)" with the
    hub's log: it takes the port first, as `serve` does, and says what `serve` says, with nothing written."""
    config_dir = tmp_path / "fresh"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        started = onemcp(config_dir, "start", "--port", str(port), "--timeout", "30")
        restarted = onemcp(config_dir, "restart", "--port", str(port), "--timeout", "30")
    for said in (started, restarted):
        assert said.returncode == 2 and "Traceback" not in said.stderr, said.stderr
        assert f"cannot bind 127.0.0.1:{port}: Address already in use; another program listens there" in said.stderr
        assert "--port 0 takes a free one" in said.stderr and "starter" not in said.stderr, said.stderr
    assert not config_dir.exists()
    mistyped = onemcp(config_dir, "start", "--host", "no such host", "--port", "0")
    assert mistyped.returncode == 2 and "cannot bind --host 'no such host'" in mistyped.stderr, mistyped.stderr
    assert not config_dir.exists()


def test_a_port_taken_after_starts_check_leaves_no_starter_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`start` takes the port and lets it go for the hub it runs: another program that took it in between
    made the hub fail, and `start` had written the starter config already. The hub writes it, once bound.
    h4: `start` then said only that the hub exited at start (exit 1) and left onemcp.log (and the directory
    it made for it) behind: it now says what happened, exit 2 as for a busy port, and leaves nothing."""
    config_dir = tmp_path / "fresh"
    for name, value in clean_env(config_dir).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        let_go = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # what start took: free when it looked
        monkeypatch.setattr(daemon, "take", lambda host, port, path: let_go)
        code = daemon.launch(config_dir / "mcp.json", None, "127.0.0.1", port, 30.0)
    said = capsys.readouterr().err
    assert code == 2 and said.startswith(
        f"onemcp: 127.0.0.1:{port} was free when checked, but another program took it before the hub could bind"
        " it: nothing was started; another program listens there: choose another --port"
    ), said
    assert "starter" not in said and not config_dir.exists(), said


def test_start_on_an_open_address_with_no_config_writes_nothing(tmp_path: Path) -> None:
    """The starter config has no authentication, so its hub refuses an open address: `start --host 0.0.0.0`
    wrote it, hub.lock and onemcp.log, and then failed with a hint to pass a flag `start` does not take."""
    config_dir = tmp_path / "fresh"
    started = onemcp(config_dir, "start", "--host", "0.0.0.0", "--port", "0", "--timeout", "30")
    assert started.returncode == 2 and "Traceback" not in started.stderr, started.stderr
    assert "refusing to serve 0.0.0.0 with no authentication" in started.stderr, started.stderr
    assert "Configure onemcp.auth (apiKeys, jwt or oauth), bind 127.0.0.1, or pass " + OPEN in started.stderr
    assert not config_dir.exists()


def test_start_and_restart_take_serves_flag_for_an_open_address_without_auth(config_dir: Path) -> None:
    """`start --host 0.0.0.0` on a config without auth relayed the hub's refusal, which said to pass
    --i-know-this-is-unauthenticated-and-exposed, a flag `start` refused as unknown: it takes it, as `serve`."""
    refused = onemcp(config_dir, "start", "--host", "0.0.0.0", "--port", "0", "--timeout", "30")
    assert refused.returncode == 1 and f"or pass {OPEN}" in refused.stderr, refused.stderr
    started = onemcp(config_dir, "start", "--host", "0.0.0.0", "--port", "0", "--timeout", "30", OPEN)
    try:
        assert started.returncode == 0, started.stderr
        assert "started at http://0.0.0.0:" in started.stdout, started.stdout
        restarted = onemcp(config_dir, "restart", "--timeout", "30", OPEN)  # at the same address
        assert restarted.returncode == 0 and "started at http://0.0.0.0:" in restarted.stdout, restarted.stderr
    finally:
        assert onemcp(config_dir, "stop", "--timeout", "10").returncode == 0


def test_restart_keeps_the_open_network_flag_at_its_address_or_refuses_before_it_stops_the_hub(
    config_dir: Path,
) -> None:
    """h11 left it: `restart` of a hub started with --i-know-this-is-unauthenticated-and-exposed, without the
    flag, stopped the hub and the new one refused to start (exit 1): no hub. The hub it replaces serving its
    open address by the flag (runtime.json's `openNetwork`), it is given the flag again there, said so; what
    the new hub would refuse (another open address without the flag, a config it cannot load) is said before
    the running hub is stopped, which is left running."""
    started = onemcp(config_dir, "start", "--host", "0.0.0.0", "--port", "0", "--timeout", "30", OPEN)
    try:
        assert started.returncode == 0, started.stderr
        assert json.loads((config_dir / "runtime.json").read_text())["openNetwork"] is True
        restarted = onemcp(config_dir, "restart", "--timeout", "30")  # no flag: kept, at the same address
        assert restarted.returncode == 0 and "started at http://0.0.0.0:" in restarted.stdout, restarted.stderr
        assert f"onemcp: {OPEN} kept: the hub it replaces was started with it at 0.0.0.0" in restarted.stderr
        loopback = onemcp(config_dir, "restart", "--host", "127.0.0.1", "--timeout", "30")
        assert loopback.returncode == 0 and "started at http://127.0.0.1:" in loopback.stdout, loopback.stderr
        runtime = json.loads((config_dir / "runtime.json").read_text())
        assert "openNetwork" not in runtime  # loopback: nothing to keep
        refused = onemcp(config_dir, "restart", "--host", "0.0.0.0", "--timeout", "30")  # never given the flag
        assert refused.returncode == 2 and refused.stdout == "", refused.stdout
        assert (
            refused.stderr.startswith(
                f"onemcp: not restarting, the running hub (pid {runtime['pid']}) is left as it is: refusing to serve"
                " 0.0.0.0 with no authentication"
            )
            and f"or pass {OPEN}" in refused.stderr
        ), refused.stderr
        (config_dir / "mcp.json").write_text(json.dumps({"mcpServers": {"x": {}}}))
        broken = onemcp(config_dir, "restart", "--timeout", "30")
        assert broken.returncode == 2 and "left as it is: invalid config: " in broken.stderr, broken.stderr
        assert json.loads((config_dir / "runtime.json").read_text())["pid"] == runtime["pid"] and alive(runtime["pid"])
    finally:
        assert onemcp(config_dir, "stop", "--timeout", "10").returncode == 0


@contextlib.contextmanager
def health_answering(status: int) -> Iterator[int]:
    """A stand-in for a running hub's /health on 127.0.0.1 (port 0), answering `status` with no token asked."""

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "ok"} if status == 200 else {"error": "unauthorized"}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(("status", "kept"), [(200, True), (401, False)])
def test_restart_of_a_hub_whose_runtime_json_has_no_open_network_record(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    status: int,
    kept: bool,
) -> None:
    """h4: a hub started with the flag by an onemcp before runtime.json recorded `openNetwork` could not be
    restarted without the flag (exit 2, the hub left running). Such a hub at an open address that answers
    /health with no token serves it unauthenticated, which `serve` does only with the flag: it is kept, said
    so; one that asks for a token (it had auth; its config now has none) is still refused before any stop.
    (Its address is 0.0.0.0 as recorded; the stand-in listens on 127.0.0.1, which a connect to 0.0.0.0 reaches.)"""
    monkeypatch.delenv("ONEMCP_TOKEN", raising=False)
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {}}))
    done: list[object] = []
    with health_answering(status) as port:
        found = {"url": f"http://0.0.0.0:{port}/mcp", "pid": 4242, "config": str(config)}
        monkeypatch.setattr(daemon, "running", lambda path: dict(found))

        def stop(path: Path, timeout: float) -> int:
            done.append("stop")
            return 0

        def launch(*given: Any) -> int:
            done.append(("launch", given[2], given[3], given[6]))  # host, port, open_network
            return 0

        monkeypatch.setattr(daemon, "stop", stop)
        monkeypatch.setattr(daemon, "launch", launch)
        args = argparse.Namespace(
            host=None, port=None, allow_open_network=False, config=str(config), timeout=30.0, log_level=None,
            log_format=None,
        )  # fmt: skip
        code = daemon.restart(config, args)
    err = capsys.readouterr().err
    if kept:
        assert (code, done) == (0, ["stop", ("launch", "0.0.0.0", port, True)]), err
        said = f"onemcp: {OPEN} kept: the hub it replaces serves 0.0.0.0 with no authentication, which it does only"
        assert said in err, err
    else:
        assert (code, done) == (2, []), err
        assert "not restarting, the running hub (pid 4242) is left as it is: refusing to serve 0.0.0.0" in err, err


def test_a_proxy_in_the_environment_is_not_taken_for_a_hub_serving_openly(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serves_openly` asked through $http_proxy: a proxy that cannot reach the hub's 0.0.0.0 answers 503 (as
    squid does), which was taken for a degraded hub answering with no token, and the restart of a hub that
    asks for one (it had auth; its config now has none) kept the open-network flag it was not given."""
    with health_answering(401) as hub, health_answering(503) as proxy:
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        for name in ("http_proxy", "HTTP_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy}")
        assert daemon.serves_openly({"url": f"http://0.0.0.0:{hub}/mcp"}) is False
    with health_answering(200) as hub:  # a hub that answers with no token still says so, the proxy set or not
        assert daemon.serves_openly({"url": f"http://0.0.0.0:{hub}/mcp"}) is True


def test_wait_with_no_hub_says_none_runs(config_dir: Path) -> None:
    """h4: `wait` with no hub said only `not ready within 1s` (exit 1) while `status` said `not running`: it
    now says why it was not ready."""
    waited = onemcp(config_dir, "wait", "--timeout", "0.3")
    said = f"onemcp: not ready within 0.3s: no hub is running for {config_dir / 'mcp.json'} (`onemcp start` starts one)"
    assert (waited.returncode, waited.stderr.strip()) == (1, said), waited.stderr


def test_start_in_a_directory_whose_modules_shadow_the_standard_library(tmp_path: Path) -> None:
    """`start` run in a project that has its own `secrets.py`: the hub (`python -m onemcp serve`) and the
    starter config's Python servers (`python -m mcp_server_time`) imported it instead of the standard
    library's, since `-m` puts the working directory first on the module path; the hub exited at start."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "secrets.py").write_text('raise SystemExit("the working directory\'s secrets.py was imported")\n')
    config_dir = tmp_path / "config"
    try:
        started = onemcp(config_dir, "start", "--port", "0", cwd=project)
        assert started.returncode == 0, started.stderr
        assert "2 server(s): 2 ready" in started.stdout, started.stdout
    finally:
        assert onemcp(config_dir, "stop", "--timeout", "10").returncode == 0
    unit = onemcp(config_dir, "service", "print")
    assert ' -P -m onemcp serve --config "' in unit.stdout, unit.stdout


def test_service_install_in_an_empty_config_dir_has_a_config_to_serve(tmp_path: Path) -> None:
    home = tmp_path / "xdg"
    env = {**clean_env(tmp_path), "XDG_CONFIG_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "onemcp", "service", "install", "--port", "3051"],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert (home / "systemd" / "user" / "onemcp.service").exists() and (tmp_path / "mcp.json").exists()


def test_service_install_says_a_hub_started_in_the_background_must_stop_first(config_dir: Path) -> None:
    """README order: `onemcp start`, then `service install` and `systemctl --user enable --now`: the unit's
    hub was refused (the directory's lock is held) and restarted on failure, and nothing said why."""

    def install() -> subprocess.CompletedProcess[str]:
        env = {**clean_env(config_dir), "XDG_CONFIG_HOME": str(config_dir / "xdg")}
        argv = [sys.executable, "-m", "onemcp", "service", "install", "--port", "3051"]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)

    started = onemcp(config_dir, "start", "--port", "0")
    assert started.returncode == 0, started.stderr
    pid = json.loads((config_dir / "runtime.json").read_text())["pid"]
    done = install()
    assert done.returncode == 0 and (config_dir / "xdg" / "systemd" / "user" / "onemcp.service").exists()
    assert done.stderr == (
        f"onemcp: warning: a hub already runs for {config_dir} (pid {pid}); the unit's hub is refused while it"
        " does: `onemcp stop` first\n"
    )
    assert onemcp(config_dir, "stop").returncode == 0
    again = install()
    assert (again.returncode, again.stderr) == (0, "")


def test_status_waits_for_a_first_health_report_that_loads_the_token_counter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hub's first /health loads the token counter: 0.4 s idle, 4 s on a busy machine, past the 3 s the
    command line waited. `start` then printed "0 server(s): none" for a hub that had its server ready
    (and `status` said "no answer"): /health is now given 30 s, and no report is said as such."""
    from onemcp.cli import daemon

    waited: dict[str, float] = {}

    def fetch(url: str, timeout: float = 3.0) -> tuple[int, Any]:
        waited[url.rsplit("/", 1)[-1]] = timeout
        if url.endswith("/health/ready"):
            return 200, {"ready": True}
        if timeout < 10:
            return 0, None  # a first report that takes 4 s
        return 200, {"status": "ok", "upstreams": {"fx": {"state": "ready"}}}

    monkeypatch.setattr(daemon, "fetch", fetch)
    monkeypatch.setattr(daemon, "running", lambda path: {"url": "http://127.0.0.1:9/mcp", "pid": 1})
    assert daemon.status(tmp_path / "mcp.json", as_json=False) == 0
    assert "1 server(s): 1 ready" in capsys.readouterr().out and waited["health"] >= 10


def test_status_and_stop_of_a_hub_that_does_not_answer(config_dir: Path) -> None:
    """A suspended hub (SIGSTOP) answers nothing: `status` waited 30 s for /health and then said only "no
    answer (HTTP 0)" (33 s in all), and `stop` waited its timeout and killed it. `status` now says at once
    (its readiness probe, 3 s) that it does not answer and why, and `stop` lets it run to stop gracefully."""
    assert onemcp(config_dir, "start", "--port", "0").returncode == 0
    pid = json.loads((config_dir / "runtime.json").read_text())["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        status = onemcp(config_dir, "status")
        assert status.returncode == 1, status
        assert f"(pid {pid}), but it does not answer (/health/ready: no reply within 3s)" in status.stdout
        assert f"its process is suspended (SIGSTOP, a debugger): `kill -CONT {pid}` resumes it" in status.stdout
        said = json.loads(onemcp(config_dir, "status", "--json").stdout)
        assert said["running"] and said["answers"] is False and said["suspended"] is True, said
        stopped = onemcp(config_dir, "stop", "--timeout", "30")
        assert stopped.returncode == 0 and stopped.stdout.strip() == f"onemcp: stopped (pid {pid})", stopped
        assert f"stopped (pid {pid})" in onemcp(config_dir, "logs", "-n", "1").stdout  # it stopped itself
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)  # suspended or not


def test_status_says_a_config_change_waits_for_a_restart(config_dir: Path) -> None:
    """`onemcp.auth` added to mcp.json of a running hub waits for a restart: status said "degraded" and "1
    server(s): 1 ready", not why, though the README has it say why a hub is degraded."""
    assert onemcp(config_dir, "start", "--port", "0").returncode == 0
    config = config_dir / "mcp.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "onemcp": {"auth": {"apiKeys": True}}}))
    deadline = time.monotonic() + TIMEOUT
    while True:  # the hub notices the file by itself
        status = onemcp(config_dir, "status")
        if "degraded" in status.stdout or time.monotonic() > deadline:
            break
    assert status.returncode == 1, status.stdout
    said = "onemcp.auth changed in the config: the hub applies it when restarted (`onemcp restart`)"
    assert said in status.stdout, status.stdout
    shown = onemcp(config_dir, "mcp", "status")
    assert "status  degraded, 0 session(s)" in shown.stdout and f"        {said}\n" in shown.stdout, shown.stdout
    assert onemcp(config_dir, "stop").returncode == 0


def test_start_logs_as_json_every_line_of_the_log(config_dir: Path) -> None:
    """Trial s39-h16: an operator shipping the background hub's log as JSON had no way to: `serve` took
    --log-format, `start` and `restart` did not (unknown flag), and the hub `start` ran wrote its
    "serving N server(s)" line as plain text into the log. Every line of onemcp.log is one JSON record."""
    started = onemcp(config_dir, "start", "--port", "0", "--log-format", "json")
    assert started.returncode == 0, started.stderr
    pid = json.loads((config_dir / "runtime.json").read_text())["pid"]
    restarted = onemcp(config_dir, "restart", "--log-format", "json")
    assert restarted.returncode == 0, restarted.stderr
    assert onemcp(config_dir, "stop").returncode == 0
    lines = (config_dir / "onemcp.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # each line a record, none plain text
    messages = [record["message"] for record in records]
    assert any(m.startswith("listening on http://127.0.0.1:") and f"(pid {pid})" in m for m in messages), messages
    assert sum(m.startswith("stopped (pid ") for m in messages) == 2, messages
    unit = onemcp(config_dir, "service", "print", "--log-format", "json")
    assert unit.returncode == 0 and "--port 3050 --log-format json\n" in unit.stdout, unit.stdout


def test_restart_keeps_the_running_hubs_log_level_and_format_and_runtime_names_the_config_absolute(
    config_dir: Path,
) -> None:
    """Trial s39-h16: `start --config rep2/mcp.json` recorded "config": "rep2/mcp.json" in runtime.json (a tool
    reading it from another directory found no such file); and `restart` without --log-level/--log-format
    brought the hub back logging text at info, whatever it logged before. runtime.json records the config's
    absolute path and how the hub logs; `restart` keeps each one not given, and says so."""
    named = f"{config_dir.name}/mcp.json"  # relative to its parent, where the commands run
    started = onemcp(
        config_dir,
        "start",
        "--config",
        named,
        "--port",
        "0",
        "--log-level",
        "debug",
        "--log-format",
        "json",
        cwd=config_dir.parent,
    )
    assert started.returncode == 0, started.stderr
    runtime = json.loads((config_dir / "runtime.json").read_text())
    assert runtime["config"] == str(config_dir / "mcp.json"), runtime
    assert (runtime["logLevel"], runtime["logFormat"]) == ("debug", "json"), runtime
    kept = onemcp(config_dir, "restart", "--config", named, cwd=config_dir.parent)
    assert kept.returncode == 0, kept.stderr
    assert "onemcp: --log-level debug --log-format json kept: the hub it replaces logs so" in kept.stderr, kept.stderr
    runtime = json.loads((config_dir / "runtime.json").read_text())
    assert (runtime["logLevel"], runtime["logFormat"]) == ("debug", "json"), runtime
    changed = onemcp(config_dir, "restart", "--config", named, "--log-format", "text", cwd=config_dir.parent)
    assert changed.returncode == 0 and "--log-level debug kept" in changed.stderr, changed.stderr
    assert "--log-format json" not in changed.stderr, changed.stderr
    runtime = json.loads((config_dir / "runtime.json").read_text())
    assert (runtime["logLevel"], runtime["logFormat"]) == ("debug", "text"), runtime
    back = onemcp(config_dir, "restart", "--log-level", "info")  # the defaults again: nothing to say
    assert back.returncode == 0 and "kept" not in back.stderr, back.stderr
    assert onemcp(config_dir, "stop").returncode == 0
