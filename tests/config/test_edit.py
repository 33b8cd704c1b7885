"""Editing mcp.json: raw content kept, validation before writing, atomic replace, backups."""

from __future__ import annotations

import json
import os
import re
import stat
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest

from onemcp.config import formats, schema
from onemcp.config.edit import (
    BACKUPS_KEPT,
    BadName,
    ChangedOnDisk,
    Document,
    EditError,
    NoSuchServer,
    ServerChange,
    ServerExists,
    add_server,
    backup_dir,
    change_server,
    edit_config,
    remove_server,
    render,
    set_disabled,
)
from onemcp.config.files import backups_of, unique_path
from onemcp.config.load import ConfigError

ORIGINAL = """{
    "$schema": "https://example.com/mcp.schema.json",
    "onemcp": {"instructions": "be nice"},
    "mcpServers": {
        "git": {
            "command": "uvx",
            "args": ["mcp-server-git", "--repository", "${REPO}"],
            "env": {"GIT_TOKEN": "${GIT_TOKEN:-none}"},
            "autoApprove": ["git_status"]
        },
        "web": {"type": "http", "url": "https://example.com/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}}
    }
}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(ORIGINAL)
    path.chmod(0o640)
    return path


ENV = {"REPO": "/src/repo", "TOKEN": "secret"}


def doc_of(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def test_edit_keeps_other_clients_keys_order_and_var_references(config: Path) -> None:
    result = edit_config(
        config, lambda d: add_server(d, "time", {"command": "uvx", "args": ["mcp-server-time"]}), env=ENV
    )

    assert result.changed
    doc = doc_of(config)
    assert list(doc) == ["$schema", "onemcp", "mcpServers"]
    assert doc["onemcp"] == {"instructions": "be nice"}
    assert list(doc["mcpServers"]) == ["git", "web", "time"]
    assert doc["mcpServers"]["git"]["args"][-1] == "${REPO}"  # written raw, not expanded
    assert doc["mcpServers"]["git"]["env"] == {"GIT_TOKEN": "${GIT_TOKEN:-none}"}
    assert doc["mcpServers"]["git"]["autoApprove"] == ["git_status"]
    assert doc["mcpServers"]["web"]["headers"]["Authorization"] == "Bearer ${TOKEN}"
    # The config the edit validated is the expanded one the hub will see.
    assert result.config.servers["git"].args[-1] == "/src/repo"


def test_edit_keeps_the_files_indentation(config: Path) -> None:
    edit_config(config, lambda d: set_disabled(d, "web", True), env=ENV)
    assert config.read_text().startswith('{\n    "$schema"')
    assert config.read_text().endswith("}\n")


def test_invalid_edit_is_refused_and_the_file_untouched(config: Path) -> None:
    before = config.read_bytes()
    with pytest.raises(ConfigError) as info:
        edit_config(config, lambda d: add_server(d, "bad", {"url": "ftp://example.com"}), env=ENV)
    assert str(info.value) == f"{config}: mcpServers.bad.url: must start with http:// or https://"
    assert config.read_bytes() == before
    assert not backup_dir(config).exists()


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda d: add_server(d, "git", {"command": "x"}), ServerExists),
        (lambda d: add_server(d, "a.b", {"command": "x"}), BadName),
        (lambda d: add_server(d, "a__b", {"command": "x"}), BadName),
        (lambda d: remove_server(d, "nope"), NoSuchServer),
        (lambda d: set_disabled(d, "nope", True), NoSuchServer),
    ],
)
def test_changes_that_do_not_apply_write_nothing(config: Path, change: Any, error: type[Exception]) -> None:
    before = config.read_bytes()
    with pytest.raises(error):
        edit_config(config, change, env=ENV)
    assert config.read_bytes() == before


def test_name_rules_follow_the_files_separator(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text('{"onemcp": {"separator": "-"}, "mcpServers": {}}')
    with pytest.raises(BadName, match="separator '-'"):
        edit_config(path, lambda d: add_server(d, "my-server", {"command": "x"}), env={})
    edit_config(path, lambda d: add_server(d, "my_server", {"command": "x"}), env={})
    assert "my_server" in doc_of(path)["mcpServers"]


def test_previous_version_is_backed_up_with_its_mode_and_only_the_last_ten_kept(config: Path) -> None:
    versions = [config.read_bytes()]
    for i in range(BACKUPS_KEPT + 3):
        result = edit_config(config, partial(add_server, name=f"s{i}", entry={"command": "x"}), env=ENV)
        assert result.backup is not None
        assert result.backup.read_bytes() == versions[-1]
        assert stat.S_IMODE(result.backup.stat().st_mode) == 0o640
        versions.append(config.read_bytes())
    kept = backups_of("mcp.json", backup_dir(config))
    assert len(kept) == BACKUPS_KEPT
    assert [p.read_bytes() for p in kept] == versions[-BACKUPS_KEPT - 1 : -1]
    assert stat.S_IMODE(config.stat().st_mode) == 0o640


def test_backup_names_sort_by_age_even_when_written_in_the_same_instant(tmp_path: Path) -> None:
    first = unique_path(tmp_path, "mcp.json", ".bak")
    first.write_text("1")
    # A backup stamped in the future (clock stepped back since): the next one still sorts after it.
    future = tmp_path / "mcp.json.29991231T235959_999998Z.bak"
    future.write_text("2")
    third = unique_path(tmp_path, "mcp.json", ".bak")
    assert third.name == "mcp.json.29991231T235959_999999Z.bak"
    assert sorted([third.name, future.name, first.name]) == [first.name, future.name, third.name]


def test_no_change_writes_nothing(config: Path) -> None:
    before = config.read_bytes()
    result = edit_config(config, lambda d: set_disabled(d, "git", False), env=ENV)
    assert not result.changed
    assert config.read_bytes() == before
    assert not backup_dir(config).exists()


def test_enable_removes_the_flag_and_disable_sets_it(config: Path) -> None:
    edit_config(config, lambda d: set_disabled(d, "git", True), env=ENV)
    assert doc_of(config)["mcpServers"]["git"]["disabled"] is True
    edit_config(config, lambda d: set_disabled(d, "git", False), env=ENV)
    assert "disabled" not in doc_of(config)["mcpServers"]["git"]


def test_unset_variables_do_not_block_an_edit_but_are_reported_when_new(config: Path) -> None:
    # $REPO and $TOKEN are not set here; the hub may have them. Only the one this edit adds is news.
    result = edit_config(
        config, lambda d: add_server(d, "api", {"url": "${API_URL}", "headers": {"K": "${API_KEY}"}}), env={}
    )
    assert result.changed
    assert result.unset == ("API_KEY", "API_URL")
    assert doc_of(config)["mcpServers"]["api"]["url"] == "${API_URL}"


def test_a_doubled_dollar_names_no_variable(config: Path) -> None:
    result = edit_config(config, lambda d: add_server(d, "db", {"command": "x", "env": {"P": "pa$$word"}}), env={})
    assert result.changed and result.unset == ()  # "pa$$word" is the literal "pa$word", not $word unset
    assert doc_of(config)["mcpServers"]["db"]["env"] == {"P": "pa$$word"}


@pytest.mark.parametrize(
    "server",
    [
        {"url": "https://h:${PORT}/mcp"},
        {"url": "${BASE}/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}},
        {"command": "x", "timeout": "${SECONDS}"},
        {"url": "${MCP_URL}", "timeout": "${TIMEOUT}", "headers": {"K": "${KEY}"}},  # a URL and a number at once
    ],
)
def test_an_unset_variable_gets_a_stand_in_that_fits_where_it_stands(config: Path, server: dict[str, Any]) -> None:
    result = edit_config(config, lambda d: add_server(d, "api", server), env={})
    assert result.changed and result.unset
    assert doc_of(config)["mcpServers"]["api"] == server  # written as given


def test_an_edit_that_fits_no_stand_in_names_the_field(config: Path) -> None:
    with pytest.raises(ConfigError, match=r"mcpServers\.api\.url"):
        edit_config(config, lambda d: add_server(d, "api", {"url": "ftp://${HOST}/mcp"}), env={})


def test_a_file_changed_during_the_edit_is_not_overwritten(config: Path) -> None:
    def racing_change(doc: Document) -> None:
        config.write_text('{"mcpServers": {}}')  # another writer gets in between read and replace
        add_server(doc, "new", {"command": "x"})

    with pytest.raises(ChangedOnDisk):
        edit_config(config, racing_change, env=ENV)
    assert config.read_text() == '{"mcpServers": {}}'


def test_a_missing_file_is_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "mcp.json"
    result = edit_config(path, lambda d: add_server(d, "demo", {"command": "x"}), env={})
    assert result.backup is None
    # a new file names the schema, as the starter config and `config init` do (editors complete it)
    assert doc_of(path) == {"$schema": schema.uri(), "mcpServers": {"demo": {"command": "x"}}}
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_vs_code_spelling_is_edited_in_place(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text('{"servers": {"a": {"command": "x"}}}')
    edit_config(path, lambda d: add_server(d, "b", {"command": "y"}), env={})
    assert doc_of(path) == {"servers": {"a": {"command": "x"}, "b": {"command": "y"}}}


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_a_symlinked_config_stays_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "mcp.json"
    real.parent.mkdir()
    real.write_text('{"mcpServers": {}}')
    link = tmp_path / "mcp.json"
    link.symlink_to(real)
    edit_config(link, lambda d: add_server(d, "a", {"command": "x"}), env={})
    assert link.is_symlink()
    assert "a" in doc_of(real)["mcpServers"]


def test_render_copies_tab_indentation_and_keeps_non_ascii() -> None:
    out = render({"a": {"b": "café"}}, b'{\n\t"a": 1\n}\n')
    assert out == '{\n\t"a": {\n\t\t"b": "café"\n\t}\n}\n'.encode()


def test_concurrent_edits_take_turns_and_none_is_lost(config: Path) -> None:
    """Parallel `onemcp mcp add`s (coding agents run commands in parallel) each said "added" while
    only some servers were left: each read the file, passed the changed-on-disk check, and wrote its
    own version over the others' (hunt-ops F8). With the lock they take turns: every edit applies."""
    import threading

    names = [f"s{t}_{i}" for t in range(6) for i in range(8)]
    failed: list[BaseException] = []

    def adder(mine: list[str]) -> None:
        for name in mine:
            try:
                edit_config(config, partial(add_server, name=name, entry={"command": "x"}), env=ENV)
            except BaseException as exc:
                failed.append(exc)

    threads = [threading.Thread(target=adder, args=([n for n in names if n.startswith(f"s{t}_")],)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert failed == []  # not even "changed while it was being edited": they waited for each other
    assert set(names) <= set(doc_of(config)["mcpServers"])


def test_an_edit_waits_for_the_lock_a_bounded_time_then_says_so(config: Path) -> None:
    from onemcp.config.files import locked

    with locked(config), pytest.raises(OSError, match=r"another edit of mcp\.json still holds its lock"):
        with locked(config, wait=0):
            pass
    with locked(config, wait=0):  # released: taken at once
        pass


def test_one_try_at_a_lock_takes_it_or_says_it_is_held(tmp_path: Path) -> None:
    """`try_lock` is the one try that `locked` (a thread's wait) and the credential store (a task's) repeat."""
    from onemcp.config.files import try_lock

    path = tmp_path / ".lock"
    first, second = (os.open(path, os.O_RDWR | os.O_CREAT, 0o600) for _ in range(2))
    try:
        assert try_lock(first) and try_lock(first)  # held, and held again by its own holder
        assert not try_lock(second)  # another open file of it waits
        os.close(first)  # releases it
        assert try_lock(second)
    finally:
        os.close(second)


COMMENTED = """\ufeff{
  // my servers: "git" is off while I try the other one
  "mcpServers": {
    "web": {"url": "https://example.com/mcp"},  // the work one
    // "git": {"command": "uvx", "args": ["mcp-server-git"]},
  },
  /* hub settings */
  "onemcp": {"instructions": "be nice"}
}
"""


def test_an_edit_keeps_every_comment_and_the_form_of_what_it_did_not_touch(tmp_path: Path) -> None:
    """cli hunt F6: `mcp add/remove/enable/disable` (and the admin API: the same path) rewrote mcp.json
    without a single comment, commented-out servers included."""
    path = tmp_path / "mcp.json"
    path.write_text(COMMENTED, encoding="utf-8")
    comments = [line for line in COMMENTED.splitlines() if line.lstrip().startswith(("//", "/*"))]
    steps = [
        (partial(add_server, name="time", entry={"command": "uvx", "args": ["mcp-server-time"]}), '"time": {'),
        (partial(set_disabled, name="web", disabled=True), '"https://example.com/mcp", "disabled": true},'),
        (partial(set_disabled, name="web", disabled=False), '"web": {"url": "https://example.com/mcp"},  //'),
        (partial(remove_server, name="time"), None),
    ]
    for change, written in steps:
        result = edit_config(path, change, env={})
        text = path.read_text(encoding="utf-8")
        assert [line for line in text.splitlines() if line.lstrip().startswith(("//", "/*"))] == comments
        assert written is None or written in text
        assert result.config.servers.keys() == formats.parse(path.read_bytes())["mcpServers"].keys()
    assert path.read_text(encoding="utf-8") == COMMENTED  # back where it started, byte for byte (BOM too)


def test_a_config_without_comments_is_written_whole_as_before(config: Path) -> None:
    edit_config(config, lambda d: set_disabled(d, "web", True), env=ENV)
    doc = formats.parse(ORIGINAL.encode())
    doc["mcpServers"]["web"]["disabled"] = True
    assert config.read_bytes() == render(doc, ORIGINAL.encode())


TAGGED = """{
  // my servers
  "mcpServers": {
    "memory": {
      "command": "npx",  // from npm
      "args": ["-y", "@modelcontextprotocol/server-memory"],
      "env": {"MEMORY_FILE_PATH": "/tmp/m.jsonl", "DEBUG": "1"},
      "tags": ["notes", "old"]
    },
    "web": {"url": "https://example.com/mcp"}  // the work one
  }
}
"""


def test_change_server_edits_tags_env_and_arguments_where_they_are(tmp_path: Path) -> None:
    """Trial s39-h4: no command changed an existing server's tags, env or arguments (`mcp edit` does)."""
    path = tmp_path / "mcp.json"
    path.write_text(TAGGED)
    change = ServerChange(add_tags=("util",), remove_tags=("old",), env={"DEBUG": "0", "NEW": "x"})
    edit_config(path, lambda d: change_server(d, "memory", change), env={})
    text = path.read_text()
    assert "// my servers" in text and '"npx",  // from npm' in text and "}  // the work one" in text
    memory = formats.parse(path.read_bytes())["mcpServers"]["memory"]
    assert memory["tags"] == ["notes", "util"]
    assert list(memory["env"].items()) == [("MEMORY_FILE_PATH", "/tmp/m.jsonl"), ("DEBUG", "0"), ("NEW", "x")]
    change = ServerChange(tags=[], unset_env=("DEBUG", "NEW", "MEMORY_FILE_PATH"), args=["-y", "other"], timeout=9)
    edit_config(path, lambda d: change_server(d, "memory", change), env={})
    memory = formats.parse(path.read_bytes())["mcpServers"]["memory"]
    assert memory == {"command": "npx", "args": ["-y", "other"], "timeout": 9}  # empty tags and env: gone
    edit_config(path, lambda d: change_server(d, "web", ServerChange(tags=["work", "work"])), env={})
    assert formats.parse(path.read_bytes())["mcpServers"]["web"]["tags"] == ["work"]


def test_change_server_edits_an_http_servers_url_and_headers_and_a_stdio_servers_cwd(tmp_path: Path) -> None:
    """h13: `mcp edit` --url, --header/--unset-header (a name in any case is the same header) and --cwd."""
    path = tmp_path / "mcp.json"
    path.write_text(TAGGED)
    change = ServerChange(url="https://example.org/mcp", headers={"Authorization": "Bearer x", "X-A": "1"})
    edit_config(path, lambda d: change_server(d, "web", change), env={})
    assert "}  // the work one" in path.read_text()
    web = formats.parse(path.read_bytes())["mcpServers"]["web"]
    assert web == {"url": "https://example.org/mcp", "headers": {"Authorization": "Bearer x", "X-A": "1"}}
    change = ServerChange(headers={"authorization": "Bearer y"}, unset_headers=("x-a",))
    edit_config(path, lambda d: change_server(d, "web", change), env={})
    assert formats.parse(path.read_bytes())["mcpServers"]["web"]["headers"] == {"authorization": "Bearer y"}
    edit_config(path, lambda d: change_server(d, "web", ServerChange(unset_headers=("Authorization",))), env={})
    assert "headers" not in formats.parse(path.read_bytes())["mcpServers"]["web"]  # none left: the key goes
    edit_config(path, lambda d: change_server(d, "memory", ServerChange(cwd="/srv")), env={})
    assert formats.parse(path.read_bytes())["mcpServers"]["memory"]["cwd"] == "/srv"


def test_change_server_moves_a_server_to_another_transport(tmp_path: Path) -> None:
    """h4: `transport` makes a stdio entry an HTTP one and back (what only the old one had goes, the file's
    comments and the entry's tags stay); a move without the new transport's command or URL is an EditError."""
    path = tmp_path / "mcp.json"
    path.write_text(TAGGED)
    change = ServerChange(transport="sse", url="https://example.org/sse", headers={"A": "1"})
    edit_config(path, lambda d: change_server(d, "memory", change), env={})
    assert "// my servers" in path.read_text()
    memory = formats.parse(path.read_bytes())["mcpServers"]["memory"]
    assert memory == {"tags": ["notes", "old"], "url": "https://example.org/sse", "headers": {"A": "1"}, "type": "sse"}
    change = ServerChange(transport="stdio", command="uvx", args=["srv"], cwd="/srv", timeout=5)
    edit_config(path, lambda d: change_server(d, "memory", change), env={})
    memory = formats.parse(path.read_bytes())["mcpServers"]["memory"]
    assert memory == {"tags": ["notes", "old"], "command": "uvx", "args": ["srv"], "cwd": "/srv", "timeout": 5}
    edit_config(path, lambda d: change_server(d, "memory", ServerChange(unset_cwd=True, unset_timeout=True)), env={})
    assert formats.parse(path.read_bytes())["mcpServers"]["memory"] == {"tags": ["notes", "old"], "command": "uvx",
                                                                        "args": ["srv"]}  # fmt: skip
    with pytest.raises(EditError, match=re.escape("--type stdio needs --command CMD: 'web' is an HTTP one")):
        edit_config(path, lambda d: change_server(d, "web", ServerChange(transport="stdio")), env={})
    with pytest.raises(EditError, match=re.escape("--type http needs --url URL: 'memory' is a stdio one (uvx)")):
        edit_config(path, lambda d: change_server(d, "memory", ServerChange(transport="http")), env={})


def test_a_move_drops_what_only_the_old_transport_takes(tmp_path: Path) -> None:
    """A server with a sandbox or a number of replicas (stdio only), or a probe or replica URLs (HTTP only),
    could not be moved: the move kept them and the result was refused ('not changed: ... 'sandbox' is for stdio
    servers'), and `mcp edit` has no way to remove them. They go with the old transport, as its command or URL
    does (replicas and their weights too: they count members of the old kind); balance and tags stay."""
    path = tmp_path / "mcp.json"
    path.write_text(
        '{"mcpServers": {"a": {"command": "echo", "replicas": 2, "weights": [1, 3], "balance": "random",'
        ' "sandbox": {"memoryMB": 512}, "tags": ["t"]}}}'
    )
    edit_config(
        path, lambda d: change_server(d, "a", ServerChange(transport="http", url="https://a.example/mcp")), env={}
    )
    a = formats.parse(path.read_bytes())["mcpServers"]["a"]
    assert a == {"balance": "random", "tags": ["t"], "url": "https://a.example/mcp", "type": "http"}
    a["replicas"], a["probe"], a["oauth"] = ["https://b.example/mcp"], {"path": "/health"}, False
    path.write_text(json.dumps({"mcpServers": {"a": a}}))
    edit_config(path, lambda d: change_server(d, "a", ServerChange(transport="stdio", command="echo")), env={})
    a = formats.parse(path.read_bytes())["mcpServers"]["a"]
    assert a == {"balance": "random", "tags": ["t"], "command": "echo"}


@pytest.mark.parametrize(
    ("name", "change", "error", "said"),
    [
        ("nope", ServerChange(add_tags=("x",)), NoSuchServer, "no server named 'nope' (configured: memory, web)"),
        ("memory", ServerChange(remove_tags=("util",)), EditError, "'memory' has no tag 'util' (its tags: notes, old)"),
        ("memory", ServerChange(unset_env=("HOME",)), EditError, "'memory' sets no variable 'HOME' (it sets: MEM"),
        ("web", ServerChange(env={"A": "1"}), EditError, "--env applies to a stdio server; 'web' is an HTTP one"),
        ("web", ServerChange(args=[]), EditError, "--arg applies to a stdio server"),
        ("web", ServerChange(cwd="/x"), EditError, "--cwd applies to a stdio server"),
        (
            "memory",
            ServerChange(url="https://x"),
            EditError,
            "--url applies to an HTTP server; 'memory' is a stdio one",
        ),
        ("memory", ServerChange(headers={"A": "1"}), EditError, "--header applies to an HTTP server"),
        ("web", ServerChange(unset_headers=("A",)), EditError, "'web' sends no header 'A' (it sends: none)"),
    ],
)
def test_a_server_change_that_does_not_apply_writes_nothing(
    tmp_path: Path, name: str, change: ServerChange, error: type[Exception], said: str
) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(TAGGED)
    with pytest.raises(error, match=re.escape(said)):
        edit_config(path, lambda d: change_server(d, name, change), env={})
    assert path.read_text() == TAGGED
