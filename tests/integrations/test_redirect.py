"""Pointing apps at the hub: JSON and TOML rewrites that keep everything else, backups, restore."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import orjson
import pytest

from onemcp.integrations.apps import APPS, Where, onemcp_command
from onemcp.integrations.redirect import (
    BEFORE_RESTORE,
    POINT_TO_HUB,
    RedirectError,
    apply_redirect,
    manifests,
    plan_redirect,
    restore,
)

URL = "http://127.0.0.1:3050/mcp"


@pytest.fixture
def where(tmp_path: Path) -> Where:
    w = Where(home=tmp_path / "home", cwd=tmp_path / "project", platform="linux")
    w.home.mkdir()
    w.cwd.mkdir()
    return w


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_cursor_gets_one_url_server_and_other_keys_stay(where: Where) -> None:
    path = write(where.home / ".cursor" / "mcp.json", '{"mcpServers": {"a": {"command": "x"}}, "other": [1, 2]}')
    [rewrite] = plan_redirect(APPS["cursor"], where, URL)
    assert rewrite.path == path
    assert orjson.loads(rewrite.after) == {"mcpServers": {"onemcp": {"url": URL}}, "other": [1, 2]}
    assert rewrite.summary == "mcpServers: 1 server(s) -> onemcp"


def test_project_files_are_never_rewritten(where: Where) -> None:
    project = write(where.cwd / ".cursor" / "mcp.json", '{"mcpServers": {"p": {"command": "x"}}}')
    [rewrite] = plan_redirect(APPS["cursor"], where, URL)
    assert rewrite.path != project
    assert rewrite.before is None  # the user file did not exist: it is created


def test_claude_desktop_gets_the_stdio_proxy(where: Where) -> None:
    write(where.home / ".config" / "Claude" / "claude_desktop_config.json", '{"mcpServers": {}}')
    [rewrite] = plan_redirect(APPS["claude-desktop"], where, URL)
    assert orjson.loads(rewrite.after)["mcpServers"] == {"onemcp": {"command": onemcp_command(), "args": ["proxy"]}}
    [other] = plan_redirect(APPS["claude-desktop"], where, "http://127.0.0.1:9999/mcp")
    assert orjson.loads(other.after)["mcpServers"]["onemcp"]["args"] == ["proxy", "--url", "http://127.0.0.1:9999/mcp"]


def test_claude_code_empties_project_servers_in_the_same_file(where: Where) -> None:
    write(
        where.home / ".claude.json",
        '{"mcpServers": {"a": {"command": "x"}}, "projects": {"/p": {"mcpServers": {"b": {"command": "y"}}, "k": 1}}}',
    )
    [rewrite] = plan_redirect(APPS["claude-code"], where, URL)
    assert orjson.loads(rewrite.after) == {
        "mcpServers": {"onemcp": {"type": "http", "url": URL}},
        "projects": {"/p": {"mcpServers": {}, "k": 1}},
    }


def test_already_pointing_means_nothing_to_do(where: Where) -> None:
    write(
        where.home / ".codeium" / "windsurf" / "mcp_config.json",
        orjson.dumps({"mcpServers": {"onemcp": {"serverUrl": URL}}}).decode(),
    )
    assert plan_redirect(APPS["windsurf"], where, URL) == []


def test_vs_code_file_with_comments_is_refused(where: Where) -> None:
    write(
        where.home / ".config" / "Code" / "User" / "settings.json",
        '{\n // mine\n "mcp": {"servers": {"a": {"command": "x"}}}\n}',
    )
    with pytest.raises(RedirectError, match="comments"):
        plan_redirect(APPS["vscode"], where, URL)


CODEX = """\
model = "gpt-5-codex"

[mcp_servers.docs]
command = "npx"
args = ["-y", "docs"]

# comment about the env table
[mcp_servers.docs.env]
K = "v"

[profiles.fast]
model = "gpt-5-mini"

[mcp_servers."odd.name"]
url = "https://h/mcp"
"""


def test_codex_tables_are_replaced_and_the_rest_is_kept(where: Where) -> None:
    write(where.home / ".codex" / "config.toml", CODEX)
    [rewrite] = plan_redirect(APPS["codex"], where, URL)
    text = rewrite.after.decode()
    assert text == (
        'model = "gpt-5-codex"\n\n[profiles.fast]\nmodel = "gpt-5-mini"\n\n[mcp_servers.onemcp]\nurl = "http://127.0.0.1:3050/mcp"\n'
    )
    assert tomllib.loads(text)["mcp_servers"] == {"onemcp": {"url": URL}}


def test_codex_inline_servers_are_refused_rather_than_guessed(where: Where) -> None:
    write(where.home / ".codex" / "config.toml", 'mcp_servers = { a = { command = "x" } }\n')
    with pytest.raises(RedirectError, match="cannot handle safely"):
        plan_redirect(APPS["codex"], where, URL)


def test_redirect_then_restore_is_byte_identical_with_modes(where: Where, tmp_path: Path) -> None:
    original = '{\n    "mcpServers": {"a": {"command": "x"}},\n    "theme": "dark"\n}'  # no final newline
    path = write(where.home / ".cursor" / "mcp.json", original)
    path.chmod(0o604)
    root = tmp_path / "app-backups"
    rewrites = plan_redirect(APPS["cursor"], where, URL)

    manifest = apply_redirect(APPS["cursor"], rewrites, root, URL)
    assert orjson.loads(path.read_bytes())["mcpServers"] == {"onemcp": {"url": URL}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o604
    assert manifest.parent == root / "cursor"

    restored, safety = restore(manifest, root)
    assert path.read_text() == original
    assert stat.S_IMODE(path.stat().st_mode) == 0o604
    assert restored.files == (path,)
    assert [m.reason for m in manifests(root, "cursor")] == [POINT_TO_HUB, BEFORE_RESTORE]
    assert manifests(root, "cursor")[-1].path == safety


def test_restore_deletes_a_file_the_redirect_created_and_keeps_binary_bytes(where: Where, tmp_path: Path) -> None:
    root = tmp_path / "app-backups"
    windsurf = where.home / ".codeium" / "windsurf" / "mcp_config.json"
    rewrites = plan_redirect(APPS["windsurf"], where, URL)
    manifest = apply_redirect(APPS["windsurf"], rewrites, root, URL)
    assert windsurf.exists()
    restore(manifest, root)
    assert not windsurf.exists()

    odd = b'{"mcpServers": {}, "x": "\xff"}'  # not UTF-8: kept as base64
    windsurf.write_bytes(odd)
    from onemcp.integrations.redirect import save_manifest

    saved = save_manifest(root, "windsurf", [windsurf], reason="test")
    windsurf.write_text("{}")
    restore(saved, root)
    assert windsurf.read_bytes() == odd


def test_the_proxy_entry_names_onemcp_by_its_absolute_path() -> None:
    """A desktop app's PATH is short: a bare `onemcp` would not start."""
    from pathlib import Path

    assert Path(onemcp_command()).is_absolute() and Path(onemcp_command()).name == "onemcp"
