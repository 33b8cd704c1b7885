"""The command line's edges, as a user or an agent meets them: numbers JSON cannot hold, a malformed hub
URL or `.onemcprc`, a hub that wants a token, Ctrl-C, a stdout that is not UTF-8, no terminal."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest

from fixtures.launch import fixture_command
from onemcp.cli import agent, tui
from onemcp.cli.client.rpc import HubClient
from onemcp.cli.main import main
from onemcp.cli.proxy import Proxy
from onemcp.cli.target import Endpoint
from onemcp.cli.terminal import keep_stdout_writable
from support.credentials import asgi_body, loopback_asgi
from support.entries import LineClient, Refused
from support.hub_process import HubProcess, clean_env

DEADLINE = 60.0  # for each wait: a deadline, not a measurement


# ---------------------------------------------------------------------- --args that are not JSON
@pytest.mark.parametrize(
    ("args", "word"),
    [
        ('{"a": NaN, "b": 1}', "NaN"),
        ('{"a": Infinity}', "Infinity"),
        ('{"a": -Infinity}', "-Infinity"),
        ('{"a": 1e999}', "1e999"),
        ('{"a": [1, {"b": -1e400}]}', "-1e400"),
    ],
)
def test_non_finite_numbers_in_args_are_not_json(capsys: pytest.CaptureFixture[str], args: str, word: str) -> None:
    """Python's json reads NaN, Infinity and 1e999 (as inf); JSON has none of them: exit 2 before any hub."""
    assert main(["run", "demo/add", "--args", args, "--url", "http://127.0.0.1:9/mcp"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("onemcp: the arguments (--args) are not valid JSON: ") and word in err
    assert err.count("\n") == 1


# ---------------------------------------------------------------------- malformed hub URLs
BAD_URLS = ["http://127.0.0.1:99999/mcp", "http://[::1/mcp", "http://127.0.0.1:abc/mcp", "http://h/m cp", "ftp://h/mcp"]
URL_TAKERS = [
    ["inspect", "--url"],
    ["run", "demo/add", "--args", "{}", "--url"],
    ["instructions", "--url"],
    ["proxy", "--url"],
    ["tui", "--url"],
    ["mcp", "status", "--url"],
    ["preset", "url", "dev", "--base"],
    ["auth", "upstream", "list", "--url"],
    ["auth", "secret", "mine", "list", "--url"],
]


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty config directory and working directory: no hub, no .onemcprc."""
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("command", URL_TAKERS, ids=lambda c: " ".join(c[:2]))
def test_a_malformed_hub_url_is_a_usage_error(
    elsewhere: Path, capsys: pytest.CaptureFixture[str], command: list[str], url: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, url])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "expected the hub's http(s) URL" in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["inspect"], ["run", "demo/add", "--args", "{}"], ["instructions"], ["tui"]])
def test_a_malformed_url_in_onemcprc_is_a_usage_error(
    elsewhere: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    (elsewhere / ".onemcprc").write_text(json.dumps({"url": "http://127.0.0.1:99999/mcp"}))
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "its url 'http://127.0.0.1:99999/mcp' does not parse: Port out of range" in err
    assert err.count("\n") == 1


def test_a_hand_edited_runtime_json_url_is_a_clear_error(elsewhere: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = elsewhere / "config"
    config.mkdir()
    doc = {"url": "http://[::1/mcp", "pid": os.getpid(), "config": str(config / "mcp.json")}
    (config / "runtime.json").write_text(json.dumps(doc))
    assert main(["inspect"]) == 1  # not the user's request: it could not be done
    err = capsys.readouterr().err
    assert "in runtime.json" in err and "Invalid IPv6 URL" in err and err.count("\n") == 1


# ---------------------------------------------------------------------- .onemcprc keys
@pytest.mark.parametrize(
    ("doc", "said"),
    [
        ({"prest": "dev"}, "unknown key 'prest'; did you mean 'preset'?"),
        ({"preset": "dev", "enviroment": "ci"}, "unknown key 'enviroment'; did you mean 'environment'?"),
        ({"servers": ["a"]}, "unknown key 'servers' (it takes url, preset, filter, tags, environment, context)"),
        ({"environment": 5}, "'environment' must be a string"),
        ({"context": "x"}, "'context' must be an object"),
        ({"context": {"team": ["a"]}}, "'context.team' must be a string, a number or true/false"),
    ],
)
def test_an_onemcprc_key_it_does_not_know_is_refused(
    elsewhere: Path, capsys: pytest.CaptureFixture[str], doc: dict[str, Any], said: str
) -> None:
    """A typo would otherwise widen the view silently (`prest` gave the whole hub)."""
    (elsewhere / ".onemcprc").write_text(json.dumps(doc))
    assert main(["inspect"]) == 2
    err = capsys.readouterr().err
    assert said in err and str(elsewhere / ".onemcprc") in err and err.count("\n") == 1


# ---------------------------------------------------------------------- a hub that wants a token
GOOD, WEAK = "good-key", "mcp-only-key"


async def keyed_hub(scope: Any, receive: Any, send: Any) -> None:
    """A stand-in for a hub with auth: /health for the GOOD key only (WEAK lacks the scope), /mcp refuses all."""
    await asgi_body(receive)
    auth = dict(scope["headers"]).get(b"authorization", b"").decode()
    if scope["path"] == "/health" and auth == f"Bearer {GOOD}":
        status, body = 200, {"status": "ok", "sessions": 0, "version": "x", "upstreams": {}}
    elif auth == f"Bearer {WEAK}":
        status, body = 403, {"error": "insufficient_scope", "scope": "operator"}
    else:
        status, body = 401, {"error": "unauthorized"}
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("token", "code", "said"),
    [
        (GOOD, 0, ""),
        (None, 1, "HTTP 401: the hub requires a token for /health: set $ONEMCP_TOKEN"),
        ("revoked", 1, "HTTP 401: the hub refused $ONEMCP_TOKEN (HTTP 401)"),
        (WEAK, 1, "HTTP 403: $ONEMCP_TOKEN lacks the operator or admin scope"),
    ],
)
async def test_mcp_status_sends_the_token(
    elsewhere: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, token: str | None, code: int,
    said: str,
) -> None:  # fmt: skip
    """/health needs the operator or admin scope on a hub with auth: `mcp status` sends $ONEMCP_TOKEN, as
    `status` does, and says a refusal as `status` does."""
    if token is None:
        monkeypatch.delenv("ONEMCP_TOKEN", raising=False)
    else:
        monkeypatch.setenv("ONEMCP_TOKEN", token)
    async with loopback_asgi(keyed_hub) as base:
        with anyio.fail_after(30):
            got = await anyio.to_thread.run_sync(main, ["mcp", "status", "--url", f"{base}/mcp"])
    out, err = capsys.readouterr()
    assert got == code
    if code == 0:
        assert "status  ok, 0 session(s)" in out and err == ""
    else:
        assert said in err and err.count("\n") == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("token", "said"),
    [
        (None, "HTTP 401: the hub requires a token: set ONEMCP_TOKEN"),
        ("revoked", "HTTP 401: the hub refused the token in ONEMCP_TOKEN"),
    ],
)
async def test_the_proxy_says_a_token_was_refused(
    monkeypatch: pytest.MonkeyPatch, token: str | None, said: str
) -> None:
    """A token that was set and refused is not "set ONEMCP_TOKEN" (the agent CLI and `status` say "refused")."""
    if token is None:
        monkeypatch.delenv("ONEMCP_TOKEN", raising=False)
    else:
        monkeypatch.setenv("ONEMCP_TOKEN", token)
    client = LineClient()
    async with loopback_asgi(keyed_hub) as base, anyio.create_task_group() as tg:
        bridge = Proxy(Endpoint(f"{base}/mcp"), client.read_line, client.write, wait=5.0)
        tg.start_soon(bridge.run)
        with anyio.fail_after(30):
            with pytest.raises(Refused, match=said):
                await client.initialize()
            client.to_server.close()
        tg.cancel_scope.cancel()
    client.close()


@pytest.mark.anyio
@pytest.mark.parametrize("token", ["tökenツ", "key\nx-injected: 1"])
@pytest.mark.parametrize(
    "command",
    [
        ["mcp", "status"], ["auth", "upstream", "list"], ["auth", "secret", "mine", "list"], ["proxy"],
        ["run", "demo/echo", "--args", "{}"], ["inspect"],
    ],
    ids=lambda c: " ".join(c[:3]),
)  # fmt: skip
async def test_a_token_no_header_can_carry_is_said_by_every_command_that_sends_it(
    elsewhere: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: list[str],
    token: str,
) -> None:  # fmt: skip
    """Not a UnicodeEncodeError's traceback (httpx encodes headers as ASCII), nor "the hub does not answer"
    or "the URL does not parse": the variable is what is wrong, and nothing is sent."""
    monkeypatch.setenv("ONEMCP_TOKEN", token)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    async with loopback_asgi(keyed_hub) as base:
        with anyio.fail_after(30):
            got = await anyio.to_thread.run_sync(main, [*command, "--url", f"{base}/mcp"])
    assert (got, capsys.readouterr().err) == (1, "onemcp: $ONEMCP_TOKEN holds characters an HTTP header cannot carry\n")


# ---------------------------------------------------------------------- no terminal
@pytest.mark.parametrize("tty", [(False, False), (True, False), (False, True)])
def test_tui_without_a_terminal_refuses(
    elsewhere: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tty: tuple[bool, bool]
) -> None:
    """An agent's shell (`onemcp tui </dev/null`): exit 2 and say what to use; the app never starts (it spun)."""
    started: list[str] = []
    monkeypatch.setattr(tui, "make_app", lambda base, token: started.append(base))
    monkeypatch.setattr(sys, "stdin", Terminal(tty[0]))
    monkeypatch.setattr(sys, "stdout", Terminal(tty[1]))
    assert main(["tui", "--url", "http://127.0.0.1:9/mcp"]) == 2
    assert started == []
    err = capsys.readouterr().err
    assert "onemcp tui needs an interactive terminal" in err and err.count("\n") == 1


class Terminal(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


# ---------------------------------------------------------------------- Ctrl-C
@pytest.fixture(scope="module")
def fx_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """One server, fx (the test upstream: `sleep`, and `running` counts the calls in flight on it)."""
    folder = tmp_path_factory.mktemp("sigint")
    cmd = fixture_command()
    config = folder / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"fx": {"command": cmd[0], "args": cmd[1:]}}}))
    process = HubProcess(config)
    try:
        process.start()
        process.wait_ready()
        yield process
    finally:
        process.stop()


def in_flight(client: HubClient, want: int) -> None:
    """Wait (with a deadline) until fx has `want` other calls in flight."""
    deadline = time.monotonic() + DEADLINE
    while client.request("tools/call", {"name": "running", "arguments": {}})["structuredContent"]["running"] != want:
        assert time.monotonic() < deadline, f"fx never had {want} call(s) in flight"
        time.sleep(0.05)  # allowed-sleep: polling with a deadline


def test_ctrl_c_during_run_cancels_the_call_and_exits_130(fx_hub: HubProcess) -> None:
    """Ctrl-C, as a terminal sends it, while `run` waits for a tool: one line on stderr, exit 130, and the
    hub's call is cancelled (it was a traceback, exit -2)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "onemcp", "run", "fx/sleep", "--args", '{"seconds": 600}'],
        env=clean_env(fx_hub.config.parent),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a shell's background job ignores it
    )
    try:
        with closing(HubClient(fx_hub.url)) as client:
            in_flight(client, 1)
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=DEADLINE)
            assert (process.returncode, out, err) == (130, "", "onemcp: interrupted\n")
            in_flight(client, 0)  # the hub cancelled the upstream call when the CLI's connection closed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_ctrl_c_while_waiting_for_arguments_exits_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted() -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(agent, "_stdin_text", interrupted)
    try:
        code = main(["run", "fx/sleep", "--url", "http://127.0.0.1:9/mcp"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C left main() (a traceback in a terminal)")
    assert code == 130
    assert capsys.readouterr().err == "onemcp: interrupted\n"


# ---------------------------------------------------------------------- a stdout that is not UTF-8
WORLDLY = "café ✓ 日本 😀"


@pytest.mark.parametrize("encoding", ["cp1252", "ascii"])
def test_a_result_survives_a_stdout_that_is_not_utf8(
    fx_hub: HubProcess, monkeypatch: pytest.MonkeyPatch, encoding: str
) -> None:
    """A Windows pipe (cp1252) or a C locale: what the encoding cannot write is a JSON escape, the rest
    as it is, exit 0 (it was a UnicodeEncodeError after the tool ran: exit 1, and an agent may run it again)."""
    args = ["run", "echo", "--args", json.dumps({"message": WORLDLY}), "--url", fx_hub.url]
    text = stdout_of(monkeypatch, encoding, args)
    assert text == ("café" if encoding == "cp1252" else "caf\\u00e9") + " \\u2713 \\u65e5\\u672c \\ud83d\\ude00\n"
    result = json.loads(stdout_of(monkeypatch, encoding, [*args, "--format", "json"]))
    assert result["content"][0]["text"] == WORLDLY  # exact JSON: the escapes are JSON's own


def stdout_of(monkeypatch: pytest.MonkeyPatch, encoding: str, args: list[str]) -> str:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding=encoding, newline="\n")
    monkeypatch.setattr(sys, "stdout", out)
    assert main(args) == 0
    out.flush()
    return raw.getvalue().decode(encoding)


def test_a_lone_surrogate_is_escaped_even_in_utf8(monkeypatch: pytest.MonkeyPatch) -> None:
    """json.loads gives a lone surrogate for "\\ud800", which UTF-8 cannot encode either."""
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="utf-8"))
    keep_stdout_writable()
    sys.stdout.write("a\ud800b\n")
    sys.stdout.flush()
    assert raw.getvalue() == b"a\\ud800b\n"
