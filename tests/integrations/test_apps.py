"""Other apps' configs: where they live per platform, reading JSON/JSONC/TOML, translating entries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from onemcp.config.formats import is_plain_json, strip_jsonc
from onemcp.config.load import parse_config
from onemcp.integrations.apps import (
    APPS,
    Format,
    Source,
    Where,
    discover,
    translate_codex,
    translate_editor,
    translate_json,
)


def where(tmp_path: Path, platform: str = "linux") -> Where:
    return Where(home=tmp_path / "home", cwd=tmp_path / "project", platform=platform)


@pytest.mark.parametrize(
    ("platform", "relative"),
    [
        ("linux", ".config/Claude/claude_desktop_config.json"),
        ("darwin", "Library/Application Support/Claude/claude_desktop_config.json"),
        ("win32", "AppData/Roaming/Claude/claude_desktop_config.json"),
    ],
)
def test_claude_desktop_path_per_platform(tmp_path: Path, platform: str, relative: str) -> None:
    [source] = APPS["claude-desktop"].sources(where(tmp_path, platform))
    assert source.path == tmp_path / "home" / relative


def test_every_path_is_under_the_app_home_or_the_project(tmp_path: Path) -> None:
    w = where(tmp_path)
    for app in APPS.values():
        for source in app.sources(w):
            assert source.path.is_relative_to(w.home) or (source.shared and source.path.is_relative_to(w.cwd))


def test_app_home_override_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEMCP_APP_HOME", str(tmp_path / "fake"))
    assert Where.current().home == tmp_path / "fake"


def test_discover_reports_missing_and_broken_files_without_failing(tmp_path: Path) -> None:
    w = where(tmp_path)
    broken = w.home / ".cursor" / "mcp.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    [user, project] = discover(APPS["cursor"], w)
    assert user.exists and user.error is not None and "not valid JSON" in user.error
    assert not project.exists and project.error is None


def test_claude_code_finds_user_project_and_repository_servers(tmp_path: Path) -> None:
    w = where(tmp_path)
    w.home.mkdir()
    (w.home / ".claude.json").write_text(
        '{"mcpServers": {"a": {"command": "x"}},'
        ' "projects": {"/p": {"mcpServers": {"b": {"type": "sse", "url": "http://h/sse"}}}, "/q": {"mcpServers": {}}}}'
    )
    w.cwd.mkdir()
    (w.cwd / ".mcp.json").write_text('{"mcpServers": {"c": {"type": "http", "url": "http://h/mcp"}}}')
    reports = discover(APPS["claude-code"], w)
    assert [(r.source.scope, [s.name for s in r.servers]) for r in reports] == [
        ("user", ["a"]),
        ("project /p", ["b"]),
        (f"project {w.cwd}", ["c"]),
    ]
    assert reports[1].servers[0].entry == {"type": "sse", "url": "http://h/sse"}
    assert reports[2].source.shared


def json_source(tmp_path: Path) -> Source:
    return Source(tmp_path / "x.json", ("mcpServers",), Format.JSON)


@pytest.mark.parametrize(
    ("raw", "entry"),
    [
        ({"command": "npx", "args": ["-y", "s"], "env": {"K": "v"}, "autoApprove": ["t"]},
         {"command": "npx", "args": ["-y", "s"], "env": {"K": "v"}}),
        ({"type": "stdio", "command": "uvx"}, {"command": "uvx"}),
        ({"type": "streamable-http", "url": "https://h/mcp"}, {"type": "http", "url": "https://h/mcp"}),
        ({"url": "https://h/mcp"}, {"type": "http", "url": "https://h/mcp"}),
        ({"url": "https://h/sse"}, {"type": "sse", "url": "https://h/sse"}),  # no type + /sse: legacy transport
        ({"serverUrl": "https://h/mcp", "headers": {"A": "b"}},  # Windsurf
         {"type": "http", "url": "https://h/mcp", "headers": {"A": "b"}}),
        ({"command": "x", "disabled": True, "disabledTools": ["t"]}, {"command": "x", "disabled": True}),
    ],
)  # fmt: skip
def test_json_entries_translate(tmp_path: Path, raw: dict[str, Any], entry: dict[str, Any]) -> None:
    assert translate_json(raw, json_source(tmp_path), where(tmp_path)) == (entry, [])


def test_a_dollar_the_app_took_literally_stays_literal(tmp_path: Path) -> None:
    """Claude Desktop reads "s3cr$tPa55" as it is; imported as written, the hub read $tPa55 as a variable and
    refused the whole config (or, with such a variable set, passed the server another password)."""
    raw = {"command": "db", "args": ["^start$", "$$x"], "env": {"PASSWORD": "s3cr$tPa55", "T": "${env:TOK}"}}
    entry, _ = translate_editor(raw, json_source(tmp_path), where(tmp_path))
    assert entry == {"command": "db", "args": ["^start$", "$$$$x"], "env": {"PASSWORD": "s3cr$$tPa55", "T": "${TOK}"}}
    config = parse_config(
        json.dumps({"mcpServers": {"db": entry}}).encode(), source="mcp.json", env={"tPa55": "no", "TOK": "t"}
    )
    assert config.servers["db"].env["PASSWORD"] == "s3cr$tPa55" and config.servers["db"].args == ["^start$", "$$x"]
    codex = {"command": "db", "env": {"P": "a$b"}, "http_headers": {"K": "$v"}}
    assert translate_codex(codex, json_source(tmp_path), where(tmp_path))[0] == {
        "command": "db",
        "env": {"P": "a$$b"},
        "headers": {"K": "$$v"},
    }


def test_unknown_transport_cannot_be_imported(tmp_path: Path) -> None:
    entry, notes = translate_json({"type": "websocket", "url": "ws://h"}, json_source(tmp_path), where(tmp_path))
    assert entry is None
    assert notes == ["transport type 'websocket' is not supported by the hub"]


def test_editor_variables_become_ours_or_are_resolved(tmp_path: Path) -> None:
    w = where(tmp_path)
    project = Source(w.cwd / ".vscode" / "mcp.json", ("servers",), Format.JSONC, "project", shared=True)
    raw = {
        "command": "node",
        "args": ["${workspaceFolder}/srv.js", "${userHome}/data"],
        "env": {"TOKEN": "${env:MY_TOKEN}", "KEY": "${input:api-key}"},
    }
    entry, notes = translate_editor(raw, project, w)
    assert entry == {
        "command": "node",
        "args": [f"{w.cwd}/srv.js", f"{w.home}/data"],
        "env": {"TOKEN": "${MY_TOKEN}", "KEY": "${API_KEY}"},
    }
    # the editor asks for an input; the hub cannot ask, so it reads a variable of that name
    assert notes == ["${input:api-key} (the editor asks for it) is read from the hub's environment as ${API_KEY}"]


def test_codex_tables_translate(tmp_path: Path) -> None:
    toml = Source(tmp_path / "config.toml", ("mcp_servers",), Format.TOML)
    w = where(tmp_path)
    stdio = {"command": "npx", "args": ["s"], "env": {"A": "1"}, "env_vars": ["HOME_TOKEN"], "enabled": False,
             "startup_timeout_sec": 20, "tool_timeout_sec": 90}  # fmt: skip
    assert translate_codex(stdio, toml, w) == (
        {
            "command": "npx",
            "args": ["s"],
            "env": {"A": "1", "HOME_TOKEN": "${HOME_TOKEN}"},
            "disabled": True,
            "timeout": 90,
            "startupTimeout": 20,
        },
        [],
    )
    remote = {"url": "https://h/mcp", "bearer_token_env_var": "TOK", "env_http_headers": {"X-Org": "ORG"},
              "http_headers": {"X-Static": "v"}}  # fmt: skip
    assert translate_codex(remote, toml, w) == (
        {
            "type": "http",
            "url": "https://h/mcp",
            "headers": {"X-Static": "v", "X-Org": "${ORG}", "Authorization": "Bearer ${TOK}"},
        },
        [],
    )


# ---------------------------------------------------------------------- JSONC
def test_jsonc_comments_and_trailing_commas_are_removed_outside_strings() -> None:
    text = '{\n  // a comment\n  "url": "http://x/y", /* block */ "a": [1, 2,],\n  "s": "not // a comment",\n}\n'
    assert json.loads(strip_jsonc(text)) == {"url": "http://x/y", "a": [1, 2], "s": "not // a comment"}
    assert not is_plain_json(text)
    assert is_plain_json('{"a": "b // c", "d": "e\\" /* f"}')


def test_trailing_comma_before_a_comment_and_brace() -> None:
    assert json.loads(strip_jsonc('{"a": 1, // last\n}')) == {"a": 1}
