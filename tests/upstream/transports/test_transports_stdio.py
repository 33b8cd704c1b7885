"""A stdio upstream: the environment it starts with (an allow-list plus the config's env), the end of its
stdout, a line past maxResponseBytes."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from onemcp.config.model import ServerConfig
from onemcp.observability.limits import HITS
from onemcp.upstream.transports.base import IGNORED_PER_SECOND, TransportError
from onemcp.upstream.transports.stdio import (
    INHERITED_ENV,
    STDOUT_CLOSED,
    WRITE_HIGH_WATER,
    StdioTransport,
    _ChildProtocol,
    child_env,
)
from support.hub import raw_session, running_hub

# A stdio server whose `close_stdout` tool closes its stdout and lives on (a writer thread that died, a
# wrapper whose child went away) until its stdin ends; `pid` says which process answers; `last_word`
# answers without a newline, then closes its stdout (a server's final reply as it exits).
MUTE_AFTER_CALL = """
import json, os, sys
def send(m):
    sys.stdout.write(json.dumps(m) + "\\n"); sys.stdout.flush()
def text(t):
    return {"content": [{"type": "text", "text": t}]}
for line in sys.stdin:
    m = json.loads(line); mid = m.get("id"); method = m.get("method")
    if method == "initialize":
        info = {"name": "mute", "version": "1"}
        hello = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": info}
        send({"jsonrpc": "2.0", "id": mid, "result": hello})
    elif method == "tools/list":
        tools = [{"name": n, "inputSchema": {"type": "object"}} for n in ("close_stdout", "pid", "last_word")]
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": tools}})
    elif method == "tools/call" and m["params"]["name"] == "close_stdout":
        sys.stdout.close(); os.close(1)
    elif method == "tools/call" and m["params"]["name"] == "last_word":
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": mid, "result": text("bye")})); sys.stdout.flush()
        sys.stdout.close(); os.close(1)
    elif method == "tools/call":
        send({"jsonrpc": "2.0", "id": mid, "result": text(str(os.getpid()))})
    elif mid is not None:
        send({"jsonrpc": "2.0", "id": mid, "result": {}})
"""


def test_secrets_are_not_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEMCP_TEST_SECRET", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    env = child_env({})
    assert "ONEMCP_TEST_SECRET" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "GITHUB_TOKEN" not in env
    assert "hunter2" not in env.values()


def test_only_allow_listed_variables_are_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/opt/bin:/usr/bin")
    monkeypatch.setenv("HOME", "/home/test")
    monkeypatch.setenv("ONEMCP_TEST_OTHER", "x")
    env = child_env({})
    assert env["PATH"] == "/opt/bin:/usr/bin"
    assert env["HOME"] == "/home/test"
    assert set(env) <= set(INHERITED_ENV)


def test_unset_allow_listed_variables_are_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NVM_DIR", raising=False)
    assert "NVM_DIR" not in child_env({})


def test_config_env_is_added(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEMCP_TEST_GIVEN", raising=False)
    env = child_env({"ONEMCP_TEST_GIVEN": "from-config", "GITHUB_TOKEN": "explicit"})
    assert env["ONEMCP_TEST_GIVEN"] == "from-config"
    assert env["GITHUB_TOKEN"] == "explicit"


def test_config_env_overrides_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/hub")
    assert child_env({"HOME": "/srv/child"})["HOME"] == "/srv/child"


def test_config_env_of_secret_name_does_not_pull_the_hub_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "hub-value")
    assert child_env({"API_KEY": "child-value"})["API_KEY"] == "child-value"


def test_child_env_does_not_mutate_its_argument() -> None:
    extra = {"A": "1"}
    child_env(extra)
    assert extra == {"A": "1"}


@pytest.mark.anyio
async def test_a_child_that_stops_reading_makes_writers_wait_not_the_hub_buffer() -> None:
    # a server that never reads its stdin: bodies wait in their callers, one is written only when there is
    # room, and one that gave up at the server's timeout is never written (nor delivered later)
    config = ServerConfig.model_validate(
        {"command": sys.executable, "args": ["-c", "import time; time.sleep(60)"], "timeout": 0.5}
    )
    transport = StdioTransport("deaf", config)
    body = b"x" * (512 * 1024)
    refused: list[str] = []

    async def send() -> None:
        try:
            await transport.send({"jsonrpc": "2.0", "method": "ping"}, body)
        except TransportError as exc:
            refused.append(str(exc))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await transport.open(tg, lambda m, i: None, lambda m, e: None)
            try:
                async with anyio.create_task_group() as senders:
                    for _ in range(12):
                        senders.start_soon(send)
                stdin = transport._stdin
                assert stdin is not None
                assert stdin.get_write_buffer_size() <= WRITE_HIGH_WATER + len(body) + 1  # was 12 bodies
                assert refused and set(refused) == {"the server is not reading its input"}
            finally:
                await transport.aclose()


SLOW_READER = """
import signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
sys.stdout.write('{"jsonrpc": "2.0", "method": "notifications/ready"}\\n')
sys.stdout.flush()
signal.sigwait([signal.SIGUSR1])  # reads nothing until told
while sys.stdin.buffer.read(65536):
    pass
"""


@pytest.mark.anyio
async def test_a_writer_waiting_for_a_slow_child_goes_on_once_it_reads() -> None:
    """The writer waiting for room in the child's stdin is woken when the child reads it down (the pipe
    transport's resume_writing), not left to its timeout."""
    import signal

    config = ServerConfig.model_validate({"command": sys.executable, "args": ["-c", SLOW_READER], "timeout": 30})
    transport = StdioTransport("slow", config)
    body = b"x" * (768 * 1024)
    ready = anyio.Event()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await transport.open(tg, lambda m, i: ready.set(), lambda m, e: None)
            try:
                await ready.wait()
                for _ in range(2):  # past the high water: the next writer waits
                    await transport.send({"jsonrpc": "2.0", "method": "ping"}, body)
                sent = anyio.Event()

                async def third() -> None:
                    await transport.send({"jsonrpc": "2.0", "method": "ping"}, body)
                    sent.set()

                tg.start_soon(third)
                while not transport._waiting.locked():
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the writer waits)
                assert not sent.is_set()
                pid = transport.pid
                assert pid is not None
                os.kill(pid, signal.SIGUSR1)  # the child reads now
                await sent.wait()
            finally:
                await transport.aclose()


@pytest.mark.anyio
async def test_a_send_to_a_child_whose_input_closed_as_it_exits_says_its_exit_not_not_connected() -> None:
    """A server that dies at once (`false`, a missing API key) closes its stdin before its exit is seen: the
    handshake's send failed with "not connected", which /health's lastError and the log then showed for that
    attempt. The send waits a moment for the exit, whose code and last stderr line say why."""
    dying = "echo 'API_KEY is not set' >&2; exec 0<&-; sleep 0.5; exit 3"
    transport = StdioTransport("dying", ServerConfig.model_validate({"command": "sh", "args": ["-c", dying]}))
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await transport.open(tg, lambda m, i: None, lambda m, e: None)
            try:
                while (stdin := transport._stdin) is None or not stdin.is_closing():
                    await anyio.sleep(0.01)  # allowed-sleep: polling for the closed pipe, within fail_after
                with pytest.raises(TransportError) as refused:
                    await transport.send({"jsonrpc": "2.0", "method": "ping"}, b"{}")
                assert str(refused.value) == "process exited with code 3; its stderr ended: API_KEY is not set"
            finally:
                await transport.aclose()


def call(name: str, rid: int) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": {}}}


@pytest.mark.anyio
async def test_stdout_closed_by_a_living_server_fails_its_calls_at_once_and_it_is_restarted(tmp_path: Path) -> None:
    """hunt-ops F5: the call waited its whole `timeout` (60 s here) and /health said ready throughout."""
    script = tmp_path / "mute.py"
    script.write_text(MUTE_AFTER_CALL)
    server = {"command": sys.executable, "args": [str(script)], "timeout": 60}
    with anyio.fail_after(20):
        async with running_hub({"mcpServers": {"s": server}}) as hub, httpx.AsyncClient(timeout=60) as http:
            session = await raw_session(http, hub.url)
            first = (await http.post(hub.url, json=call("pid", 2), headers=session)).json()
            old = int(first["result"]["content"][0]["text"])
            r = await http.post(hub.url, json=call("close_stdout", 3), headers=session)
            assert r.json()["error"]["message"] == f"[s] upstream closed: {STDOUT_CLOSED}"
            health = (await http.get(f"{hub.base}/health")).json()["upstreams"]["s"]
            assert health["lastError"].startswith(STDOUT_CLOSED)  # then "(attempt 1, next in ...)"
            while hub.app.hub.pool.connections["s"].state != "ready":
                await anyio.sleep(0.02)  # allowed-sleep: polling for the restart, within fail_after
            again = (await http.post(hub.url, json=call("pid", 4), headers=session)).json()
            assert int(again["result"]["content"][0]["text"]) != old
            with pytest.raises(ProcessLookupError):  # the mute one was stopped (and reaped) before the restart
                os.kill(old, 0)


@pytest.mark.anyio
async def test_a_last_reply_without_a_newline_at_the_end_of_stdout_is_delivered(tmp_path: Path) -> None:
    """The reader waited for a '\\n' that never came: the reply was dropped and the call failed."""
    script = tmp_path / "mute.py"
    script.write_text(MUTE_AFTER_CALL)
    server = {"command": sys.executable, "args": [str(script)], "timeout": 60}
    with anyio.fail_after(20):
        async with running_hub({"mcpServers": {"s": server}}) as hub, httpx.AsyncClient(timeout=60) as http:
            session = await raw_session(http, hub.url)
            r = await http.post(hub.url, json=call("last_word", 2), headers=session)
            assert r.json()["result"]["content"][0]["text"] == "bye"


@pytest.mark.anyio
async def test_an_unfinished_line_at_the_end_of_stdout_that_is_not_json_is_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = StdioTransport("s", ServerConfig(command="true"))
    got: list[object] = []
    protocol = _ChildProtocol(transport, lambda msg, related: got.append(msg))
    protocol.pipe_data_received(1, b'{"jsonrpc": "2.0", "method": "a"}\n{"jsonrpc": "2.0", "meth')
    protocol.pipe_connection_lost(1, None)
    protocol.process_exited()  # as the child exits: no timer left behind
    assert got == [{"jsonrpc": "2.0", "method": "a"}]
    assert "non-JSON line on stdout ignored" in caplog.text


# `onemcp serve` runs on uvloop (uvicorn's choice when it is installed); the tests' hubs on asyncio
UVLOOP = pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")
# A child that says which descriptors past stderr it holds, then waits for its stdin to end
SAY_FDS = """
import json, os, sys
def is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
fds = [fd for fd in range(3, 1024) if is_open(fd)]
sys.stdout.write(json.dumps({"jsonrpc": "2.0", "method": "fds", "params": {"fds": fds}}) + "\\n")
sys.stdout.flush()
sys.stdin.read()
"""


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", UVLOOP])
async def test_a_child_holds_no_descriptor_past_its_stdio(anyio_backend: object) -> None:
    """hunt s32-a: on uvloop (no close_fds) a server held [13, 17, 19]: copies of its own stdin, stdout and
    stderr, so it could not end its stdout (below), and what it started held the hub's pipes too."""
    transport = StdioTransport("s", ServerConfig(command=sys.executable, args=["-S", "-c", SAY_FDS]))
    said: list[object] = []
    heard = anyio.Event()

    def deliver(msg: dict[str, object], related: object) -> None:
        said.append(msg.get("params"))
        heard.set()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await transport.open(tg, deliver, lambda m, e: None)
            try:
                await heard.wait()
            finally:
                await transport.aclose()
    assert said == [{"fds": []}]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", UVLOOP])
async def test_a_server_that_closes_stdout_at_start_fails_at_once_not_after_its_startup_timeout(
    anyio_backend: object,
) -> None:
    """On uvloop it failed only at its startupTimeout (hunt s32-a): the child's copy of its stdout stayed open."""
    server = {"command": "sh", "args": ["-c", "exec 1>&-; exec sleep 1000"], "startupTimeout": 60}
    with anyio.fail_after(20):
        async with running_hub({"mcpServers": {"s": server}}) as hub:
            conn = hub.app.hub.pool.connections["s"]
            while conn.last_error is None:
                await anyio.sleep(0.02)  # allowed-sleep: polling for the failure, within fail_after
            assert STDOUT_CLOSED in conn.last_error


@pytest.mark.anyio
async def test_a_server_slow_to_exit_after_closing_its_output_is_reported_by_its_exit() -> None:
    """Both its stdout and stderr ended: it is exiting (atexit handlers, a loaded machine), and its exit
    code and last stderr line say why, not the end of its stdout."""
    slow_exit = "echo 'API_KEY is not set' >&2; exec 1>&- 2>&-; sleep 1.5; exit 3"
    with anyio.fail_after(20):
        async with running_hub({"mcpServers": {"s": {"command": "sh", "args": ["-c", slow_exit]}}}) as hub:
            conn = hub.app.hub.pool.connections["s"]
            while conn.last_error is None:
                await anyio.sleep(0.02)  # allowed-sleep: polling for the failure, within fail_after
            assert conn.last_error == "process exited with code 3; its stderr ended: API_KEY is not set"


# A stdio server written as JavaScript peers write: `lone` answers text cut in the middle of an emoji
# (a lone UTF-16 surrogate escape), `latin1` a reply that is not UTF-8, `echo` what it was sent.
JS_LIKE = """
import json, sys
def send(raw):
    sys.stdout.buffer.write(raw + b"\\n"); sys.stdout.flush()
for line in sys.stdin:
    m = json.loads(line); mid = m.get("id"); method = m.get("method")
    if method == "initialize":
        hello = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "js"}}
        send(json.dumps({"result": hello, "jsonrpc": "2.0", "id": mid}).encode())
    elif method == "tools/list":
        tools = [{"name": n, "inputSchema": {"type": "object"}} for n in ("lone", "latin1", "echo")]
        send(json.dumps({"result": {"tools": tools}, "jsonrpc": "2.0", "id": mid}).encode())
    elif method == "tools/call" and m["params"]["name"] == "lone":
        send(b'{"result":{"content":[{"type":"text","text":"abc\\\\ud83d"}]},"jsonrpc":"2.0","id":%d}' % mid)
    elif method == "tools/call" and m["params"]["name"] == "latin1":
        send(b'{"result":{"content":[{"type":"text","text":"caf\\xe9"}]},"jsonrpc":"2.0","id":%d}' % mid)
    elif method == "tools/call":
        content = [{"type": "text", "text": json.dumps(m["params"]["arguments"])}]
        send(json.dumps({"result": {"content": content}, "jsonrpc": "2.0", "id": mid}).encode())
    elif mid is not None:
        send(json.dumps({"result": {}, "jsonrpc": "2.0", "id": mid}).encode())
"""


@pytest.mark.anyio
async def test_lone_surrogates_pass_both_ways_and_an_unreadable_reply_fails_its_call_at_once(tmp_path: Path) -> None:
    """s28/e F2: the reply was dropped as not JSON and the call waited its whole `timeout`; a client's
    request holding one was refused with -32700 and id null."""
    script = tmp_path / "js.py"
    script.write_text(JS_LIKE)
    server = {"command": sys.executable, "args": [str(script)], "timeout": 60}
    with anyio.fail_after(20):
        async with running_hub({"mcpServers": {"s": server}}) as hub, httpx.AsyncClient(timeout=60) as http:
            session = {**await raw_session(http, hub.url), "content-type": "application/json"}
            got = (await http.post(hub.url, json=call("lone", 2), headers=session)).json()
            assert got["id"] == 2 and got["result"]["content"][0]["text"] == "abc\ufffd"
            body = b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"s":"x\\ud83d"'
            body += b"}}}"
            got = (await http.post(hub.url, content=body, headers=session)).json()
            assert got["id"] == 3 and got["result"]["content"][0]["text"] == '{"s": "x\\ufffd"}'
            got = (await http.post(hub.url, json=call("latin1", 4), headers=session)).json()
            assert got["id"] == 4 and "sent a reply that is not valid JSON" in got["error"]["message"]


def test_a_flood_of_lines_that_are_not_json_writes_a_few_warnings_not_one_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Hunt B (limits): each non-JSON stdout line was a warning, unthrottled (stderr's are at most 100 a
    second): a server printing 100,000 banner lines wrote 12 MB of log in 5 s, rotating the hub's history
    away, and held the event loop 1.5 s for every other client. Now a few, then counted."""
    transport = StdioTransport("s", ServerConfig(command="true"))
    got: list[object] = []
    protocol = _ChildProtocol(transport, lambda msg, related: got.append(msg))
    before = HITS.counts["log_lines"]
    flood = 10_000
    protocol.pipe_data_received(1, b"".join(b"banner %d\n" % n for n in range(flood)))
    protocol.pipe_data_received(1, b'[1]\n{"jsonrpc": "2.0", "method": "a"}\n')
    assert got == [{"jsonrpc": "2.0", "method": "a"}]  # what is JSON still arrives
    warned = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert 0 < len(warned) <= 5 * (IGNORED_PER_SECOND + 1)  # a few a second, whatever the machine's speed
    assert any("not logged" in r.getMessage() for r in warned)
    assert HITS.counts["log_lines"] - before >= flood - len(warned)


def _reading(limit: int) -> tuple[_ChildProtocol, list[Any], list[str]]:
    """A stdout reader with `limit` bytes a line: what it delivers, and why it stopped the server."""
    owner = StdioTransport("s", ServerConfig.model_validate({"command": "unused", "maxResponseBytes": limit}))
    stops: list[str] = []
    owner.stop = stops.append  # type: ignore[method-assign,assignment]
    delivered: list[Any] = []
    return _ChildProtocol(owner, lambda msg, related: delivered.append(msg)), delivered, stops


def _in_pieces(protocol: _ChildProtocol, data: bytes, size: int = 4096) -> None:
    for i in range(0, len(data), size):
        protocol.pipe_data_received(1, data[i : i + size])


@pytest.mark.parametrize(
    "big",
    [
        b'{"jsonrpc":"2.0","id":7,"result":{"contents":[{"uri":"a://x","text":"%s"}]}}',  # as Python SDKs write
        b'{"result":{"contents":[{"uri":"a://x","text":"%s","id":3}]},"jsonrpc":"2.0","id":7}',  # as JavaScript does
    ],
    ids=["id-first", "id-last"],
)
def test_a_reply_over_the_limit_fails_its_call_and_the_server_goes_on(big: bytes) -> None:
    """A resource or tool result past maxResponseBytes stopped the shared server (every other client's
    calls failed with it, and its state was lost); a direct client only loses that one call."""
    protocol, delivered, stops = _reading(1024)
    after = b'{"jsonrpc":"2.0","id":8,"result":{}}\n'
    _in_pieces(protocol, big % (b"y" * 100_000) + b"\n" + after)
    assert stops == []
    refused, answered = delivered
    assert refused == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": -32603, "message": "response exceeded maxResponseBytes (1024 bytes)"},
    }
    assert answered["id"] == 8


def test_a_message_over_the_limit_that_is_not_plainly_a_reply_still_stops_the_server() -> None:
    protocol, delivered, stops = _reading(1024)
    note = b'{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"%s"}}\n' % (b"z" * 5000)
    _in_pieces(protocol, note + b'{"jsonrpc":"2.0","id":8,"result":{}}\n')
    assert delivered == [] and stops == ["stopped: a message on stdout exceeded maxResponseBytes (1024 bytes)"]
    protocol, delivered, stops = _reading(1024)  # a reply written result first whose end names no id
    _in_pieces(protocol, b'{"result":{"text":"%s"}}\n' % (b"z" * 5000))
    assert delivered == [] and len(stops) == 1


# A stand-in for the hub: starts one stdio server through StdioTransport (one that never reads its stdin,
# so the pipe closing tells it nothing), says the server's pid, and waits to be killed.
HUB_THAT_IS_KILLED = """
import sys, anyio
from onemcp.config.model import ServerConfig
from onemcp.upstream.transports.stdio import StdioTransport
async def main():
    config = ServerConfig.model_validate({"command": sys.executable, "args": ["-c", "import time; time.sleep(600)"]})
    transport = StdioTransport("deaf", config)
    async with anyio.create_task_group() as tg:
        await transport.open(tg, lambda m, i: None, lambda m, e: None)
        print(transport.pid, flush=True)
        await anyio.sleep_forever()
anyio.run(main)
"""


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for whoever adopted it to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.anyio
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_a_killed_hub_leaves_no_server_it_started_running() -> None:
    """SIGKILL gives the hub no time to stop its servers: each dies with it (PR_SET_PDEATHSIG), even one
    that does not watch its stdin."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    server = 0
    with anyio.fail_after(20):
        async with await anyio.open_process([sys.executable, "-c", HUB_THAT_IS_KILLED], env=env) as hub:
            try:
                assert hub.stdout is not None
                line = b""
                async for chunk in hub.stdout:
                    line += chunk
                    if line.endswith(b"\n"):
                        break
                server = int(line)
                assert _alive(server)
                hub.kill()
                await hub.wait()
                while _alive(server):
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            finally:
                if server and _alive(server):
                    os.kill(server, 9)  # the server this test started, by its pid


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", UVLOOP])
async def test_a_child_that_exits_before_the_spawn_returns_is_reported_by_its_exit(anyio_backend: object) -> None:
    """On uvloop a child that exits at once (`/bin/false`, a server missing its API key) may have closed its
    stdin pipe before the spawn returned: the write limits set on it then raised RuntimeError, logged with a
    traceback, and /health said `internal error: ExceptionGroup(... the handler is closed ...)` instead of
    its exit code (about one start in two)."""
    for _ in range(12):  # a race: each start may or may not lose it
        transport = StdioTransport("s", ServerConfig(command="false"))
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await transport.open(tg, lambda msg, related: None, lambda m, e: None)
                try:
                    await transport.closed.wait()
                finally:
                    await transport.aclose()
        assert transport.close_reason == "process exited with code 1"


@pytest.mark.anyio
async def test_a_child_killed_by_a_signal_is_said_so() -> None:
    """It said "process exited with code -9": the signal, as an operator reads it, says what ended it."""
    transport = StdioTransport("s", ServerConfig(command="sleep", args=["1000"]))
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await transport.open(tg, lambda msg, related: None, lambda m, e: None)
            try:
                assert transport.pid is not None
                os.kill(transport.pid, signal.SIGKILL)
                await transport.closed.wait()
            finally:
                await transport.aclose()
    assert transport.close_reason == "process was killed by signal 9 (SIGKILL)"


@pytest.mark.anyio
async def test_a_server_that_does_not_start_in_time_is_reported_with_what_it_said() -> None:
    """It said only "did not start within 1s": not the stderr line that says why, nor that the server writes
    its log on stdout, where the hub reads JSON-RPC only."""
    script = "echo 'Server ready on port 8080'; echo 'API_KEY is not set, waiting' >&2; exec sleep 1000"
    server = {"command": "sh", "args": ["-c", script], "startupTimeout": 1}
    with anyio.fail_after(20):
        async with running_hub({"mcpServers": {"s": server}}) as hub:
            conn = hub.app.hub.pool.connections["s"]
            while conn.last_error is None:
                await anyio.sleep(0.02)  # allowed-sleep: polling for the failure, within fail_after
            assert conn.last_error == (
                "did not start within 1s; its last stderr line: API_KEY is not set, waiting;"
                " on stdout, not JSON-RPC: 'Server ready on port 8080'"
            )
