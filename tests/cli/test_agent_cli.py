"""`onemcp instructions`, `inspect`, `run` and `cli-setup`, as an agent runs them: subprocesses against a real hub."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.hostile import HOSTILE
from fixtures.launch import fixture_command, hostile_command
from onemcp.cli.agent import read_arguments
from onemcp.cli.agent_output import content_text
from onemcp.cli.client.rpc import HubClient, HubUnreachable, RpcError
from onemcp.cli.main import main
from onemcp.cli.playbook import PLAYBOOK, PLAYBOOK_FILE
from onemcp.observability.redact import one_line
from onemcp.protocol.errors import echo
from support.hub_process import HubProcess, clean_env

EXIT_DEADLINE = 30.0  # a deadline for each command, not a measurement


def demo() -> dict[str, Any]:
    return {"command": sys.executable, "args": ["-m", "onemcp.demo"], "tags": ["demo", "text"]}


def fixture(**extra: Any) -> dict[str, Any]:
    cmd = fixture_command()
    return {"command": cmd[0], "args": cmd[1:], **extra}


def write_config(directory: Path, servers: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


def running(folder: Path, servers: dict[str, Any]) -> Iterator[HubProcess]:
    """A hub process on these servers, ready, stopped afterwards (a module fixture's body)."""
    process = HubProcess(write_config(folder / "config", servers))
    try:
        process.start()
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """Two servers, so tool names are prefixed: demo (tags demo, text) and fx (tag fx)."""
    yield from running(tmp_path_factory.mktemp("agent"), {"demo": demo(), "fx": fixture(tags=["fx"])})


def onemcp(
    *args: str, config_dir: Path, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onemcp", *args],
        env=clean_env(config_dir),
        cwd=cwd or config_dir,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=EXIT_DEADLINE,
    )


def on(hub: HubProcess, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return onemcp(*args, config_dir=hub.config.parent, **kw)


# ---------------------------------------------------------------------- run
def test_run_prints_the_text_and_exits_0(hub: HubProcess) -> None:
    done = on(hub, "run", "demo/echo", "--args", '{"text": "hi"}')
    assert (done.returncode, done.stdout, done.stderr) == (0, "hi\n", "")


def test_run_reads_arguments_from_stdin(hub: HubProcess) -> None:
    done = on(hub, "run", "demo/word_count", stdin='{"text": "one two three"}')
    assert (done.returncode, done.stdout) == (0, "3\n")


def test_run_json_format_prints_the_whole_result(hub: HubProcess) -> None:
    done = on(hub, "run", "demo/add", "--args", '{"a": 2, "b": 3}', "--format", "json")
    assert done.returncode == 0
    result = json.loads(done.stdout)
    assert result["structuredContent"] == {"sum": 5}
    assert result["content"] == [{"type": "text", "text": "5"}]


def test_run_accepts_the_hubs_own_tool_name(hub: HubProcess) -> None:
    done = on(hub, "run", "fx__echo", "--args", '{"message": "direct"}')
    assert (done.returncode, done.stdout) == (0, "direct\n")


def test_tool_error_result_goes_to_stderr_with_exit_1(hub: HubProcess) -> None:
    done = on(hub, "run", "fx/fail")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "failed on purpose" in done.stderr


def test_json_rpc_error_goes_to_stderr_with_exit_1(hub: HubProcess) -> None:
    done = on(hub, "run", "fx/error")
    assert done.returncode == 1
    assert "boom" in done.stderr and "-32000" in done.stderr
    missing = on(hub, "run", "demo/echo", "--args", "{}")
    assert missing.returncode == 1 and "text" in missing.stderr


def test_json_output_is_json_on_an_error_too(hub: HubProcess) -> None:
    """With JSON asked for, stdout is one JSON document whatever happened (it was empty on an error): the
    kind says what to do (usage: fix the command; unreachable, auth: the hub; rpc: the hub or the
    server answered an error, its code given; failed: nothing to call by that name)."""
    cases: list[tuple[tuple[str, ...], int, dict[str, Any]]] = [
        (("run", "fx/error", "--format", "json"), 1, {"kind": "rpc", "message": "[fx] boom", "code": -32000}),
        (("run", "demo/echo", "--args", "[1]", "--format", "json"), 2, {"kind": "usage"}),
        (("run", "demo/nope", "--format", "json"), 1, {"kind": "failed"}),
        (("inspect", "nosuch", "--json"), 1, {"kind": "failed"}),
        (("inspect", "--json", "--url", "http://127.0.0.1:9/mcp"), 1, {"kind": "unreachable"}),
    ]
    for args, code, expected in cases:
        done = on(hub, *args)
        assert done.returncode == code, (args, done.stderr)
        error = json.loads(done.stdout)["error"]
        assert {**error, **expected} == error and error["exit"] == code, (args, error)
        assert error["message"] in done.stderr  # said on stderr too, as before
    assert on(hub, "run", "fx/error").stdout == ""  # text output: stdout stays empty


@pytest.mark.parametrize(("args", "why"), [("{bad", "not valid JSON"), ("[1, 2]", "must be a JSON object")])
def test_bad_arguments_exit_2(hub: HubProcess, args: str, why: str) -> None:
    done = on(hub, "run", "demo/echo", "--args", args)
    assert done.returncode == 2
    assert why in done.stderr and "Traceback" not in done.stderr


def test_bad_arguments_on_stdin_exit_2(hub: HubProcess) -> None:
    done = on(hub, "run", "demo/echo", stdin="not json")
    assert done.returncode == 2 and "(stdin) are not valid JSON" in done.stderr


def test_unknown_tool_names_the_server_and_how_to_look(hub: HubProcess) -> None:
    done = on(hub, "run", "demo/nope")
    assert done.returncode == 1
    assert "no tool 'nope' on server 'demo'" in done.stderr and "onemcp inspect demo" in done.stderr


def test_an_unknown_server_or_a_typo_says_what_there_is(hub: HubProcess) -> None:
    nosuch = on(hub, "run", "nosuch/echo")
    assert nosuch.returncode == 1 and "no server 'nosuch' in this hub's view" in nosuch.stderr
    assert "demo" in nosuch.stderr
    typo = on(hub, "run", "demo/ech", "--args", '{"text": "x"}')
    assert typo.returncode == 1 and "did you mean 'echo'?" in typo.stderr


def test_view_flags_limit_what_run_reaches(hub: HubProcess) -> None:
    assert on(hub, "run", "fx/echo", "--args", '{"message": "x"}', "--tags", "fx").returncode == 0
    outside = on(hub, "run", "demo/echo", "--args", '{"text": "x"}', "--tags", "fx")
    assert outside.returncode == 1 and "no tool 'echo' on server 'demo'" in outside.stderr
    inside = on(hub, "run", "demo/echo", "--args", '{"text": "x"}', "--filter", "text and !fx")
    assert (inside.returncode, inside.stdout) == (0, "x\n")
    short = on(hub, "run", "demo/echo", "--args", '{"text": "y"}', "--filter", "text+demo,(fx+!fx)")
    assert (short.returncode, short.stdout) == (0, "y\n")


def test_conflicting_view_flags_are_a_usage_error(hub: HubProcess) -> None:
    done = on(hub, "run", "demo/echo", "--tags", "a", "--preset", "b")
    assert done.returncode == 2 and "not allowed with argument" in done.stderr


# ---------------------------------------------------------------------- inspect
def test_inspect_lists_servers_with_tool_counts(hub: HubProcess) -> None:
    done = on(hub, "inspect", "--json")
    assert done.returncode == 0
    rows = {r["server"]: r for r in json.loads(done.stdout)}
    assert rows["demo"]["tools"] == 3 and rows["demo"]["state"] == "ready"
    assert rows["fx"]["tools"] >= 10
    text = on(hub, "inspect")
    assert text.returncode == 0
    assert text.stdout.splitlines()[0].split() == ["SERVER", "TOOLS", "STATE"]
    assert "demo    3      ready" in text.stdout


def test_inspect_server_lists_its_tools_with_first_description_line(hub: HubProcess) -> None:
    done = on(hub, "inspect", "demo")
    assert done.returncode == 0
    assert done.stdout.startswith("demo: 3 tool(s)\n")
    assert "  echo        Return the given text unchanged." in done.stdout
    rows = json.loads(on(hub, "inspect", "demo", "--json").stdout)
    assert [r["tool"] for r in rows] == ["echo", "add", "word_count"]
    assert rows[0]["name"] == "demo__echo"


def test_inspect_tool_shows_the_schema(hub: HubProcess) -> None:
    done = on(hub, "inspect", "demo/add")
    assert done.returncode == 0
    assert done.stdout.startswith("demo/add  (hub name: demo__add)\nAdd two numbers.\n")
    assert "* a  number" in done.stdout and "input schema:" in done.stdout
    assert """onemcp run demo/add --args '{"a": "<number>", "b": "<number>"}'""" in done.stdout
    tool = json.loads(on(hub, "inspect", "demo/add", "--json").stdout)
    assert tool["name"] == "demo__add" and tool["inputSchema"]["required"] == ["a", "b"]


def test_inspect_unknown_server_or_tool_exits_1(hub: HubProcess) -> None:
    server = on(hub, "inspect", "nope")
    assert server.returncode == 1 and "no server 'nope'" in server.stderr and "demo" in server.stderr
    tool = on(hub, "inspect", "demo/nope")
    assert tool.returncode == 1 and "no tool 'nope' on server 'demo'" in tool.stderr


def test_inspect_through_a_view_shows_only_its_servers(hub: HubProcess) -> None:
    rows = json.loads(on(hub, "inspect", "--json", "--tags", "fx").stdout)
    assert [r["server"] for r in rows] == ["fx"]


def test_project_rc_file_chooses_the_view(hub: HubProcess, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / ".onemcprc").write_text(json.dumps({"tags": ["demo"]}))
    rows = json.loads(on(hub, "inspect", "--json", cwd=project / "src").stdout)
    assert [r["server"] for r in rows] == ["demo"]
    flagged = json.loads(on(hub, "inspect", "--json", "--tags", "fx", cwd=project / "src").stdout)
    assert [r["server"] for r in flagged] == ["fx"]  # a flag beats the rc file


def test_bad_rc_file_is_reported(hub: HubProcess, tmp_path: Path) -> None:
    (tmp_path / ".onemcprc").write_text(json.dumps({"tags": "a", "preset": "b"}))
    done = on(hub, "inspect", cwd=tmp_path)
    assert done.returncode == 2 and "at most one of preset, filter, tags" in done.stderr  # a bad request


# ---------------------------------------------------------------------- instructions
def test_instructions_give_the_playbook_and_the_servers(hub: HubProcess) -> None:
    done = on(hub, "instructions")
    assert done.returncode == 0
    assert done.stdout.startswith(PLAYBOOK)
    assert "- demo: 3 tool(s)" in done.stdout and "- fx: " in done.stdout
    assert "## The hub's instructions" in done.stdout and "onemcp" in done.stdout.split("## The hub's")[1]
    viewed = on(hub, "instructions", "--tags", "demo")
    assert "(view: tags=demo)" in viewed.stdout and "- fx: " not in viewed.stdout


# ---------------------------------------------------------------------- no hub, one server
def test_no_hub_running_exits_1_with_a_hint(tmp_path: Path) -> None:
    done = onemcp("run", "demo/echo", "--args", "{}", config_dir=tmp_path)
    assert done.returncode == 1 and "no hub is running" in done.stderr and "onemcp serve" in done.stderr
    refused = onemcp("inspect", "--url", "http://127.0.0.1:9/mcp", config_dir=tmp_path)
    assert refused.returncode == 1 and "no hub answers at http://127.0.0.1:9/mcp" in refused.stderr


def test_unprefixed_hub_is_found_with_or_without_its_config(tmp_path: Path) -> None:
    config = write_config(tmp_path / "one", {"demo": demo()})
    single = HubProcess(config)
    try:
        single.start()
        single.wait_ready()
        done = onemcp("run", "demo/echo", "--args", '{"text": "solo"}', config_dir=config.parent)
        assert (done.returncode, done.stdout) == (0, "solo\n")
        # with --url the naming is not predicted from mcp.json: SERVER__TOOL fails, then TOOL is found
        bare = onemcp("run", "demo/echo", "--args", '{"text": "url"}', "--url", single.url, config_dir=tmp_path)
        assert (bare.returncode, bare.stdout) == (0, "url\n")
        listed = json.loads(onemcp("inspect", "demo", "--json", "--url", single.url, config_dir=tmp_path).stdout)
        assert [r["tool"] for r in listed] == ["echo", "add", "word_count"]
    finally:
        single.stop()


def test_a_hub_that_requires_a_token(tmp_path: Path) -> None:
    config = tmp_path / "keyed" / "mcp.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"mcpServers": {"demo": demo()}, "onemcp": {"auth": {"apiKeys": True}}}))
    keyed = HubProcess(config)
    try:
        keyed.start()
        keyed.wait_ready()
        refused = onemcp("run", "demo/echo", "--args", '{"text": "x"}', config_dir=config.parent)
        assert refused.returncode == 1 and "requires a token: set ONEMCP_TOKEN to an API key" in refused.stderr
        wrong = subprocess.run(  # it said "requires a token, and one was refused"
            [sys.executable, "-m", "onemcp", "run", "demo/echo", "--args", '{"text": "x"}'],
            env={**clean_env(config.parent), "ONEMCP_TOKEN": "omk_not_a_key"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=EXIT_DEADLINE,
        )
        assert wrong.returncode == 1 and "refused $ONEMCP_TOKEN (HTTP 401: not a key it knows" in wrong.stderr
        refused = onemcp("inspect", "--json", config_dir=config.parent)
        assert refused.returncode == 1 and json.loads(refused.stdout)["error"]["kind"] == "auth"
        key = onemcp("auth", "key", "create", "--name", "agent", config_dir=config.parent).stdout.strip()
        done = subprocess.run(
            [sys.executable, "-m", "onemcp", "run", "demo/echo", "--args", '{"text": "with key"}'],
            env={**clean_env(config.parent), "ONEMCP_TOKEN": key},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=EXIT_DEADLINE,
        )
        assert (done.returncode, done.stdout) == (0, "with key\n"), done.stderr
    finally:
        keyed.stop()


def test_run_server_tool_never_calls_another_servers_tool(tmp_path: Path) -> None:
    """prefixMode never, evil listed first: both list `echo`, and the hub routes it to evil's. `run
    good/echo` is refused (the names cannot say whose a tool is) rather than answered by evil."""
    config = write_config(tmp_path / "never", {"evil": hostile(), "good": fixture()})
    config.write_text(json.dumps({**json.loads(config.read_text()), "onemcp": {"prefixMode": "never"}}))
    never = HubProcess(config)
    try:
        never.start()
        never.wait_ready()
        done = onemcp("run", "good/echo", "--args", '{"message": "hi"}', config_dir=config.parent)
        assert (done.returncode, done.stdout) == (1, ""), done.stderr
        assert "so 'echo' cannot be told to be 'good''s" in done.stderr
        assert "the hub reports tool 'echo' of 'good' hidden by 'evil'" in done.stderr
        assert "`onemcp run echo`" in done.stderr
        # through --url (no mcp.json to predict the naming from) the same
        bare = onemcp("run", "good/echo", "--args", '{"message": "hi"}', "--url", never.url, config_dir=tmp_path)
        assert (bare.returncode, bare.stdout) == (1, "") and "cannot be told to be 'good''s" in bare.stderr
        # the hub's own name for it calls what the hub lists under that name, as asked
        plain = onemcp("run", "echo", "--args", '{"message": "hi"}', config_dir=config.parent)
        assert plain.returncode == 0 and plain.stdout.startswith("evil says: hi\n"), plain.stderr
    finally:
        never.stop()


# ---------------------------------------------------------------------- the client itself
def test_client_reads_an_sse_reply_up_to_its_response(hub: HubProcess) -> None:
    client = HubClient(hub.url, timeout=EXIT_DEADLINE)
    try:
        # a progress token makes the hub stream the progress before the result
        params = {"name": "fx__progress", "arguments": {"steps": 3}, "_meta": {"progressToken": "p"}}
        result = client.request("tools/call", params)
        assert result.get("isError") is not True
        again = client.request("tools/call", {"name": "demo__echo", "arguments": {"text": "after"}})
        assert content_text(again) == "after"  # a fresh connection after the abandoned stream
    finally:
        client.close()


@pytest.mark.parametrize(
    "method", ["tools/lïst", "ツール", "tools/list\r\nx-injected: 1", " tools/list", "é" * 100_000]
)
def test_client_answers_a_method_no_header_can_carry_as_not_found(hub: HubProcess, method: str) -> None:
    # the Mcp-Method header cannot carry it: -32601 at once, as the proxy answers, never a UnicodeEncodeError
    # or a line break sent into the request head; the connection serves the next request
    client = HubClient(hub.url, timeout=EXIT_DEADLINE)
    try:
        with pytest.raises(RpcError) as refused:
            client.request(method)
        assert refused.value.code == -32601 and refused.value.message == f"Method not found: {echo(repr(method))}"
        assert len(refused.value.message) < 300  # its start, not all of it
        assert isinstance(client.request("tools/list").get("tools"), list)
    finally:
        client.close()


@pytest.mark.parametrize("token", ["tökenツ", "key\r\nx-injected: 1"])
def test_a_token_no_header_can_carry_is_a_clear_error(hub: HubProcess, token: str) -> None:
    env = {**clean_env(hub.config.parent), "ONEMCP_TOKEN": token}
    done = subprocess.run(
        [sys.executable, "-m", "onemcp", "run", "demo/echo", "--args", '{"text": "hi"}'],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=EXIT_DEADLINE,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    assert done.stderr == "onemcp: $ONEMCP_TOKEN holds characters an HTTP header cannot carry\n"


def test_a_url_path_no_request_line_can_carry_is_a_clear_error(hub: HubProcess) -> None:
    client = HubClient(hub.url + "ツ", timeout=EXIT_DEADLINE)
    try:
        with pytest.raises(HubUnreachable, match="the request target holds characters HTTP cannot carry"):
            client.request("tools/list")
    finally:
        client.close()


def test_the_run_path_imports_nothing_heavy() -> None:
    code = (
        "import sys; import onemcp.cli.main, onemcp.cli.agent; "
        "heavy = [m for m in ('pydantic', 'httpx', 'anyio', 'mcp', 'uvicorn', 'http.client', 'orjson', 'dataclasses')"
        " if m in sys.modules]; print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=EXIT_DEADLINE)
    assert done.stdout.strip() == "[]", done.stderr


# ---------------------------------------------------------------------- pure parts
def test_arguments_text() -> None:
    assert read_arguments('{"a": 1}') == {"a": 1}
    assert read_arguments("  ") == {}


def test_a_pipe_nobody_writes_to_is_no_arguments(hub: HubProcess) -> None:
    """An agent's shell may leave stdin an open, silent pipe: `run` must not wait on it forever."""
    process = subprocess.Popen(
        [sys.executable, "-m", "onemcp", "run", "demo/echo"],
        env=clean_env(hub.config.parent),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        code = process.wait(EXIT_DEADLINE)  # stdin stays open all along
        assert process.stderr is not None
        assert code == 1 and "Missing required argument" in process.stderr.read()  # ran with {}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


# ---------------------------------------------------------------------- cli-setup
def test_cli_setup_writes_the_playbook_and_references_it_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "CLAUDE.md").write_text("# My project\nBe nice.")
    assert main(["cli-setup", "--claude", "--codex", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / PLAYBOOK_FILE).read_text() == PLAYBOOK
    claude = (tmp_path / "CLAUDE.md").read_text()
    assert claude.startswith("# My project\nBe nice.\n\n")
    assert claude.count(f"@{PLAYBOOK_FILE.as_posix()}") == 1
    agents = (tmp_path / "AGENTS.md").read_text()
    assert agents.count(PLAYBOOK_FILE.as_posix()) == 1 and agents.endswith("\n")
    assert (tmp_path / "AGENTS.md").stat().st_mode & 0o644 == 0o644
    capsys.readouterr()
    assert main(["cli-setup", "--claude", "--codex", "--dir", str(tmp_path)]) == 0
    assert "already set up" in capsys.readouterr().out
    assert (tmp_path / "CLAUDE.md").read_text() == claude


def test_cli_setup_needs_an_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cli-setup", "--dir", str(tmp_path)]) == 2
    assert "--claude and/or --codex" in capsys.readouterr().err


# ---------------------------------------------------------------------- search and tokens
def test_inspect_search_ranks_with_the_hubs_own_search(hub: HubProcess) -> None:
    done = on(hub, "inspect", "--search", "send some text back unchanged", "--limit", "3")
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith(("demo__echo(", "fx__echo(")), done.stdout


def test_inspect_search_as_json_is_a_list_of_hits_not_a_block_of_text(hub: HubProcess) -> None:
    """Hunt s33-g F5: `--json` dumped the raw search_tools result, its ranking one text block to parse."""
    done = on(hub, "inspect", "--search", "send some text back unchanged", "--limit", "3", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["query"] == "send some text back unchanged" and isinstance(doc["total"], int) and doc["total"] > 3
    hits = doc["hits"]
    assert [hit["rank"] for hit in hits] == [1, 2, 3]
    first = hits[0]
    assert first["name"] in ("demo__echo", "fx__echo") and first["name"] == f"{first['server']}__{first['tool']}"
    assert first["tool"] == "echo" and first["description"] and "\n" not in first["description"]
    assert first["parameters"] and all(set(p) == {"name", "type", "required"} for p in first["parameters"])
    assert any(p["required"] for p in first["parameters"])
    for hit in hits:  # each one as `run SERVER/TOOL` takes it, from the hub's own list
        assert hit["server"] in ("demo", "fx") and hit["name"] == f"{hit['server']}__{hit['tool']}"


def test_search_is_inspect_search_same_ranking_same_output(hub: HubProcess) -> None:
    """Trial s39-h4: `onemcp search QUERY` (issue 14's words) exited 2 saying to write `inspect --search`."""
    for extra in ((), ("--json",)):
        searched = on(hub, "search", "send some text back unchanged", "--limit", "3", *extra)
        inspected = on(hub, "inspect", "--search", "send some text back unchanged", "--limit", "3", *extra)
        assert (searched.returncode, searched.stderr) == (0, ""), searched.stderr
        assert searched.stdout == inspected.stdout and searched.stdout.strip()
    unquoted = on(hub, "search", "send", "some", "text", "back", "unchanged", "--limit", "3")
    assert unquoted.stdout == on(hub, "inspect", "--search", "send some text back unchanged", "--limit", "3").stdout


def test_search_refuses_a_blank_query_and_a_bad_limit_before_asking(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, said in (
        (["search", " "], "expected what you want to do, in words"),
        (["search", "echo", "--limit", "99"], "argument --limit: expected a whole number from 1 to 20, not '99'"),
    ):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2 and said in capsys.readouterr().err


def test_inspect_search_with_a_bad_limit_is_a_usage_error(hub: HubProcess) -> None:
    done = on(hub, "inspect", "--search", "echo", "--limit", "99")  # refused before the hub is asked
    assert done.returncode == 2, done.stderr
    assert "argument --limit: expected a whole number from 1 to 20, not '99'" in done.stderr


def test_inspect_limit_without_search_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "--limit", "3"]) == 2  # before any hub is asked: nothing accepted silently
    assert "--limit goes with --search" in capsys.readouterr().err


def test_inspect_tokens_counts_each_server_and_both_modes(hub: HubProcess) -> None:
    done = on(hub, "inspect", "--tokens", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    servers = {row["server"]: row for row in report["servers"]}
    assert set(servers) == {"demo", "fx"} and all(row["tokens"] > 0 for row in servers.values())
    assert report["search"] < report["full"] and report["full"] >= sum(r["tokens"] for r in servers.values()) - 10


def test_an_unprefixed_hub_of_several_servers_is_counted_per_server(tmp_path: Path) -> None:
    """prefixMode never: the names carry no server, so the per-server figures come from /health."""
    config = write_config(tmp_path / "never", {"demo": demo(), "fx": fixture()})
    doc = json.loads(config.read_text())
    config.write_text(json.dumps({**doc, "onemcp": {"prefixMode": "never"}}))
    never = HubProcess(config)
    try:
        never.start()
        never.wait_ready()
        health = httpx.get(f"{never.base}/health", timeout=EXIT_DEADLINE).json()["upstreams"]
        listed = json.loads(onemcp("inspect", "--json", config_dir=config.parent).stdout)
        assert {r["server"]: r["tools"] for r in listed} == {s: health[s]["tools"] for s in ("demo", "fx")}
        report = json.loads(onemcp("inspect", "--tokens", "--json", config_dir=config.parent).stdout)
        rows = {r["server"]: (r["tools"], r["tokens"]) for r in report["servers"]}
        assert rows == {s: (health[s]["tools"], health[s]["toolTokens"]) for s in ("demo", "fx")}
        assert all(tokens > 0 for _, tokens in rows.values())
        # a name one server alone has is that server's (the admin API's catalog says whose): `inspect demo`
        # and `run demo/add` work (both were refused), and a view keeps its server (it dropped every one)
        one = onemcp("inspect", "demo", config_dir=config.parent)
        assert one.returncode == 0 and "demo: 2 tool(s)" in one.stdout and "  add " in one.stdout, one
        assert "whose cannot be told (prefixMode never): echo\n" in one.stdout
        added = onemcp("run", "demo/add", "--args", '{"a": 1, "b": 2}', config_dir=config.parent)
        assert added.returncode == 0 and "3" in added.stdout, added.stderr
        viewed = json.loads(onemcp("inspect", "--json", "--filter", "demo", config_dir=config.parent).stdout)
        assert viewed == [{"server": "demo", "tools": 3, "state": "ready"}], viewed
        # `echo` both have: whose this caller gets depends on what it reaches, so demo/echo is still refused
        shared = onemcp("run", "demo/echo", "--args", '{"text": "x"}', config_dir=config.parent)
        assert shared.returncode == 1 and "the hub reports tool 'echo' of 'fx' hidden by 'demo'" in shared.stderr
        done = onemcp("run", "echo", "--args", '{"text": "bare"}', config_dir=config.parent)
        assert (done.returncode, done.stdout) == (0, "bare\n"), done.stderr
    finally:
        never.stop()


# ---------------------------------------------------------------------- what an upstream writes
RAW = (b"\x1b", "\x9b".encode(), "\u202e".encode())  # ESC, the C1 CSI and a bidi override, as UTF-8


def hostile() -> dict[str, Any]:
    cmd = hostile_command()
    return {"command": cmd[0], "args": cmd[1:]}


@pytest.fixture(scope="module")
def hostile_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """evil (the hostile fixture) and good (the plain one): tool names prefixed."""
    yield from running(tmp_path_factory.mktemp("hostile"), {"evil": hostile(), "good": fixture()})


def raw_output(hub: HubProcess, *args: str) -> tuple[int, bytes, bytes]:
    """A command's exit code and the bytes it wrote, as a terminal would receive them."""
    done = subprocess.run(
        [sys.executable, "-m", "onemcp", *args],
        env=clean_env(hub.config.parent),
        cwd=hub.config.parent,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=EXIT_DEADLINE,
    )
    for stream in (done.stdout, done.stderr):
        assert not [code for code in RAW if code in stream], stream[:2000]
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(
    ("args", "code", "where"),
    [
        (("inspect", "evil"), 0, "stdout"),
        (("inspect", "evil/echo"), 0, "stdout"),
        (("inspect", "--search", "echo a message", "--limit", "20"), 0, "stdout"),
        (("run", "evil/echo", "--args", '{"message": "hi"}'), 0, "stdout"),
        (("run", "evil/fail"), 1, "stderr"),
        (("run", "evil/error"), 1, "stderr"),
        (("instructions",), 0, "stdout"),
    ],
)
def test_an_upstreams_terminal_codes_are_printed_escaped(
    hostile_hub: HubProcess, args: tuple[str, ...], code: int, where: str
) -> None:
    returned, out, err = raw_output(hostile_hub, *args)
    assert returned == code, err
    shown = (out if where == "stdout" else err).decode()
    assert "\\x1b[31mred" in shown and "\\x9b2J" in shown and "\\u202eevil" in shown, shown[:2000]
    assert one_line(HOSTILE) in shown  # all of it, the markup as text


def test_inspect_cuts_a_huge_description(hostile_hub: HubProcess) -> None:
    _, out, _ = raw_output(hostile_hub, "inspect", "evil")
    long = next(line for line in out.decode().splitlines() if line.strip().startswith("long "))
    assert len(long) < 1000 and long.endswith(" more characters]")  # cut, with a marker
    _, full, _ = raw_output(hostile_hub, "inspect", "evil/long")
    assert "x" * 200_000 in full.decode()  # the tool's own page has all of it


def test_inspect_tool_escapes_the_schema_and_its_property_names(hostile_hub: HubProcess) -> None:
    _, out, _ = raw_output(hostile_hub, "inspect", "evil/echo")
    text = out.decode()
    escaped = one_line(HOSTILE)
    assert "* message" in text and f"what to say {escaped}" in text
    assert f"  arg{escaped}" in text and f"string{escaped}" in text  # a property's name and type
    schema = text.split("input schema:\n", 1)[1].split("\n\nonemcp run", 1)[0]
    assert json.loads(schema)["properties"]["message"]["description"] == f"what to say {HOSTILE}"


@pytest.mark.parametrize(
    "args",
    [("inspect", "evil/echo", "--json"), ("run", "evil/echo", "--args", '{"message": "hi"}', "--format", "json")],
)
def test_json_output_stays_exact_json(hostile_hub: HubProcess, args: tuple[str, ...]) -> None:
    returned, out, err = raw_output(hostile_hub, *args)
    assert returned == 0, err
    assert HOSTILE in "\n".join(strings(json.loads(out)))  # the upstream's text, exactly


def strings(doc: Any) -> Iterator[str]:
    """Every string in a JSON document, keys included."""
    if isinstance(doc, str):
        yield doc
    elif isinstance(doc, dict):
        for key, value in doc.items():
            yield key
            yield from strings(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from strings(value)


def test_what_agent_escapes_python_calls_unprintable() -> None:
    """`escape_line` and friends import the escaping only for a text `str.isprintable` refuses: every
    character `redact.one_line` escapes must be one of those."""
    from onemcp.cli.terminal import escape_line, escape_text

    printable = "".join(c for c in map(chr, range(0x110000)) if c.isprintable())
    assert one_line(printable) == printable
    assert escape_line("a\x1b[8mb\u2028c\td") == one_line("a\x1b[8mb\u2028c\td")
    assert escape_text("one\ntwo\x9b\r") == "one\ntwo\\x9b\\r"
    assert escape_line("é ✓ 漢字") == "é ✓ 漢字"


def test_a_template_server_is_addressed_by_its_name(tmp_path: Path) -> None:
    """One static server and one template: the hub prefixes (two names), and `run fz/echo` is the
    template's tool, listed under the template's name, never under the static server's."""
    config = write_config(tmp_path / "tpl", {"demo": demo()})
    doc = json.loads(config.read_text())
    doc["mcpTemplates"] = {"fz": {**fixture(), "env": {"PROJECT": "{{ project.path }}"}}}
    config.write_text(json.dumps(doc))
    project = tmp_path / "project"
    project.mkdir()
    process = HubProcess(config)
    try:
        process.start()
        process.wait_ready()
        done = onemcp(
            "run", "fz/echo", "--args", '{"message": "from the template"}', config_dir=config.parent, cwd=project
        )
        assert (done.returncode, done.stdout) == (0, "from the template\n"), done.stderr
        listed = json.loads(onemcp("inspect", "--json", config_dir=config.parent, cwd=project).stdout)
        assert {row["server"] for row in listed} >= {"demo", "fz"}, listed
        mine = json.loads(onemcp("inspect", "fz", "--json", config_dir=config.parent, cwd=project).stdout)
        assert "echo" in [row["tool"] for row in mine] and "word_count" not in [row["tool"] for row in mine]
    finally:
        process.stop()


def test_a_template_another_project_runs_is_not_listed_as_this_ones(tmp_path: Path) -> None:
    """A template that renders nothing for this project (disabled for it) is not this caller's server,
    though /health shows the instance another project started: `inspect` leaves it out (it said it was
    "ready" with 0 tools), as it does when no project runs one."""
    config = write_config(tmp_path / "tpl", {"demo": demo()})
    doc = json.loads(config.read_text())
    doc["mcpTemplates"] = {"fz": {**fixture(), "disabled": "{{ project.name == 'plain' }}"}}
    config.write_text(json.dumps(doc))
    used, plain = tmp_path / "used", tmp_path / "plain"
    used.mkdir()
    plain.mkdir()
    process = HubProcess(config)
    try:
        process.start()
        process.wait_ready()
        started = onemcp("inspect", "--json", config_dir=config.parent, cwd=used)
        assert "fz" in {row["server"] for row in json.loads(started.stdout)}, started.stderr
        listed = json.loads(onemcp("inspect", "--json", config_dir=config.parent, cwd=plain).stdout)
        assert {row["server"] for row in listed} == {"demo"}, listed
        asked = onemcp("inspect", "fz", config_dir=config.parent, cwd=plain)
        assert asked.returncode == 1 and "no server 'fz' in this hub's view" in asked.stderr, asked
    finally:
        process.stop()


def test_a_template_is_listed_when_tool_names_do_not_say_their_server(tmp_path: Path) -> None:
    """prefixMode never: no name says it is the template's, so whether this caller has it cannot be read
    from the list; /health's instance still lists it (it is not left out as another project's)."""
    doc = {"mcpServers": {"demo": demo()}, "mcpTemplates": {"fz": fixture()}, "onemcp": {"prefixMode": "never"}}
    config = write_config(tmp_path / "never", {})
    config.write_text(json.dumps(doc))
    project = tmp_path / "project"
    project.mkdir()
    process = HubProcess(config)
    try:
        process.start()
        process.wait_ready()
        listed = json.loads(onemcp("inspect", "--json", config_dir=config.parent, cwd=project).stdout)
        assert {row["server"] for row in listed} == {"demo", "fz"}, listed
    finally:
        process.stop()


def test_a_tool_of_a_server_that_is_down_says_so(tmp_path: Path) -> None:
    """Not "no tool X; did you mean X?": its tools are not listed because the server failed."""
    broken = {"command": fixture_command()[0], "args": [*fixture_command()[1:], "--crash-on-start"]}
    process = HubProcess(write_config(tmp_path / "down", {"demo": demo(), "broken": broken}))
    try:
        process.start()
        process.wait_ready()
        done = onemcp("run", "broken/echo", "--args", '{"message": "x"}', config_dir=process.config.parent)
        said = done.stderr
        assert done.returncode == 1 and ("server 'broken' is " in said or "[broken] server is " in said), said
        assert "did you mean" not in said
    finally:
        process.stop()


def test_a_bare_server_lists_its_tools_and_how_to_call_one(hub: HubProcess) -> None:
    done = on(hub, "run", "demo")
    assert done.returncode == 2 and done.stdout == ""
    assert "'demo' is a server, not a tool" in done.stderr
    assert """onemcp run demo/echo --args '{"text": "<string>"}'""" in done.stderr
    assert "its 3 tool(s): echo, add, word_count" in done.stderr
    as_json = on(hub, "run", "fx", "--format", "json")
    error = json.loads(as_json.stdout)["error"]
    assert (as_json.returncode, error["kind"], error["exit"]) == (2, "usage", 2)
    assert "'fx' is a server, not a tool" in error["message"] and "onemcp run fx/" in error["message"]
