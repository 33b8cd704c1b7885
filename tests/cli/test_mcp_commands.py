"""`onemcp mcp ...` run in-process: add/remove/enable/disable/list against a real file, status against a real hub."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from fixtures.hostile import HOSTILE
from fixtures.launch import stop_process
from onemcp.cli.main import main
from onemcp.config.edit import backup_dir
from onemcp.config.files import backups_of
from support.cli import cli

START_DEADLINE = 30.0
READY_DEADLINE = 60.0


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "config"
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(directory))
    monkeypatch.delenv("TOKEN", raising=False)
    return directory


def servers(config_dir: Path) -> dict[str, Any]:
    found: dict[str, Any] = orjson.loads((config_dir / "mcp.json").read_bytes())["mcpServers"]
    return found


def test_add_stdio_and_http_servers(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "mcp", "add", "git", "--command", "uvx", "--arg", "mcp-server-git", "--env", "A=1=2",
                       "--cwd", "/src", "--tag", "dev", "--timeout", "30")  # fmt: skip
    assert code == 0
    assert f"added 'git' in {config_dir / 'mcp.json'}" in out
    code, _, err = cli(capsys, "mcp", "add", "web", "--url", "https://example.com/mcp", "--type", "sse",
                       "--header", "Authorization: Bearer ${TOKEN}", "--disabled")  # fmt: skip
    assert code == 0
    assert "${TOKEN} is not set here" in err
    assert servers(config_dir) == {
        "git": {"command": "uvx", "args": ["mcp-server-git"], "env": {"A": "1=2"}, "cwd": "/src", "tags": ["dev"],
                "timeout": 30.0},
        "web": {"type": "sse", "url": "https://example.com/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"},
                "disabled": True},
    }  # fmt: skip


def test_add_with_the_command_after_double_dash(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = cli(capsys, "mcp", "add", "fs", "--tag", "files", "--", "npx", "-y", "server-fs", "--", "--root", "/x")
    assert code == 0
    assert servers(config_dir)["fs"] == {
        "command": "npx",
        "args": ["-y", "server-fs", "--", "--root", "/x"],
        "tags": ["files"],
    }


def test_an_arg_that_starts_with_a_dash(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "mcp", "add", "git", "--command", "uvx", "--arg", "mcp-server-git",
                       "--arg", "--repository", "--arg", "/src/app")  # fmt: skip
    assert code == 0, err
    assert servers(config_dir)["git"]["args"] == ["mcp-server-git", "--repository", "/src/app"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bad.name", "--command", "x"], "invalid server name 'bad.name': it may contain only letters"),
        (["x"], "give either --command CMD (or '-- CMD ARGS...') or --url URL"),
        (["x", "--command", "a", "--url", "http://h"], "give either --command"),
        (["x", "--url", "http://h", "--env", "A=1"], "--env only applies to a server given with --command"),
        (["x", "--command", "a", "--header", "K: v"], "--header only applies to a server given with --url"),
        (["x", "--command", "a", "--env", "NOEQUALS"], "--env 'NOEQUALS': expected K=V"),
        (["x", "--url", "http://h", "--header", "nocolon"], "--header 'nocolon': expected 'K: V'"),
        (["x", "--command", "a", "--", "b"], "either with --command or after '--'"),
        (["x", "--"], "nothing after '--'"),
        (["x", "--url", "ftp://h"], "not changed: "),
        # (a bad --timeout is argparse's usage error, before any edit: tests/cli/test_argtypes.py)
    ],
)
def test_bad_add_requests_exit_2_and_write_nothing(
    config_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = cli(capsys, "mcp", "add", *argv)
    assert code == 2
    assert message in err
    assert err.startswith("onemcp: ")
    assert not (config_dir / "mcp.json").exists()


def test_edit_changes_an_existing_servers_tags_env_and_arguments(
    config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Trial s39-h4: no command changed a server's tags (what per-client views need), env or arguments."""
    assert cli(capsys, "mcp", "add", "mem", "--tag", "notes", "--env", "A=1", "--", "npx", "-y", "srv")[0] == 0
    code, out, err = cli(capsys, "mcp", "edit", "mem", "--add-tag", "util", "--remove-tag", "notes", "--env", "B=2",
                         "--unset-env", "A", "--arg", "-y", "--arg", "--root", "--timeout", "20")  # fmt: skip
    assert (code, err) == (0, ""), err
    assert out.startswith(f"onemcp: changed 'mem' in {config_dir / 'mcp.json'}\nonemcp: a running hub applies it")
    assert servers(config_dir)["mem"] == {
        "command": "npx", "args": ["-y", "--root"], "env": {"B": "2"}, "tags": ["util"], "timeout": 20.0
    }  # fmt: skip
    assert cli(capsys, "mcp", "edit", "mem", "--tags", "a, b", "--no-args", "--command", "uvx")[0] == 0
    assert servers(config_dir)["mem"] == {"command": "uvx", "env": {"B": "2"}, "tags": ["a", "b"], "timeout": 20.0}
    code, out, _ = cli(capsys, "mcp", "edit", "mem", "--add-tag", "a")
    assert (code, out.strip()) == (0, f"onemcp: 'mem' is already so; {config_dir / 'mcp.json'} not changed")
    code, _, err = cli(capsys, "mcp", "edit", "nope", "--add-tag", "a")
    assert (code, err.strip()) == (1, f"onemcp: no server named 'nope' (configured: mem) in {config_dir / 'mcp.json'}")
    code, _, err = cli(capsys, "mcp", "edit", "mem", "--remove-tag", "zz")
    assert (code, err.strip()) == (1, f"onemcp: 'mem' has no tag 'zz' (its tags: a, b) in {config_dir / 'mcp.json'}")


def test_edit_changes_an_http_servers_url_and_headers_and_a_stdio_servers_cwd(
    config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """h9 left it: `mcp edit` had no --url, --header or --cwd (`mcp add` has them), so an HTTP server's address
    or token could be changed only by hand. They are `add`'s options, parsed and checked alike."""
    assert (
        cli(capsys, "mcp", "add", "web", "--url", "https://a.example/mcp", "--header", "Authorization: Bearer x")[0]
        == 0
    )
    assert cli(capsys, "mcp", "add", "mem", "--command", "npx")[0] == 0
    code, _, err = cli(capsys, "mcp", "edit", "web", "--url", "https://b.example/mcp", "--header", "X-Team:  a ",
                       "--header", "authorization: Bearer y")  # fmt: skip
    assert (code, err) == (0, ""), err
    assert servers(config_dir)["web"] == {  # a header's name in any case is that header: replaced, not doubled
        "type": "http", "url": "https://b.example/mcp", "headers": {"X-Team": "a", "authorization": "Bearer y"}
    }  # fmt: skip
    assert cli(capsys, "mcp", "edit", "web", "--unset-header", "AUTHORIZATION")[0] == 0
    assert servers(config_dir)["web"]["headers"] == {"X-Team": "a"}
    assert cli(capsys, "mcp", "edit", "mem", "--cwd", "/srv/mem")[0] == 0
    assert servers(config_dir)["mem"] == {"command": "npx", "cwd": "/srv/mem"}
    before = (config_dir / "mcp.json").read_bytes()
    path = config_dir / "mcp.json"
    for argv, said in (
        (["web", "--cwd", "/x"], "onemcp: --cwd applies to a stdio server; 'web' is an HTTP one (https://b.example/mcp)"),
        (["mem", "--url", "https://c.example"], "onemcp: --url applies to an HTTP server; 'mem' is a stdio one (npx)"),
        (["mem", "--header", "A: 1"], "onemcp: --header applies to an HTTP server; 'mem' is a stdio one (npx)"),
        (["web", "--unset-header", "Cookie"], f"onemcp: 'web' sends no header 'Cookie' (it sends: X-Team) in {path}"),
    ):  # fmt: skip
        code, _, err = cli(capsys, "mcp", "edit", *argv)
        assert (code, err.strip().startswith(said)) == (1, True), err
    code, _, err = cli(capsys, "mcp", "edit", "web", "--url", "ftp://nope")  # checked as `mcp add`'s: exit 2
    assert code == 2 and f"not changed: {path}: mcpServers.web.url: must start with http:// or https://" in err, err
    assert (config_dir / "mcp.json").read_bytes() == before


def test_edit_moves_a_server_between_transports_and_clears_its_cwd_and_timeout(
    config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """h4: `mcp edit` had no --type (`mcp add` has it), so a server could not move between stdio, http and sse
    but by `mcp remove` and `mcp add` (its tags lost); nor could it remove a cwd or a timeout it had set. A move
    takes what the new transport needs (its command, its URL) and drops what only the old one had."""
    assert cli(capsys, "mcp", "add", "web", "--url", "https://a.example/mcp", "--header", "A: 1", "--tag", "t")[0] == 0
    path = config_dir / "mcp.json"
    for argv, said in (
        (["web", "--type", "stdio"], "onemcp: --type stdio needs --command CMD: 'web' is an HTTP one"),
        (["web", "--env", "A=1"], "onemcp: --env applies to a stdio server; 'web' is an HTTP one (https://a.example/"
                                  "mcp) (`--type stdio --command CMD` makes it one)"),
    ):  # fmt: skip
        code, _, err = cli(capsys, "mcp", "edit", *argv)
        assert (code, err.strip().startswith(said)) == (1, True), err
    code, _, err = cli(capsys, "mcp", "edit", "web", "--type", "stdio", "--command", "npx", "--arg", "-y",
                       "--arg", "srv", "--env", "K=v", "--cwd", "/srv", "--timeout", "9")  # fmt: skip
    assert (code, err) == (0, ""), err
    assert servers(config_dir)["web"] == {
        "tags": ["t"], "command": "npx", "args": ["-y", "srv"], "env": {"K": "v"}, "cwd": "/srv", "timeout": 9.0
    }  # fmt: skip
    code, _, err = cli(capsys, "mcp", "edit", "web", "--type", "sse")
    assert (code, err.strip()) == (1, f"onemcp: --type sse needs --url URL: 'web' is a stdio one (npx) in {path}")
    assert cli(capsys, "mcp", "edit", "web", "--unset-cwd", "--unset-timeout")[0] == 0
    assert servers(config_dir)["web"] == {"tags": ["t"], "command": "npx", "args": ["-y", "srv"], "env": {"K": "v"}}
    sse = ["--type", "sse", "--url", "https://b.example/sse", "--header", "B: 2"]
    assert cli(capsys, "mcp", "edit", "web", *sse)[0] == 0
    assert servers(config_dir)["web"] == {"tags": ["t"], "url": "https://b.example/sse", "headers": {"B": "2"},
                                          "type": "sse"}  # fmt: skip
    code, out, _ = cli(capsys, "mcp", "edit", "web", "--type", "sse")
    assert code == 0 and "'web' is already so" in out
    assert cli(capsys, "mcp", "edit", "web", "--type", "http")[0] == 0  # the same URL, spoken another way
    assert servers(config_dir)["web"]["type"] == "http"
    code, out, _ = cli(capsys, "mcp", "list", "--json")
    assert orjson.loads(out)[0]["transport"] == "http"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "nothing to change: give --tags, --add-tag"),
        (["--tags", "a", "--add-tag", "b"], "--tags gives all the tags: give it alone"),
        (["--add-tag", "a", "--remove-tag", "a"], "tag 'a' is both added and removed"),
        (["--env", "A=1", "--unset-env", "A"], "variable 'A' is both set and unset"),
        (["--env", "NOEQUALS"], "--env 'NOEQUALS': expected K=V"),
        (["--arg", "x", "--no-args"], "--arg gives the arguments, --no-args none"),
        (["--add-tag", "bad tag!"], "not changed: "),
        (["--header", "NOCOLON"], "--header 'NOCOLON': expected 'K: V'"),  # as `mcp add` says it
        (["--header", "A: 1", "--unset-header", "a"], "header 'a' is both set and unset"),
        (["--cwd", "/x", "--unset-cwd"], "--cwd sets the working directory, --unset-cwd removes it"),
        (["--timeout", "5", "--unset-timeout"], "--timeout sets the deadline, --unset-timeout removes it"),
        (["--type", "stdio", "--url", "https://a.example"], "--url is for an HTTP server, and --type stdio makes"),
        (["--type", "sse", "--url", "https://a.example", "--env", "A=1"], "--env is for a stdio server, and --type"),
        (["--type", "http", "--url", "https://a.example", "--unset-cwd"], "--unset-cwd is for a stdio server"),
    ],
)
def test_bad_edit_requests_exit_2_and_write_nothing(
    config_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli(capsys, "mcp", "add", "mem", "--command", "npx")[0] == 0
    before = (config_dir / "mcp.json").read_bytes()
    code, _, err = cli(capsys, "mcp", "edit", "mem", *argv)
    assert (code, err.startswith("onemcp: ")) == (2, True), err
    assert message in err
    assert (config_dir / "mcp.json").read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "usage", "unknown"),
    [
        (["status", "--bogus"], "usage: onemcp status [-h]", "--bogus"),
        (["mcp", "edit", "mem", "--add-tag", "a", "--bogus", "x"], "usage: onemcp mcp edit NAME", "--bogus x"),
        (["auth", "key", "list", "--nope"], "usage: onemcp auth key list [-h]", "--nope"),
        (["run", "demo/echo", "extra"], "usage: onemcp run [-h]", "extra"),
    ],
)
def test_an_unknown_argument_is_said_by_its_commands_parser(
    capsys: pytest.CaptureFixture[str], argv: list[str], usage: str, unknown: str
) -> None:
    """h4: an argument no command takes was said by the root parser, whose usage listed only the commands of
    the module it had built (`onemcp status --bogus`: `usage: onemcp [-h] [--version] {start,restart,...}`),
    not the command given; it is now said by that command's parser, with its usage. Exit 2 either way."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith(usage), err
    assert f"error: unrecognized arguments: {unknown}\n" in err, err


def test_mcp_update_says_to_write_mcp_edit(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "mcp", "update", "mem", "--tag", "x")
    assert (code, out) == (2, "")
    assert err.startswith("onemcp: there is no `onemcp mcp update`: `onemcp mcp edit NAME --add-tag T")


def test_invalid_edit_leaves_the_file_byte_identical(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_dir.mkdir()
    original = b'{"mcpServers": {"a": {"command": "x"}}, "mine": true}'
    (config_dir / "mcp.json").write_bytes(original)
    code, _, err = cli(capsys, "mcp", "add", "b", "--url", "ftp://nope")
    assert code == 2
    assert f"{config_dir / 'mcp.json'}: mcpServers.b.url: must start with http:// or https://" in err
    assert (config_dir / "mcp.json").read_bytes() == original
    assert not backup_dir(config_dir / "mcp.json").exists()


def test_duplicate_and_unknown_names_exit_1(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "mcp", "add", "a", "--command", "x")[0] == 0
    code, _, err = cli(capsys, "mcp", "add", "a", "--command", "y")
    taken = f"onemcp: a server named 'a' already exists in {config_dir / 'mcp.json'}; to change it:"
    assert (code, err.strip()) == (
        1,
        f"{taken} `onemcp mcp edit a --add-tag T --env K=V --arg A ...` (or `onemcp mcp remove a` and add it again)",
    )
    for action in ("remove", "enable", "disable"):
        code, _, err = cli(capsys, "mcp", action, "nope")
        assert code == 1
        assert "no server named 'nope' (configured: a)" in err


def test_commands_on_a_missing_file_say_so(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["remove", "a"], ["disable", "a"], ["list"]):
        code, _, err = cli(capsys, "mcp", *argv)
        assert code == 1
        assert f"no config file at {config_dir / 'mcp.json'}" in err


def test_enable_disable_remove_and_backups(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_dir.mkdir()
    path = config_dir / "mcp.json"
    path.write_text(
        '{\n  "mcpServers": {\n    "a": {"command": "x", "args": ["${HOME_DIR}"]},\n    "b": {"command": "y"}\n  }\n}\n'
    )
    first = path.read_bytes()

    code, out, _ = cli(capsys, "mcp", "disable", "a")
    assert code == 0
    assert servers(config_dir)["a"] == {"command": "x", "args": ["${HOME_DIR}"], "disabled": True}
    [saved] = backups_of("mcp.json", backup_dir(path))
    assert saved.read_bytes() == first
    assert f"previous version saved as {saved}" in out

    code, out, _ = cli(capsys, "mcp", "disable", "a")
    assert (code, "'a' is already disabled" in out) == (0, True)
    assert len(backups_of("mcp.json", backup_dir(path))) == 1  # nothing written, nothing backed up

    assert cli(capsys, "mcp", "enable", "a")[0] == 0
    assert servers(config_dir)["a"] == {"command": "x", "args": ["${HOME_DIR}"]}
    assert cli(capsys, "mcp", "remove", "b")[0] == 0
    assert list(servers(config_dir)) == ["a"]
    assert len(backups_of("mcp.json", backup_dir(path))) == 3


def test_config_flag_wins_over_the_environment(
    tmp_path: Path, config_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONEMCP_CONFIG", str(tmp_path / "env.json"))
    assert cli(capsys, "mcp", "add", "a", "--command", "x")[0] == 0
    assert (tmp_path / "env.json").exists()
    assert cli(capsys, "mcp", "add", "b", "--command", "x", "--config", str(tmp_path / "flag.json"))[0] == 0
    assert list(orjson.loads((tmp_path / "flag.json").read_bytes())["mcpServers"]) == ["b"]
    assert not (config_dir / "mcp.json").exists()


def test_list_shows_the_file_without_expanding_secrets(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_dir.mkdir()
    (config_dir / "mcp.json").write_text(
        orjson.dumps(
            {
                "mcpServers": {
                    "demo": {"command": "python", "args": ["-m", "onemcp.demo"], "tags": ["demo", "local"]},
                    "remote": {"type": "sse", "url": "https://h/${PATH_PART}/sse", "disabled": True},
                    "web": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}},
                }
            }
        ).decode()
    )
    code, out, err = cli(capsys, "mcp", "list")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "NAME    TRANSPORT  ENABLED  TAGS        TARGET",
        "demo    stdio      yes      demo,local  python -m onemcp.demo",
        "remote  sse        no       -           https://h/${PATH_PART}/sse",
        "web     http       yes      -           https://example.com/mcp",
    ]
    code, out, _ = cli(capsys, "mcp", "list", "--json")
    assert orjson.loads(out)[1] == {
        "name": "remote",
        "transport": "sse",
        "enabled": False,
        "tags": [],
        "target": "https://h/${PATH_PART}/sse",
    }


def test_list_warns_when_the_file_would_not_load(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_dir.mkdir()
    (config_dir / "mcp.json").write_text('{"mcpServers": {"a": {"url": "nope"}}}')
    code, out, err = cli(capsys, "mcp", "list")
    assert code == 0
    assert "a     http" in out
    assert "warning: the hub cannot load this config: " in err
    assert "mcpServers.a.url: must start with http://" in err


# ---------------------------------------------------------------------- status
def test_status_without_a_hub(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "mcp", "status")
    assert code == 3  # as `onemcp status`'s (it was 1)
    assert err == f"onemcp: no hub is running (no {config_dir / 'runtime.json'}); start one with `onemcp serve`\n"


def test_status_with_a_stale_runtime_file(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True, timeout=30)  # fmt: skip
    config_dir.mkdir()
    pid = int(gone.stdout)
    (config_dir / "runtime.json").write_text(orjson.dumps({"url": "http://127.0.0.1:1/mcp", "pid": pid}).decode())
    code, _, err = cli(capsys, "mcp", "status")
    assert code == 3
    assert f"names pid {pid}, which has exited" in err


def test_status_when_nothing_answers(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = cli(capsys, "mcp", "status", "--url", f"http://127.0.0.1:{port}/mcp")
    assert code == 1
    assert f"no hub answers at http://127.0.0.1:{port}" in err


async def wait_for_runtime(path: Path, process: Any) -> dict[str, Any]:
    runtime = anyio.Path(path)
    with anyio.fail_after(START_DEADLINE):
        while True:
            if await runtime.exists():
                doc: dict[str, Any] = orjson.loads(await runtime.read_bytes())
                return doc
            if process.returncode is not None:
                raise AssertionError(f"onemcp serve exited with {process.returncode}")
            await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline


async def wait_ready(base: str) -> None:
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
        with anyio.fail_after(READY_DEADLINE):
            while True:
                try:
                    if (await client.get(f"{base}/health/ready")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline


@pytest.mark.anyio
async def test_status_asks_the_running_hub(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await anyio.Path(config_dir).mkdir()
    config = config_dir / "mcp.json"
    await anyio.Path(config).write_bytes(
        orjson.dumps(
            {
                "mcpServers": {
                    "demo": {"command": sys.executable, "args": ["-m", "onemcp.demo"]},
                    "off": {"command": "nonexistent-binary", "disabled": True},
                }
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "ONEMCP_CONFIG"}
    process = await anyio.open_process(
        [sys.executable, "-m", "onemcp", "serve", "--port", "0"],
        env=env,
        cwd=config_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=None,
    )
    try:
        runtime = await wait_for_runtime(config_dir / "runtime.json", process)
        assert runtime["pid"] == process.pid
        assert runtime["config"] == str(config)
        await wait_ready(runtime["url"].removesuffix("/mcp"))

        code, out, err = cli(capsys, "mcp", "status")
        assert (code, err) == (0, "")
        lines = out.splitlines()
        assert lines[0] == f"hub     {runtime['url']} (pid {process.pid})"
        assert lines[1] == f"config  {config}"
        assert lines[2].startswith("status  ok, 0 session(s), version ")
        assert lines[4].split() == ["NAME", "STATE", "TRANSPORT", "TOOLS", "ERROR"]
        demo = lines[5].split()
        assert demo[:3] == ["demo", "ready", "stdio"]
        assert int(demo[3]) > 0
        assert lines[6].split()[:3] == ["off", "disabled", "stdio"]

        code, out, _ = cli(capsys, "mcp", "status", "--json")
        assert code == 0
        doc = orjson.loads(out)
        assert (doc["url"], doc["pid"], doc["config"]) == (runtime["url"], process.pid, str(config))
        assert doc["health"]["upstreams"]["demo"]["state"] == "ready"

        code, out, _ = cli(capsys, "mcp", "status", "--json", "--url", runtime["url"])
        assert code == 0
        assert orjson.loads(out)["health"]["status"] == "ok"
    finally:
        await stop_process(process)


def test_pins_prints_a_hostile_name_and_definition_escaped(config_dir: Path) -> None:
    """`mcp pins` with no hub running: a tool's name and its changed definition are an upstream's words."""
    from onemcp.hub.pins import Pins

    (config_dir / "mcp.json").parent.mkdir(parents=True)
    (config_dir / "mcp.json").write_text('{"mcpServers": {"evil": {"command": "true"}}}')
    name = "echo\x1b[8m\u202e\nfake line"  # conceals the screen's rest, reverses it, forges a line
    for description in ("v1", f"v2 {HOSTILE}"):
        pins = Pins(config_dir)
        pins.screen("evil", [{"name": name, "description": description, "inputSchema": {"type": "object"}}], "withhold")
        pins.close()
    shown = "evil/echo\\x1b[8m\\u202e\\nfake line"
    env = {**os.environ, "ONEMCP_CONFIG_DIR": str(config_dir)}
    argv = [sys.executable, "-m", "onemcp", "mcp", "pins"]
    text, as_json = (
        subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=START_DEADLINE)
        for args in (argv, [*argv, "--json"])
    )
    for done in (text, as_json):
        assert done.returncode == 0, done.stderr
        assert not [c for c in (b"\x1b", "\x9b".encode(), "\u202e".encode()) if c in done.stdout + done.stderr]
    lines = text.stdout.decode().splitlines()
    assert lines[:3] == [f"{shown} changed since it was approved:", f"--- {shown} (approved)", f"+++ {shown} (now)"]
    now = next(line for line in lines if line.startswith('+  "description"'))
    assert now.startswith('+  "description": "v2 [/oops] [@click=app.quit]x[/] \\u001b[31mred\\u001b[0m')
    assert "\\x9b2J \\u202eevil" in now  # orjson leaves these to us
    assert orjson.loads(as_json.stdout)["changed"][0]["tool"] == name  # exact JSON


def test_edits_see_the_variables_the_hub_sees(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A `$TOKEN` (either spelling) that the `.env` beside the config sets: the hub loads the file,
    so every edit does too, whichever server it touches; unset, it is named, and the edit still goes in."""
    config_dir.mkdir()
    doc = {"mcpServers": {"t": {"command": "x", "env": {"MY_TOKEN": "$TOKEN", "B": "${TOKEN}"}}, "u": {"command": "y"}}}
    (config_dir / "mcp.json").write_bytes(orjson.dumps(doc))
    (config_dir / ".env").write_text("TOKEN=abc\n")
    code, _, err = cli(capsys, "mcp", "disable", "u")
    assert code == 0 and "not set" not in err, err
    assert servers(config_dir)["u"]["disabled"] is True
    (config_dir / ".env").unlink()
    code, _, err = cli(capsys, "mcp", "enable", "u")
    assert code == 0 and "not changed" not in err, err
    assert "disabled" not in servers(config_dir)["u"]


def test_an_arg_flag_with_no_value_is_a_usage_error(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["mcp", "add", "x", "--command", "ls", "--arg"])
    assert done.value.code == 2 and "expected one argument" in capsys.readouterr().err
    assert not (config_dir / "mcp.json").exists()  # nothing written


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("mcp.yaml", "mcpServers:\n  git:\n    command: git-mcp\n    tags: [dev]\n  time:\n    command: t\n"),
        ("mcp.toml", '[mcpServers.git]\ncommand = "git-mcp"\ntags = ["dev"]\n[mcpServers.time]\ncommand = "t"\n'),
    ],
)
def test_list_and_preset_test_read_a_yaml_or_toml_config(
    config_dir: Path, capsys: pytest.CaptureFixture[str], name: str, text: str
) -> None:
    """Commands that only read the config take every format the hub takes (they refused: 'edits JSON')."""
    config_dir.mkdir()
    (config_dir / name).write_text(text)
    code, out, err = cli(capsys, "mcp", "list", "--json")
    assert code == 0, err
    assert [row["name"] for row in orjson.loads(out)] == ["git", "time"]
    assert cli(capsys, "preset", "create", "dev", "--filter", "dev")[0] == 0
    code, out, err = cli(capsys, "preset", "test", "dev")
    assert code == 0 and f"1 of 2 server(s) in {config_dir / name} would be served" in out, err
    code, _, err = cli(capsys, "mcp", "disable", "git")  # an edit still says it edits JSON only
    assert code == 2 and "onemcp edits JSON configs" in err


def test_every_command_prints_a_config_s_terminal_codes_escaped(
    config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Names, tags, commands and descriptions come from a config (an imported app's file), the admin API
    (a preset) or whoever named a key: `mcp list`, `validate`, `preset list` and `auth key list` printed
    them raw, so a name could clear the screen, retitle the window or reverse what follows. Escaped as
    JSON's \\u escapes, JSON output is still the exact JSON."""
    evil = "\x1b[2J\x1b]0;pwned\x07\x9b2J\u202e"
    config_dir.mkdir(parents=True)
    doc = {"mcpServers": {f"n{evil}": {"command": f"echo{evil}", "args": [f"a{evil}"]}, "u": {"url": "https://x/mcp"}}}
    (config_dir / "mcp.json").write_bytes(orjson.dumps(doc))
    assert cli(capsys, "preset", "create", "p", "--filter", "u", "--description", f"d{evil}")[0] == 0
    assert cli(capsys, "auth", "key", "create", "--name", f"k{evil}")[0] == 0
    shown = "\\u001b[2J\\u001b]0;pwned\\u0007\\u009b2J\\u202e"
    for argv in (["mcp", "list"], ["validate"], ["preset", "list"], ["auth", "key", "list"]):
        _, out, err = cli(capsys, *argv)
        assert not [c for c in ("\x1b", "\x07", "\x9b", "\u202e") if c in out + err], (argv, out + err)
        assert shown in out + err, (argv, out + err)
    code, out, _ = cli(capsys, "mcp", "list", "--json")
    assert code == 0 and [row["name"] for row in orjson.loads(out)] == [f"n{evil}", "u"]


def test_the_escaping_covers_writelines_and_keeps_the_stream(capsys: pytest.CaptureFixture[str]) -> None:
    """What a command writes by any way of its stream is escaped; the stream is the caller's again after."""
    from onemcp.cli.terminal import escaped_output

    before = sys.stdout
    with escaped_output():
        sys.stdout.writelines(["a\x1b[2J\n", "b\u202e\n"])
        print("c\x9b", file=sys.stderr)
    assert sys.stdout is before
    out, err = capsys.readouterr()
    assert (out, err) == ("a\\u001b[2J\nb\\u202e\n", "c\\u009b\n")


@pytest.mark.parametrize(
    ("word", "said"),
    [
        ("tools", "`onemcp inspect SERVER` lists a server's tools"),
        ("reload", "the hub reads mcp.json again by itself when it changes"),
        ("add", "`onemcp mcp add NAME ...` adds a server"),
        ("list", "`onemcp mcp list` lists the servers in mcp.json"),
    ],
)
def test_a_command_that_is_another_commands_says_what_to_write(
    word: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`onemcp search QUERY` and `onemcp reload` were argparse's "invalid choice" and the list of commands."""
    code, out, err = cli(capsys, word, "x")
    assert (code, out) == (2, "")
    assert err.startswith(f"onemcp: there is no `onemcp {word}`: ") and said in err
