"""`onemcp app ...` run in-process against copies of real-format app configs under a fake home."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest

from onemcp.cli.main import main
from onemcp.config.load import load_config
from onemcp.integrations.apps import onemcp_command
from onemcp.integrations.importing import ITSELF
from support.cli import cli

ITSELF_NOTE = f"({ITSELF})"

DATA = Path(__file__).with_name("data")
# data file -> where the app keeps it (under the fake home, or "project/" for the current directory)
LAYOUT = {
    "claude_desktop_config.json": "home/.config/Claude/claude_desktop_config.json",
    "claude.json": "home/.claude.json",
    "project.mcp.json": "project/.mcp.json",
    "cursor_mcp.json": "home/.cursor/mcp.json",
    "vscode_mcp.json": "home/.config/Code/User/mcp.json",
    "vscode_settings.json": "home/.config/Code/User/settings.json",
    "vscode_project_mcp.json": "project/.vscode/mcp.json",
    "codex_config.toml": "home/.codex/config.toml",
    "windsurf_mcp_config.json": "home/.codeium/windsurf/mcp_config.json",
}


SET_HERE = (
    "API_KEY",
    "CONTEXT7_API_KEY",
    "DOCS_TOKEN",
    "GITHUB_TOKEN",
    "NOTION_TOKEN",
    "FIGMA_OAUTH_TOKEN",
    "PERPLEXITY_KEY",
)


class Machine:
    """A fake user: app configs under `home`, a project as the current dir, onemcp's config dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.project = root / "project"
        self.config_dir = root / "onemcp"
        self.config = self.config_dir / "mcp.json"

    def file(self, data_name: str) -> Path:
        return self.root / LAYOUT[data_name]

    def servers(self) -> dict[str, Any]:
        found: dict[str, Any] = orjson.loads(self.config.read_bytes())["mcpServers"]
        return found

    def snapshot(self) -> dict[Path, bytes]:
        return {p: p.read_bytes() for p in sorted(self.root.rglob("*")) if p.is_file()}


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Machine:
    m = Machine(tmp_path)
    for name, place in LAYOUT.items():
        target = tmp_path / place
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DATA / name, target)
    m.project.mkdir(exist_ok=True)
    monkeypatch.chdir(m.project)
    monkeypatch.setenv("ONEMCP_APP_HOME", str(m.home))
    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(m.config_dir))
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    for name in SET_HERE:  # what the apps' configs use, set as on the user's machine (the hub needs them)
        monkeypatch.setenv(name, "x")
    return m


# ---------------------------------------------------------------------- discover
def test_discover_lists_every_app(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "app", "discover")
    assert (code, err) == (0, "")
    for label in ("Claude Desktop (claude-desktop)", "Claude Code (claude-code)", "Cursor (cursor)",
                  "VS Code (vscode)", "Codex (codex)", "Windsurf (windsurf)"):  # fmt: skip
        assert label in out
    assert "brave.search  stdio  npx -y @modelcontextprotocol/server-brave-search" in out
    assert "remote-docs  http   https://docs.example.com/mcp" in out
    assert "note: ${input:perplexity-key} (the editor asks for it) is read from the hub's environment" in out
    assert "ghp_example" not in out  # env values are not echoed
    desktop = machine.file("claude_desktop_config.json")
    assert f"  {desktop} (mcpServers): " in out and out.count(str(desktop)) == 1  # its path said once


def test_discover_json(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "app", "discover", "--json")
    assert code == 0
    apps = {a["app"]: a for a in orjson.loads(out)}
    assert list(apps) == ["claude-desktop", "claude-code", "cursor", "vscode", "codex", "windsurf"]
    code_sources = apps["claude-code"]["sources"]
    assert [(s["scope"], [x["name"] for x in s["servers"]]) for s in code_sources] == [
        ("user", ["context7", "sentry", "git"]),
        ("project /home/alex/src/webapp", ["postgres", "git"]),
        (f"project {machine.project}", ["playwright", "api"]),
    ]
    figma = apps["codex"]["sources"][0]["servers"][1]
    assert figma == {"name": "figma", "importable": True, "transport": "http", "target": "https://mcp.figma.com/mcp",
                     "notes": []}  # fmt: skip
    assert "BSA-example" not in out


def test_discover_with_no_apps_installed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("ONEMCP_APP_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(capsys, "app", "discover")
    assert code == 0
    assert out.count("no config found") == 6
    assert f"(looked at {tmp_path}" in out  # the paths it checked, so a user can see where it looked


# ---------------------------------------------------------------------- import
def test_import_dry_run_changes_nothing(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    before = machine.snapshot()
    code, out, _ = cli(capsys, "app", "import", "claude-desktop", "--dry-run", "--point-to-hub")
    assert code == 0
    renamed = "  + brave-search  add       stdio  npx -y @modelcontextprotocol/server-brave-search"
    assert f"{renamed}  (renamed from 'brave.search')" in out
    assert f"  > {machine.file('claude_desktop_config.json')}: mcpServers: 4 server(s) -> onemcp" in out
    assert out.endswith("dry run: nothing written\n")
    assert machine.snapshot() == before


def test_import_needs_confirmation_when_not_a_terminal(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    before = machine.snapshot()
    code, _, err = cli(capsys, "app", "import", "cursor")
    assert code == 2
    assert "pass --yes" in err
    assert machine.snapshot() == before


def test_import_writes_valid_config_and_keeps_vars(machine: Machine, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    code, out, _ = cli(capsys, "app", "import", "claude-code", "--yes")
    assert code == 0
    assert "imported 7 server(s) from Claude Code" in out
    servers = machine.servers()
    assert list(servers) == ["context7", "sentry", "git", "postgres", "git-2", "playwright", "api"]
    assert servers["context7"] == {"type": "http", "url": "https://mcp.context7.com/mcp",
                                   "headers": {"CONTEXT7_API_KEY": "${CONTEXT7_API_KEY}"}}  # fmt: skip
    assert servers["git-2"]["args"] == ["mcp-server-git", "--repository", "/home/alex/src/webapp"]
    assert servers["api"]["url"] == "${API_BASE_URL:-https://api.example.com}/mcp"
    monkeypatch.setenv("CONTEXT7_API_KEY", "k")
    monkeypatch.setenv("API_KEY", "k")
    config = load_config(machine.config)
    assert config.servers["api"].url == "https://api.example.com/mcp"
    assert config.servers["sentry"].transport == "sse"


def test_import_translates_each_apps_spelling(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    for app in ("codex", "windsurf"):
        assert cli(capsys, "app", "import", app, "--yes", "--prefix", f"{app}-")[0] == 0
    servers = machine.servers()
    assert servers["codex-figma"] == {"type": "http", "url": "https://mcp.figma.com/mcp", "timeout": 120,
                                      "headers": {"Authorization": "Bearer ${FIGMA_OAUTH_TOKEN}"}}  # fmt: skip
    assert servers["codex-docs"]["env"] == {"DOCS_REGION": "eu"}
    assert servers["codex-scratch"]["disabled"] is True
    assert servers["windsurf-remote-docs"] == {"type": "http", "url": "https://docs.example.com/mcp",
                                               "headers": {"Authorization": "Bearer ${DOCS_TOKEN}"}}  # fmt: skip
    assert servers["windsurf-github"]["env"] == {"GITHUB_PERSONAL_ACCESS_TOKEN": "${GITHUB_TOKEN}"}
    assert servers["windsurf-puppeteer"]["disabled"] is True


def test_import_reports_skips_and_conflicts(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    machine.config_dir.mkdir()
    mine = {
        "mcpServers": {
            # same definition as Claude Desktop's (tags do not count): skipped
            "filesystem": {
                "command": "npx",
                "tags": ["files"],
                "args": [
                    "-y",
                    "@modelcontextprotocol/server-filesystem",
                    "/Users/alex/Desktop",
                    "/Users/alex/Downloads",
                ],
            },
            # same name, different definition: a conflict, left alone
            "github": {"type": "http", "url": "https://api.githubcopilot.com/mcp/"},
        }
    }
    machine.config.write_bytes(orjson.dumps(mine))
    code, out, err = cli(capsys, "app", "import", "claude-desktop", "--yes")
    assert code == 1  # something was left out, and stderr says what and how to bring it in
    assert "onemcp: not imported: github (a different server has the name in mcp.json: --prefix P" in err
    assert "--force replaces it)" in err
    assert "  = filesystem    skip      (already in mcp.json with the same definition)" in out
    assert "  ! github        conflict  (mcp.json has a different server by this name)" in out
    servers = machine.servers()
    assert servers["github"] == mine["mcpServers"]["github"]
    assert servers["filesystem"]["tags"] == ["files"]
    assert list(servers) == ["filesystem", "github", "sqlite", "brave-search"]

    # --prefix, as said, brings in the conflicting one; what is there already is not copied again under P
    code, out, _ = cli(capsys, "app", "import", "claude-desktop", "--dry-run", "--prefix", "cd-")
    assert code == 0 and "  + cd-github" in out
    assert "  = cd-filesystem    skip      (already in mcp.json as 'filesystem', the same definition)" in out, out
    assert "  = cd-sqlite        skip      (already in mcp.json as 'sqlite', the same definition)" in out

    code, out, _ = cli(capsys, "app", "import", "claude-desktop", "--yes", "--force")
    assert code == 0
    assert "  ~ github        replace" in out
    assert machine.servers()["github"]["command"] == "npx"


def test_point_to_hub_is_refused_while_servers_would_be_lost(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.config_dir.mkdir()
    machine.config.write_text('{"mcpServers": {"linear": {"command": "something-else"}}}')
    before = machine.snapshot()
    code, _, err = cli(capsys, "app", "import", "cursor", "--yes", "--point-to-hub")
    assert code == 1
    assert "not pointing Cursor at the hub: linear would no longer be reachable" in err
    assert machine.snapshot() == before


def test_point_to_vs_code_settings_with_comments_is_refused(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    before = machine.snapshot()
    code, out, err = cli(capsys, "app", "import", "vscode", "--yes", "--point-to-hub")
    assert code == 1
    assert "settings.json has comments or trailing commas that a rewrite would lose" in err
    assert "+ perplexity" in out  # the plan was shown before refusing
    assert machine.snapshot() == before


@pytest.mark.parametrize(
    ("app", "data", "hub_entry"),
    [
        ("claude-desktop", "claude_desktop_config.json", {"command": onemcp_command(), "args": ["proxy"]}),
        ("cursor", "cursor_mcp.json", {"url": "http://127.0.0.1:3050/mcp"}),
        ("windsurf", "windsurf_mcp_config.json", {"serverUrl": "http://127.0.0.1:3050/mcp"}),
        ("vscode", "vscode_mcp.json", {"type": "http", "url": "http://127.0.0.1:3050/mcp"}),
        ("claude-code", "claude.json", {"type": "http", "url": "http://127.0.0.1:3050/mcp"}),
    ],
)
def test_point_to_hub_and_restore_round_trip(
    machine: Machine, capsys: pytest.CaptureFixture[str], app: str, data: str, hub_entry: dict[str, Any]
) -> None:
    path = machine.file(data)
    if app == "vscode":  # its settings.json has comments; take the servers out so only mcp.json is rewritten
        settings = machine.file("vscode_settings.json")
        settings.write_text('{\n    // mine\n    "editor.fontSize": 14,\n}\n')
    original = path.read_bytes()
    original_doc = orjson.loads(original)
    others = {k: v for k, v in original_doc.items() if k not in ("mcpServers", "servers", "projects")}

    code, out, err = cli(capsys, "app", "import", app, "--yes", "--point-to-hub")
    assert code == 0, err
    assert "now uses only the hub at http://127.0.0.1:3050/mcp" in out
    doc = orjson.loads(path.read_bytes())
    key = "servers" if app == "vscode" else "mcpServers"
    assert doc[key] == {"onemcp": hub_entry}
    assert {k: v for k, v in doc.items() if k in others} == others  # every other key survives
    assert list(doc) == list(original_doc)  # in the same order
    assert machine.file("project.mcp.json").read_bytes() == (DATA / "project.mcp.json").read_bytes()
    assert machine.file("vscode_project_mcp.json").read_bytes() == (DATA / "vscode_project_mcp.json").read_bytes()

    code, out, _ = cli(capsys, "app", "restore", app, "--list")
    assert code == 0
    assert "point-to-hub" in out

    code, out, _ = cli(capsys, "app", "restore", app)
    assert code == 0
    assert path.read_bytes() == original  # byte for byte


@pytest.mark.parametrize(
    ("app", "how"),
    [
        ("claude-desktop", 'add "env": {"ONEMCP_TOKEN": "<key>"} to that entry'),
        ("cursor", "have that entry send the header `Authorization: Bearer <key>`"),
    ],
)
def test_point_to_hub_says_the_apps_entry_needs_a_token_on_a_hub_with_auth(
    machine: Machine, capsys: pytest.CaptureFixture[str], app: str, how: str
) -> None:
    """The entry written carries no credential: on a hub that asks every client for one, the app reached
    none of its servers, and nothing said why or what to add."""
    machine.config_dir.mkdir()
    machine.config.write_text('{"mcpServers": {}, "onemcp": {"auth": {"apiKeys": true}}}')
    code, _, err = cli(capsys, "app", "import", app, "--yes", "--point-to-hub")
    assert code == 0, err
    assert "onemcp: warning: the hub asks every client for a token (onemcp.auth)" in err, err
    assert f"`onemcp auth key create --name {app}`" in err and how in err
    assert cli(capsys, "app", "restore", app)[0] == 0
    machine.config.write_text('{"mcpServers": {}}')  # no auth: nothing to add
    code, _, err = cli(capsys, "app", "import", app, "--yes", "--point-to-hub")
    assert code == 0 and "token" not in err, err


def test_codex_point_to_hub_round_trip(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    path = machine.file("codex_config.toml")
    original = path.read_bytes()
    assert (
        cli(capsys, "app", "import", "codex", "--yes", "--point-to-hub", "--hub-url", "http://127.0.0.1:4000/mcp")[0]
        == 0
    )
    doc = tomllib.loads(path.read_text())
    assert doc["mcp_servers"] == {"onemcp": {"url": "http://127.0.0.1:4000/mcp"}}
    before = tomllib.loads(original.decode())
    del before["mcp_servers"]
    del doc["mcp_servers"]
    assert doc == before
    assert "# Documentation lookups" not in path.read_text()  # went with its table
    assert cli(capsys, "app", "restore", "codex")[0] == 0
    assert path.read_bytes() == original


def test_point_to_hub_uses_the_running_hubs_url(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    machine.config_dir.mkdir()
    url = "http://127.0.0.1:45678/mcp"
    (machine.config_dir / "runtime.json").write_bytes(orjson.dumps({"url": url, "pid": os.getpid()}))
    assert cli(capsys, "app", "import", "cursor", "--yes", "--point-to-hub")[0] == 0
    assert orjson.loads(machine.file("cursor_mcp.json").read_bytes())["mcpServers"] == {"onemcp": {"url": url}}


def test_point_to_hub_refuses_a_port_the_hub_chose_at_start(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    """Trial s39-h4: a hub started with --port 0 had its port written into the app's config, which lost the
    hub at its next restart (another port)."""
    import os

    machine.config_dir.mkdir()
    url = "http://127.0.0.1:45678/mcp"
    runtime = {"url": url, "pid": os.getpid(), "freePort": True}  # what `serve --port 0` writes
    (machine.config_dir / "runtime.json").write_bytes(orjson.dumps(runtime))
    before = machine.file("cursor_mcp.json").read_bytes()
    for hub_url in ((), ("--hub-url", f"{url}?preset=dev")):
        code, _, err = cli(capsys, "app", "import", "cursor", "--yes", "--point-to-hub", *hub_url)
        assert code == 1, err
        assert f"not pointing Cursor at the hub: the hub at {url} was started with --port 0, so its port" in err
        assert "start it on a fixed port (`onemcp restart --port 3050`)" in err
        assert machine.file("cursor_mcp.json").read_bytes() == before and not machine.config.exists()
    code, _, err = cli(capsys, "app", "import", "cursor", "--yes", "--point-to-hub", "--hub-url", "http://h:3050/mcp")
    assert code == 0, err  # another hub, at an address of the user's choosing
    assert orjson.loads(machine.file("cursor_mcp.json").read_bytes())["mcpServers"] == {
        "onemcp": {"url": "http://h:3050/mcp"}
    }


def test_restore_a_given_backup_and_undo_the_restore(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    path = machine.file("windsurf_mcp_config.json")
    original = path.read_bytes()
    assert cli(capsys, "app", "import", "windsurf", "--yes", "--point-to-hub")[0] == 0
    pointed = path.read_bytes()
    [backup] = sorted((machine.config_dir / "app-backups" / "windsurf").glob("*.json"))

    code, out, _ = cli(capsys, "app", "restore", "windsurf", "--backup", str(backup))
    assert code == 0
    assert path.read_bytes() == original
    safety = Path(out.splitlines()[-1].rsplit(" ", 1)[-1])
    assert cli(capsys, "app", "restore", "windsurf", "--backup", str(safety))[0] == 0
    assert path.read_bytes() == pointed

    code, _, err = cli(capsys, "app", "restore", "cursor", "--backup", str(backup))
    assert code == 2
    assert "is a backup of another app" in err


def test_restore_without_a_backup(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "app", "restore", "cursor")
    assert code == 1
    assert "no --point-to-hub backup of Cursor" in err


def test_import_from_an_app_that_is_not_installed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("ONEMCP_APP_HOME", str(tmp_path))
    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(tmp_path / "onemcp"))
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "app", "import", "windsurf", "--yes")
    assert code == 1
    assert "no Windsurf config found (looked at " in err


def test_unknown_app_is_a_usage_error(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["app", "import", "notepad"])
    assert info.value.code == 2
    assert "invalid choice: 'notepad'" in capsys.readouterr().err


def test_point_to_hub_waits_while_the_hub_would_refuse_a_variable_that_is_not_set(
    machine: Machine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub refuses a config with an unset ${VAR}: pointing the app at it would lose its servers."""
    monkeypatch.delenv("NOTION_TOKEN")
    app_file = machine.file("cursor_mcp.json")
    before = app_file.read_bytes()
    code, out, err = cli(capsys, "app", "import", "cursor", "--yes", "--point-to-hub")
    assert code == 1 and "imported" in out  # the servers are in mcp.json, for when it is set
    assert "${NOTION_TOKEN} is not set here" in err
    assert "not pointing Cursor at the hub: the hub refuses its config while ${NOTION_TOKEN} is not set" in err
    assert app_file.read_bytes() == before
    monkeypatch.setenv("NOTION_TOKEN", "x")  # set: the same command again points Cursor at the hub
    code, out, err = cli(capsys, "app", "import", "cursor", "--yes", "--point-to-hub")
    assert code == 0 and "Cursor now uses only the hub" in out, err


@pytest.mark.parametrize(
    ("app", "data"), [("cursor", "cursor_mcp.json"), ("claude-desktop", "claude_desktop_config.json")]
)
def test_importing_again_after_point_to_hub_skips_the_hub_itself(
    machine: Machine, capsys: pytest.CaptureFixture[str], app: str, data: str
) -> None:
    """cli hunt F7: the app's "onemcp" entry (the hub's URL, or `onemcp proxy`) was imported as an upstream of
    the hub, which then listed every tool twice."""
    assert cli(capsys, "app", "import", app, "--yes", "--point-to-hub")[0] == 0
    imported = machine.servers()
    path = machine.file(data)
    doc = orjson.loads(path.read_bytes())
    doc["mcpServers"]["added-later"] = {"command": "later"}  # the user adds a server in the app
    path.write_bytes(orjson.dumps(doc))
    code, out, _ = cli(capsys, "app", "import", app, "--yes")
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("  = onemcp "))
    assert line.split() == ["=", "onemcp", "skip", *ITSELF_NOTE.split()]
    assert machine.servers() == {**imported, "added-later": {"command": "later"}}
