"""`onemcp preset ...` in-process against real files, and a running hub honouring what it writes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from onemcp.cli.main import main
from onemcp.cli.preset import preset_url
from onemcp.config.presets import BadFilter, PresetError, load_presets
from support.cli import cli
from support.hub import HEADERS, running_hub

DEADLINE = 30.0


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "config"
    directory.mkdir()
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(directory))
    return directory


def presets(config_dir: Path) -> dict[str, Any]:
    found: dict[str, Any] = orjson.loads((config_dir / "presets.json").read_bytes())["presets"]
    return found


def test_create_list_show_edit_delete(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "preset", "create", "dev", "--filter", "dev or (git and !slow)", "--description", "code")
    assert code == 0 and f"created preset 'dev' in {config_dir / 'presets.json'}" in out
    assert cli(capsys, "preset", "create", "ops", "--filter", "ops", "--exposure", "search")[0] == 0
    assert presets(config_dir) == {"dev": {"filter": "dev or (git and !slow)", "description": "code"},
                                   "ops": {"filter": "ops", "exposure": "search"}}  # fmt: skip

    code, out, _ = cli(capsys, "preset", "list")
    assert code == 0
    assert out.splitlines() == [  # trial s39-h4: no EXPOSURE column, though a preset may set one
        "NAME  FILTER                  EXPOSURE  DESCRIPTION",
        "dev   dev or (git and !slow)  hub       code",
        "ops   ops                     search",
    ]
    code, out, _ = cli(capsys, "preset", "list", "--json")
    assert json.loads(out) == [{"name": "dev", "filter": "dev or (git and !slow)", "description": "code"},
                               {"name": "ops", "filter": "ops", "description": "", "exposure": "search"}]  # fmt: skip

    code, out, _ = cli(capsys, "preset", "show", "dev")
    assert code == 0 and "filter       dev or (git and !slow)" in out
    assert json.loads(cli(capsys, "preset", "show", "ops", "--json")[1])["filter"] == "ops"

    assert cli(capsys, "preset", "edit", "dev", "--description", "coding")[0] == 0
    assert presets(config_dir)["dev"] == {"filter": "dev or (git and !slow)", "description": "coding"}
    assert cli(capsys, "preset", "edit", "dev", "--filter", "dev+git")[0] == 0
    assert presets(config_dir)["dev"]["filter"] == "dev+git"

    code, out, _ = cli(capsys, "preset", "delete", "ops")
    assert code == 0 and "deleted preset 'ops'" in out
    assert list(presets(config_dir)) == ["dev"]


def test_bad_filter_says_where_and_writes_nothing(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "preset", "create", "dev", "--filter", "dev and (git or")
    assert code == 2
    first, expr, caret = err.splitlines()
    assert first == "onemcp: invalid filter: expected a tag, 'not' or '(' but found end of filter at position 15"
    assert expr == "  dev and (git or" and caret == "  " + " " * 15 + "^"
    assert not (config_dir / "presets.json").exists()
    cli(capsys, "preset", "create", "dev", "--filter", "dev")
    code, _, err = cli(capsys, "preset", "edit", "dev", "--filter", "a $ b")
    assert code == 2 and "unexpected character '$' at position 2" in err
    assert presets(config_dir)["dev"]["filter"] == "dev"


@pytest.mark.parametrize("name", ["_x", ".x", "a b", "x" * 65, "a/b"])
def test_bad_names_are_refused(config_dir: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, _, err = cli(capsys, "preset", "create", name, "--filter", "a")
    assert code == 2 and "invalid preset name" in err


def test_duplicates_and_unknown_names_exit_1(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli(capsys, "preset", "create", "dev", "--filter", "dev")
    code, _, err = cli(capsys, "preset", "create", "dev", "--filter", "x")
    assert code == 1 and "already exists" in err and "onemcp preset edit dev" in err
    for action in (["show", "nope"], ["delete", "nope"], ["edit", "nope", "--filter", "x"], ["url", "nope"]):
        code, _, err = cli(capsys, "preset", *action)
        assert code == 1 and "no preset 'nope'" in err and "(presets: dev)" in err
    code, _, err = cli(capsys, "preset", "edit", "dev")
    assert code == 2 and "nothing to change" in err


def test_unknown_keys_and_shorthand_entries_are_kept(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"$schema": "x", "presets": {"short": "a,b", "full": {"filter": "c", "owner": "me"}}}
    (config_dir / "presets.json").write_text(json.dumps(doc))
    assert json.loads(cli(capsys, "preset", "show", "short", "--json")[1])["filter"] == "a,b"
    assert cli(capsys, "preset", "edit", "full", "--description", "d")[0] == 0
    written = orjson.loads((config_dir / "presets.json").read_bytes())
    full = {"filter": "c", "owner": "me", "description": "d"}
    assert written == {"$schema": "x", "presets": {"short": "a,b", "full": full}}


@pytest.mark.parametrize(
    ("doc", "want"),
    [
        ({"presets": {"dev": {"filter": "dev", "exposur": "search"}}}, "presets.dev.exposur: unknown key; did you"),
        ({"presets": {"dev": {"filter": "dev", "Description": "x"}}}, "presets.dev.Description: unknown key; did"),
        ({"preset": {"dev": "dev"}}, "presets.json: preset: unknown key; did you mean 'presets'?"),
    ],
)
def test_a_misspelt_key_is_refused_not_kept(config_dir: Path, doc: dict[str, Any], want: str) -> None:
    """A key of the user's own is kept, but `exposur` silently left the preset's exposure the hub's, and
    `preset` (for presets) silently gave no presets at all."""
    (config_dir / "presets.json").write_text(json.dumps(doc))
    with pytest.raises(PresetError, match=want.replace("?", r"\?")):
        load_presets(config_dir / "presets.json")


def test_broken_file_is_reported_not_overwritten(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (config_dir / "presets.json").write_text("{nope")
    code, _, err = cli(capsys, "preset", "create", "dev", "--filter", "dev")
    assert code == 1 and "not valid JSON" in err
    assert (config_dir / "presets.json").read_text() == "{nope"


def test_url_from_the_running_hub_a_base_or_the_default(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli(capsys, "preset", "create", "dev", "--filter", "dev")
    code, out, err = cli(capsys, "preset", "url", "dev")
    assert (code, out) == (0, "http://127.0.0.1:3050/mcp?preset=dev\n") and "no hub is running" in err
    runtime = {"url": "http://127.0.0.1:4321/mcp", "pid": os.getpid(), "config": str(config_dir / "mcp.json")}
    (config_dir / "runtime.json").write_text(json.dumps(runtime))
    assert cli(capsys, "preset", "url", "dev")[1:] == ("http://127.0.0.1:4321/mcp?preset=dev\n", "")
    (config_dir / "runtime.json").write_text(json.dumps({**runtime, "freePort": True}))  # `serve --port 0`'s
    code, out, err = cli(capsys, "preset", "url", "dev")
    assert (code, out) == (0, "http://127.0.0.1:4321/mcp?preset=dev\n")
    assert err.startswith("onemcp: warning: the hub at http://127.0.0.1:4321/mcp was started with --port 0, so its")
    assert cli(capsys, "preset", "url", "dev", "--base", "http://h:1")[1] == "http://h:1/mcp?preset=dev\n"


def test_preset_url_keeps_other_query_and_replaces_selectors() -> None:
    assert preset_url("http://h:1/mcp/?tags=a&x=1", "my.set") == "http://h:1/mcp?x=1&preset=my.set"
    assert preset_url("http://h:1/sse", "p") == "http://h:1/sse?preset=p"


def test_test_shows_which_servers_match(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    servers = {
        "git": {"command": "git-mcp", "tags": ["dev", "git"]},
        "slowgit": {"command": "x", "tags": ["git", "slow"]},
        "docs": {"url": "http://127.0.0.1:1/mcp", "tags": ["dev"], "disabled": True},
        "time": {"command": "t"},
    }
    (config_dir / "mcp.json").write_text(json.dumps({"mcpServers": servers}))
    cli(capsys, "preset", "create", "dev", "--filter", "dev or (git and !slow)")
    code, out, _ = cli(capsys, "preset", "test", "dev")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "preset 'dev': dev or (git and !slow)"
    assert lines[1] == f"1 of 4 server(s) in {config_dir / 'mcp.json'} would be served"
    assert lines[3:] == [
        "   SERVER   TAGS      NOTE",
        "+  git      dev,git",
        "-  slowgit  git,slow",
        "+  docs     dev       disabled",
        "-  time     -",
    ]
    doc = json.loads(cli(capsys, "preset", "test", "dev", "--json")[1])
    assert {s["name"]: s["matches"] for s in doc["servers"]} == {"git": True, "slowgit": False, "docs": True,
                                                                  "time": False}  # fmt: skip


def test_load_presets_names_the_bad_entry(tmp_path: Path) -> None:
    path = tmp_path / "presets.json"
    assert load_presets(path) == {}
    path.write_text(json.dumps({"presets": {"ok": "a", "bad": {"filter": "a and"}}}))
    with pytest.raises(BadFilter) as bad:
        load_presets(path)
    assert "presets.bad.filter" in str(bad.value) and bad.value.position == 5
    path.write_text(json.dumps({"presets": {"x": {"filter": "a", "description": 3}}}))
    with pytest.raises(PresetError, match=r"presets.x.description: must be a string"):
        load_presets(path)
    path.write_text(json.dumps({"presets": []}))
    with pytest.raises(PresetError, match="'presets' must be an object"):
        load_presets(path)


# ---------------------------------------------------------------------- a running hub follows the file
def modern_tools(client: httpx.AsyncClient, url: str) -> Any:
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}}
    headers = {**HEADERS, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
    return client.post(url, json=body, headers=headers)


@pytest.mark.anyio
async def test_a_running_hub_picks_up_presets_written_by_the_cli(config_dir: Path) -> None:
    demo = {"command": sys.executable, "args": ["-m", "onemcp.demo"]}
    config = {"mcpServers": {"a": {**demo, "tags": ["one"]}, "b": {**demo, "tags": ["two"]}}}
    path = config_dir / "mcp.json"
    path.write_text(json.dumps(config))
    with anyio.fail_after(DEADLINE):
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient() as client:
            assert main(["preset", "create", "first", "--filter", "one"]) == 0
            url = f"{hub.url}?preset=first"
            while True:  # the hub re-reads presets.json when it changes
                response = await modern_tools(client, url)
                if response.status_code == 200:
                    break
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
            names = {t["name"] for t in response.json()["result"]["tools"]}
            assert names == {"a__echo", "a__add", "a__word_count"}
            assert main(["preset", "edit", "first", "--filter", "two"]) == 0
            while True:
                names = {t["name"] for t in (await modern_tools(client, url)).json()["result"]["tools"]}
                if names != {"a__echo", "a__add", "a__word_count"}:
                    break
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
            assert names == {"b__echo", "b__add", "b__word_count"}
            assert main(["preset", "edit", "first", "--exposure", "search"]) == 0
            while True:
                names = {t["name"] for t in (await modern_tools(client, url)).json()["result"]["tools"]}
                if "search_tools" in names:
                    break
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
            assert names == {"search_tools", "get_tool_schema", "call_tool"}
            full = {t["name"] for t in (await modern_tools(client, f"{url}&exposure=full")).json()["result"]["tools"]}
            assert full == {"b__echo", "b__add", "b__word_count"}  # the connection's own choice wins


def test_a_preset_exposure_is_written_shown_and_checked(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "preset", "create", "lean", "--filter", "x", "--exposure", "search")[0] == 0
    assert presets(config_dir)["lean"] == {"filter": "x", "exposure": "search"}
    assert json.loads(cli(capsys, "preset", "show", "lean", "--json")[1])["exposure"] == "search"
    assert cli(capsys, "preset", "edit", "lean", "--exposure", "hub")[0] == 0
    assert presets(config_dir)["lean"] == {"filter": "x"}
    (config_dir / "presets.json").write_text(json.dumps({"presets": {"bad": {"filter": "x", "exposure": "lazy"}}}))
    with pytest.raises(PresetError, match=r"presets.bad.exposure: must be one of full, search, auto"):
        load_presets(config_dir / "presets.json")


def test_a_filter_naming_a_tag_no_server_has_is_said(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Kept (a server may come with it later), but a typo does not pass unsaid as an empty view."""
    config_dir.mkdir(exist_ok=True)
    (config_dir / "mcp.json").write_text('{"mcpServers": {"t": {"command": "x", "tags": ["util"]}}}')
    code, _, err = cli(capsys, "preset", "create", "typo", "--filter", "utill or util")
    assert code == 0 and "warning: no server has the tag(s) 'utill' (in use: util)" in err, err
    code, _, err = cli(capsys, "preset", "edit", "typo", "--filter", "util")
    assert code == 0 and "warning" not in err


def test_concurrent_creates_take_turns_and_none_is_lost(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Parallel `onemcp preset create`s each said "created" while one preset was missing: each read the
    file and wrote its own version over the others' (hunt-ops F8). With the lock every one applies."""
    import threading

    names = [f"p{t}_{i}" for t in range(6) for i in range(6)]
    codes: list[int] = []

    def creator(mine: list[str]) -> None:
        codes.extend(main(["preset", "create", name, "--filter", "util"]) for name in mine)

    threads = [threading.Thread(target=creator, args=([n for n in names if n.startswith(f"p{t}_")],)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert "Traceback" not in capsys.readouterr().err
    assert codes == [0] * len(names)
    assert set(presets(config_dir)) == set(names)


@pytest.mark.parametrize("entry", [{"filter": "dev or"}, {"filter": "dev", "exposur": "search"}])
def test_list_and_show_warn_of_a_file_the_hub_refuses(
    config_dir: Path, capsys: pytest.CaptureFixture[str], entry: dict[str, str]
) -> None:
    """presets.json edited by hand with a broken filter or a misspelt key: the hub refuses it and keeps the
    presets it had, but `preset list` and `show` printed the file's presets with not a word (`mcp list`
    warns of a config the hub cannot load)."""
    (config_dir / "presets.json").write_text(json.dumps({"presets": {"dev": entry}}))
    for argv in (["preset", "list"], ["preset", "list", "--json"], ["preset", "show", "dev"]):
        code, out, err = cli(capsys, *argv)
        assert code == 0 and "dev" in out
        assert err.startswith("onemcp: warning: the hub cannot load this file, it keeps the presets it had: "), err
        assert "presets.dev." in err, err
