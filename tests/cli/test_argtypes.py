"""Bad flag values, empty references and unknown names: a clear one-line error and exit 2 (or 1), never a
traceback, a silent no-op or a false "no hub answers". Run as an agent runs them: real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onemcp.cli import argtypes
from onemcp.search.meta import MAX_LIMIT

DEADLINE = 30.0  # seconds a command that should fail at once gets to do so
SECONDS = "expected a number of seconds greater than 0 and at most 86400"
PORT = "expected a port from 0 to 65535 (0 picks a free one)"
TIMEOUT = "expected a number of seconds greater than 0 and at most 3600"  # a server's request deadline
VIEW = "expected a preset, a tag expression or tags a,b (a view is never blank)"
PATH = "expected a path"


def onemcp(config_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ONEMCP_CONFIG", "ONEMCP_URL", "ONEMCP_TOKEN")}
    env["ONEMCP_CONFIG_DIR"] = str(config_dir)
    return subprocess.run(
        [sys.executable, "-m", "onemcp", *args],
        env=env,
        cwd=config_dir.parent,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "config"
    directory.mkdir()
    return directory


@pytest.mark.parametrize(
    ("argv", "flag", "expected"),
    [
        (["serve", "--port", "-5"], "--port", PORT),
        (["serve", "--port", "99999"], "--port", PORT),
        (["serve", "--port", "http"], "--port", PORT),
        (["start", "--port", "70000"], "--port", PORT),
        (["restart", "--port", "-1"], "--port", PORT),
        (["service", "print", "--port", "65536"], "--port", PORT),
        (["run", "demo/echo", "--args", "{}", "--timeout", "-1"], "--timeout", SECONDS),
        (["run", "demo/echo", "--args", "{}", "--timeout", "0"], "--timeout", SECONDS),
        (["run", "demo/echo", "--args", "{}", "--timeout", "nan"], "--timeout", SECONDS),
        (["run", "demo/echo", "--args", "{}", "--timeout", "1e400"], "--timeout", SECONDS),
        (["inspect", "--timeout", "-5"], "--timeout", SECONDS),
        (["inspect", "--timeout", "inf"], "--timeout", SECONDS),
        (["instructions", "--timeout", "0"], "--timeout", SECONDS),
        (["proxy", "--wait", "nan"], "--wait", SECONDS),
        (["proxy", "--wait", "0"], "--wait", SECONDS),
        (["proxy", "--wait", "-5"], "--wait", SECONDS),
        (["wait", "--timeout", "-1"], "--timeout", SECONDS),
        (["wait", "--timeout", "nan"], "--timeout", SECONDS),
        (["start", "--timeout", "0"], "--timeout", SECONDS),
        (["stop", "--timeout", "nan"], "--timeout", SECONDS),
        (["auth", "upstream", "login", "gh", "--timeout", "-1"], "--timeout", SECONDS),
        (
            ["mcp", "add", "a", "--command", "ls", "--timeout", "7200"],
            "--timeout",
            TIMEOUT,
        ),  # (was taken, then refused)
        (["mcp", "add", "a", "--command", "ls", "--timeout", "0"], "--timeout", TIMEOUT),
        (["logs", "-n", "-2"], "-n/--lines", "expected a whole number of at least 0"),
        (["inspect", "--search", "q", "--limit", "0"], "--limit", f"expected a whole number from 1 to {MAX_LIMIT}"),
        (["inspect", "--search", "q", "--limit", "21"], "--limit", f"expected a whole number from 1 to {MAX_LIMIT}"),
        # a blank view would select every server: a view fails closed, as /mcp?tags= does
        (["inspect", "--tags", ""], "--tags", VIEW),
        (["run", "demo/echo", "--args", "{}", "--filter", " "], "--filter", VIEW),
        (["instructions", "--preset", ""], "--preset", VIEW),
        (["proxy", "--tags", ""], "--tags", VIEW),
        (["serve", "--transport", "stdio", "--filter", ""], "--filter", VIEW),
        (["inspect", "--search", " "], "--search", "expected what you want to do, in words"),
        # an empty path read as "not given": `--config "$UNSET"` served the default config
        (["serve", "--config", ""], "--config", PATH),
        (["mcp", "list", "--config", " "], "--config", PATH),
        (["config", "init", "--config", ""], "--config", PATH),
        (["serve", "--log-file", ""], "--log-file", PATH),
        (["validate", ""], "file", PATH),
        (["mcp", "add", "a", "--command", "ls", "--cwd", ""], "--cwd", PATH),
    ],
)
def test_a_bad_numeric_flag_is_a_usage_error(config_dir: Path, argv: list[str], flag: str, expected: str) -> None:
    done = onemcp(config_dir, *argv)
    assert "Traceback" not in done.stderr
    assert done.returncode == 2, done.stderr
    assert f"error: argument {flag}: {expected}, not {argv[-1]!r}" in done.stderr.splitlines()[-1]
    assert not (config_dir / "runtime.json").exists()  # nothing was started


def test_the_search_limit_is_the_hubs() -> None:
    from onemcp.cli.agent import SEARCH_LIMIT

    assert SEARCH_LIMIT == MAX_LIMIT


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0), ("3050", 3050), ("65535", 65535)]
)  # fmt: skip
def test_ports_in_range_are_taken(text: str, value: int) -> None:
    assert argtypes.port(text) == value


@pytest.mark.parametrize(("text", "value"), [("0.5", 0.5), ("300", 300.0), ("86400", 86400.0)])
def test_seconds_in_range_are_taken(text: str, value: float) -> None:
    assert argtypes.seconds(text) == value


def test_a_servers_timeout_is_the_configs() -> None:
    """`mcp add --timeout` takes what mcp.json takes: at most an hour (more is most likely milliseconds)."""
    from onemcp.config.base import TIMEOUT_MAX

    assert argtypes.MAX_TIMEOUT == TIMEOUT_MAX and argtypes.request_timeout("3600") == 3600.0


def test_logs_n_0_prints_no_line(config_dir: Path) -> None:
    (config_dir / "onemcp.log").write_text("one\ntwo\nthree\n")
    assert onemcp(config_dir, "logs", "-n", "0").stdout == ""
    assert onemcp(config_dir, "logs", "-n", "1").stdout == "three\n"


@pytest.mark.parametrize("ref", ["", "  "])
def test_run_an_empty_tool_is_a_usage_error(config_dir: Path, ref: str) -> None:
    done = onemcp(config_dir, "run", ref, "--args", "{}")
    assert (done.returncode, done.stderr) == (
        2,
        "onemcp: no tool given: expected SERVER/TOOL (or the hub's own tool name)\n",
    )


def test_run_a_malformed_ref_is_a_usage_error_with_no_hub_running(config_dir: Path) -> None:
    done = onemcp(config_dir, "run", "/echo", "--args", "{}")
    assert (done.returncode, done.stderr) == (2, "onemcp: '/echo': expected SERVER/TOOL (or the hub's own tool name)\n")


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["inspect", "demo", "--search", "echo"], "--search takes no SERVER[/TOOL] and no --tokens"),
        (["inspect", "--tokens", "--search", "echo"], "--search takes no SERVER[/TOOL] and no --tokens"),
        (["inspect", "demo/echo", "--tokens"], "--tokens takes no SERVER[/TOOL]"),
    ],
)
def test_inspect_flags_that_do_not_go_together_are_a_usage_error_with_no_hub_running(
    config_dir: Path, argv: list[str], said: str
) -> None:
    """They were refused only once a hub answered: with none running, "no hub is running" (exit 1)."""
    done = onemcp(config_dir, *argv)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert said in done.stderr


@pytest.mark.parametrize("argv", [["auth", "key", "create"], ["auth", "key", "list"], ["config", "init"]])
def test_a_config_dir_that_is_a_file_is_a_clear_error(tmp_path: Path, argv: list[str]) -> None:
    """$ONEMCP_CONFIG_DIR naming a file was a FileExistsError traceback from these commands."""
    not_a_dir = tmp_path / "config"
    not_a_dir.write_text("x")
    done = onemcp(not_a_dir, *argv)
    assert "Traceback" not in done.stderr and done.returncode == 1
    assert f"onemcp: cannot use {not_a_dir}: File exists" in done.stderr


def test_inspect_an_empty_ref_is_a_usage_error(config_dir: Path) -> None:
    done = onemcp(config_dir, "inspect", "")
    assert done.returncode == 2
    assert done.stderr.startswith("onemcp: an empty SERVER[/TOOL]")


@pytest.mark.parametrize("ref", ["echo/", "/echo"])
def test_inspect_a_malformed_ref_is_a_usage_error_with_no_hub_running(config_dir: Path, ref: str) -> None:
    """As `run`'s: an empty SERVER or TOOL half is exit 2 before connecting (it said "no tool ''", exit 1)."""
    done = onemcp(config_dir, "inspect", ref)
    assert (done.returncode, done.stderr) == (2, f"onemcp: {ref!r}: expected SERVER[/TOOL]\n")


def test_approve_an_unknown_server_says_there_is_no_such_server(config_dir: Path) -> None:
    (config_dir / "mcp.json").write_text(
        json.dumps(
            {"mcpServers": {"a": {"command": "x"}, "b": {"command": "y"}}, "mcpTemplates": {"t": {"command": "z"}}}
        )
    )
    done = onemcp(config_dir, "mcp", "approve", "nosuch")
    assert "Traceback" not in done.stderr
    assert done.returncode == 1
    assert done.stderr == f"onemcp: no server 'nosuch' in {config_dir / 'mcp.json'} (configured: a, b, t)\n"
    done = onemcp(config_dir, "mcp", "approve", "a", "nosuch/tool")  # checked before anything is approved
    assert done.stderr.startswith("onemcp: no server 'nosuch' in ")
    done = onemcp(config_dir, "mcp", "approve", "a")  # a known server with nothing changed: as before
    assert (done.returncode, done.stderr) == (1, "onemcp: no changed definition to approve for a\n")


def test_approve_with_no_config_says_none_is_configured(config_dir: Path) -> None:
    done = onemcp(config_dir, "mcp", "approve", "nosuch")
    assert (done.returncode, done.stderr) == (
        1,
        f"onemcp: no server 'nosuch' in {config_dir / 'mcp.json'} (none configured)\n",
    )


@pytest.mark.parametrize("target", ["/tool", "a/"])
def test_approve_a_malformed_target_is_a_usage_error(config_dir: Path, target: str) -> None:
    (config_dir / "mcp.json").write_text(json.dumps({"mcpServers": {"a": {"command": "x"}}}))
    done = onemcp(config_dir, "mcp", "approve", target)
    assert (done.returncode, done.stderr) == (2, f"onemcp: not SERVER or SERVER/TOOL: {target!r}\n")


def test_add_a_command_not_on_path_warns_as_validate_fails(config_dir: Path) -> None:
    done = onemcp(config_dir, "mcp", "add", "x4", "--command", "nosuch-cmd-audit")
    assert done.returncode == 0, done.stderr  # written: the hub may have another PATH, or it is installed next
    assert json.loads((config_dir / "mcp.json").read_text())["mcpServers"]["x4"] == {"command": "nosuch-cmd-audit"}
    problem = "mcpServers.x4.command: 'nosuch-cmd-audit' is not installed (not on PATH)"
    then = "(then `onemcp mcp restart x4` on a running hub)"
    assert f"onemcp: warning: {problem}; the hub cannot start 'x4' until it is on the hub's PATH {then}" in done.stderr
    validated = onemcp(config_dir, "validate")
    assert validated.returncode == 1
    assert problem in validated.stdout


def test_add_an_installed_command_gives_no_warning(config_dir: Path) -> None:
    done = onemcp(config_dir, "mcp", "add", "py", "--command", sys.executable)
    assert done.returncode == 0
    assert "warning" not in done.stderr
