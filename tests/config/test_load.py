"""Config loading: parsing, ${VAR} substitution, error paths, config location, starter config."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

from onemcp.config.load import (
    ConfigError,
    config_dir,
    load_config,
    parse_config,
    resolve_path,
    starter_config,
    substitute,
    write_starter,
)
from onemcp.config.model import HubConfig
from onemcp.protocol.names import PrefixMode


def parse(doc: Any, env: dict[str, str] | None = None) -> HubConfig:
    return parse_config(orjson.dumps(doc), source="mcp.json", env={} if env is None else env)


def error_of(doc: Any, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse(doc, env)
    return str(info.value)


# ---------------------------------------------------------------------- parsing
def test_minimal_stdio_and_http_servers() -> None:
    config = parse(
        {
            "mcpServers": {
                "git": {"command": "uvx", "args": ["mcp-server-git"]},
                "remote": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer x"}},
                "legacy": {"url": "http://localhost:1/sse", "type": "sse"},
            }
        }
    )
    assert list(config.servers) == ["git", "remote", "legacy"]
    assert config.servers["git"].transport == "stdio"
    assert config.servers["git"].args == ["mcp-server-git"]
    assert config.servers["remote"].transport == "http"
    assert config.servers["remote"].headers == {"Authorization": "Bearer x"}
    assert config.servers["legacy"].transport == "sse"


def test_hub_settings_aliases() -> None:
    config = parse(
        {
            "mcpServers": {},
            "onemcp": {"prefixMode": "always", "separator": "-", "allowedOrigins": ["https://app.example"]},
        }
    )
    assert config.hub.prefix_mode is PrefixMode.ALWAYS
    assert config.hub.separator == "-"
    assert config.hub.allowed_origins == ["https://app.example"]


def test_empty_document_has_no_servers() -> None:
    config = parse({})
    assert config.servers == {}
    assert config.enabled == {}
    assert config.hub.prefix_mode is PrefixMode.CONDITIONAL


def test_vscode_servers_key_is_accepted() -> None:
    config = parse({"servers": {"fs": {"type": "stdio", "command": "npx", "args": ["-y", "x"]}}, "inputs": []})
    assert list(config.servers) == ["fs"]
    assert config.servers["fs"].command == "npx"


def test_mcpservers_and_servers_together_is_an_error() -> None:
    message = error_of({"mcpServers": {"a": {"command": "x"}}, "servers": {"b": {"command": "y"}}})
    assert "servers: unknown key 'servers'; did you mean 'mcpServers'?" in message


def test_other_clients_server_keys_are_dropped() -> None:
    config = parse(
        {
            "$schema": "https://example.com/schema.json",
            "mcpServers": {
                "git": {"command": "x", "autoApprove": ["status"], "alwaysAllow": [], "description": "d"},
            },
        }
    )
    assert config.servers["git"].command == "x"


def test_unknown_keys_are_refused_with_what_was_meant() -> None:
    message = error_of(
        {
            "mcpServers": {"git": {"comand": "x", "enviroment": {}}},
            "onemcp": {"prefixmode": "always", "limits": {"maxSesions": 3}},
            "someOtherTool": {"setting": 1},
        }
    )
    assert "mcpServers.git.comand: unknown key 'comand'; did you mean 'command'?" in message
    assert "mcpServers.git.enviroment: unknown key 'enviroment'" in message
    assert "onemcp.prefixmode: unknown key 'prefixmode'; did you mean 'prefixMode'?" in message
    assert "onemcp.limits.maxSesions: unknown key 'maxSesions'; did you mean 'maxSessions'?" in message
    assert "someOtherTool: unknown key 'someOtherTool' (known here: mcpServers, mcpTemplates, onemcp)" in message


def test_disabled_servers_are_not_enabled() -> None:
    config = parse(
        {
            "mcpServers": {
                "a": {"command": "x"},
                "b": {"command": "y", "disabled": True},
                "c": {"url": "http://localhost/mcp", "disabled": False},
            }
        }
    )
    assert list(config.servers) == ["a", "b", "c"]
    assert list(config.enabled) == ["a", "c"]


def test_timeouts_have_defaults_and_alias() -> None:
    config = parse({"mcpServers": {"a": {"command": "x", "timeout": 5, "startupTimeout": 7}}})
    assert config.servers["a"].timeout == 5
    assert config.servers["a"].startup_timeout == 7


def test_stream_retry_is_seconds_within_bounds() -> None:
    assert parse({"mcpServers": {}}).hub.stream_retry == 5.0
    assert parse({"mcpServers": {}, "onemcp": {"streamRetry": 0.5}}).hub.stream_retry == 0.5
    for bad in (0, 61, "soon"):
        assert "onemcp.streamRetry" in error_of({"mcpServers": {}, "onemcp": {"streamRetry": bad}})


# ------------------------------------------------------------------------ errors
def test_not_json_names_the_source() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(b"{not json", source="/etc/mcp.json", env={})
    assert "/etc/mcp.json" in str(info.value)
    assert "JSON" in str(info.value)


@pytest.mark.parametrize("doc", [[], "x", 3, None])
def test_top_level_must_be_an_object(doc: Any) -> None:
    assert "object" in error_of(doc)


def test_wrong_field_type_names_the_full_path() -> None:
    message = error_of({"mcpServers": {"git": {"url": 123}}})
    assert "mcp.json: mcpServers.git.url:" in message


def test_the_path_to_an_error_escapes_a_key_s_terminal_codes() -> None:
    """A server named with terminal codes: the message (printed by serve and validate, shown in /health's
    reload error) held the name raw in its path, clearing the screen; now escaped as the key after it is."""
    evil = "\x1b[2J\x1b]0;pwned\x07\x9b2J\u202e"
    message = error_of({"mcpServers": {f"n{evil}": {"command": "x", f"k{evil}": 1}}})
    shown = "\\x1b[2J\\x1b]0;pwned\\x07\\x9b2J\\u202e"
    assert f"mcpServers.n{shown}.k{shown}: unknown key 'k{shown}'" in message
    assert not [c for c in evil if not c.isprintable() and c in message]


def test_wrong_nested_type_names_the_full_path() -> None:
    message = error_of({"mcpServers": {"git": {"command": "x", "args": ["ok", 5]}}})
    assert "mcpServers.git.args.1" in message


def test_bad_timeout_names_the_field() -> None:
    message = error_of({"mcpServers": {"git": {"command": "x", "timeout": -1}}})
    assert "mcpServers.git.timeout" in message


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"mcpServers": {"git": {"command": "x", "timeout": True}}}, "mcpServers.git.timeout"),
        ({"onemcp": {"searchBudget": True}}, "onemcp.searchBudget"),
        ({"onemcp": {"limits": {"maxSessions": False}}}, "onemcp.limits.maxSessions"),
        ({"onemcp": {"searchCache": ""}}, "onemcp.searchCache"),
    ],
)
def test_true_for_a_number_and_a_blank_cache_directory_are_refused(doc: dict[str, Any], path: str) -> None:
    assert path in error_of(doc)


def test_the_pending_client_request_byte_limits_are_settings() -> None:
    """h8's bounds on the bytes of server->client requests waiting for clients were constants; now `limits` keys,
    checked as the others are."""
    limits = parse({"onemcp": {"limits": {}}}).hub.limits
    assert (limits.max_pending_client_request_bytes_per_session, limits.max_pending_client_request_bytes) == (
        16 * 1024 * 1024,
        256 * 1024 * 1024,
    )
    keys = {"maxPendingClientRequestBytesPerSession": 2_000_000, "maxPendingClientRequestBytes": 9_000_000}
    limits = parse({"onemcp": {"limits": keys}}).hub.limits
    assert (limits.max_pending_client_request_bytes_per_session, limits.max_pending_client_request_bytes) == (
        2_000_000,
        9_000_000,
    )
    for key in keys:
        for bad, why in ((-1, "greater than or equal to 1024"), (1.5, "valid integer"), ("16", "not the string")):
            message = error_of({"onemcp": {"limits": {key: bad}}})
            assert f"onemcp.limits.{key}:" in message and why in message, message
    message = error_of({"onemcp": {"limits": {"maxPendingClientRequestByte": 1}}})
    assert "unknown key 'maxPendingClientRequestByte'; did you mean 'maxPendingClientRequestBytes'?" in message


def test_relative_paths_in_the_file_are_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hub" / "mcp.json"
    path.parent.mkdir()
    path.write_text('{"onemcp": {"searchCache": "cache", "instructionsFile": "notes.md"}}')
    (path.parent / "notes.md").write_text("{count} servers: {summary}")
    config = load_config(path)
    assert config.hub.search_cache == str(path.parent / "cache")
    assert config.hub.instructions_file == str(path.parent / "notes.md")


@pytest.mark.parametrize("template", ["{count} and {servres}", "{Count}", "{count.real}"])
def test_an_instructions_template_naming_no_field_is_refused(template: str) -> None:
    message = error_of({"onemcp": {"instructions": template}})
    assert "onemcp.instructions" in message and "is not a field" in message and "{summary}" in message


def test_instructions_without_fields_or_with_stray_braces_are_text() -> None:
    for text in ("Use the tools.", 'Send {"a": 1', "{{literal}} and {count}", "a set is {} or {0}"):
        assert parse({"onemcp": {"instructions": text}}).hub.instructions == text


@pytest.mark.parametrize(("body", "fragment"), [("{servers} {nope}", "{nope} is not a field"), (None, "cannot read")])
def test_an_instructions_file_is_checked_when_the_config_loads(tmp_path: Path, body: str | None, fragment: str) -> None:
    path = tmp_path / "mcp.json"
    path.write_text('{"onemcp": {"instructionsFile": "notes.md"}}')
    if body is not None:
        (tmp_path / "notes.md").write_text(body)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "onemcp.instructionsFile" in str(caught.value) and fragment in str(caught.value)


def test_a_number_from_a_variable_is_still_a_number() -> None:
    config = parse({"onemcp": {"searchBudget": "${BUDGET}"}}, env={"BUDGET": "5000"})
    assert config.hub.search_budget == 5000


def test_bad_prefix_mode_names_the_field() -> None:
    message = error_of({"onemcp": {"prefixMode": "sometimes"}})
    assert "onemcp.prefixMode" in message


def test_bad_url_scheme_names_the_server() -> None:
    message = error_of({"mcpServers": {"git": {"url": "ftp://x"}}})
    assert "mcpServers.git" in message
    assert "http://" in message


def test_bad_url_scheme_names_the_url_field() -> None:
    message = error_of({"mcpServers": {"git": {"url": "ftp://x"}}})
    assert "mcpServers.git.url" in message


@pytest.mark.parametrize(
    ("server", "fragment"),
    [
        ({}, "needs either"),
        ({"command": "x", "url": "http://h/mcp"}, "both"),
        ({"url": "http://h/mcp", "type": "stdio"}, "stdio"),
        ({"command": "x", "type": "http"}, "no 'url'"),
        ({"url": "http://h/mcp", "env": {"K": "v"}}, "'env': for a stdio 'command'"),
        ({"url": "http://h/mcp", "args": ["-v"], "cwd": "/srv"}, "'args', 'cwd': for a stdio"),
        ({"command": "x", "headers": {"Authorization": "Bearer t"}}, "a stdio server gets 'env'"),
        ({"command": "x", "oauth": {"clientId": "c"}}, "'oauth' are for HTTP servers"),
    ],
)
def test_transport_rules(server: dict[str, Any], fragment: str) -> None:
    message = error_of({"mcpServers": {"s": server}})
    assert "mcpServers.s" in message
    assert fragment in message


@pytest.mark.parametrize("name", ["bad name", "a__b", "_lead", "x" * 33, "dot.ted"])
def test_invalid_server_name_is_rejected_with_its_name(name: str) -> None:
    message = error_of({"mcpServers": {name: {"command": "x"}}})
    assert f"mcpServers.{name}" in message
    assert repr(name) in message


def test_server_name_is_checked_against_configured_separator() -> None:
    assert parse({"mcpServers": {"a-b": {"command": "x"}}}).servers
    message = error_of({"mcpServers": {"a-b": {"command": "x"}}, "onemcp": {"separator": "-"}})
    assert "mcpServers.a-b" in message


def test_bad_separator_is_rejected() -> None:
    assert "separator" in error_of({"onemcp": {"separator": "."}})


def test_disabled_server_is_still_validated() -> None:
    message = error_of({"mcpServers": {"git": {"url": "ftp://x", "disabled": True}}})
    assert "mcpServers.git" in message


# ------------------------------------------------------------------ substitution
def test_variables_are_substituted_everywhere() -> None:
    config = parse(
        {
            "mcpServers": {
                "gh": {
                    "url": "https://${HOST}/mcp",
                    "headers": {"Authorization": "Bearer ${TOKEN}"},
                },
                "local": {"command": "${BIN}", "args": ["--root", "${ROOT}/x"], "env": {"K": "${TOKEN}"}},
            }
        },
        env={"HOST": "api.example", "TOKEN": "s3cret", "BIN": "/usr/bin/tool", "ROOT": "/srv"},
    )
    assert config.servers["gh"].url == "https://api.example/mcp"
    assert config.servers["gh"].headers == {"Authorization": "Bearer s3cret"}
    assert config.servers["local"].command == "/usr/bin/tool"
    assert config.servers["local"].args == ["--root", "/srv/x"]
    assert config.servers["local"].env == {"K": "s3cret"}


def test_missing_variable_names_variable_and_path() -> None:
    message = error_of({"mcpServers": {"gh": {"command": "x", "env": {"GITHUB_TOKEN": "${GH_PAT}"}}}})
    assert "${GH_PAT}" in message
    assert "mcpServers.gh.env.GITHUB_TOKEN" in message
    assert message.startswith("mcp.json: ")


def test_missing_variable_in_a_list_names_the_index() -> None:
    message = error_of({"mcpServers": {"a": {"command": "x", "args": ["ok", "${NOPE}"]}}})
    assert "mcpServers.a.args[1]" in message
    assert "NOPE" in message


def test_missing_variable_in_vscode_file_is_reported() -> None:
    message = error_of({"servers": {"a": {"command": "${NOPE}"}}})
    assert "NOPE" in message
    assert "a.command" in message


def test_default_is_used_when_variable_is_unset() -> None:
    config = parse({"mcpServers": {"a": {"url": "${URL:-http://localhost:9/mcp}"}}})
    assert config.servers["a"].url == "http://localhost:9/mcp"


def test_set_variable_wins_over_default() -> None:
    config = parse({"mcpServers": {"a": {"url": "${URL:-http://localhost:9/mcp}"}}}, env={"URL": "https://x/mcp"})
    assert config.servers["a"].url == "https://x/mcp"


def test_empty_default() -> None:
    config = parse({"mcpServers": {"a": {"command": "x", "env": {"K": "${K:-}"}}}})
    assert config.servers["a"].env == {"K": ""}


def test_process_environment_is_used_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEMCP_TEST_CMD", "from-env")
    config = parse_config(b'{"mcpServers": {"a": {"command": "${ONEMCP_TEST_CMD}"}}}', source="x")
    assert config.servers["a"].command == "from-env"


def test_substitute_leaves_non_strings_and_plain_text() -> None:
    doc = {"n": 1, "b": True, "z": None, "s": "no vars $1 {X} ^a$ $", "l": [1, "${A}", "$A/b"]}
    want = {"n": 1, "b": True, "z": None, "s": "no vars $1 {X} ^a$ $", "l": [1, "a", "a/b"]}
    assert substitute(doc, {"A": "a"}) == want


def test_a_doubled_dollar_is_a_literal_dollar() -> None:
    """A password with a "$" in it (or a config copied from a client that substitutes nothing) could not be
    written at all: "pa$word" read $word as a variable, an unset one refused the whole config."""
    env = {"word": "WRONG", "A": "a"}
    assert substitute("pa$$word", env) == "pa$word"
    assert substitute("$${A} $$$A ^x$$ ${NOPE:-d$$x} $$$$", env) == "${A} $a ^x$ d$x $$"
    config = parse({"mcpServers": {"db": {"command": "x", "env": {"PASSWORD": "s3cr$$tPa55"}}}})
    assert config.servers["db"].env == {"PASSWORD": "s3cr$tPa55"}
    assert "$$ for a literal $" in error_of({"mcpServers": {"a": {"command": "${bad-name}"}}})


def test_an_env_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    """A `.env` saved as UTF-16 (or a folder of that name) was ignored: its variables were "not set"."""
    config = tmp_path / "mcp.json"
    config.write_text('{"mcpServers": {"a": {"command": "x", "env": {"T": "${FROM_DOTENV}"}}}}')
    (tmp_path / ".env").write_bytes("FROM_DOTENV=t\n".encode("utf-16"))
    with pytest.raises(ConfigError, match=r"\.env: not UTF-8 text \(save it as UTF-8\)"):
        load_config(config)
    (tmp_path / ".env").unlink()
    (tmp_path / ".env").mkdir()
    with pytest.raises(ConfigError, match=r"\.env: cannot read: Is a directory"):
        load_config(config)
    (tmp_path / ".env").rmdir()
    (tmp_path / ".env").write_text("FROM_DOTENV=t\n")
    assert load_config(config).servers["a"].env == {"T": "t"}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("TOKEN s3cret", "line 2: not NAME=value; write NAME=value"),
        ("MY TOKEN=s3cret", "line 2: 'MY TOKEN' is not a variable name"),
        ("=s3cret", "line 2: no variable name before '='"),
        ('TOKEN="s3cret', "line 2: a quote that is not closed on its line"),
    ],
)
def test_a_malformed_env_file_line_is_named(tmp_path: Path, line: str, problem: str) -> None:
    """It was skipped silently: its variable then read as not set, or (an unclosed quote) with the quote.
    The message names the file and the line, never the line's text (it may hold a secret)."""
    config = tmp_path / "mcp.json"
    config.write_text('{"mcpServers": {"a": {"command": "x", "env": {"T": "${TOKEN:-}"}}}}')
    (tmp_path / ".env").write_text(f"# comment\n{line}\n\nexport OTHER='x'\n")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert str(info.value).startswith(f"{tmp_path / '.env'}, {problem}")
    assert "s3cret" not in str(info.value)
    (tmp_path / ".env").write_text("# comment\nexport TOKEN='s3cret'\n\nOTHER=\n")
    assert load_config(config).servers["a"].env == {"T": "s3cret"}


def test_substitute_is_not_recursive() -> None:
    assert substitute("${A}", {"A": "${B}", "B": "no"}) == "${B}"


def test_substituted_value_is_validated() -> None:
    message = error_of({"mcpServers": {"a": {"url": "${U}"}}}, env={"U": "ftp://x"})
    assert "mcpServers.a" in message


# ---------------------------------------------------------------------- location
@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in ("ONEMCP_CONFIG", "ONEMCP_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_resolve_path_flag_wins(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("ONEMCP_CONFIG", str(tmp_path / "env.json"))
    clean_env.setenv("ONEMCP_CONFIG_DIR", str(tmp_path / "dir"))
    assert resolve_path(str(tmp_path / "flag.json")) == tmp_path / "flag.json"


def test_resolve_path_env_file_beats_env_dir(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("ONEMCP_CONFIG", str(tmp_path / "env.json"))
    clean_env.setenv("ONEMCP_CONFIG_DIR", str(tmp_path / "dir"))
    assert resolve_path(None) == tmp_path / "env.json"


def test_resolve_path_env_dir(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("ONEMCP_CONFIG_DIR", str(tmp_path / "dir"))
    assert resolve_path(None) == tmp_path / "dir" / "mcp.json"


def test_empty_flag_and_env_fall_through(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("ONEMCP_CONFIG", "")
    clean_env.setenv("ONEMCP_CONFIG_DIR", str(tmp_path))
    assert resolve_path("") == tmp_path / "mcp.json"


def test_resolve_path_xdg_then_home(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert resolve_path(None) == tmp_path / "xdg" / "onemcp" / "mcp.json"
    clean_env.delenv("XDG_CONFIG_HOME")
    clean_env.setenv("HOME", str(tmp_path / "home"))
    assert config_dir() == tmp_path / "home" / ".config" / "onemcp"


def test_resolve_path_expands_user(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("HOME", str(tmp_path))
    assert resolve_path("~/c.json") == tmp_path / "c.json"


# ------------------------------------------------------------------- files
def test_write_starter_produces_a_config_that_parses(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "mcp.json"
    write_starter(path)
    config = load_config(path)
    assert list(config.enabled) == ["demo", "time"]
    assert all(s.transport == "stdio" for s in config.enabled.values())
    assert orjson.loads(path.read_bytes()) == starter_config()
    assert [p.name for p in path.parent.iterdir()] == ["mcp.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a config may come to hold tokens: owner-only


def test_write_starter_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text("garbage")
    write_starter(path)
    assert load_config(path).enabled


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "cannot read" in str(info.value)


def test_load_config_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text('{"mcpServers": {"git": {"url": "ftp://x"}}}')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: mcpServers.git")


# ------------------------------------------------------- nothing accepted silently (audit)
FORMS = "${NAME}, ${NAME:-default} or $NAME"


def problems_of(doc: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(doc)
    return info.value.problems


@pytest.mark.parametrize("text", ["${NOPE", "${NOPE:default}", "${NOPE-default}", "${NOPE:=x}", "${ HOME }", "${}"])
def test_a_malformed_reference_is_an_error_naming_the_field_and_the_forms(text: str) -> None:
    message = error_of({"mcpServers": {"a": {"command": "x", "args": ["ok", f"pre-{text}"]}}}, env={"HOME": "/h"})
    assert f"mcpServers.a.args[1]: {text!r} is not a variable reference; write {FORMS}" in message


def test_a_default_holding_another_reference_is_an_error() -> None:
    message = error_of({"mcpServers": {"a": {"command": "x", "env": {"K": "${A:-${B}}"}}}})
    assert "mcpServers.a.env.K: the default of ${A:-...} cannot hold another ${...}" in message


def test_every_documented_reference_form_still_works() -> None:
    env = {"HOME": "/h", "T": "t"}
    config = parse(
        {
            "mcpServers": {
                "a": {
                    "command": "$HOME/bin/x",
                    "args": ["${HOME}", "${UNSET:-d}", "${UNSET:-}", "$1 ^a$ {X} $ 100$"],
                    "env": {"K": "${user:GITHUB_TOKEN}", "T": "${T}"},
                },
                "b": {"url": "https://x/mcp", "headers": {"A": "Bearer ${user:TOK}", "X": "${user:TEAM:-platform}"}},
            }
        },
        env=env,
    )
    assert config.servers["a"].command == "/h/bin/x"
    assert config.servers["a"].args == ["/h", "d", "", "$1 ^a$ {X} $ 100$"]
    assert config.servers["a"].env == {"K": "${user:GITHUB_TOKEN}", "T": "t"}
    assert config.servers["b"].headers == {"A": "Bearer ${user:TOK}", "X": "${user:TEAM:-platform}"}


def test_a_per_user_value_outside_env_and_headers_is_an_error() -> None:
    message = error_of({"mcpServers": {"a": {"command": "x", "args": ["--token", "${user:TOK}"]}}})
    assert "mcpServers.a.args[1]: ${user:TOK} is a caller's own value and works only in a server's env and headers" in (
        message
    )
    template = {"mcpTemplates": {"t": {"command": "x", "env": {"TOKEN": "${user:TOK}"}}}}
    assert "mcpTemplates.t.env.TOKEN: ${user:TOK} is a caller's own value" in error_of(template)


@pytest.mark.parametrize("tag", ["a b", "", "and", "OR", "x,y", "(p)", "!z", "-lead"])
def test_a_tag_no_filter_can_name_is_refused(tag: str) -> None:
    message = error_of({"mcpServers": {"a": {"command": "x", "tags": ["ok", tag]}}})
    assert f"mcpServers.a.tags: no filter could name {tag!r} (a tag is letters, digits" in message
    message = error_of({"mcpTemplates": {"t": {"command": "x", "tags": [tag]}}})
    assert f"mcpTemplates.t.tags: no filter could name {tag!r}" in message


def test_tags_the_filter_language_can_name_are_accepted() -> None:
    tags = ["util", "a-b", "team:web/x.y_1", "Nota", "android"]
    assert parse({"mcpServers": {"a": {"command": "x", "tags": tags}}}).servers["a"].tags == tags


@pytest.mark.parametrize("tool", ["garbage", "/x", "a/", "*/echo", "a b/x", "a/x y", ""])
def test_a_quota_pattern_that_matches_no_call_is_refused(tool: str) -> None:
    message = error_of({"onemcp": {"auth": {"quotas": [{"tool": tool, "calls": 1, "window": 60}]}}})
    assert f'onemcp.auth.quotas.0.tool: {tool!r} matches no call: write "<server>/<tool>"' in message


def test_documented_quota_patterns_are_accepted() -> None:
    quotas = [{"tool": t, "calls": 1, "window": 60} for t in ("*", "git/*", "git/read_*", "web-2/fetch")]
    servers = {"git": {"command": "git-mcp"}}
    config = parse(
        {
            "mcpServers": servers,
            "mcpTemplates": {"web-2": {"url": "http://h/mcp"}},
            "onemcp": {"auth": {"quotas": quotas}},
        }
    )
    assert [q.tool for q in config.hub.auth.quotas] == ["*", "git/*", "git/read_*", "web-2/fetch"]


def test_a_quota_for_no_server_is_refused() -> None:
    message = error_of(
        {
            "mcpServers": {"git": {"command": "g"}},
            "onemcp": {"auth": {"quotas": [{"tool": "gti/*", "calls": 1, "window": 60}]}},
        }
    )
    assert "onemcp.auth.quotas.0.tool: no server or template is named 'gti'" in message


@pytest.mark.parametrize(
    ("oauth", "want"),
    [
        ({"clientID": "x"}, "mcpServers.a.oauth.clientID: unknown key 'clientID'; did you mean 'clientId'?"),
        ({"zzz": 1}, "mcpServers.a.oauth.zzz: unknown key 'zzz' (known here: authMethod, clientId,"),
        ({"grant": "client_credentials"}, "mcpServers.a.oauth: grant 'client_credentials' needs clientId"),
        ([1], "mcpServers.a.oauth: expected true or false, or an object"),
    ],
)
def test_an_oauth_error_reads_as_the_users_path(oauth: Any, want: str) -> None:
    [problem] = problems_of({"mcpServers": {"a": {"url": "https://x/mcp", "oauth": oauth}}})
    assert problem.startswith(want)
    assert "bool" not in problem and "function-after" not in problem and "UpstreamOAuth" not in problem


@pytest.mark.parametrize(
    ("oauth", "want"),
    [
        ({"clientSecret": "s"}, "'clientSecret' belongs to a registered client: give its 'clientId' too"),
        ({"authMethod": "client_secret_post"}, "'authMethod' belongs to a registered client"),
        ({"clientId": "c", "clientMetadataUrl": "https://me/c.json"}, "give it or 'clientId', not both"),
        ({"clientMetadataUrl": "http://me/c.json"}, "'clientMetadataUrl' must be an https URL"),
        ({"clientMetadataUrl": "https:///c.json"}, "'clientMetadataUrl' must be an https URL"),
        ({"clientId": "c", "privateKey": "PEM"}, "'privateKey' signs a machine client's assertions: it needs"),
        ({"clientId": "c", "authMethod": "private_key_jwt"}, "authMethod 'private_key_jwt' needs a 'privateKey'"),
        (
            {"grant": "client_credentials", "clientId": "c", "privateKey": "PEM", "authMethod": "client_secret_post"},
            "'privateKey' is used with authMethod 'private_key_jwt', not 'client_secret_post'",
        ),
        ({"signingAlgorithm": "RS256"}, "'signingAlgorithm' applies to a 'privateKey'"),
        ({"clientId": "c", "authMethod": "client_secret_basic"}, "'client_secret_basic' needs a 'clientSecret'"),
        ({"clientId": "c", "clientSecret": "s", "authMethod": "none"}, "authMethod 'none' sends no secret"),
    ],
)
def test_an_oauth_setting_the_hub_would_not_use_is_refused(oauth: dict[str, Any], want: str) -> None:
    """Each was silently ignored: a secret without a client id (the hub registered itself), a private key
    with the authorization code grant (never signed with), a method that sends no secret, ..."""
    [problem] = problems_of({"mcpServers": {"a": {"url": "https://x/mcp", "oauth": oauth}}})
    assert problem.startswith("mcpServers.a.oauth: ") and want in problem


@pytest.mark.parametrize(
    "oauth",
    [
        {"clientId": "c"},
        {"clientId": "c", "clientSecret": "s", "authMethod": "client_secret_post", "issuer": "https://as"},
        {"clientMetadataUrl": "https://me.example/client.json", "scopes": ["read"]},
        {"grant": "client_credentials", "clientId": "c", "privateKey": "PEM", "signingAlgorithm": "RS256"},
        {"grant": "client_credentials", "clientId": "c", "privateKey": "PEM", "authMethod": "private_key_jwt"},
        {"clientId": "c", "authMethod": "none"},
        {"perUser": True},
    ],
)
def test_oauth_settings_that_are_used_load(oauth: dict[str, Any]) -> None:
    parse({"mcpServers": {"a": {"url": "https://x/mcp", "oauth": oauth}}})


@pytest.mark.parametrize(
    ("doc", "want"),
    [
        ({"onemcp": {"searchCache": True}}, "onemcp.searchCache: expected a string, or false"),
        ({"mcpServers": {"a": {"url": "https://x/mcp", "replicas": "x"}}}, "mcpServers.a.replicas: expected a list"),
        ({"mcpTemplates": {"t": {"command": "x", "disabled": 3}}}, "mcpTemplates.t.disabled: expected true or false"),
    ],
)
def test_a_field_of_several_kinds_says_which_kinds_fit(doc: dict[str, Any], want: str) -> None:
    [problem] = problems_of(doc)
    assert problem.startswith(want)
    assert "literal[" not in problem and ".str" not in problem and ".int" not in problem


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", " nan "])  # as text: JSON NaN below
def test_a_number_that_is_not_finite_is_refused(value: Any) -> None:
    message = error_of({"mcpServers": {"a": {"command": "x", "timeout": value}}})
    assert message == "mcp.json: mcpServers.a.timeout: must be a finite number (not NaN or infinity)"
    message = error_of(
        {"mcpServers": {"a": {"url": "https://x/mcp", "replicas": ["https://y/mcp"], "weights": [1, value]}}}
    )
    assert "mcpServers.a.weights: must be a finite number" in message


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"onemcp": {"searchBudget": "20000"}}, "onemcp.searchBudget: expected a number, not the string '20000'"),
        ({"mcpServers": {"a": {"command": "x", "timeout": "30"}}}, "mcpServers.a.timeout: expected a number"),
        ({"mcpServers": {"a": {"command": "x", "disabled": "true"}}}, "mcpServers.a.disabled: expected true or false"),
        ({"onemcp": {"auth": {"apiKeys": "yes"}}}, "onemcp.auth.apiKeys: expected true or false, not the string 'yes'"),
    ],
)
def test_a_number_or_a_boolean_in_quotes_is_refused(doc: dict[str, Any], message: str) -> None:
    """Nothing is accepted silently: pydantic's lax mode took "20000" for 20000 and "true" for true."""
    assert message in error_of({"mcpServers": {}, **doc})


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"mcpServers": {"a": {"command": "x", "disabled": 1}}}, "mcpServers.a.disabled: expected true or false, not"),
        ({"mcpServers": {"a": {"url": "https://x/mcp", "oauth": {"dpop": 0}}}}, "mcpServers.a.oauth.dpop: expected"),
        ({"mcpServers": {"a": {"url": "https://x/mcp", "oauth": 1}}}, "mcpServers.a.oauth: expected true or false"),
        ({"mcpTemplates": {"t": {"command": "x", "disabled": 0}}}, "mcpTemplates.t.disabled: expected true or false"),
        ({"onemcp": {"auth": {"apiKeys": 1.0}}}, "onemcp.auth.apiKeys: expected true or false, not the number 1.0"),
    ],
)
def test_a_number_where_true_or_false_belongs_is_refused(doc: dict[str, Any], message: str) -> None:
    """pydantic's lax mode took 1 and 0 for true and false: `"disabled": 1` silently disabled the server."""
    assert message in error_of({"mcpServers": {}, **doc})


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ({"command": "x", "tags": "dev"}, """a.tags: expected a list, not the string 'dev': write ["dev"]"""),
        (
            {"command": "x", "args": "-y p"},
            """a.args: expected a list, not the string '-y p': write ["...", "..."], one""",
        ),
        ({"command": "x", "env": "K=V"}, "a.env: expected an object, not a string (not shown: it holds secrets)"),
        ({"url": "https://x/mcp", "headers": ["a"]}, "a.headers: expected an object, not a list"),
        ("uvx foo", "a: expected an object, not the string 'uvx foo'"),
        ({"command": 3}, 'a.command: expected a string, not the number 3: write "3"'),
    ],
)
def test_a_value_of_another_kind_says_what_the_field_takes_in_json_words(server: Any, message: str) -> None:
    """pydantic's own words were shown: 'Input should be a valid list', and for a server written as a
    string 'Input should be a valid dictionary or instance of ServerConfig' (a class of ours)."""
    said = error_of({"mcpServers": {"a": server}})
    assert f"mcpServers.{message}" in said and "Input should be" not in said
    limits = error_of({"mcpServers": {}, "onemcp": {"limits": 5}})
    assert "onemcp.limits: expected an object, not the number 5" in limits


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ({"command": "x", "env": "API_KEY=sk-live-0123456789"}, "a.env: expected an object, not a string"),
        ({"url": "https://x/mcp", "headers": "Authorization: Bearer abc123def456"}, "a.headers: expected an object"),
        ({"command": "x", "env": {"PIN": 918273645546}}, "a.env.PIN: expected a string, not a number: write it in"),
        (
            {"url": "https://x/mcp", "oauth": {"clientId": "c", "clientSecret": 918273645546}},
            "a.oauth.clientSecret: expected a string, not a number",
        ),
    ],
)
def test_a_misshapen_secret_is_not_repeated_in_the_error(server: Any, message: str) -> None:
    """A config refused on reload is `/health`'s and the admin API's `config.lastError`, shown to every
    operator-scope caller: an env, header or client secret written in the wrong shape (`"env": "API_KEY=..."`)
    was quoted there ("not the string 'API_KEY=sk-live-0123456789'"), a secret the redactor could not know
    (it masks the running config's). The error still says where and what the field takes."""
    said = error_of({"mcpServers": {"a": server}})
    assert f"mcpServers.{message}" in said
    assert not any(secret in said for secret in ("sk-live", "abc123def456", "918273645546")), said


@pytest.mark.parametrize("store", ["redis://", "redis:///0", "rediss://:secret@/1", "redis://h:99999/0"])
def test_a_session_store_url_that_does_not_parse_is_refused(store: str) -> None:
    """`redis://` (no host) loaded, and the Redis client took it for localhost:6379."""
    assert "onemcp.sessionStore: does not parse" in error_of({"mcpServers": {}, "onemcp": {"sessionStore": store}})


@pytest.mark.parametrize(
    ("store", "said"),
    [
        ("redis://h:6379/x", "the database after the host must be a number (redis://host:6379/0), not 'x'"),
        ("redis://h:6379/0/extra", "the database after the host must be a number (redis://host:6379/0), not '0/extra'"),
        ("redis://h:6379/0?db=x", "Invalid value for 'db' in connection URL"),
        ("redis://h:6379/0?socket_timeout=soon", "Invalid value for 'socket_timeout' in connection URL"),
        ("redis://h:6379/0?foo=1", "unknown parameter 'foo' (the Redis client takes db, socket_timeout,"),
        ("unix:///run/redis.sock?dbb=1", "unknown parameter 'dbb' (the Redis client takes db, socket_timeout,"),
        # names the client knows but not with this URL's connection: each ended the hub at start (TypeError)
        ("redis://h:6379/0?ssl_check_hostname=true", "'ssl_check_hostname' is no parameter of a redis:// URL"),
        ("redis://h:6379/0?ssl_cert_reqs=none", "'ssl_cert_reqs' is no parameter of a redis:// URL"),
        ("redis://h:6379/0?timeout=3", "'timeout' is no parameter of a redis:// URL"),
        ("unix:///run/redis.sock?socket_keepalive=true", "'socket_keepalive' is no parameter of a unix:// URL"),
        ("rediss://h:6380/0?ssl_cert_reqs=maybe", "Invalid SSL Certificate Requirements Flag: maybe"),
        ("redis://h:6379/0?retry=3", "unknown parameter 'retry'"),  # an object, not text
        # two databases named: the client takes ?db= without a word
        ("redis://h:6379/0?db=3", "the database is given twice, /0 and ?db=3: give one of them"),
    ],
)
def test_a_session_store_url_the_redis_client_would_misread_is_refused(store: str, said: str) -> None:
    """Trial s39-h16: `onemcp validate` passed these; at start `?db=x` ended the hub with a traceback
    (ValueError), `?foo=1` with "the hub stopped on an internal error", and `/x` or `/0/extra` were read as
    database 0 without a word (two deployments meaning different databases would share one)."""
    error = error_of({"mcpServers": {}, "onemcp": {"sessionStore": store}})
    assert f"onemcp.sessionStore: {said}" in error, error


@pytest.mark.parametrize(
    "store",
    [
        "redis://h:6379",
        "redis://h:6379/",
        "redis://h:6379/3",
        "rediss://u:p@h:6380/1?socket_timeout=2",
        "unix:///r.s?db=2",
        # the client's own keyword arguments, given as text: refused as unknown parameters, though they work
        "rediss://h:6380/0?ssl_cert_reqs=none",
        "rediss://h:6380/0?ssl_ca_certs=/etc/ssl/redis-ca.pem&ssl_check_hostname=false",
        "redis://h:6379/0?client_name=onemcp&max_connections=20",
        "unix:///r.s?password=p&username=u",
    ],
)
def test_a_session_store_url_the_redis_client_reads_as_written_loads(store: str) -> None:
    assert parse({"mcpServers": {}, "onemcp": {"sessionStore": store}}).hub.session_store == store


@pytest.mark.parametrize(
    ("doc", "want"),
    [
        (
            {"mcpServers": {"a": {"command": "x", "replicas": 3, "hashKey": "argument:repo"}}},
            "mcpServers.a: 'hashKey' applies with \"balance\": \"consistent-hash\", not 'round-robin'",
        ),
        (
            {"mcpServers": {"a": {"command": "x", "toolAliases": {"read": "get", "fetch": "get"}}}},
            "mcpServers.a.toolAliases: 'read' and 'fetch' are both shown as 'get': one would hide the other",
        ),
        (
            {"mcpServers": {"a": {"command": "x", "toolAliases": {"read": " "}}}},
            "mcpServers.a.toolAliases: 'read' is shown as an empty name",
        ),
        (
            {"mcpServers": {}, "onemcp": {"instructions": "Use {servers}", "instructionsFile": "hub.md"}},
            "onemcp: 'instructions' and 'instructionsFile' both set: the file would win; keep one",
        ),
        (
            {"mcpServers": {}, "onemcp": {"allowedOrigins": ["app.example"]}},
            "onemcp.allowedOrigins: 'app.example' is not an origin: write scheme://host[:port]",
        ),
        (
            {"mcpServers": {}, "onemcp": {"allowedOrigins": ["https://app.example:443/ui"]}},
            "onemcp.allowedOrigins: 'https://app.example:443/ui' is not what a browser sends as its Origin: write"
            " 'https://app.example'",
        ),
        (
            {"mcpServers": {}, "onemcp": {"allowedHosts": ["https://mcp.example"]}},
            "onemcp.allowedHosts: 'https://mcp.example' is not a Host header: write a name, optionally with :port",
        ),
        ({"mcpServers": {}, "onemcp": {"allowedHosts": ["*"]}}, "onemcp.allowedHosts: '*' is not taken: list each"),
    ],
)
def test_a_setting_that_would_do_nothing_is_refused(doc: dict[str, Any], want: str) -> None:
    """Each loaded and did nothing: a hashKey round-robin never reads, the second of two tools aliased
    alike hidden, the inline instructions the file replaced, an origin or host no request can match."""
    assert f"mcp.json: {want}" in error_of(doc)


@pytest.mark.parametrize(
    ("auth", "want"),
    [
        ({"oauthConsent": "auto"}, "onemcp.auth: 'oauthConsent': for the built-in OAuth server, which needs 'oauth'"),
        ({"apiKeys": True, "oauthOperator": "key"}, "onemcp.auth: 'oauthOperator': for the built-in OAuth server"),
        ({"apiKeys": True, "roles": {"r": {"scopes": ["mcp"]}}, "clientRoles": {"app": ["r"]}}, "'clientRoles': for"),
        ({"apiKeys": True, "publicUrl": "mcp.example/mcp"}, "onemcp.auth.publicUrl: must be the URL clients reach"),
        ({"apiKeys": True, "publicUrl": "https://mcp example/mcp"}, "onemcp.auth.publicUrl: does not parse"),
        ({"jwt": {"jwksUrl": "https://idp/jwks", "issuer": " "}}, "onemcp.auth.jwt.issuer: is empty: no token's iss"),
    ],
)
def test_an_auth_setting_that_would_do_nothing_is_refused(auth: dict[str, Any], want: str) -> None:
    """The OAuth server's settings while it is off were ignored; a publicUrl that is no URL became the
    resource tokens are issued for; an empty issuer matched no token."""
    assert want in error_of({"mcpServers": {}, "onemcp": {"auth": auth}})


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({"instructions": "Memory of {{ project.name }}"}, "instructions"),
        ({"toolDescriptions": {"read": "Read {{ project.path }}"}}, "toolDescriptions.read"),
        ({"sandbox": {"isolate": True, "writable": ["{{ project.path }}"]}}, "sandbox.writable.0"),
    ],
)
def test_a_template_in_a_field_that_is_not_rendered_is_refused(entry: dict[str, Any], where: str) -> None:
    """Only command, args, env, cwd, url, headers, disabled and tags are rendered: a template elsewhere
    reached clients (or bubblewrap) as written, braces and all."""
    message = error_of({"mcpTemplates": {"t": {"command": "x", "args": ["{{ project.path }}"], **entry}}})
    assert (
        f"mcp.json: mcpTemplates.t: {where}: only command, args, env, cwd, url, headers, disabled, tags are" in message
    )


@pytest.mark.parametrize(
    ("entry", "want"),
    [
        (
            {"url": "https://x/mcp", "headers": {"X-Token": "caf\u00e9"}},
            "headers: X-Token: its value must be printable",
        ),
        ({"url": "https://x/mcp", "headers": {"X-Token": "a\r\nHost: evil"}}, "headers: X-Token: its value must be"),
        ({"url": "https://x/mcp", "headers": {"Api Key": "k"}}, "headers: 'Api Key' is not a header name"),
        ({"url": "https://x/mcp", "headers": {"": "k"}}, "headers: '' is not a header name"),
        ({"command": "x", "env": {"A=B": "v"}}, "env: 'A=B' is not a variable name (not empty, no '=' or NUL)"),
        ({"command": "x", "env": {"": "v"}}, "env: '' is not a variable name"),
        ({"command": "x", "env": {"A": "v\u0000w"}}, "env: A: its value cannot hold a NUL character"),
    ],
)
def test_a_header_or_variable_that_cannot_be_sent_is_refused(entry: dict[str, Any], want: str) -> None:
    """Each loaded and then failed at connect time (httpx's UnicodeEncodeError, h11's or the spawn's
    ValueError); the message never shows the value, often a secret."""
    message = error_of({"mcpServers": {"a": entry}})
    assert f"mcpServers.a.{want}" in message and "evil" not in message and "caf" not in message


def test_a_templated_header_value_is_checked_once_rendered() -> None:
    parse({"mcpTemplates": {"t": {"url": "https://x/mcp", "headers": {"X-Project": "{{ project.name }}"}}}})
    assert "'Bad Name' is not a header name" in error_of(
        {"mcpTemplates": {"t": {"url": "https://x/mcp", "headers": {"Bad Name": "{{ project.name }}"}}}}
    )


def test_settings_that_do_something_still_load() -> None:
    config = parse(
        {
            "mcpServers": {
                "a": {"command": "x", "replicas": 2, "balance": "consistent-hash", "hashKey": "principal"},
                "b": {"command": "x", "hashKey": "session", "toolAliases": {"read": "fetch", "fetch": "read"}},
            },
            "onemcp": {
                "allowedOrigins": ["*", "https://App.example/", "http://localhost:5173"],
                "allowedHosts": ["mcp.example", "mcp.example:8443", "[::1]:3050"],
                "instructionsFile": "hub.md",
            },
        }
    )
    assert config.servers["a"].hash_key == "principal" and config.hub.allowed_hosts[2] == "[::1]:3050"


def test_a_variable_stands_where_a_number_or_a_boolean_goes() -> None:
    """Substitution leaves every value a string, so a ${VAR} (or its default) there is read as the value."""
    config = parse(
        {
            "mcpServers": {"a": {"command": "x", "timeout": "${T}", "disabled": "${OFF:-false}"}},
            "onemcp": {"searchBudget": "${BUDGET}"},
        },
        env={"T": "30", "BUDGET": "15000"},
    )
    assert config.servers["a"].timeout == 30 and config.servers["a"].disabled is False
    assert config.hub.search_budget == 15000
    # a value that does not read as one says what it was and where it came from
    said = error_of(
        {
            "mcpServers": {"a": {"command": "x", "timeout": "${T}", "disabled": "${OFF}"}},
            "onemcp": {"limits": {"maxSessions": "${MAX}"}},
        },
        env={"T": "5s", "OFF": "maybe", "MAX": "1.5"},
    )
    assert "mcpServers.a.timeout: expected a number, not '5s' (what its ${VAR} gave)" in said
    assert "mcpServers.a.disabled: expected true or false, not 'maybe' (what its ${VAR} gave)" in said
    assert "onemcp.limits.maxSessions: expected a whole number, not '1.5' (what its ${VAR} gave)" in said


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_written_in_json_is_refused(number: bytes) -> None:
    with pytest.raises(ConfigError, match="timeout: must be a finite number"):
        parse_config(b'{"mcpServers": {"a": {"command": "x", "timeout": %s}}}' % number, source="mcp.json", env={})


@pytest.mark.parametrize("command", ["", "   "])
def test_an_empty_command_is_refused(command: str) -> None:
    assert "mcpServers.a.command: must name a program (it is empty)" in error_of(
        {"mcpServers": {"a": {"command": command}}}
    )
    # an empty cwd was taken, and the spawn then failed as "command not found"
    assert "mcpServers.a.cwd: is empty: leave it out to run in the hub's working directory" in error_of(
        {"mcpServers": {"a": {"command": "x", "cwd": command}}}
    )


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://exa mple.com/mcp", "contains a space"),
        ("http://example.com/m\tcp", "contains a space"),
        ("http:///mcp", "has no host"),
        ("https://x:99999/mcp", "does not parse: Port out of range"),
        ("https://x:port/mcp", "does not parse"),
        ("https://exa<mple/mcp", "is not a host name"),
    ],
)
def test_a_url_that_does_not_parse_is_refused(url: str, fragment: str) -> None:
    message = error_of({"mcpServers": {"a": {"url": url}}})
    assert "mcpServers.a.url: does not parse" in message and fragment in message
    message = error_of({"mcpServers": {"a": {"url": "https://ok/mcp", "replicas": [url]}}})
    assert f"mcpServers.a.replicas: {url!r}: does not parse" in message


def test_urls_that_parse_are_accepted() -> None:
    urls = ["http://127.0.0.1:9000/sse", "https://[::1]:8443/mcp", "https://user:pw@h.example/mcp?a=b#c", "http://h"]
    for url in urls:
        assert parse({"mcpServers": {"a": {"url": url}}}).servers["a"].url == url


@pytest.mark.parametrize(
    ("jwt", "fragment"),
    [
        ({"algorithms": ["HS256"]}, "'HS256' is not a public-key signature algorithm"),
        ({"algorithms": ["none"]}, "'none' is not a public-key"),
        ({"algorithms": []}, "name at least one of RS256"),
        ({"jwksUrl": "ftp://idp/jwks"}, "must start with https://"),
        ({"jwksUrl": "https://idp .test/jwks"}, "does not parse"),
        ({"jwksUrl": "http://idp.test/jwks"}, "use https://"),
    ],
)
def test_jwt_settings_that_could_not_verify_safely_are_refused(jwt: dict[str, Any], fragment: str) -> None:
    settings = {"jwksUrl": "https://idp.test/jwks", "issuer": "https://idp.test", **jwt}
    message = error_of({"onemcp": {"auth": {"jwt": settings}}})
    assert "onemcp.auth.jwt." in message and fragment in message


def test_every_public_key_algorithm_is_accepted() -> None:
    algorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES256K", "ES384", "ES512", "EdDSA"]
    settings = {"jwksUrl": "http://127.0.0.1:9/jwks", "issuer": "i", "algorithms": algorithms}
    assert parse({"onemcp": {"auth": {"jwt": settings}}}).hub.auth.jwt is not None


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        (
            "mcp.json",
            '{"onemcp": {"instructionsFile": "~nosuchuser0123/x.txt"}}',
            "onemcp.instructionsFile: cannot use",
        ),
        ("mcp.json", '{"onemcp": {"searchCache": "a\\u0000b"}}', "cannot hold a NUL"),
        ("mcp.json", '{"onemcp": ' + "[" * 1000 + "]" * 1000 + "}", "nested too deeply"),
        (
            "mcp.json",
            '{"mcpServers": {"a": {"command": "x", "env": ' + '{"k":' * 100 + '"v"' + "}" * 100 + "}}}",
            "deeply",
        ),
        (
            "mcp.yaml",
            "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
            + "mcpServers: {s: {command: x, args: *i}}\n",
            "YAML aliases",
        ),
        (
            "mcp.json",
            '{"mcpTemplates": {"t": {"command": "x", "args": ["{{ ' + "(" * 3000 + "1" + ")" * 3000 + ' }}"]}}}',
            "nested too deeply",
        ),
    ],
)
def test_a_config_that_would_break_its_reader_is_refused_clearly(
    tmp_path: Path, name: str, text: str, said: str
) -> None:
    """A path Python cannot expand, nesting past any parser's depth, or a few hundred bytes of YAML
    aliases that expand to billions of values: a ConfigError naming it (a running hub keeps its
    config), never an exception that would end the hub, nor a minute of work."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=said):
        load_config(path)


def test_the_audit_log_is_beside_the_config_when_relative(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text('{"onemcp": {"audit": "audit.log"}}')
    assert load_config(path).hub.audit == str(tmp_path / "audit.log")
    path.write_text('{"onemcp": {"audit": "-"}}')
    assert load_config(path).hub.audit == "-"
    path.write_text('{"onemcp": {"audit": ""}}')
    with pytest.raises(ConfigError, match=r"onemcp\.audit: empty"):
        load_config(path)


def test_a_directory_with_a_yaml_or_toml_config_uses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from onemcp.config.paths import other_configs

    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(tmp_path))
    assert resolve_path(None) == tmp_path / "mcp.json"  # none yet: where a starter is written
    (tmp_path / "mcp.toml").write_text('[mcpServers.t]\ncommand = "x"\n')
    assert resolve_path(None) == tmp_path / "mcp.toml"
    assert set(load_config(resolve_path(None)).servers) == {"t"}
    (tmp_path / "mcp.yaml").write_text("mcpServers: {y: {command: x}}\n")
    assert resolve_path(None) == tmp_path / "mcp.yaml" and other_configs(tmp_path / "mcp.yaml") == [
        tmp_path / "mcp.toml"
    ]
    (tmp_path / "mcp.json").write_text("{}")
    assert resolve_path(None) == tmp_path / "mcp.json"
